"""Rolling upgrade rules (plugins/plugin_utils/rollout.py, called through the filters the playbook
uses): batches, drain backends and their status output (constructed fixtures, see
tests/fixtures/rollout/PROVENANCE.md), the state record, resume and undrain-only-ours."""

from types import SimpleNamespace

import pytest
from ansible_collections.gpufleet.cluster.plugins.filter import rollout as rollout_filters
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import rollout
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.rollout import RolloutError
from conftest import FIXTURES

flt = SimpleNamespace(**rollout_filters.FilterModule().filters())
RUN = "upgrade-20261201T080000Z-a1b2c3"
OTHER = "upgrade-20261130T120000Z-ffffff"
T = "2026-12-01T08:00:00Z"


def fixture(name):
    return (FIXTURES / "rollout" / name).read_text()


# --- batches ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, [1, "10%", "25%"]),
        ("1,3", [1, 3]),
        ([1, "10%", "25%"], [1, "10%", "25%"]),
        (" 2 , 50 % ,100%", [2, "50%", "100%"]),
        ([1, "3"], [1, 3]),
        (4, [4]),
        ("12.5%", ["12.5%"]),
    ],
)
def test_batches(given, expected):
    assert flt.rollout_batches(given) == expected


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("0", "at least 1 host"),
        ([1, -2], "at least 1 host"),
        ("110%", "at most 100%"),
        ("0%", "above 0%"),
        ("", "empty"),
        ([], "empty"),
        ("one", "neither a number"),
        ([True], "not a number"),
    ],
)
def test_bad_batches_say_what_is_wrong(given, says):
    with pytest.raises(RolloutError, match=says):
        flt.rollout_batches(given)


# --- drain commands --------------------------------------------------------------------------------


def test_slurm_commands():
    cmds = flt.drain_commands("slurm", "gpu01", RUN)
    assert cmds["status"] == ["scontrol", "show", "node", "gpu01", "-o"]
    assert cmds["drain"] == [
        ["scontrol", "update", "NodeName=gpu01", "State=DRAIN", f"Reason=gpufleet upgrade {RUN}"]
    ]
    assert cmds["undrain"] == [["scontrol", "update", "NodeName=gpu01", "State=RESUME"]]


def test_kubernetes_commands_cordon_mark_then_evict():
    cmds = flt.drain_commands("kubernetes", "gpu01", RUN, timeout=300)
    assert cmds["status"] == ["kubectl", "get", "node", "gpu01", "-o", "json"]
    assert cmds["drain"] == [
        ["kubectl", "cordon", "gpu01"],
        [
            "kubectl",
            "annotate",
            "node",
            "gpu01",
            f"gpufleet.io/drained-by=gpufleet upgrade {RUN}",
            "--overwrite",
        ],
        ["kubectl", "drain", "gpu01", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=300s"],
    ]
    assert cmds["undrain"] == [
        ["kubectl", "uncordon", "gpu01"],
        ["kubectl", "annotate", "node", "gpu01", "gpufleet.io/drained-by-"],
    ]


def test_none_runs_nothing_and_command_fills_in_the_users_lines():
    assert flt.drain_commands("none", "gpu01", RUN) == {"status": None, "drain": [], "undrain": []}
    cmds = flt.drain_commands(
        "command",
        "gpu01",
        RUN,
        {
            "status": "lsf-state {node}",
            "drain": "badmin hclose -C '{reason}' {node}",
            "undrain": ["badmin hopen {node}"],
        },
    )
    assert cmds["status"] == ["lsf-state", "gpu01"]
    assert cmds["drain"] == [["badmin", "hclose", "-C", f"gpufleet upgrade {RUN}", "gpu01"]]
    assert cmds["undrain"] == [["badmin", "hopen", "gpu01"]]


def test_bad_drain_input():
    with pytest.raises(RolloutError, match="unknown; known: slurm, kubernetes, command, none"):
        flt.drain_commands("lsf", "gpu01", RUN)
    with pytest.raises(RolloutError, match="missing: drain, undrain"):
        flt.drain_commands("command", "gpu01", RUN, {"status": "x"})
    with pytest.raises(RolloutError, match="not a rollout id"):
        flt.drain_commands("slurm", "gpu01", "run with spaces")


# --- node status -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "in_service", "ours", "describe"),
    [
        ("scontrol_idle.txt", True, False, "State=IDLE Reason=no reason"),
        ("scontrol_mixed.txt", True, False, "State=MIXED Reason=no reason"),
        ("scontrol_drained_admin.txt", False, False, "State=IDLE+DRAIN Reason=GPU 3 XID 79, RMA ticket 4411"),
        ("scontrol_drained_ours.txt", False, True, f"State=IDLE+DRAIN Reason=gpufleet upgrade {RUN}"),
        ("scontrol_down.txt", False, False, "State=DOWN*+DRAIN Reason=Not responding"),
    ],
)
def test_slurm_status(name, in_service, ours, describe):
    status = flt.drain_status(fixture(name), "slurm", RUN)
    assert status == {
        "in_service": in_service,
        "out_of_service": not in_service,
        "ours": ours,
        "marks": True,
        "describe": describe,
    }


