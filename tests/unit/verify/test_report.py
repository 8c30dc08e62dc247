"""Report renderers: terminal table, JSON, JUnit XML, Prometheus textfile metrics, atomic writes."""

import copy
import json
import math
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core as health

from gpufleet.verify import report as R


def check(name, status, summary, *, tier="quick", kind="gpu", duration_s=0.1, **kw):
    """A check entry as the verify framework builds it: health.result plus title/tier/kind/time."""
    entry = health.result(name, status, summary, **kw)
    entry.update(title=name.upper(), tier=tier, kind=kind, duration_s=duration_s)
    return entry


def host(name, checks, *, verdict=None, error=None, gpu_count=8, sku="H100 SXM", duration_s=4.2):
    folded = health.verdict(checks, reachable=error is None)
    return {
        "host": name,
        "verdict": verdict or folded["verdict"],
        "action": folded["action"],
        "error": error,
        "duration_s": duration_s,
        "gpu_count": gpu_count,
        "sku": sku,
        "checks": checks,
    }


def make_report():
    node1 = host(
        "node1",
        [
            check(
                "ecc",
                "pass",
                "no uncorrectable ECC errors",
                measured=0,
                expected=0,
                unit="errors",
                source="NVIDIA DCGM diag",
            ),
            check("ib_link", "skip", "no InfiniBand device present", kind="fabric"),
        ],
    )
    node2 = host(
        "node2",
        [
            check(
                "nvbandwidth_h2d",
                "fail",
                "host-to-device bandwidth 24.1 GB/s below baseline 50 GB/s",
                kind="probe",
                measured=24.1,
                expected=50,
                unit="GB/s",
                source="baselines/h100-sxm.yml (NVIDIA nvbandwidth, DGX H100)",
                action="RESET_GPU",
                details=["gpu0 24.1 GB/s", {"gpu": 1, "h2d": 49.8}],
                duration_s=2.5,
            ),
            check(
                "gpu_temp",
                "warn",
                "GPU 3 at 86 celsius, above 83",
                measured=86,
                expected=83,
                unit="celsius",
                source="NVIDIA H100 datasheet",
                action="MONITOR",
            ),
            check("driver", "pass", "driver 550.127.05 as installed", kind="software"),
            check("nccl_allreduce", "skip", "needs 2 hosts; tier quick runs one", kind="probe"),
        ],
        duration_s=7.0,
    )
    node3 = host(
        "node3",
        [],
        error="ssh: connect to host node3 port 22: Connection timed out",
        gpu_count=0,
        sku=None,
        duration_s=30.0,
    )
    return {
        "schema": 1,
        "tool": "gpufleet verify",
        "version": "0.1.0",
        "inventory": "inventories/lab/hosts.yml",
        "tier": "quick",
        "started": "2026-11-21T10:00:00+00:00",
        "duration_s": 31.5,
        "summary": {"healthy": 1, "degraded": 0, "unhealthy": 1, "unreachable": 1},
        "hosts": [node1, node2, node3],
    }


NASTY = "a<b & c>\"d' \\e\x00\x07\x1b[31mred\x1b[0m\nsecond line\x7f\ud800 end"


def nasty_report():
    rep = make_report()
    rep["hosts"][1]["checks"][0]["summary"] = NASTY
    rep["hosts"][1]["checks"][0]["details"] = [NASTY]
    rep["hosts"][0]["checks"][1]["summary"] = NASTY
    rep["hosts"][2]["error"] = NASTY
    return rep


# ---------------------------------------------------------------------------------------------------
# Table


