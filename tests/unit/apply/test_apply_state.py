"""FleetState from ansible-runner event dicts (shaped as recorded from a real run), the exit code
mapping, and the live view's rule: one line per host while they fit, else a summary."""

import io

import pytest
from rich.console import Console

from gpufleet.apply.api import EXIT_FAILED, EXIT_OK, EXIT_RUNNER, EXIT_UNREACHABLE, exit_code_for
from gpufleet.apply.state import FleetState, failure_message
from gpufleet.apply.view import PlainView, final_table, fits, host_table, recap_line, render

T0 = "2026-12-01T04:50:00.000000+00:00"


def ev(kind, host=None, task="Install driver", role="nvidia_driver", created=T0, **data):
    event_data = {"play": "Site", "task": task, "role": role, **data}
    if host:
        event_data["host"] = host
    return {"event": kind, "created": created, "event_data": event_data}


def unreachable(host, msg="Failed to connect to the host via ssh: Connection refused"):
    return ev(
        "runner_on_unreachable", host, task="Gather facts", role=None, res={"unreachable": True, "msg": msg}
    )


def test_counts_current_task_and_failure():
    state = FleetState()
    state.feed(ev("playbook_on_play_start", name="Site"))
    state.feed(ev("runner_on_start", "node1", task="Preflight", role="preflight"))
    host = state.feed(ev("runner_on_ok", "node1", res={"changed": True}))
    assert (host.state, host.current) == ("running", "nvidia_driver : Install driver")
    state.feed(ev("runner_on_skipped", "node1"))
    state.feed(
        ev(
            "runner_on_failed",
            "node1",
            task="Build DKMS",
            res={"msg": "non-zero return code", "rc": 10, "stderr": "make: ***\nError! Bad return status"},
        )
    )
    node1 = state.hosts["node1"]
    assert node1.state == "failed"
    assert node1.counts["ok"] == 1 and node1.counts["changed"] == 1 and node1.counts["skipped"] == 1
    assert node1.failure.where == "nvidia_driver : Build DKMS"
    assert node1.failure.message == "non-zero return code: Error! Bad return status"
    # a later event (a handler) does not move the failure
    state.feed(ev("runner_on_ok", "node1", task="Restart persistenced"))
    assert node1.state == "failed" and node1.failure.task == "Build DKMS"


def test_ignored_failures_count_as_ignored_not_failed():
    state = FleetState()
    state.feed(ev("runner_on_failed", "n", ignore_errors=True, res={"msg": "expected"}))
    assert state.hosts["n"].state == "running"
    assert state.hosts["n"].counts["ignored"] == 1 and state.hosts["n"].counts["failed"] == 0


def test_the_recap_is_final_a_rescued_failure_recovers():
    state = FleetState()
    state.feed(ev("runner_on_failed", "n1", res={"msg": "first try"}))
    state.feed(unreachable("n2"))
    state.feed(ev("runner_on_ok", "n3"))
    stats = {"ok": {"n1": 3, "n3": 1}, "failures": {}, "rescued": {"n1": 1}, "dark": {"n2": 1}, "changed": {}}
    state.feed({"event": "playbook_on_stats", "created": T0, "event_data": stats})
    assert {h.host: h.state for h in state.snapshot()} == {"n1": "done", "n2": "unreachable", "n3": "done"}
    assert state.hosts["n1"].failure is None and state.hosts["n1"].counts["rescued"] == 1
    assert state.hosts["n2"].failure.message.endswith("Connection refused")
    assert state.finished


def test_failure_message_from_a_loop_and_from_rc_alone():
    loop = {"msg": "", "results": [{"failed": False}, {"failed": True, "msg": "No package matching 'x'"}]}
    assert failure_message(loop) == "No package matching 'x'"
    assert failure_message({"rc": 2}) == "rc=2"
    assert len(failure_message({"msg": "x" * 10_000})) == 2000


@pytest.mark.parametrize(
    ("events", "status", "rc", "code"),
    [
        ([ev("runner_on_ok", "a")], "successful", 0, EXIT_OK),
        ([ev("runner_on_failed", "a", res={"msg": "m"})], "failed", 2, EXIT_FAILED),
        ([ev("runner_on_failed", "a", res={"msg": "m"}), unreachable("b")], "failed", 4, EXIT_UNREACHABLE),
        ([], "failed", 4, EXIT_RUNNER),  # ansible-playbook's 4 is also a parser error: no host failed
        ([ev("runner_on_ok", "a")], "timeout", 254, EXIT_RUNNER),
        ([], "canceled", None, EXIT_RUNNER),
    ],
)
def test_exit_codes(events, status, rc, code):
    state = FleetState()
    for event in events:
        state.feed(event)
    assert exit_code_for(state, status, rc) == code


