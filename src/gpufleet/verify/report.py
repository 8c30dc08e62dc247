"""Render a ``gpufleet verify`` report: terminal table, JSON, JUnit XML and Prometheus metrics.

The report object (built by the verify framework) is::

    {"schema": 1, "tool": "gpufleet verify", "version": str, "inventory": str, "tier": str,
     "started": ISO 8601 str, "duration_s": float,
     "summary": {"healthy": int, "degraded": int, "unhealthy": int, "unreachable": int[, "unverified": int]},
     "hosts": [{"host": str, "verdict": one of health.ALL_VERDICTS, "action": one of health.ACTIONS or None,
                "error": str or None, "duration_s": float, "gpu_count": int, "sku": str or None,
                "checks": [{"check", "title", "tier", "kind", "status", "summary", "measured",
                            "expected", "unit", "source", "action", "details", "duration_s"}]}]}

Every renderer is a pure function of the report. ``gpufleet._io.write_atomic`` puts a rendering on disk
so that a reader (node_exporter's textfile collector, a CI job) never sees a half-written file.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core as health

# ---------------------------------------------------------------------------------------------------
# Shared helpers

# C0 controls except tab/newline/carriage return, DEL, C1 controls: never wanted in any output.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# XML 1.0 forbids these outright (on top of the controls above): lone surrogates, U+FFFE, U+FFFF.
_XML_INVALID = re.compile("[\ud800-\udfff\ufffe\uffff]")


def _clean(text, *, keep_newlines=False) -> str:
    """``text`` as a str without control characters; newlines folded to spaces unless kept."""
    if text is None:
        return ""
    text = str(text)
    # Lone surrogates (from undecodable bytes) cannot be encoded; make them visible instead.
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = _CONTROL.sub("", text)
    if not keep_newlines:
        text = " ".join(text.replace("\r", "\n").split("\n"))
    return text


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_finite_number(value) -> bool:
    return _is_number(value) and math.isfinite(value)


def _fmt_value(value) -> str:
    """A measured/expected value for humans: numbers plain, structures as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    if isinstance(value, int | str):
        return _clean(value)
    return _clean(json.dumps(_json_safe(value), sort_keys=True, separators=(", ", ": ")))


def _with_unit(value, unit) -> str:
    text = _fmt_value(value)
    if unit and value is not None:
        text = f"{text} {_clean(unit)}"
    return text