def test_table_rows_counts_and_failing_checks():
    text = R.render_table(make_report())
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("HOST"))
    assert header.split() == ["HOST", "VERDICT", "ACTION", "GPUS", "PASS", "WARN", "FAIL", "SKIP", "TIME"]
    row2 = next(line for line in lines if line.startswith("node2 "))
    assert row2.split() == ["node2", "unhealthy", "RESET_GPU", "8", "1", "1", "1", "1", "7.0s"]
    row3 = next(line for line in lines if line.startswith("node3 "))
    assert row3.split()[:4] == ["node3", "unreachable", "-", "-"]

    # The failing check: summary, measured vs expected with unit, source, action.
    assert "FAIL  nvbandwidth_h2d: host-to-device bandwidth 24.1 GB/s below baseline 50 GB/s" in text
    assert "measured 24.1 GB/s, expected 50 GB/s" in text
    assert "source: baselines/h100-sxm.yml (NVIDIA nvbandwidth, DGX H100)" in text
    assert "[RESET_GPU]" in text
    assert "WARN  gpu_temp: GPU 3 at 86 celsius, above 83" in text
    assert "measured 86 celsius, expected 83 celsius" in text
    # Failing before warning.
    assert text.index("FAIL  nvbandwidth_h2d") < text.index("WARN  gpu_temp")
    # Unreachable host with its error.
    assert "node3: unreachable: ssh: connect to host node3 port 22: Connection timed out" in text
    # Skips listed compactly with reasons, for healthy hosts too (a skip is never a pass).
    assert "skipped: ib_link (no InfiniBand device present)" in text
    assert "skipped: nccl_allreduce (needs 2 hosts; tier quick runs one)" in text
    # Passing checks are not listed without verbose.
    assert "ecc:" not in text and "driver:" not in text
    assert lines[-1] == "1 healthy, 0 degraded, 1 unhealthy, 1 unreachable"
    assert text.endswith("\n")


def test_table_verbose_lists_every_check():
    text = R.render_table(make_report(), verbose=True)
    assert "PASS  ecc: no uncorrectable ECC errors" in text
    assert "measured 0 errors, expected 0 errors" in text
    assert "PASS  driver: driver 550.127.05 as installed" in text
    assert "node1: healthy" in text


def test_table_is_plain_text_even_with_hostile_input():
    text = R.render_table(nasty_report(), verbose=True)
    assert "\x1b" not in text and "\x00" not in text and "\x07" not in text and "\x7f" not in text
    # Newlines inside a summary do not break the layout: every check line stays one line.
    assert any("second line" in line and "nvbandwidth_h2d" in line for line in text.splitlines())
    text.encode("utf-8")  # no lone surrogate left


def test_table_with_no_hosts():
    rep = make_report()
    rep["hosts"] = []
    text = R.render_table(rep)
    assert "(no hosts)" in text
    assert text.splitlines()[-1] == "0 healthy, 0 degraded, 0 unhealthy, 0 unreachable"


# ---------------------------------------------------------------------------------------------------
# JSON


def test_json_is_sorted_strict_and_round_trips():
    rep = make_report()
    text = R.render_json(rep)
    assert text.endswith("}\n")
    assert json.loads(text) == json.loads(json.dumps(rep))
    assert text == json.dumps(rep, sort_keys=True, indent=2) + "\n"