def fleet(n, failing=(), unreachable_hosts=()):
    state = FleetState()
    for i in range(n):
        host = f"gpu-{i:03d}"
        state.feed(ev("runner_on_start", host))
        if host in failing:
            state.feed(ev("runner_on_failed", host, res={"msg": f"{host} DKMS build failed"}))
        elif host in unreachable_hosts:
            state.feed(unreachable(host))
        else:
            state.feed(ev("runner_on_ok", host, res={"changed": True}))
    return state


def test_a_fleet_larger_than_the_screen_collapses_to_a_summary():
    state = fleet(500, failing={"gpu-007", "gpu-123"}, unreachable_hosts={"gpu-499"})
    assert not fits(state, 30)
    console = Console(record=True, width=100, height=30)
    console.print(render(state, console.size.height))
    text = console.export_text()
    lines = text.splitlines()
    assert len(lines) <= 30, "the summary must fit the screen"
    assert "500 hosts: 497 running, 2 failed, 1 unreachable" in text
    assert "tasks: ok=497 changed=497 failed=2 unreachable=1" in text
    for bad in ("gpu-007", "gpu-123", "gpu-499"):
        assert bad in text
    assert "gpu-008" not in text and "gpu-250" not in text  # healthy hosts are not listed
    assert "gpu-007  failed  nvidia_driver : Install driver: gpu-007 DKMS build failed" in text


def test_the_summary_says_how_many_failing_hosts_it_could_not_show():
    state = fleet(500, failing={f"gpu-{i:03d}" for i in range(100)})
    console = Console(record=True, width=100, height=30)
    console.print(render(state, 30))
    text = console.export_text()
    assert len(text.splitlines()) <= 30
    assert "... and 76 more failing hosts" in text


def test_a_fleet_that_fits_gets_one_line_per_host():
    state = fleet(10, failing={"gpu-003"})
    assert fits(state, 30)
    console = Console(record=True, width=100, height=30)
    console.print(render(state, 30, now=0))
    text = console.export_text()
    rows = [line for line in text.splitlines() if line.startswith("gpu-")]
    assert len(rows) == 10
    (row,) = [r for r in rows if r.startswith("gpu-003")]
    assert "failed" in row and "nvidia_driver : Install driver" in row
    assert "host" in text and "elapsed" in text and "Site" in text
    assert isinstance(render(state, 30), type(host_table(state)))


def test_final_table_lists_unreachable_first_and_none_when_all_went_well():
    state = fleet(5, failing={"gpu-002"}, unreachable_hosts={"gpu-004"})
    console = Console(record=True, width=120)
    console.print(final_table(state))
    rows = [line for line in console.export_text().splitlines() if "gpu-" in line]
    assert [r.split()[1] for r in rows] == ["gpu-004", "gpu-002"]
    assert "Connection refused" in rows[0] and "gpu-002 DKMS build failed" in rows[1]
    assert final_table(fleet(3)) is None


def rescue_play_events():
    """The events of a real run (ansible-core 2.19): on alpha and beta a block task fails and its
    ``rescue:`` recovers; a task under ``ignore_errors`` fails on both; then beta fails for real."""
    out = [ev("playbook_on_play_start", name="Rescue play")]
    for host in ("alpha", "beta"):
        out.append(
            ev("runner_on_failed", host, task="Fail in block", role=None, res={"msg": "first try failed"})
        )
    for host in ("alpha", "beta"):
        out.append(ev("runner_on_ok", host, task="Recover", role=None, res={"msg": "recovered"}))
    for host in ("alpha", "beta"):
        out.append(
            ev(
                "runner_on_failed",
                host,
                task="Ignored failure",
                role=None,
                ignore_errors=True,
                res={"msg": "ignore me"},
            )
        )
    out.append(ev("runner_on_skipped", "alpha", task="Real failure on beta", role=None))
    out.append(
        ev(
            "runner_on_failed",
            "beta",
            task="Real failure on beta",
            role=None,
            res={"msg": "beta really broken"},
        )
    )
    stats = {
        "ok": {"alpha": 2, "beta": 2},
        "failures": {"beta": 1},
        "rescued": {"alpha": 1, "beta": 1},
        "ignored": {"alpha": 1, "beta": 1},
        "skipped": {"alpha": 1},
        "dark": {},
        "changed": {},
    }
    out.append({"event": "playbook_on_stats", "created": T0, "event_data": stats})
    return out


