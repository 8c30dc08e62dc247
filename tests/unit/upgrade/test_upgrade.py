"""gpufleet upgrade: CLI parsing, input checks before anything runs, and the report built from the
recorded events of a 4-node rollout in which node3 fails verify (tests/fixtures/rollout)."""

import json
import re

import pytest
from conftest import FIXTURES, REPO

from gpufleet.apply.state import FleetState
from gpufleet.cli import build_parser
from gpufleet.upgrade import api, report
from gpufleet.upgrade.cli import run_kwargs

RUN = "upgrade-20261201T080000Z-a1b2c3"


def events():
    lines = (FIXTURES / "rollout" / "events_lab4.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def built(exit_code=2):
    evs = events()
    state = FleetState()
    for e in evs:
        state.feed(e)
    return report.build_report(RUN, evs, state, exit_code=exit_code, apply_id="20261201T080000Z-000000")


def test_cli_maps_options_onto_run():
    args = build_parser().parse_args(
        [
            "upgrade",
            "-i",
            "inventories/lab",
            "--batches",
            "1,3",
            "--resume",
            RUN,
            "--limit",
            "gpu_nodes",
            "--check",
        ]
    )
    kwargs = run_kwargs(args)
    assert kwargs == {
        "inventory": "inventories/lab",
        "batches": "1,3",
        "resume": RUN,
        "limit": "gpu_nodes",
        "check": True,
        "drain": None,
        "verify_tier": None,
        "runs_dir": "runs",
        "timeout": None,
        "extra_vars": None,
    }
    assert set(kwargs) <= set(api.run.__code__.co_varnames)


def test_cli_extra_vars():
    args = build_parser().parse_args(
        ["upgrade", "-i", "inv", "-e", "gpufleet_drain_backend=command", "-e", '{"a": 1}']
    )
    assert run_kwargs(args)["extra_vars"] == {"gpufleet_drain_backend": "command", "a": 1}


def test_cli_usage_error_exits_1(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["upgrade", "--batches", "1"])  # no inventory
    assert exc.value.code == api.EXIT_USAGE
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["upgrade", "-i", "inv", "--drain", "lsf"])
    assert exc.value.code == api.EXIT_USAGE


def test_every_parameter_is_documented():
    doc = api.run.__doc__
    for name in api.run.__code__.co_varnames[
        : api.run.__code__.co_argcount + api.run.__code__.co_kwonlyargcount
    ]:
        assert re.search(rf"^\s+{name}: ", doc, re.M), name


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"batches": "0"}, "at least 1 host"),
        ({"batches": "1,110%"}, "at most 100%"),
        ({"batches": [-1]}, "at least 1 host"),
        ({"resume": "not a run id"}, "not a rollout id"),
        ({"drain": "lsf"}, "drain backend 'lsf' is unknown"),
    ],
)
def test_bad_input_runs_nothing(tmp_path, monkeypatch, kwargs, says):
    def never(*_a, **_k):
        raise AssertionError("apply.run must not be called on bad input")

    monkeypatch.setattr(api.apply_api, "run", never)
    with pytest.raises(api.UpgradeInputError, match=says) as exc:
        api.run(str(tmp_path), runs_dir=str(tmp_path / "runs"), **kwargs)
    assert exc.value.exit_code == api.EXIT_USAGE


def test_run_passes_the_rollout_to_the_playbook_and_writes_the_report(tmp_path, monkeypatch):
    seen = {}
    run_dir = tmp_path / "runs" / "20261201T080000Z-000000"
    run_dir.mkdir(parents=True)
    (run_dir / "events.jsonl").write_text((FIXTURES / "rollout" / "events_lab4.jsonl").read_text())
    state = FleetState()
    for e in events():
        state.feed(e)

    def fake_run(playbook, inventory, **kw):
        seen.update(kw, playbook=playbook, inventory=inventory)
        return api.apply_api.ApplyResult("20261201T080000Z-000000", run_dir, "failed", 2, 2, state, {}, 1.0)

    monkeypatch.setattr(api.apply_api, "run", fake_run)
    result = api.run(
        "inventories/lab", batches="1,3", resume=RUN, drain="slurm", runs_dir=str(tmp_path / "runs")
    )
    assert seen["playbook"] == "gpufleet.cluster.upgrade"
    assert seen["extra_vars"] == {
        "gpufleet_upgrade_run_id": RUN,
        "gpufleet_upgrade_resume": True,
        "gpufleet_upgrade_batches": [1, 3],
        "gpufleet_drain_backend": "slurm",
    }
    assert result.exit_code == api.EXIT_STOPPED
    written = json.loads((run_dir / "upgrade-report.json").read_text())
    assert written["failed_hosts"] == ["node3"] and written["exit_code"] == api.EXIT_STOPPED


def test_new_rollout_gets_a_fresh_id(tmp_path, monkeypatch):
    seen = {}

    def fake_run(playbook, inventory, **kw):
        seen.update(kw)
        raise api.apply_api.ApplyInputError("stop here")

    monkeypatch.setattr(api.apply_api, "run", fake_run)
    with pytest.raises(api.UpgradeInputError, match="stop here"):
        api.run("inventories/lab")
    assert re.match(r"^upgrade-\d{8}T\d{6}Z-[0-9a-f]{6}$", seen["extra_vars"]["gpufleet_upgrade_run_id"])
    assert seen["extra_vars"]["gpufleet_upgrade_resume"] is False
    assert seen["extra_vars"]["gpufleet_upgrade_batches"] == [1, "10%", "25%"]