def test_json_has_no_nan():
    rep = make_report()
    rep["hosts"][1]["checks"][0]["measured"] = float("nan")
    rep["hosts"][1]["checks"][0]["expected"] = float("inf")
    data = json.loads(R.render_json(rep), parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert data["hosts"][1]["checks"][0]["measured"] == "NaN"
    assert data["hosts"][1]["checks"][0]["expected"] == "Infinity"


# ---------------------------------------------------------------------------------------------------
# JUnit


def test_junit_counts_match_the_report():
    rep = make_report()
    root = ET.fromstring(R.render_junit(rep))
    assert root.tag == "testsuites"
    all_checks = [c for h in rep["hosts"] for c in h["checks"]]
    unreachable = [h for h in rep["hosts"] if h["verdict"] == "unreachable"]
    assert int(root.get("tests")) == len(all_checks) + len(unreachable) == 7
    assert int(root.get("tests")) == len(list(root.iter("testcase")))
    assert int(root.get("failures")) == sum(c["status"] == "fail" for c in all_checks) == 1
    assert int(root.get("skipped")) == sum(c["status"] == "skip" for c in all_checks) == 2
    assert int(root.get("errors")) == len(unreachable) == 1
    assert float(root.get("time")) == pytest.approx(31.5)

    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [
        "gpufleet.verify.node1",
        "gpufleet.verify.node2",
        "gpufleet.verify.node3",
    ]
    for suite, h in zip(suites, rep["hosts"], strict=True):
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == len(suite.findall("testcase/failure"))
        assert int(suite.get("skipped")) == len(suite.findall("testcase/skipped"))
        assert int(suite.get("errors")) == len(suite.findall("testcase/error"))
        assert float(suite.get("time")) == pytest.approx(h["duration_s"])
        assert {c.get("classname") for c in cases} <= {f"gpufleet.verify.{h['host']}"}


def test_junit_failure_skipped_warn_and_error_elements():
    root = ET.fromstring(R.render_junit(make_report()))
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}

    fail = cases[("gpufleet.verify.node2", "nvbandwidth_h2d")]
    assert fail.get("time") == "2.500"
    failure = fail.find("failure")
    assert failure.get("message") == "host-to-device bandwidth 24.1 GB/s below baseline 50 GB/s"
    assert failure.get("type") == "RESET_GPU"
    assert "measured: 24.1 GB/s" in failure.text
    assert "expected: 50 GB/s" in failure.text
    assert "source: baselines/h100-sxm.yml (NVIDIA nvbandwidth, DGX H100)" in failure.text
    assert "gpu0 24.1 GB/s" in failure.text and '"h2d": 49.8' in failure.text

    skipped = cases[("gpufleet.verify.node1", "ib_link")].find("skipped")
    assert skipped.get("message") == "no InfiniBand device present"

    warn = cases[("gpufleet.verify.node2", "gpu_temp")]
    assert warn.find("failure") is None and warn.find("skipped") is None and warn.find("error") is None
    assert warn.find("system-out").text.startswith("WARN: GPU 3 at 86 celsius, above 83")

    passed = cases[("gpufleet.verify.node1", "ecc")]
    assert list(passed) == []

    unreachable = cases[("gpufleet.verify.node3", "reachable")]
    error = unreachable.find("error")
    assert error.get("message") == "ssh: connect to host node3 port 22: Connection timed out"


def test_junit_escapes_and_strips_control_characters():
    text = R.render_junit(nasty_report())
    assert "\x00" not in text and "\x1b" not in text and "\x07" not in text
    root = ET.fromstring(text.encode("utf-8"))  # parses: escaping is right, no invalid characters
    failure = next(root.iter("failure"))
    message = failure.get("message")
    assert message.startswith("a<b & c>\"d' \\e[31mred[0m second line")
    assert "\n" not in message
    assert "a<b & c>\"d'" in failure.text
    skipped = next(root.iter("skipped"))
    assert skipped.get("message") == message
    error = next(root.iter("error"))
    assert error.get("message") == message


# ---------------------------------------------------------------------------------------------------
# Prometheus

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def _parse_labels(text, line):
    """Parse ``name="value",...`` strictly; returns list of (name, unescaped value) and the rest."""
    labels = []
    i = 0
    while True:
        if text[i] == "}":
            return labels, text[i + 1 :]
        m = re.match(r"[a-zA-Z_][a-zA-Z0-9_]*", text[i:])
        assert m, f"bad label name in {line!r}"
        name = m.group(0)
        i += len(name)
        assert text[i : i + 2] == '="', f'expected =" after {name} in {line!r}'
        i += 2
        value = []
        while True:
            ch = text[i]
            if ch == "\\":
                nxt = text[i + 1]
                assert nxt in '\\"n', f"invalid escape \\{nxt} in {line!r}"
                value.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
                i += 2
            elif ch == '"':
                i += 1
                break
            else:
                assert ch != "\n"
                value.append(ch)
                i += 1
        labels.append((name, "".join(value)))
        if text[i] == ",":
            i += 1
        else:
            assert text[i] == "}", f"expected , or }} in {line!r}"


