"""``gpufleet.apply.run`` on a real play through ansible-runner (a few seconds, no containers): two
hosts on the local connection, beta fails the second task. The state, runs/<id>/, the exit code,
the plain lines and the final table all come from that one run."""

import io
import json

import pytest
from conftest import FIXTURES
from rich.console import Console

from gpufleet import apply
from gpufleet.apply.state import FleetState
from gpufleet.apply.view import PlainView, print_final

PLAYBOOK = FIXTURES / "apply" / "tiny.yml"
INVENTORY = FIXTURES / "apply" / "tiny_hosts.yml"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(ApplyResult, the plain view's lines) of the tiny play on alpha and beta."""
    stream = io.StringIO()
    runs = tmp_path_factory.mktemp("runs")
    result = apply.run(str(PLAYBOOK), str(INVENTORY), runs_dir=str(runs), view=PlainView(stream))
    return result, stream.getvalue().splitlines()


def test_a_failed_host_is_exit_code_2_and_the_state_says_where(tiny_run):
    result, _ = tiny_run
    assert result.exit_code == 2
    assert (result.status, result.rc) == ("failed", 2)
    alpha, beta = result.state.hosts["alpha"], result.state.hosts["beta"]
    assert alpha.state == "done"
    assert {k: alpha.counts[k] for k in ("ok", "changed", "failed", "skipped")} == {
        "ok": 2,
        "changed": 1,
        "failed": 0,
        "skipped": 1,
    }
    assert beta.state == "failed"
    assert beta.counts["failed"] == 1 and beta.counts["ok"] == 1
    assert (beta.failure.task, beta.failure.message) == ("Fail on beta", "beta is broken")
    assert beta.failure.play == "Tiny fleet play"
    assert result.state.finished


def test_the_run_directory_keeps_every_event_the_summary_and_the_runner_artifacts(tiny_run):
    result, _ = tiny_run
    assert result.run_dir.name == result.id and result.run_dir.parent.name.startswith("runs")
    events = [json.loads(line) for line in result.events_file.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "playbook_on_start" and kinds[-1] == "playbook_on_stats"
    assert kinds.count("runner_on_failed") == 1
    artifacts = result.run_dir / "artifacts" / result.id
    assert len(list((artifacts / "job_events").glob("*.json"))) == len(events)
    assert (artifacts / "rc").read_text().strip() == "2"
    assert (artifacts / "stdout").is_file()
    assert result.run_dir.stat().st_mode & 0o077 == 0  # the runner records the environment there

    summary = json.loads(result.summary_file.read_text())
    assert summary == result.summary
    assert (summary["status"], summary["rc"], summary["exit_code"]) == ("failed", 2, 2)
    assert summary["by_state"]["done"] == 1 and summary["by_state"]["failed"] == 1
    assert summary["failures"] == [
        {"host": "beta", "state": "failed", "task": "Fail on beta", "message": "beta is broken"}
    ]
    assert summary["hosts"]["alpha"]["counts"]["changed"] == 1
    assert summary["playbook"] == str(PLAYBOOK.resolve()) and summary["check"] is False
    assert summary["seconds"] > 0


def test_recorded_events_replayed_give_the_same_state(tiny_run):
    result, _ = tiny_run
    replay = FleetState()
    for line in result.events_file.read_text().splitlines():
        replay.feed(json.loads(line))
    assert {h.host: (h.state, h.counts) for h in replay.snapshot()} == {
        h.host: (h.state, h.counts) for h in result.state.snapshot()
    }


def test_plain_lines_say_the_failure_and_each_host_at_the_end(tiny_run):
    _, lines = tiny_run
    assert "gpufleet apply: play 'Tiny fleet play'" in lines
    assert "gpufleet apply: beta FAILED at Fail on beta: beta is broken" in lines
    assert any(
        line.startswith("gpufleet apply: alpha done ok=2 changed=1 failed=0 skipped=1") for line in lines
    )
    assert any(line.startswith("gpufleet apply: beta failed ok=1 changed=0 failed=1") for line in lines)
    assert not any("\x1b" in line for line in lines)


def test_final_table_names_the_failing_task_and_message(tiny_run):
    result, _ = tiny_run
    console = Console(record=True, width=100)
    print_final(result.state, console, run_dir=str(result.run_dir))
    text = console.export_text()
    assert "failed and unreachable hosts" in text
    (row,) = [line for line in text.splitlines() if "beta" in line and "Fail on beta" in line]
    assert "beta is broken" in row and "failed" in row
    assert "alpha" not in text.split("2 hosts:")[0]  # only failing hosts are in the table
    assert "2 hosts: 1 done, 1 failed" in text
