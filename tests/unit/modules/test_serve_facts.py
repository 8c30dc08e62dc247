"""gpufleet.cluster.serve_facts: the module's contract in-process (what it reads is tested with real
engines and fronts in tests/unit/verify/test_serving_checks.py)."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.modules import serve_facts
from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401


def run(expect=AnsibleExitJson, **args):
    with patch_module_args(args), pytest.raises(expect) as exc:
        serve_facts.main()
    return exc.value.args[0]


def test_a_host_serving_nothing_reports_it_and_changes_nothing(tmp_path):
    out = run(state_dir=str(tmp_path), front_conf=str(tmp_path / "nginx.conf"))
    assert out["changed"] is False
    assert out["ansible_facts"]["gpufleet_serving"] == {
        "state_dir": str(tmp_path), "configured": False, "models": {}, "front": None,
    }  # fmt: skip


def test_a_served_model_without_a_running_engine_or_front_is_reported_as_read(tmp_path):
    (tmp_path / "tiny.json").write_text(json.dumps({"current": "1", "previous": None, "ports": {"1": 1}}))
    out = run(state_dir=str(tmp_path), front_conf=str(tmp_path / "nginx.conf"), timeout=2)
    facts = out["ansible_facts"]["gpufleet_serving"]
    model = facts["models"]["tiny"]
    assert (model["current"], model["port"], model["golden"]) == ("1", 1, None)
    assert model["ready"][0]["name"] == "models" and not model["ready"][0]["ok"]
    assert facts["front"]["error"].startswith(str(tmp_path / "nginx.conf"))


def test_a_timeout_below_one_second_is_refused(tmp_path):
    out = run(AnsibleFailJson, state_dir=str(tmp_path), timeout=0)
    assert "timeout must be 1 or more seconds" in out["msg"]


def test_a_negative_measure_tokens_is_refused(tmp_path):
    out = run(AnsibleFailJson, state_dir=str(tmp_path), measure_tokens=-1)
    assert "measure_tokens must be 0 (measure nothing) or more" in out["msg"]


def test_a_missing_probe_key_is_reported_without_asking_the_front_with_a_key(tmp_path):
    (tmp_path / "tiny.json").write_text(json.dumps({"current": "1", "previous": None, "ports": {"1": 1}}))
    conf = tmp_path / "nginx.conf"
    conf.write_text("server {\n    listen 1;\n}\n")  # nothing listens on port 1
    out = run(state_dir=str(tmp_path), front_conf=str(conf), timeout=2, measure_tokens=4)
    front = out["ansible_facts"]["gpufleet_serving"]["front"]
    assert front["probe_key"] == str(tmp_path / "probe.key"), "beside nginx.conf by default"
    assert front["probe_key_error"].startswith(str(tmp_path / "probe.key")) and front["probe"] is None
    assert "front_ready" not in out["ansible_facts"]["gpufleet_serving"]["models"]["tiny"]