def _json_safe(value):
    """``value`` with non-finite floats as strings ("NaN", "Infinity"): strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _hosts(report) -> list[dict]:
    return list(report.get("hosts") or [])


def _checks(host) -> list[dict]:
    return list(host.get("checks") or [])


def _status_counts(host) -> dict[str, int]:
    counts = dict.fromkeys(health.STATUSES, 0)
    for check in _checks(host):
        if check.get("status") in counts:
            counts[check["status"]] += 1
    return counts


def _verdict_counts(report) -> dict[str, int]:
    """Hosts per verdict; ``unverified`` only when some host has it (reports without one read as before)."""
    counts = dict.fromkeys(health.VERDICTS, 0)
    for host in _hosts(report):
        verdict = host.get("verdict")
        if verdict in counts or verdict == health.UNVERIFIED:
            counts[verdict] = counts.get(verdict, 0) + 1
    return counts


def _seconds(value) -> str:
    return f"{value:.1f}s" if _is_finite_number(value) else "-"


def _detail_lines(details) -> list[str]:
    lines = []
    for item in details or ():
        if isinstance(item, str):
            lines.append(_clean(item))
        else:
            lines.append(_clean(json.dumps(_json_safe(item), sort_keys=True)))
    return lines


# ---------------------------------------------------------------------------------------------------
# Terminal table


def _check_block(check, indent: str) -> list[str]:
    status = str(check.get("status") or "?").upper()
    name = _clean(check.get("check") or "?")
    action = check.get("action")
    head = f"{indent}{status:<4}  {name}: {_clean(check.get('summary'))}"
    if action:
        head += f"  [{_clean(action)}]"
    lines = [head]
    sub = indent + " " * 6
    measured, expected, unit = check.get("measured"), check.get("expected"), check.get("unit")
    if measured is not None or expected is not None:
        lines.append(f"{sub}measured {_with_unit(measured, unit)}, expected {_with_unit(expected, unit)}")
    if check.get("source"):
        lines.append(f"{sub}source: {_clean(check['source'])}")
    return lines


def render_table(report, verbose: bool = False) -> str:
    """A plain-text table: one row per host, then what is wrong on each host that is not healthy.

    Failing and warning checks are shown with measured vs expected, unit and source; skipped checks
    are listed compactly with their reasons (a skip is never a pass). ``verbose`` lists every check
    of every host. The last line counts hosts per verdict.
    """
    hosts = _hosts(report)
    lines = []
    head = f"{_clean(report.get('tool') or 'gpufleet verify')}: tier {_clean(report.get('tier') or '-')}"
    if report.get("inventory"):
        head += f", inventory {_clean(report['inventory'])}"
    if report.get("started"):
        head += f", started {_clean(report['started'])}"
    if _is_finite_number(report.get("duration_s")):
        head += f", took {_seconds(report['duration_s'])}"
    lines += [head, ""]
    inputs = report.get("inputs")
    if inputs is not None:  # gpufleet diagnose: what was read from which file, and what was not
        for status, title in (
            ("used", "read"),
            ("unused", "not used"),
            ("unknown", "not used (unknown name)"),
            ("unreadable", "unreadable"),
        ):
            files = [i for i in inputs if i.get("status") == status]
            if files:
                listing = ", ".join(
                    _clean(i.get("file")) + (f" ({_clean(i['reason'])})" if i.get("reason") else "")
                    for i in files
                )
                lines.append(f"{title}: {listing}")
        lines.append("")

    # The POLICY column only where some host differs from the site's policy (health.POLICY_STATUS).
    shown_statuses = [health.PASS, health.WARN, health.FAIL, health.SKIP]
    if any(_status_counts(h)[health.POLICY_STATUS] for h in hosts):
        shown_statuses.append(health.POLICY_STATUS)
    if any(_status_counts(h)[health.UNVERIFIED_STATUS] for h in hosts):
        shown_statuses.append(health.UNVERIFIED_STATUS)
    columns = ["HOST", "VERDICT", "ACTION", "GPUS", *(s.upper() for s in shown_statuses), "TIME"]
    rows = []
    for host in hosts:
        counts = _status_counts(host)
        gpus = host.get("gpu_count")
        rows.append(
            [
                _clean(host.get("host") or "?"),
                _clean(host.get("verdict") or "?"),
                _clean(host.get("action") or "-"),
                "-" if host.get("verdict") == health.UNREACHABLE or gpus is None else str(gpus),
                *(str(counts[s]) for s in shown_statuses),
                _seconds(host.get("duration_s")),
            ]
        )
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    numeric = {"GPUS", "PASS", "WARN", "FAIL", "SKIP", "POLICY", "UNVERIFIED", "TIME"}

    def fmt(cells):
        out = [
            cell.rjust(widths[i]) if columns[i] in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(out).rstrip()

    lines.append(fmt(columns))
    lines += [fmt(r) for r in rows]
    if not hosts:
        lines.append("(no hosts)")

    for host in hosts:
        name = _clean(host.get("host") or "?")
        verdict = host.get("verdict")
        checks = _checks(host)
        block = []
        if verdict == health.UNREACHABLE:
            block.append(f"{name}: unreachable: {_clean(host.get('error')) or 'no reason given'}")
        elif verdict != health.HEALTHY or verbose:
            title = f"{name}: {_clean(verdict)}"
            if host.get("action"):
                title += f", suggested action {_clean(host['action'])}"
            if host.get("sku"):
                title += f" ({_clean(host['sku'])})"
            block.append(title)
        flagged = (health.FAIL, health.WARN, health.UNVERIFIED_STATUS, health.POLICY_STATUS)
        shown = checks if verbose else [c for c in checks if c.get("status") in flagged]
        if verdict == health.HEALTHY and not verbose:
            shown = [c for c in shown if c.get("status") == health.POLICY_STATUS]
            if shown and not block:
                block.append(f"{name}: {_clean(verdict)}, differs from the site's policy")
        order = {
            health.FAIL: 0,
            health.WARN: 1,
            health.UNVERIFIED_STATUS: 2,
            health.POLICY_STATUS: 3,
            health.PASS: 4,
            health.SKIP: 5,
        }
        if not verbose:
            shown = sorted(shown, key=lambda c: order.get(c.get("status"), 9))
        for check in shown:
            if verbose and check.get("status") == health.SKIP:
                continue  # listed compactly below, with the others
            block += _check_block(check, "  ")
        skipped = [c for c in checks if c.get("status") == health.SKIP]
        if skipped:
            if not block:
                block.append(f"{name}: {_clean(verdict)}")
            # Checks skipped for one reason are listed together, once.
            by_reason: dict[str, list[str]] = {}
            for c in skipped:
                reason = _clean(c.get("summary")) or "no reason given"
                by_reason.setdefault(reason, []).append(_clean(c.get("check") or "?"))
            reasons = "; ".join(f"{', '.join(names)} ({reason})" for reason, names in by_reason.items())
            block.append(f"  skipped: {reasons}")
        if block:
            lines += ["", *block]

    counts = _verdict_counts(report)
    lines += ["", ", ".join(f"{n} {v}" for v, n in counts.items())]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# JSON


def render_json(report) -> str:
    """The report as strict JSON (sorted keys, indent 2, trailing newline; NaN/Infinity as strings)."""
    return json.dumps(_json_safe(report), sort_keys=True, indent=2, allow_nan=False, default=str) + "\n"


# ---------------------------------------------------------------------------------------------------
# JUnit XML


def _xml(text, *, keep_newlines=True) -> str:
    return _XML_INVALID.sub("", _clean(text, keep_newlines=keep_newlines))


def _time(value) -> str:
    return f"{value:.3f}" if _is_finite_number(value) and value >= 0 else "0.000"


def _check_body(check) -> str:
    unit = check.get("unit")
    lines = [
        f"measured: {_with_unit(check.get('measured'), unit)}",
        f"expected: {_with_unit(check.get('expected'), unit)}",
        f"source: {_clean(check.get('source')) or '-'}",
        f"suggested action: {_clean(check.get('action')) or '-'}",
    ]
    details = _detail_lines(check.get("details"))
    if details:
        lines.append("details:")
        lines += [f"  - {d}" for d in details]
    return "\n".join(lines)


def render_junit(report) -> str:
    """JUnit XML: one testsuite per host, one testcase per check.

    fail -> ``<failure message=summary type=action>`` with measured/expected/source/details in its
    body; skip -> ``<skipped message=reason>``; warn (and policy) -> a passing testcase whose ``<system-out>``
    starts with ``WARN:``; an unreachable host -> a testcase ``reachable`` with ``<error>``.
    """
    root = ET.Element("testsuites", name="gpufleet verify")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for host in _hosts(report):
        name = _xml(host.get("host") or "?", keep_newlines=False)
        classname = f"gpufleet.verify.{name}"
        suite = ET.SubElement(root, "testsuite", name=classname)
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        props = ET.SubElement(suite, "properties")
        for key in ("verdict", "action", "sku", "gpu_count"):
            if host.get(key) is not None:
                ET.SubElement(props, "property", name=key, value=_xml(host[key], keep_newlines=False))
        if report.get("tier"):
            ET.SubElement(props, "property", name="tier", value=_xml(report["tier"], keep_newlines=False))

        if host.get("verdict") == health.UNREACHABLE:
            case = ET.SubElement(suite, "testcase", classname=classname, name="reachable", time="0.000")
            error = _xml(host.get("error") or "host unreachable")
            el = ET.SubElement(case, "error", message=_xml(error, keep_newlines=False), type="unreachable")
            el.text = error
            counts["tests"] += 1
            counts["errors"] += 1
        for check in _checks(host):
            status = check.get("status")
            case = ET.SubElement(
                suite,
                "testcase",
                classname=classname,
                name=_xml(check.get("check") or "?", keep_newlines=False),
                time=_time(check.get("duration_s")),
            )
            counts["tests"] += 1
            summary = _xml(check.get("summary"), keep_newlines=False)
            if status == health.FAIL:
                el = ET.SubElement(case, "failure", message=summary, type=_xml(check.get("action") or "fail"))
                el.text = _xml(_check_body(check))
                counts["failures"] += 1
            elif status == health.SKIP:
                ET.SubElement(case, "skipped", message=summary or "skipped, no reason given")
                counts["skipped"] += 1
            elif status == health.UNVERIFIED_STATUS:  # not measured: never a pass, not a fault
                ET.SubElement(case, "skipped", message=f"UNVERIFIED: {summary}")
                counts["skipped"] += 1
            elif status in (health.WARN, health.POLICY_STATUS):
                out = ET.SubElement(case, "system-out")
                out.text = _xml(f"{status.upper()}: {summary}\n{_check_body(check)}")
            elif status != health.PASS:
                el = ET.SubElement(case, "error", message=f"unknown check status {status!r}", type="status")
                counts["errors"] += 1
        suite.set("tests", str(counts["tests"]))
        suite.set("failures", str(counts["failures"]))
        suite.set("errors", str(counts["errors"]))
        suite.set("skipped", str(counts["skipped"]))
        suite.set("time", _time(host.get("duration_s")))
        if report.get("started"):
            suite.set("timestamp", _xml(report["started"], keep_newlines=False))
        suite.set("hostname", name)
        for key in totals:
            totals[key] += counts[key]
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _time(report.get("duration_s")))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ---------------------------------------------------------------------------------------------------
# Prometheus (node_exporter textfile collector)

PROM_PREFIX = "gpufleet_verify_"

# name -> (type, help). Order is the output order. All gauges: each run replaces the file.
PROM_FAMILIES = {
    "gpufleet_verify_last_run_timestamp_seconds": (
        "gauge",
        "Unix time at which the last gpufleet verify run finished (start plus duration).",
    ),
    "gpufleet_verify_run_duration_seconds": ("gauge", "Wall-clock duration of the last gpufleet verify run."),
    "gpufleet_verify_run_info": (
        "gauge",
        "Always 1; labels describe the last gpufleet verify run (tier, tool version, inventory).",
    ),
    "gpufleet_verify_hosts": ("gauge", "Number of hosts per verdict in the last gpufleet verify run."),
    "gpufleet_verify_host_verdict": (
        "gauge",
        "1 for the host's verdict (healthy, degraded, unhealthy, unreachable), 0 for the others.",
    ),
    "gpufleet_verify_host_unhealthy": (
        "gauge",
        "1 when the host's verdict is unhealthy (a check failed), else 0; see host_verdict for the rest.",
    ),
    "gpufleet_verify_host_reachable": ("gauge", "1 when gpufleet verify could reach the host, else 0."),
    "gpufleet_verify_host_action": (
        "gauge",
        "1 for the suggested action for the host, 0 for the others; all 0 when there is none.",
    ),
    "gpufleet_verify_host_gpus": ("gauge", "Number of GPUs gpufleet verify found on the host."),
    "gpufleet_verify_host_info": ("gauge", "Always 1; the sku label names the host's GPU SKU."),
    "gpufleet_verify_host_checks": ("gauge", "Number of checks on the host per status."),
    "gpufleet_verify_host_duration_seconds": ("gauge", "Time gpufleet verify spent on the host."),
    "gpufleet_verify_check_status": (
        "gauge",
        "1 for the check's status (pass, warn, fail, skip), 0 for the others.",
    ),
    "gpufleet_verify_check_measured": (
        "gauge",
        "Value the check measured, in the unit named by the unit label (numeric values only).",
    ),
    "gpufleet_verify_check_expected": (
        "gauge",
        "Baseline the check compared against, in the unit named by the unit label (numeric only).",
    ),
    "gpufleet_verify_check_duration_seconds": ("gauge", "Time the check took."),
}


def _label_value(value) -> str:
    """A label value escaped per the text exposition format (backslash, double quote, newline)."""
    text = _clean(value, keep_newlines=True).replace("\r", "")
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _help_text(text: str) -> str:
    return _clean(text, keep_newlines=True).replace("\\", "\\\\").replace("\n", "\\n")


def _sample_value(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _parse_time(text):
    if not text:
        return None
    try:
        when = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


_SEVERITY = {
    health.FAIL: 5,
    health.WARN: 4,
    health.UNVERIFIED_STATUS: 3,
    health.POLICY_STATUS: 2,
    health.PASS: 1,
    health.SKIP: 0,
}


def render_prometheus(report) -> str:
    """Metrics in the Prometheus text format, for node_exporter's textfile collector.

    Every family has ``# HELP`` and ``# TYPE`` before its samples; every family is a gauge (the file
    describes the last run). ``check_measured``/``check_expected`` carry only finite numbers. Series
    are unique: a host listed twice keeps its first entry, and a check listed twice on one host is
    represented by its worst result (fail > warn > pass > skip).
    """
    samples: dict[str, dict[tuple, str]] = {name: {} for name in PROM_FAMILIES}

    def add(name, labels, value):
        key = tuple((k, _label_value(v)) for k, v in labels.items())
        samples[name].setdefault(key, _sample_value(value))

    started = _parse_time(report.get("started"))
    duration = report.get("duration_s")
    if started is not None:
        finished = started + (duration if _is_finite_number(duration) else 0)
        add("gpufleet_verify_last_run_timestamp_seconds", {}, finished)
    if _is_finite_number(duration):
        add("gpufleet_verify_run_duration_seconds", {}, duration)
    add(
        "gpufleet_verify_run_info",
        {
            "tier": report.get("tier") or "",
            "version": report.get("version") or "",
            "inventory": report.get("inventory") or "",
        },
        1,
    )

    seen_hosts = set()
    hosts = []
    for host in _hosts(report):
        name = _clean(host.get("host") or "", keep_newlines=True)
        if name in seen_hosts:
            continue
        seen_hosts.add(name)
        hosts.append((name, host))

    # The policy status is a series of its own only in reports that have a policy result, so the
    # health one-hot stays as it was for sites without a policy.
    optional = (health.POLICY_STATUS, health.UNVERIFIED_STATUS)
    statuses = [
        s
        for s in health.STATUSES
        if s not in optional or any(c.get("status") == s for _, h in hosts for c in _checks(h))
    ]
    verdicts = dict.fromkeys(health.VERDICTS, 0)
    for _, host in hosts:
        if host.get("verdict") in verdicts or host.get("verdict") == health.UNVERIFIED:
            verdicts[host["verdict"]] = verdicts.get(host["verdict"], 0) + 1
    for verdict, count in verdicts.items():
        add("gpufleet_verify_hosts", {"verdict": verdict}, count)

    for name, host in hosts:
        verdict = host.get("verdict")
        for v in verdicts:
            add("gpufleet_verify_host_verdict", {"host": name, "verdict": v}, int(verdict == v))
        add("gpufleet_verify_host_unhealthy", {"host": name}, int(verdict == health.UNHEALTHY))
        add("gpufleet_verify_host_reachable", {"host": name}, int(verdict != health.UNREACHABLE))
        for a in health.ACTIONS:
            add("gpufleet_verify_host_action", {"host": name, "action": a}, int(host.get("action") == a))
        if _is_finite_number(host.get("gpu_count")):
            add("gpufleet_verify_host_gpus", {"host": name}, host["gpu_count"])
        add("gpufleet_verify_host_info", {"host": name, "sku": host.get("sku") or ""}, 1)
        if _is_finite_number(host.get("duration_s")):
            add("gpufleet_verify_host_duration_seconds", {"host": name}, host["duration_s"])

        chosen: dict[str, dict] = {}
        for check in _checks(host):
            cname = _clean(check.get("check") or "", keep_newlines=True)
            prev = chosen.get(cname)
            if prev is None or _SEVERITY.get(check.get("status"), -1) > _SEVERITY.get(prev.get("status"), -1):
                chosen[cname] = check
        counts = dict.fromkeys(statuses, 0)
        for check in _checks(host):
            if check.get("status") in counts:
                counts[check["status"]] += 1
        for status, count in counts.items():
            add("gpufleet_verify_host_checks", {"host": name, "status": status}, count)

        for cname, check in chosen.items():
            tier = check.get("tier") or report.get("tier") or ""
            for s in statuses:
                add(
                    "gpufleet_verify_check_status",
                    {"host": name, "check": cname, "tier": tier, "status": s},
                    int(check.get("status") == s),
                )
            unit = check.get("unit") or ""
            for field, family in (
                ("measured", "gpufleet_verify_check_measured"),
                ("expected", "gpufleet_verify_check_expected"),
            ):
                if _is_finite_number(check.get(field)):
                    add(family, {"host": name, "check": cname, "unit": unit}, check[field])
            if _is_finite_number(check.get("duration_s")):
                add(
                    "gpufleet_verify_check_duration_seconds",
                    {"host": name, "check": cname},
                    check["duration_s"],
                )

    lines = []
    for family, (kind, help_text) in PROM_FAMILIES.items():
        if not samples[family]:
            continue
        lines.append(f"# HELP {family} {_help_text(help_text)}")
        lines.append(f"# TYPE {family} {kind}")
        for key, value in samples[family].items():
            labels = ",".join(f'{k}="{v}"' for k, v in key)
            lines.append(f"{family}{{{labels}}} {value}" if labels else f"{family} {value}")
    return "\n".join(lines) + "\n"
