"""The verify_fleet action: task options -> gpufleet.verify.run/preview keywords, results, check mode.

gpufleet.verify.run and preview are replaced by recorders: what the action passes and how it shapes
the task result is under test (the orchestration itself is tested in tests/unit/verify/test_api.py).
"""

import inspect
from unittest.mock import MagicMock

import pytest
from ansible.errors import AnsibleActionFail
from ansible_collections.gpufleet.cluster.plugins.action import verify_fleet as action

from gpufleet import verify
from gpufleet.verify import api, runner


def make_action(args, check_mode=False):
    task = MagicMock()
    task.args = args
    task.check_mode = check_mode
    task.async_val = 0
    task.action = "gpufleet.cluster.verify_fleet"
    connection = MagicMock()
    connection._shell.tmpdir = "/tmp/unused"
    return action.ActionModule(task, connection, MagicMock(), MagicMock(), MagicMock(), MagicMock())


def report_of(verdicts, **extra):
    hosts = [
        {"host": h, "verdict": v, "action": None if v == "healthy" else "ISOLATE",
         "failing": [] if v == "healthy" else ["gpu_count"], "warning": [], "error": None,
         "duration_s": 1.0, "gpu_count": 8, "sku": "H100 SXM", "checks": []}
        for h, v in verdicts.items()
    ]  # fmt: skip
    return {"schema": 1, "tool": "gpufleet verify", "version": "0", "inventory": "/inv", "tier": "quick",
            "started": "2026-11-21T10:00:00+00:00", "duration_s": 1.0, "hosts": hosts,
            "summary": runner.summarize(hosts), **extra}  # fmt: skip


@pytest.fixture
def recorded(monkeypatch):
    calls = {}

    def fake_run(**kwargs):
        calls["run"] = kwargs
        kwargs["progress"]("a progress line")
        return api.VerifyResult(
            report=report_of({"gpu01": "healthy", "gpu02": "unhealthy"}),
            exit_code=1,
            written={"junit": "/r/verify.junit.xml"},
        )

    def fake_preview(**kwargs):
        calls["preview"] = kwargs
        return api.VerifyPlan(
            inventory="/inv", limit=None, tier="quick", jobs=8, hosts=["gpu01", "gpu02"], drain="slurm",
            drain_state=api.DEFAULT_DRAIN_STATE, drain_nodes={"gpu01": "n1", "gpu02": "n2"},
            reports={"junit": "/r/verify.junit.xml"},
        )  # fmt: skip

    monkeypatch.setattr(verify, "run", fake_run)
    monkeypatch.setattr(verify, "preview", fake_preview)
    return calls


def test_options_are_the_api_parameters_with_the_api_defaults():
    spec = action.argument_spec(verify)
    run_params = set(inspect.signature(api.run).parameters) - {"progress"}
    assert set(spec) - set(action.TASK_ONLY) == run_params
    assert set(action.RUN_ONLY) == run_params - set(inspect.signature(api.preview).parameters)
    assert spec["tier"]["default"] == api.DEFAULT_TIER and spec["tier"]["choices"] == list(api.TIERS)
    assert spec["jobs"]["default"] == api.DEFAULT_JOBS
    assert spec["drain"]["choices"] == list(api.DRAIN_KINDS)


def test_options_match_the_module_documentation():
    import yaml
    from ansible_collections.gpufleet.cluster.plugins.modules import verify_fleet as doc

    documented = yaml.safe_load(doc.DOCUMENTATION)["options"]
    spec = action.argument_spec(verify)
    assert set(documented) == set(spec)
    for name, option in spec.items():
        assert documented[name]["type"] == option["type"], name
        assert documented[name].get("default") == option.get("default"), name
        assert documented[name].get("choices") == option.get("choices"), name
        assert bool(documented[name].get("required")) == bool(option.get("required")), name