def test_slurm_drain_of_another_run_is_not_ours():
    assert not flt.drain_status(fixture("scontrol_drained_ours.txt"), "slurm", OTHER)["ours"]


@pytest.mark.parametrize(
    ("name", "in_service", "ours"),
    [
        ("kubectl_schedulable.json", True, False),
        ("kubectl_cordoned_admin.json", False, False),
        ("kubectl_cordoned_ours.json", False, True),
        ("kubectl_cordoned_verify.json", False, False),  # gpufleet verify's cordon is not this run's
    ],
)
def test_kubernetes_status(name, in_service, ours):
    status = flt.drain_status(fixture(name), "kubernetes", RUN)
    assert (status["in_service"], status["out_of_service"], status["ours"]) == (
        in_service,
        not in_service,
        ours,
    )


def test_status_of_command_and_none_backends():
    assert flt.drain_status("in_service\n", "command", RUN)["in_service"]
    out = flt.drain_status("closed_Adm: disk replacement\n", "command", RUN)
    assert out == {
        "in_service": False,
        "out_of_service": True,
        "ours": False,
        "marks": False,
        "describe": "closed_Adm: disk replacement",
    }
    assert flt.drain_status("", "none", RUN)["in_service"]


@pytest.mark.parametrize(
    ("output", "backend", "says"),
    [
        ("slurm_load_node error: Invalid node name specified", "slurm", "no State="),
        ('Error from server (NotFound): nodes "gpu9" not found', "kubernetes", "not JSON"),
        ("[]", "kubernetes", "not a JSON object"),
        ("   ", "command", "printed nothing"),
    ],
)
def test_unusable_status_output_is_an_error(output, backend, says):
    with pytest.raises(RolloutError, match=says):
        flt.drain_status(output, backend, RUN)


# --- the state record ----------------------------------------------------------------------------------


def test_record_carries_ownership_within_a_run_only():
    first = flt.rollout_record({}, RUN, "drain", "started", T, drained_by=RUN, already_out_of_service=False)
    assert first["drained_by"] == RUN and first["history"] == [["drain", "started", T]]
    second = flt.rollout_record(first, RUN, "drain", "ok", T)
    assert (second["drained_by"], second["already_out_of_service"], second["result"]) == (RUN, False, "ok")
    assert len(second["history"]) == 2
    failed = flt.rollout_record(second, RUN, "verify", "failed", T, reason="verdict unhealthy")
    assert (failed["reason"], failed["drained_by"]) == ("verdict unhealthy", RUN)
    # The next step's record does not keep the old failure reason.
    assert flt.rollout_record(failed, RUN, "verify", "ok", T)["reason"] is None
    # Another run's record is not carried over: its drain is not this run's.
    fresh = flt.rollout_record(failed, OTHER, "drain", "started", T)
    assert fresh["drained_by"] is None and fresh["history"] == [["drain", "started", T]]


def test_record_refuses_unknown_steps_and_results():
    with pytest.raises(RolloutError, match="step 'patch' is unknown"):
        flt.rollout_record({}, RUN, "patch", "ok", T)
    with pytest.raises(RolloutError, match="result 'maybe' is unknown"):
        flt.rollout_record({}, RUN, "drain", "maybe", T)


# --- resume ----------------------------------------------------------------------------------------------


