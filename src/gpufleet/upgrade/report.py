"""The upgrade report: per host the step reached, whether this run drained it, the verdict and why
it failed, built from a ``gpufleet upgrade`` run's events (``runs/<id>/events.jsonl``).

Pure Python, no I/O: tests feed it recorded events. The playbook shows each host's state record in
the task ``REPORT_TASK`` (the last one per host wins) and the verify result in ``VERIFY_TASK``; a
host that never got so far (unreachable, or stopped before its batch) is taken from the run's
:class:`~gpufleet.apply.state.FleetState`.
"""

from __future__ import annotations

from gpufleet.apply.state import FAILED, UNREACHABLE, FleetState

PLAN_TASK = "Fix the run id and the batches once for every host"
REPORT_TASK = "Report the host's upgrade record"
VERIFY_TASK = "Run gpufleet verify on this host"
GUARD_TASK = "Stop before this batch when an earlier batch lost a host"
FINAL_TASK = "Fail the host whose upgrade failed (the rollout stops before the next batch)"
REPORT_SCHEMA = 1
COLUMNS = ("host", "step", "result", "drained by us", "verdict", "reason")


def _records(events) -> tuple[dict, dict, dict]:
    records, verdicts, plan = {}, {}, {}
    for event in events:
        if event.get("event") != "runner_on_ok":
            continue
        data = event.get("event_data") or {}
        res = data.get("res") if isinstance(data.get("res"), dict) else {}
        host = data.get("host")
        if data.get("task") == REPORT_TASK and isinstance(res.get("msg"), dict) and res["msg"]:
            records[host] = res["msg"]
        elif data.get("task") == VERIFY_TASK and isinstance(res.get("verdicts"), dict):
            verdicts.update(res["verdicts"])
        elif data.get("task") == PLAN_TASK and isinstance(res.get("ansible_facts"), dict):
            plan = res["ansible_facts"]
    return records, verdicts, plan


def batch_sizes(serial: list, hosts: int) -> list[int]:
    """Hosts per batch, as Ansible cuts ``hosts`` hosts by ``serial`` (a number of hosts or ``"N%"``
    of all of them, at least 1; the last item repeats)."""
    sizes: list[int] = []
    left = hosts
    while left > 0 and serial:
        item = serial[min(len(sizes), len(serial) - 1)]
        if isinstance(item, str) and item.endswith("%"):
            size = int(float(item[:-1]) / 100 * hosts) or 1
        else:
            size = int(item)
        if size <= 0:
            return [left]
        sizes.append(min(size, left))
        left -= sizes[-1]
    return sizes


def _batches(plan: dict, reached: int) -> dict | None:
    """``sizes`` (hosts per batch) and ``started`` (batches whose hosts the rollout reached), from the
    batches and host count the playbook's first play fixed; None when the run did not record them."""
    try:
        sizes = batch_sizes(list(plan["__upgrade_batches"]), int(plan["__upgrade_host_count"]))
    except (KeyError, TypeError, ValueError):
        return None
    started, covered = 0, 0
    while started < len(sizes) and covered < reached:
        covered += sizes[started]
        started += 1
    return {"sizes": sizes, "started": started}


def _back(row: dict) -> bool:
    """The host went back into service (or its undrain step finished)."""
    return row["result"] == "ok" and row["step"] in ("undrain", "done")


def build_report(
    run_id: str, events, state: FleetState, *, exit_code: int, apply_id: str | None = None
) -> dict:
    """The report of rollout ``run_id`` from its runner ``events`` and the run's ``state``."""
    records, verdicts, plan = _records(events)
    hosts = []
    for h in state.snapshot():
        if h.host == "localhost":
            continue
        record = records.get(h.host)
        failure = h.failure.message if h.failure else None
        if record:
            row = {
                "host": h.host,
                "step": record.get("step"),
                "result": record.get("result"),
                "drained_by_us": record.get("drained_by") == run_id,
                "already_out_of_service": bool(record.get("already_out_of_service")),
                "verdict": verdicts.get(h.host),
                "reason": record.get("reason"),
                "detail": record.get("detail"),
            }
        elif h.state == UNREACHABLE:
            row = {
                "host": h.host,
                "step": "connect",
                "result": "unreachable",
                "drained_by_us": False,
                "already_out_of_service": None,
                "verdict": None,
                "reason": failure,
                "detail": None,
            }
        elif h.failure and h.failure.task == GUARD_TASK:
            row = {
                "host": h.host,
                "step": None,
                "result": "not started",
                "drained_by_us": False,
                "already_out_of_service": None,
                "verdict": None,
                "reason": failure,
                "detail": None,
            }
        else:
            row = {
                "host": h.host,
                "step": None,
                "result": "failed" if h.state == FAILED else "unknown",
                "drained_by_us": False,
                "already_out_of_service": None,
                "verdict": verdicts.get(h.host),
                "reason": failure,
                "detail": None,
            }
        hosts.append(row)
    stopped = [r["host"] for r in hosts if r["result"] in ("failed", "unreachable")]
    return {
        "schema": REPORT_SCHEMA,
        "run_id": run_id,
        "apply_id": apply_id,
        "exit_code": exit_code,
        "stopped": bool(stopped) or exit_code != 0,
        "failed_hosts": stopped,
        "still_drained_by_us": [r["host"] for r in hosts if r["drained_by_us"] and not _back(r)],
        "batches": _batches(plan, sum(r["result"] != "not started" for r in hosts)),
        "hosts": hosts,
    }


def _stopped_line(report: dict) -> str:
    """What stopping meant: how many batches (and hosts) were not started, or that none was left."""
    line = f"rollout stopped: {', '.join(report['failed_hosts'])} failed; "
    batches = report.get("batches")
    if not batches:
        return line + "no later batch was started"
    sizes, started = batches["sizes"], batches["started"]
    if started >= len(sizes):
        return line + "the failed batch was the last; no batch was left"
    left, hosts = len(sizes) - started, sum(sizes[started:])
    return line + (
        f"{left} later batch{'es' if left > 1 else ''} ({hosts} host{'s' if hosts > 1 else ''}) "
        f"{'were' if left > 1 else 'was'} not started"
    )


def render_report(report: dict) -> str:
    """The report as text: a table of the hosts, then what to do next."""
    rows = [
        (
            r["host"],
            r["step"] or "-",
            r["result"] or "-",
            "yes" if r["drained_by_us"] else ("no (out before)" if r["already_out_of_service"] else "no"),
            r["verdict"] or "-",
            r["reason"] or "",
        )
        for r in report["hosts"]
    ]
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(COLUMNS[:-1])]
    lines = [f"gpufleet upgrade run {report['run_id']}"]
    lines.append(
        "  ".join(c.ljust(w) for c, w in zip(COLUMNS[:-1], widths, strict=True)) + "  " + COLUMNS[-1]
    )
    for row in rows:
        lines.append(
            ("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]).rstrip()
        )
    if not rows:
        lines.append("(no host was reached)")
    if report["failed_hosts"]:
        lines.append(_stopped_line(report))
    elif report["stopped"]:
        lines.append("rollout stopped (see the run directory)")
    else:
        lines.append("rollout finished: every host upgraded and verified")
    if report["still_drained_by_us"]:
        lines.append(
            f"still drained by this run: {', '.join(report['still_drained_by_us'])}; fix them, then "
            f"gpufleet upgrade --resume {report['run_id']}"
        )
    return "\n".join(lines)