def test_a_rescued_failure_is_printed_once_and_a_later_failure_is_the_one_reported():
    state, stream = FleetState(), io.StringIO()
    view = PlainView(stream)
    for event in rescue_play_events():
        view.event(state, event, state.feed(event))
    lines = stream.getvalue().splitlines()
    failed = [line for line in lines if " FAILED " in line]
    assert failed == [
        "gpufleet apply: alpha FAILED at Fail in block: first try failed",
        "gpufleet apply: beta FAILED at Fail in block: first try failed",
        "gpufleet apply: beta FAILED at Real failure on beta: beta really broken",
    ]
    assert not any("ignore me" in line for line in lines)
    assert any(
        line.startswith("gpufleet apply: alpha done ok=2") and "rescued=1 ignored=1" in line for line in lines
    )
    alpha, beta = state.hosts["alpha"], state.hosts["beta"]
    assert (alpha.state, alpha.failure) == ("done", None)
    assert beta.state == "failed" and beta.failure.task == "Real failure on beta"
    assert [h.host for h in state.failures()] == ["beta"]
    console = Console(record=True, width=120)
    console.print(final_table(state))
    rows = [line for line in console.export_text().splitlines() if "alpha" in line or "beta" in line]
    assert len(rows) == 1 and "Real failure on beta" in rows[0] and "beta really broken" in rows[0]
    assert "Fail in block" not in console.export_text()
    assert exit_code_for(state, "failed", 2) == EXIT_FAILED


def test_a_failure_in_the_rescue_itself_is_the_one_reported():
    state = FleetState()
    state.feed(ev("runner_on_failed", "n", task="Fail in block", res={"msg": "first"}))
    state.feed(ev("runner_on_failed", "n", task="Re-raise in rescue", res={"msg": "still broken"}))
    assert state.hosts["n"].failure.task == "Fail in block"  # until the recap says which was rescued
    stats = {"ok": {}, "failures": {"n": 1}, "rescued": {"n": 1}, "dark": {}}
    state.feed({"event": "playbook_on_stats", "created": T0, "event_data": stats})
    assert (state.hosts["n"].failure.task, state.hosts["n"].failure.message) == (
        "Re-raise in rescue",
        "still broken",
    )


def receipt_check(host, converged, reasons=()):
    res = {"changed": not converged, "converged": converged, "reasons": list(reasons)}
    return ev(
        "runner_on_ok",
        host,
        task="Compare the host with the receipt of its last full run",
        role=None,
        task_action="gpufleet.cluster.stack_receipt",
        res=res,
    )


def test_fast_runs_say_where_the_receipt_held_and_why_the_others_ran_in_full():
    state = FleetState()
    state.feed(receipt_check("node1", True))
    state.feed(receipt_check("node2", False, ["changed under /etc/nccl.conf", "the host rebooted since"]))
    # The record at the end is the same module without "converged": it changes nothing here.
    state.feed(
        ev(
            "runner_on_ok",
            "node2",
            task="Record",
            task_action="gpufleet.cluster.stack_receipt",
            res={"changed": True},
        )
    )
    state.feed(ev("runner_on_ok", "node3", res={"converged": False}))  # another module's key: not a receipt
    assert state.hosts["node1"].receipt == "held"
    assert state.hosts["node2"].receipt == "full run: changed under /etc/nccl.conf; the host rebooted since"
    assert state.hosts["node3"].receipt is None
    assert state.receipts() == (1, 2)
    state.feed(ev("playbook_on_stats", ok={"node1": 20, "node2": 200, "node3": 5}))
    line = recap_line(state)
    assert line.endswith("; --fast: GPU stack receipt held on 1 of 2, 1 ran the stack in full")
    stream = io.StringIO()
    PlainView(stream).event(state, ev("playbook_on_stats"), None)
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("(receipt held)") and "(full run: changed under /etc/nccl.conf;" in lines[1]
    assert lines[2].endswith("in 0s")


def test_without_fast_the_recap_says_nothing_of_receipts():
    state = FleetState()
    state.feed(ev("runner_on_ok", "node1", res={}))
    assert "receipt" not in recap_line(state)
    state.feed(receipt_check("node1", True))
    assert recap_line(state).endswith("; --fast: GPU stack receipt held on 1 of 1")
