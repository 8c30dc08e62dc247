"""gpufleet.verify.fleet: tier quick read by one Ansible run for the whole fleet, judged in-process.

The sorting of results (ok, unreachable, failed, timed out, missing) runs on results the module's real
host code made on recorded outputs (fake_testinfra); one test runs the real play through
ansible-runner against this machine, twice in the inventory, with the real module."""

import json
import sys

import pytest
import yaml
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core as health
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import registry
from test_collect import HOSTVARS, RecordedHost

from gpufleet.verify import collect, fleet, runner


def module_result():
    """What verify_collect answers on the recorded host of test_collect (its real host code)."""
    host = RecordedHost()
    named, timeouts = collect.commands(HOSTVARS)
    args = collect.module_args(HOSTVARS, sorted(collect.BASE_SERVICES), 0, named, timeouts)
    return host.ansible(collect.MODULE, args, check=False)


class _UnsafeLoader(yaml.SafeLoader):
    pass


_UnsafeLoader.add_constructor("!unsafe", lambda loader, node: ("UNSAFE", loader.construct_scalar(node)))


def test_hosts_with_the_same_arguments_share_one_set_and_commands_are_unsafe():
    args = {
        "a": fleet.host_args({}, "quick"),
        "b": fleet.host_args({}, "quick"),
        "c": fleet.host_args({"gpufleet_verify_xid_window_hours": 6}, "quick"),
    }
    data = yaml.load(fleet.extra_vars(args), Loader=_UnsafeLoader)
    assert data["gpufleet_verify_collect_host"] == {"a": 0, "b": 0, "c": 1}
    sets = data["gpufleet_verify_collect_sets"]
    assert len(sets) == 2
    # every command reaches Ansible marked !unsafe: docker's --format '{{json .}}' is never templated
    assert sets[0]["commands"]["docker_info"] == ("UNSAFE", collect.DOCKER_INFO_COMMAND)
    assert all(kind == "UNSAFE" for kind, _text in sets[0]["commands"].values())
    assert "--since '-6h'" in sets[1]["commands"]["kernel_log"][1]


def test_judge_records_every_quick_check_and_a_crash_is_a_fail(monkeypatch):
    state = collect.state_from_result(module_result(), HOSTVARS, 0.5)
    name = "nccl_conf"
    spec = registry.CHECKS[name]

    def explode(**_kwargs):
        raise ValueError("constructed")

    monkeypatch.setitem(registry.CHECKS, name, registry.Check(**{**spec.__dict__, "func": explode}))
    entries = fleet.judge(state, HOSTVARS, {}, "quick")
    quick = [n for n, c in registry.CHECKS.items() if c.tier == "quick"]
    assert [e["check"] for e in entries] == quick
    crashed = {e["check"]: e for e in entries}[name]
    assert crashed["status"] == health.FAIL and crashed["summary"] == "check crashed: constructed"
    assert "ValueError" in crashed["details"][0]["traceback"]
    assert {"title", "tier", "kind", "duration_s"} <= set(crashed)


def test_each_result_is_judged_or_reported_and_what_the_module_could_not_read_goes_per_host(monkeypatch):
    hosts = {h: dict(HOSTVARS) for h in ("ok", "gone", "nopython", "slow", "silent")}
    hosts["gone"].update(ansible_host="10.0.0.9", ansible_user="ops")

    def fake_collect(inventory, hosts_, tier, jobs, timeout_s, on_result):
        on_result("ok", "ok", dict(module_result(), _duration=1.25))
        on_result("gone", "unreachable", {"msg": "Failed to connect to the host via ssh: No route to host"})
        on_result(
            "nopython", "failed", {"msg": "MODULE FAILURE", "module_stderr": "/usr/bin/python3: not found"}
        )
        on_result("slow", "failed", {"msg": "Timed out after 600 seconds.", "timedout": {"period": 600}})
        return {"status": "failed", "rc": 4, "stdout": ""}

    monkeypatch.setattr(fleet, "collect_results", fake_collect)
    raws = {}
    left = fleet.verify("inv", hosts, {h: {} for h in hosts}, "quick", 8, 600, raws.__setitem__)
    assert left == ["nopython", "silent"]
    assert set(raws) == {"ok", "gone", "slow"}
    ok = runner.host_entry(raws["ok"])
    assert raws["ok"]["duration_s"] == 1.25 and raws["ok"]["path"] == "fleet"
    assert ok["gpu_count"] == 2 and {c["check"] for c in ok["checks"]} >= {"driver_package", "nccl_library"}
    assert runner.host_entry(raws["gone"])["verdict"] == health.UNREACHABLE
    assert raws["gone"]["error"].startswith("ops@10.0.0.9 over ssh: Failed to connect to the host via ssh")
    assert raws["slow"]["error"].startswith("verification did not finish within 600 s")