def parse_exposition(text):
    """A strict reader of the text exposition format, as node_exporter's textfile collector sees it.

    Checks: trailing newline; every family has exactly one HELP and one TYPE, both before its
    samples; a family's samples are contiguous; metric/label names valid; label values escaped
    (only \\\\, \\" and \\n); values are floats; no duplicate series; one label set per family;
    no sample timestamps (the textfile collector rejects them).
    """
    assert text.endswith("\n")
    families = {}
    order = []
    closed = set()
    for line in text[:-1].split("\n"):
        assert line.strip(), "empty line"
        if line.startswith("#"):
            parts = line.split(" ", 3)
            assert parts[1] in ("HELP", "TYPE"), line
            name = parts[2]
            assert METRIC_NAME.match(name), line
            fam = families.setdefault(name, {"help": None, "type": None, "samples": {}, "labelnames": None})
            assert not fam["samples"], f"{parts[1]} after samples: {line}"
            if order and order[-1] != name:
                closed.add(order[-1])
            if not order or order[-1] != name:
                order.append(name)
            if parts[1] == "HELP":
                assert fam["help"] is None, f"second HELP for {name}"
                assert len(parts) == 4 and parts[3].strip(), f"empty HELP for {name}"
                assert re.fullmatch(r"(?:[^\\\n]|\\[\\n])*", parts[3]), f"bad HELP escaping {line!r}"
                fam["help"] = parts[3]
            else:
                assert fam["type"] is None, f"second TYPE for {name}"
                assert parts[3] in TYPES, line
                fam["type"] = parts[3]
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
        assert m, f"bad metric name: {line!r}"
        name = m.group(1)
        rest = line[len(name) :]
        labels = []
        if rest.startswith("{"):
            labels, rest = _parse_labels(rest[1:], line)
        assert rest.startswith(" "), line
        fields = rest.split()
        assert len(fields) == 1, f"timestamp or junk after value: {line!r}"
        value = float(fields[0])
        assert name in families, f"sample for undeclared family: {line!r}"
        assert name not in closed, f"samples of {name} are not contiguous"
        fam = families[name]
        assert fam["help"] is not None and fam["type"] is not None, f"HELP/TYPE must precede {line!r}"
        names = tuple(k for k, _ in labels)
        assert len(set(names)) == len(names), f"repeated label in {line!r}"
        for k in names:
            assert LABEL_NAME.match(k) and not k.startswith("__"), line
        if fam["labelnames"] is None:
            fam["labelnames"] = tuple(sorted(names))
        assert fam["labelnames"] == tuple(sorted(names)), f"inconsistent labels in {line!r}"
        key = tuple(sorted(labels))
        assert key not in fam["samples"], f"duplicate series: {line!r}"
        fam["samples"][key] = value
        if order[-1] != name:
            closed.add(order[-1])
            order.append(name)
    for name, fam in families.items():
        assert fam["samples"], f"family {name} declared without samples"
    return families


def series(families, name, **labels):
    matches = [
        v for k, v in families[name]["samples"].items() if all(dict(k).get(a) == b for a, b in labels.items())
    ]
    return matches


def test_prometheus_families_are_declared_named_and_unique():
    families = parse_exposition(R.render_prometheus(make_report()))
    for name, fam in families.items():
        assert name.startswith("gpufleet_verify_")
        assert name == name.lower()
        assert fam["type"] == "gauge"
        assert not name.endswith("_total")  # only counters end in _total
        assert not re.search(r"_(ms|s|sec|us|ns|b|kb|mb|gb)(_|$)", name)  # no abbreviated units
    required = {
        "gpufleet_verify_host_verdict",
        "gpufleet_verify_host_unhealthy",
        "gpufleet_verify_check_status",
        "gpufleet_verify_check_measured",
        "gpufleet_verify_check_expected",
        "gpufleet_verify_host_duration_seconds",
        "gpufleet_verify_last_run_timestamp_seconds",
    }
    assert required <= set(families)
    assert set(families) <= set(R.PROM_FAMILIES)