def test_new_run_starts_at_drain():
    plan = flt.rollout_resume_plan({}, RUN)
    assert plan["start"] == "drain" and plan["due"][0] == "drain" and "connect" not in plan["due"]
    # Another run's record, or no --resume, starts afresh too.
    old = {"run_id": OTHER, "step": "verify", "result": "failed"}
    assert flt.rollout_resume_plan(old, RUN, True)["start"] == "drain"
    assert (
        flt.rollout_resume_plan({"run_id": RUN, "step": "verify", "result": "ok"}, RUN, False)["start"]
        == "drain"
    )


@pytest.mark.parametrize(
    ("step", "result", "start"),
    [
        ("connect", "failed", "drain"),
        ("drain", "started", "drain"),
        ("drain", "ok", "stop_serving"),
        ("stop_serving", "started", "stop_serving"),
        ("stop_serving", "ok", "upgrade"),
        ("upgrade", "started", "upgrade"),
        ("upgrade", "failed", "upgrade"),
        ("upgrade", "ok", "reboot"),
        ("reboot", "started", "upgrade"),  # an interrupted reboot belongs to its upgrade
        ("reboot", "ok", "start_serving"),
        ("start_serving", "started", "start_serving"),
        ("start_serving", "failed", "start_serving"),
        ("start_serving", "ok", "verify"),
        ("verify", "failed", "verify"),
        ("verify", "ok", "undrain"),
        ("undrain", "started", "undrain"),
        ("undrain", "ok", "done"),
    ],
)
def test_resume_from_each_step(step, result, start):
    plan = flt.rollout_resume_plan({"run_id": RUN, "step": step, "result": result}, RUN, True)
    assert plan["start"] == start
    assert plan["due"] == list(rollout.STEPS[rollout.STEPS.index(start) :])


def test_serving_is_stopped_before_the_upgrade_and_started_again_before_verify():
    steps = list(rollout.STEPS)
    assert steps.index("stop_serving") < steps.index("upgrade") < steps.index("reboot")
    assert steps.index("reboot") < steps.index("start_serving") < steps.index("verify")
    assert "start_serving" in flt.rollout_resume_plan({}, RUN)["due"]


@pytest.mark.parametrize(
    ("step", "result"),
    [
        ("stop_serving", "started"),
        ("stop_serving", "failed"),
        ("stop_serving", "ok"),
        ("upgrade", "started"),
        ("upgrade", "failed"),
        ("upgrade", "ok"),
        ("reboot", "started"),
        ("reboot", "failed"),
        ("reboot", "ok"),
        ("start_serving", "started"),
        ("start_serving", "failed"),
    ],
)
def test_a_run_stopped_while_serving_was_stopped_starts_it_again_when_resumed(step, result):
    # Stopped anywhere between stop_serving and a finished start_serving: serving is still down, and
    # the resumed run must bring it back before verify.
    due = flt.rollout_resume_plan({"run_id": RUN, "step": step, "result": result}, RUN, True)["due"]
    assert "start_serving" in due and due.index("start_serving") < due.index("verify")


def test_resume_after_serving_started_again_does_not_start_it_twice():
    due = flt.rollout_resume_plan({"run_id": RUN, "step": "start_serving", "result": "ok"}, RUN, True)["due"]
    assert due == ["verify", "undrain", "done"]


def test_resume_of_a_finished_host_does_nothing():
    assert flt.rollout_resume_plan({"run_id": RUN, "step": "done", "result": "ok"}, RUN, True)["due"] == []


def test_unreadable_record_is_an_error():
    with pytest.raises(RolloutError, match="not readable"):
        flt.rollout_resume_plan({"run_id": RUN, "step": "???"}, RUN, True)


# --- undrain only what we drained ---------------------------------------------------------------------------


def _status(name, backend="slurm", run=RUN):
    return flt.drain_status(fixture(name), backend, run)