def test_report_of_the_lab_rollout_with_node3_failing_verify():
    rep = built()
    rows = {r["host"]: r for r in rep["hosts"]}
    assert list(rows) == ["node1", "node2", "node3", "node4"]  # localhost (the input check) is not a host
    assert rows["node1"]["step"] == "done" and rows["node1"]["verdict"] == "healthy"
    assert (rows["node3"]["step"], rows["node3"]["result"], rows["node3"]["verdict"]) == (
        "verify",
        "failed",
        "unhealthy",
    )
    assert rows["node3"]["drained_by_us"] is True
    assert "nvidia_driver_loaded" in rows["node3"]["reason"]
    assert rep["stopped"] and rep["failed_hosts"] == ["node3"]
    assert rep["still_drained_by_us"] == ["node3"]


def test_report_rendering():
    text = report.render_report(built())
    lines = text.splitlines()
    assert lines[0] == f"gpufleet upgrade run {RUN}"
    assert lines[1].split() == ["host", "step", "result", "drained", "by", "us", "verdict", "reason"]
    node3 = next(line for line in lines if line.startswith("node3"))
    assert node3.split()[:6] == ["node3", "verify", "failed", "yes", "unhealthy", "gpufleet"]
    # batches 1,3 on 4 hosts: node3 failed in the second batch, the last one
    assert "rollout stopped: node3 failed; the failed batch was the last; no batch was left" in lines
    assert lines[-1] == f"still drained by this run: node3; fix them, then gpufleet upgrade --resume {RUN}"


def with_plan(host_count):
    """The lab rollout's events as if the inventory had ``host_count`` GPU nodes (None: not recorded)."""
    evs = events()
    for e in evs:
        if e["event_data"].get("task") == report.PLAN_TASK:
            facts = e["event_data"]["res"]["ansible_facts"]
            if host_count is None:
                del facts["__upgrade_host_count"]
            else:
                facts["__upgrade_host_count"] = host_count
    state = FleetState()
    for e in evs:
        state.feed(e)
    return report.build_report(RUN, evs, state, exit_code=2)


@pytest.mark.parametrize(
    ("host_count", "batches", "says"),
    [
        (
            4,
            {"sizes": [1, 3], "started": 2},
            "node3 failed; the failed batch was the last; no batch was left",
        ),
        (
            10,
            {"sizes": [1, 3, 3, 3], "started": 2},
            "node3 failed; 2 later batches (6 hosts) were not started",
        ),
        (5, {"sizes": [1, 3, 1], "started": 2}, "node3 failed; 1 later batch (1 host) was not started"),
        (None, None, "node3 failed; no later batch was started"),
    ],
)
def test_the_stop_line_says_what_was_left(host_count, batches, says):
    rep = with_plan(host_count)
    assert rep["batches"] == batches
    assert f"rollout stopped: {says}" in report.render_report(rep).splitlines()


@pytest.mark.parametrize(
    ("serial", "hosts", "sizes"),
    [
        ([1, "10%", "25%"], 40, [1, 4, 10, 10, 10, 5]),
        ([1, "10%"], 5, [1, 1, 1, 1, 1]),  # 10% of 5 hosts is at least one host
        ([2], 3, [2, 1]),
        (["100%"], 3, [3]),
        ([1, 3], 0, []),
    ],
)
def test_batch_sizes_cut_hosts_as_ansible_serial_does(serial, hosts, sizes):
    assert report.batch_sizes(serial, hosts) == sizes


def test_report_of_unreachable_and_stopped_hosts():
    def ev(kind, host, task, res):
        return {
            "event": kind,
            "created": "2026-12-01T08:00:00+00:00",
            "event_data": {"play": "Rolling upgrade", "host": host, "task": task, "res": res},
        }

    evs = [
        ev(
            "runner_on_unreachable",
            "node2",
            "Gather facts (the roles need them)",
            {"unreachable": True, "msg": "ssh: No route to host"},
        ),
        ev(
            "runner_on_failed",
            "node4",
            report.GUARD_TASK,
            {"failed": True, "msg": "rollout stopped before this batch"},
        ),
    ]
    state = FleetState()
    for e in evs:
        state.feed(e)
    rep = report.build_report(RUN, evs, state, exit_code=2)
    rows = {r["host"]: r for r in rep["hosts"]}
    assert (rows["node2"]["result"], rows["node2"]["drained_by_us"]) == ("unreachable", False)
    assert rows["node2"]["reason"] == "ssh: No route to host"
    assert rows["node4"]["result"] == "not started"
    assert rep["failed_hosts"] == ["node2"] and rep["still_drained_by_us"] == []


def test_exit_codes():
    ok = {"failed_hosts": []}
    assert api.exit_code_for(0, ok) == api.EXIT_OK
    assert api.exit_code_for(3, ok) == api.EXIT_RUNNER
    assert api.exit_code_for(4, ok) == api.EXIT_STOPPED
    assert api.exit_code_for(0, {"failed_hosts": ["node3"]}) == api.EXIT_STOPPED


def test_the_report_reads_tasks_the_playbook_has():
    book = (REPO / "playbooks" / "upgrade.yml").read_text()
    for task in (
        report.PLAN_TASK,
        report.REPORT_TASK,
        report.VERIFY_TASK,
        report.GUARD_TASK,
        report.FINAL_TASK,
    ):
        assert f"- name: {task}\n" in book, task
    assert '__upgrade_host_count: "{{ ansible_play_hosts_all | length }}"' in book