def test_prometheus_one_hot_verdicts_statuses_and_values():
    families = parse_exposition(R.render_prometheus(make_report()))
    for h, verdict in (("node1", "healthy"), ("node2", "unhealthy"), ("node3", "unreachable")):
        values = {
            dict(k)["verdict"]: v
            for k, v in families["gpufleet_verify_host_verdict"]["samples"].items()
            if dict(k)["host"] == h
        }
        assert set(values) == set(health.VERDICTS)
        assert values[verdict] == 1 and sum(values.values()) == 1
    assert series(families, "gpufleet_verify_host_unhealthy", host="node2") == [1]
    assert series(families, "gpufleet_verify_host_unhealthy", host="node1") == [0]
    statuses = {
        dict(k)["status"]: v
        for k, v in families["gpufleet_verify_check_status"]["samples"].items()
        if dict(k)["host"] == "node2" and dict(k)["check"] == "nvbandwidth_h2d"
    }
    assert statuses == {"pass": 0, "warn": 0, "fail": 1, "skip": 0}
    temp = {"host": "node2", "check": "gpu_temp", "tier": "quick", "status": "warn"}
    assert series(families, "gpufleet_verify_check_status", **temp) == [1]
    bw = {"host": "node2", "check": "nvbandwidth_h2d", "unit": "GB/s"}
    assert series(families, "gpufleet_verify_check_measured", **bw) == [24.1]
    assert series(families, "gpufleet_verify_check_expected", **bw) == [50]
    # Checks without numeric measurements have no measured series (a skip measures nothing).
    assert series(families, "gpufleet_verify_check_measured", check="ib_link") == []
    assert series(families, "gpufleet_verify_host_duration_seconds", host="node2") == [7.0]
    assert series(families, "gpufleet_verify_host_action", host="node2", action="RESET_GPU") == [1]
    assert sum(series(families, "gpufleet_verify_host_action", host="node1")) == 0
    # 2026-11-21T10:00:00Z plus the 31.5 s run.
    assert series(families, "gpufleet_verify_last_run_timestamp_seconds") == [1795255200 + 31.5]


def test_prometheus_measured_only_for_finite_numbers():
    rep = make_report()
    checks = rep["hosts"][1]["checks"]
    checks[0]["measured"], checks[0]["expected"] = float("nan"), float("inf")
    checks[1]["measured"], checks[1]["expected"] = True, "83"
    checks[2]["measured"], checks[2]["expected"] = {"version": "550"}, [1, 2]
    checks[3]["measured"] = 7
    families = parse_exposition(R.render_prometheus(rep))
    measured = families["gpufleet_verify_check_measured"]["samples"]
    assert {dict(k)["check"] for k in measured if dict(k)["host"] == "node2"} == {"nccl_allreduce"}
    expected = families.get("gpufleet_verify_check_expected", {"samples": {}})["samples"]
    assert not [k for k in expected if dict(k)["host"] == "node2"]
    for fam in families.values():
        assert all(math.isfinite(v) for v in fam["samples"].values())


def test_prometheus_label_values_are_escaped_and_series_stay_unique():
    rep = make_report()
    weird = 'gpu"node\\1\nx'
    rep["hosts"][0]["host"] = weird
    rep["hosts"][0]["checks"][0]["check"] = NASTY
    # The same check twice on one host, and a host twice: still one series each.
    rep["hosts"][1]["checks"].append(copy.deepcopy(rep["hosts"][1]["checks"][2]))
    rep["hosts"][1]["checks"][-1]["status"] = "fail"
    rep["hosts"].append(copy.deepcopy(rep["hosts"][1]))
    text = R.render_prometheus(rep)
    families = parse_exposition(text)
    assert 'host="gpu\\"node\\\\1\\nx"' in text
    assert series(families, "gpufleet_verify_host_verdict", host=weird, verdict="healthy") == [1]
    assert "\x1b" not in text and "\x00" not in text
    # The duplicated check is represented by its worst result.
    driver = {"host": "node2", "check": "driver"}
    assert series(families, "gpufleet_verify_check_status", **driver, status="fail") == [1]
    assert len(series(families, "gpufleet_verify_host_verdict", host="node2")) == 4


def test_prometheus_without_hosts_or_start_time_is_still_valid():
    rep = make_report()
    rep["hosts"] = []
    rep["started"] = None
    families = parse_exposition(R.render_prometheus(rep))
    assert "gpufleet_verify_last_run_timestamp_seconds" not in families
    assert series(families, "gpufleet_verify_hosts", verdict="unhealthy") == [0]