def test_runner_sends_only_the_hosts_the_fleet_path_left_to_the_per_host_path(monkeypatch):
    hosts = {"a": {}, "b": {}}
    monkeypatch.setattr(runner, "prepare", lambda inv, **kw: (inv, hosts, {"a": {}, "b": {}}))
    healthy = {"host": "a", "reachable": True, "checks": [], "duration_s": 0.1}

    def fake_fleet(inventory, hosts_, overrides, tier, jobs, timeout_s, done):
        done("a", healthy)
        return ["b"]

    monkeypatch.setattr(fleet, "verify", fake_fleet)
    each = []
    monkeypatch.setattr(
        runner, "_verify_each", lambda names, *a: (each.append(names), a[-1]("b", dict(healthy, host="b")))
    )
    lines = []
    report = runner.run("inv", tier="quick", progress=lines.append)
    assert each == [["b"]] and [h["host"] for h in report["hosts"]] == ["a", "b"]
    assert any("verified one by one" in line and "b" in line for line in lines)


def test_a_fleet_run_that_breaks_leaves_the_hosts_it_did_not_judge_to_the_per_host_path(monkeypatch):
    hosts = {"a": {}, "b": {}}
    monkeypatch.setattr(runner, "prepare", lambda inv, **kw: (inv, hosts, {"a": {}, "b": {}}))

    def broken(inventory, hosts_, overrides, tier, jobs, timeout_s, done):
        done("a", {"host": "a", "reachable": True, "checks": [], "duration_s": 0.1})
        raise OSError("constructed: ansible-runner could not start")

    monkeypatch.setattr(fleet, "verify", broken)
    each = []
    monkeypatch.setattr(
        runner,
        "_verify_each",
        lambda names, *a: (each.append(names), a[-1]("b", {"host": "b", "checks": []})),
    )
    lines = []
    report = runner.run("inv", tier="quick", progress=lines.append)
    assert each == [["b"]] and [h["host"] for h in report["hosts"]] == ["a", "b"]
    assert any("constructed: ansible-runner could not start" in line for line in lines)


def test_tiers_with_probes_take_the_per_host_path(monkeypatch):
    monkeypatch.setattr(runner, "prepare", lambda inv, **kw: (inv, {"a": {}}, {"a": {}}))
    monkeypatch.setattr(
        fleet, "verify", lambda *a, **kw: pytest.fail("tier full must not take the fleet path")
    )
    monkeypatch.setattr(runner, "_verify_each", lambda names, *a: a[-1]("a", {"host": "a", "checks": []}))
    monkeypatch.setattr("gpufleet.verify.fabric.run_pairs", lambda *a, **kw: None)
    assert [h["host"] for h in runner.run("inv", tier="full")["hosts"]] == ["a"]


def test_one_ansible_run_reads_every_host_with_the_real_module(tmp_path, monkeypatch):
    """For real: the play through ansible-runner against this machine under two inventory names; each
        host's result arrives once, with every command run whole ({{json .}}, as docker's --format has it,
    reached the shell untemplated)."""
    import os
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    monkeypatch.setenv("ANSIBLE_CONFIG", str(repo / "ansible.cfg"))
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(repo / ".collections"))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    inventory = tmp_path / "hosts"
    inventory.write_text(
        "".join(
            f"{name} ansible_connection=local ansible_python_interpreter={sys.executable} "
            f"gpufleet_sysfs_pci_root={tmp_path}\n"
            for name in ("first", "second")
        )
    )
    hosts = runner.inventory_hosts(str(inventory))
    # one command more, holding what Ansible would template if it were not marked unsafe
    dependent = collect.dependent_commands
    monkeypatch.setattr(
        collect, "dependent_commands", lambda: {**dependent(), "braces": "printf '%s' '{{json .}}'"}
    )
    got = []
    run = fleet.collect_results(str(inventory), hosts, "quick", 2, 120, lambda h, k, r: got.append((h, k, r)))
    assert run["status"] == "successful", run
    assert sorted((h, k) for h, k, _r in got) == [("first", "ok"), ("second", "ok")]
    res = got[0][2]
    assert res["errors"] == {} and res["gpus"]["gpu_count"] == 0
    assert res["commands"]["meminfo"]["rc"] == 0 and "MemTotal" in res["commands"]["meminfo"]["stdout"]
    assert res["commands"]["nvlink"]["rc"] == collect.NOT_HERE  # no GPU: the guard said so
    assert res["commands"]["braces"] == {"rc": 0, "stdout": "{{json .}}", "stderr": ""}
    state = collect.state_from_result(res, hosts["first"], 1.0)
    assert json.dumps(state) and state["meminfo"]