def test_run_passes_validated_options_and_returns_the_verdicts(recorded):
    result = make_action(
        {
            "inventory": "/inv",
            "limit": "gpu0*",
            "tier": "full",
            "jobs": "3",
            "junit_report": "/r/verify.junit.xml",
        }
    ).run(task_vars={})
    kwargs = recorded["run"]
    assert callable(kwargs.pop("progress"))
    assert kwargs == {
        "inventory": "/inv", "limit": "gpu0*", "tier": "full", "jobs": 3, "baselines": None,
        "host_timeout_s": None, "drain": None, "drain_state": None, "assume_drained": False,
        "json_report": None, "junit_report": "/r/verify.junit.xml", "prometheus_report": None,
    }  # fmt: skip
    assert "preview" not in recorded
    assert result["exit_code"] == 1
    assert result["changed"] is False
    assert result["verdicts"] == {"gpu01": "healthy", "gpu02": "unhealthy"}
    assert result["hosts"][1] == {"host": "gpu02", "verdict": "unhealthy", "action": "ISOLATE",
                                  "failing": ["gpu_count"], "warning": [], "error": None}  # fmt: skip
    assert result["summary"]["unhealthy"] == 1
    assert result["reports"] == {"junit": "/r/verify.junit.xml"}
    assert result["table_lines"] == result["table"].splitlines()
    assert any("gpu02" in line and "unhealthy" in line for line in result["table_lines"])
    assert "failed" not in result  # the play decides, after showing the table


def test_a_run_that_drained_nodes_is_changed(monkeypatch):
    drained = {"kind": "slurm", "undrained": ["gpu01"], "kept": [], "errors": {}}
    monkeypatch.setattr(
        verify,
        "run",
        lambda **kw: api.VerifyResult(
            report=report_of({"gpu01": "healthy"}, drain=drained), exit_code=0, drained=["gpu01"]
        ),
    )
    result = make_action({"inventory": "/inv", "drain": "slurm"}).run(task_vars={})
    assert result["changed"] is True
    assert result["drain"] == drained


def test_check_mode_previews_and_runs_nothing(recorded):
    result = make_action(
        {"inventory": "/inv", "drain": "slurm", "host_timeout_s": 60, "junit_report": "/r/verify.junit.xml"},
        check_mode=True,
    ).run(task_vars={})
    assert "run" not in recorded
    assert "host_timeout_s" not in recorded["preview"]
    assert recorded["preview"]["drain"] == "slurm"
    assert result["changed"] is False
    assert result["would_verify"] == ["gpu01", "gpu02"]
    assert result["would_drain"] == {"gpu01": "n1", "gpu02": "n2"}
    assert result["reports"] == {"junit": "/r/verify.junit.xml"}
    assert "would verify 2 host(s) at tier quick: gpu01, gpu02; would drain them from slurm" in result["msg"]
    assert "exit_code" not in result


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "missing required arguments: inventory"),
        ({"inventory": "/inv", "tier": "soak"}, "tier must be one of"),
        ({"inventory": "/inv", "drain": "pbs"}, "drain must be one of"),
        ({"inventory": "/inv", "jobs": "many"}, "jobs"),
        ({"inventory": "/inv", "colour": "red"}, "colour"),
    ],
)
def test_bad_options_fail_before_the_api_is_called(args, message, recorded):
    with pytest.raises(AnsibleActionFail, match=message):
        make_action(args).run(task_vars={})
    assert recorded == {}


def test_api_errors_fail_the_task_with_their_message(monkeypatch):
    def refuse(**kwargs):
        raise runner.VerifyError(
            "inventory /nope does not exist; pass -i with an inventory file or directory"
        )

    monkeypatch.setattr(verify, "run", refuse)
    with pytest.raises(AnsibleActionFail, match="gpufleet verify: inventory /nope does not exist"):
        make_action({"inventory": "/nope"}).run(task_vars={})


def test_api_kwargs_drops_task_only_options():
    args = {"inventory": "/inv", "verbose": True, "host_timeout_s": 5}
    assert action.api_kwargs(args) == {"inventory": "/inv", "host_timeout_s": 5}
    assert action.api_kwargs(args, check_mode=True) == {"inventory": "/inv"}