def test_undrain_only_ours():
    ours = {"run_id": RUN, "drained_by": RUN, "already_out_of_service": False}
    assert flt.rollout_should_undrain(ours, RUN, _status("scontrol_drained_ours.txt"))
    assert flt.rollout_should_undrain(ours, RUN, _status("kubectl_cordoned_ours.json", "kubernetes"))
    # Someone took over the drain (another reason now): it stays drained.
    assert not flt.rollout_should_undrain(ours, RUN, _status("scontrol_drained_admin.txt"))
    assert not flt.rollout_should_undrain(ours, RUN, _status("kubectl_cordoned_verify.json", "kubernetes"))
    # Already back in service: nothing to undo.
    assert not flt.rollout_should_undrain(ours, RUN, _status("scontrol_idle.txt"))
    # Out of service before the run came: never returned to service by it.
    theirs = {"run_id": RUN, "drained_by": None, "already_out_of_service": True}
    assert not flt.rollout_should_undrain(theirs, RUN, _status("scontrol_drained_admin.txt"))
    # Drained by another run: not this run's to undo.
    assert not flt.rollout_should_undrain(
        {**ours, "drained_by": OTHER}, RUN, _status("scontrol_drained_ours.txt")
    )
    # No record (the host was unreachable before the drain): nothing.
    assert not flt.rollout_should_undrain({}, RUN, _status("scontrol_drained_ours.txt"))


def test_undrain_on_backends_without_a_mark_trusts_the_record():
    ours = {"run_id": RUN, "drained_by": RUN}
    assert flt.rollout_should_undrain(ours, RUN, flt.drain_status("closed\n", "command", RUN))
    assert not flt.rollout_should_undrain(ours, RUN, flt.drain_status("in_service\n", "command", RUN))
    assert flt.rollout_should_undrain(ours, RUN)


# --- verify ------------------------------------------------------------------------------------------------


def test_verify_problem():
    fit = {"exit_code": 0, "hosts": [{"host": "node1", "verdict": "degraded", "warning": ["pcie_link"]}]}
    assert flt.rollout_verify_problem(fit, "node1") == ""
    unfit = {
        "exit_code": 1,
        "hosts": [
            {
                "host": "node3",
                "verdict": "unhealthy",
                "failing": ["nvidia_driver_loaded", "dkms_built"],
                "action": "reinstall_driver",
            }
        ],
    }
    assert flt.rollout_verify_problem(unfit, "node3") == (
        "verdict unhealthy; failing: nvidia_driver_loaded, dkms_built; suggested action: reinstall_driver"
    )
    gone = {"exit_code": 1, "hosts": [{"host": "node2", "verdict": "unreachable", "error": "ssh: timed out"}]}
    assert flt.rollout_verify_problem(gone, "node2") == "verdict unreachable; ssh: timed out"
    assert "did not report" in flt.rollout_verify_problem({"exit_code": 1, "hosts": []}, "node4")


# --- who owns the drain ------------------------------------------------------------------------------------


def test_drain_decision():
    fresh = {}
    decide = flt.rollout_drain_decision
    assert decide(_status("scontrol_idle.txt"), "slurm", fresh, RUN) == {
        "drain_now": True,
        "drained_by": RUN,
        "already_out_of_service": False,
    }
    # An admin's drain: left alone, never ours.
    assert decide(_status("scontrol_drained_admin.txt"), "slurm", fresh, RUN) == {
        "drain_now": False,
        "drained_by": None,
        "already_out_of_service": True,
    }
    # A resumed run finds its own mark: ours, not drained again.
    assert decide(_status("scontrol_drained_ours.txt"), "slurm", fresh, RUN)["drained_by"] == RUN
    assert (
        decide(_status("kubectl_cordoned_ours.json", "kubernetes"), "kubernetes", fresh, RUN)["drained_by"]
        == RUN
    )
    # The same mark from an earlier rollout is not this run's.
    assert decide(_status("scontrol_drained_ours.txt", run=OTHER), "slurm", fresh, OTHER) == decide(
        _status("scontrol_drained_ours.txt", run=OTHER), "slurm", {"run_id": RUN, "drained_by": RUN}, OTHER
    )
    assert decide(_status("scontrol_drained_ours.txt", run=OTHER), "slurm", fresh, OTHER)[
        "already_out_of_service"
    ]
    # Without marks (command backend) the record decides.
    closed = flt.drain_status("closed\n", "command", RUN)
    assert decide(closed, "command", {"run_id": RUN, "drained_by": RUN}, RUN)["drained_by"] == RUN
    assert decide(closed, "command", {"run_id": OTHER, "drained_by": OTHER}, RUN)["already_out_of_service"]
    # none: nothing drained, nothing owned.
    assert decide(flt.drain_status("", "none", RUN), "none", fresh, RUN) == {
        "drain_now": False,
        "drained_by": None,
        "already_out_of_service": False,
    }