def test_strict_parser_rejects_what_it_should():
    decl = "# HELP gpufleet_verify_x h\n# TYPE gpufleet_verify_x gauge\n"
    assert parse_exposition(decl + "gpufleet_verify_x 1\n")
    for bad in (
        "gpufleet_verify_x 1\n",  # undeclared
        "# TYPE gpufleet_verify_x gauge\ngpufleet_verify_x 1\n",  # no HELP
        decl + 'gpufleet_verify_x{a="1"} 1\ngpufleet_verify_x{a="1"} 2\n',  # duplicate series
        decl + 'gpufleet_verify_x{a="\\q"} 1\n',  # invalid escape
        decl + "gpufleet_verify_x 1 1700000000\n",  # timestamp
        decl + "gpufleet_verify_x 1",  # no trailing newline
    ):
        with pytest.raises(AssertionError):
            parse_exposition(bad)


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not on PATH (Debian package 'prometheus'; CI installs it so this runs there)",
)
@pytest.mark.parametrize("which", ["plain", "nasty", "empty"])
def test_promtool_check_metrics_passes(which):
    rep = {"plain": make_report, "nasty": nasty_report, "empty": make_report}[which]()
    if which == "empty":
        rep["hosts"] = []
    text = R.render_prometheus(rep)
    proc = subprocess.run(
        ["promtool", "check", "metrics"],
        input=text.encode("utf-8"),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert proc.stdout.decode().strip() == "" and proc.stderr.decode().strip() == "", (
        proc.stdout.decode() + proc.stderr.decode()
    )


# ---- unverified: GPUs present, a benchmark could not measure them (issue 18) ---------------------


def unverified_report():
    gpu_host = host(
        "gpu1",
        [
            check("ecc", "pass", "no uncorrectable ECC errors"),
            check(
                "probe_gemm",
                "unverified",
                "not verified: no PyTorch in the probe runtime",
                kind="probe",
                action=health.REPROVISION,
            ),
        ],
    )
    lab = host("lab1", [check("probe_gemm", "skip", "no GPU present", kind="probe")], gpu_count=0)
    return {"schema": 1, "tier": "full", "hosts": [gpu_host, lab]}


def test_unverified_host_is_neither_healthy_nor_degraded():
    report = unverified_report()
    gpu_host, lab = report["hosts"]
    assert gpu_host["verdict"] == health.UNVERIFIED and gpu_host["action"] == health.REPROVISION
    assert lab["verdict"] == health.HEALTHY  # a skip for no GPU is not a missing verification
    folded = health.verdict(gpu_host["checks"])
    assert folded["unverified"] == ["probe_gemm"] and folded["warning"] == [] and folded["failing"] == []
    # a warning elsewhere still makes the host degraded: unverified never hides a fault
    worse = health.verdict([*gpu_host["checks"], health.result("xid", health.WARN, "x")])
    assert worse["verdict"] == health.DEGRADED


def test_unverified_in_table_junit_and_metrics():
    report = unverified_report()
    text = R.render_table(report)
    assert any(line.startswith("HOST") and "UNVERIFIED" in line for line in text.splitlines())
    assert "not verified: no PyTorch in the probe runtime" in text
    assert text.splitlines()[-1] == "1 healthy, 0 degraded, 0 unhealthy, 0 unreachable, 1 unverified"
    suite = ET.fromstring(R.render_junit(report))
    skipped = [s.get("message") for s in suite.iter("skipped")]
    assert "UNVERIFIED: not verified: no PyTorch in the probe runtime" in skipped
    assert not list(suite.iter("failure")) and not list(suite.iter("error"))
    prom = R.render_prometheus(report)
    assert 'gpufleet_verify_host_verdict{host="gpu1",verdict="unverified"} 1' in prom
    assert 'gpufleet_verify_hosts{verdict="unverified"} 1' in prom


def test_reports_without_unverified_read_as_before():
    text = R.render_table(make_report())
    assert "unverified" not in text.lower()
    assert "unverified" not in R.render_prometheus(make_report())
