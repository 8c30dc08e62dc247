"""The one registry of health checks is what verify runs: every registered check is collected by
pytest and called with the inputs it declares, and a check verify cannot call fails here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import fake_testinfra
import pytest
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core, registry

from gpufleet.verify import collect, wiring

REPO = Path(__file__).resolve().parents[3]


def assert_wired(checks):
    """The guard this file applies to the registry: nothing registered lacks a way to be called."""
    problems = wiring.problems(checks)
    assert not problems, "registered checks verify cannot call:\n" + "\n".join(problems)


def test_every_registered_check_is_wired():
    assert_wired(registry.CHECKS)


def _with(check):
    return {**registry.CHECKS, check.name: check}


def _extra(**needs):
    return registry.Check("extra", "quick", "software", "Extra", lambda **kw: kw, needs)


@pytest.mark.parametrize(
    "bad",
    [
        # a need collection does not provide
        _extra(text=registry.state("no_such_output")),
        _extra(why=registry.error("no_such_output")),
        _extra(fact=registry.local_fact("gpufleet_no_such_role")),
        # an inventory variable verify does not read (so has no documented default)
        _extra(limit=registry.hostvar("gpufleet_verify_no_such_limit")),
        # a source nothing resolves
        _extra(value=registry.Need("environment", "HOME")),
        # the function cannot take what is declared / needs what is not declared
        registry.Check("extra", "quick", "gpu", "Extra", core.no_gpu, {"gpus": registry.state("gpus")}),
        registry.Check("extra", "quick", "gpu", "Extra", lambda gpus: gpus, {"text": registry.state("df")}),
    ],
    ids=["state", "error", "local_fact", "hostvar", "source", "missing-arg", "unknown-arg"],
)
def test_a_check_registered_without_a_way_to_be_called_fails_the_guard(bad):
    with pytest.raises(AssertionError, match="extra"):
        assert_wired(_with(bad))


def test_registered_under_another_name_fails_the_guard():
    check = registry.CHECKS["ecc"]
    with pytest.raises(AssertionError, match="registered under another name"):
        assert_wired({**registry.CHECKS, "ecc2": check})


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        registry._register(registry.CHECKS["ecc"], registry.CHECKS["ecc"])


# --- collection provides STATE_KEYS, and every check runs on what it collects ---------------------


class _Out:
    def __init__(self, rc=0, stdout="", stderr=""):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr


# Constructed: a GPU host on which every command but the reach probe and the fact files fails, so
# collect takes each branch that records an error (the shape a check must cope with).
_FACT_FILES = (
    "=== /etc/ansible/facts.d/gpufleet_cuda_toolkit.fact\n"
    + json.dumps({"default": "12.4", "homes": {"12.4": "/usr/local/cuda-12.4"}})
    + "\n=== /etc/ansible/facts.d/gpufleet_nccl.fact\n"
    + json.dumps({"version": "2.21.5", "library": "/usr/lib/libnccl.so.2", "venv": "/opt/venv"})
    + "\n"
)
_GPUS = {
    "gpu_count": 1,
    "pci_gpu_count": 1,
    "driver_loaded": True,
    "source": "nvidia-smi",
    "driver_version": "535.54.03",
    "gpus": [{"index": 0, "name": "NVIDIA A100-SXM4-80GB", "pci_bus_id": "00000000:07:00.0"}],
}


class FakeHost(fake_testinfra.FakeHost):
    """One GPU with the driver loaded and two fact files; docker absent; every other command fails."""

    def __init__(self):
        super().__init__(parts={"gpus": _GPUS, "network": {}})

    def shell(self, cmd):
        if "facts.d" in cmd:
            return _Out(stdout=_FACT_FILES)
        if "command -v docker" in cmd:
            return _Out(rc=3)
        return _Out(rc=1, stderr="constructed failure")


def test_collect_returns_exactly_the_state_keys_checks_may_need():
    state = collect.collect(FakeHost(), {}, services=[])
    assert sorted(state) == sorted(collect.STATE_KEYS)
    assert state["nccl_error"] and state["errors"]["kernel_log"]  # the failing branches were taken


def test_every_registered_check_runs_on_collected_state():
    state = collect.collect(FakeHost(), {}, services=["nvidia-persistenced"])
    ran = {}
    for name, check in registry.CHECKS.items():
        res = wiring.run(check, state, {}, None)
        assert res["check"] == name and res["status"] in core.STATUSES, res
        ran[name] = res["status"]
    assert list(ran) == list(registry.CHECKS)
    # the kernel log could not be read on a GPU host: a failure with the reason, never a skip
    assert ran["xid"] == core.FAIL


def test_gpu_checks_fail_when_gpu_facts_are_missing():
    state = dict(collect.collect(FakeHost(), {}, services=[]), gpus=None)
    state["errors"]["gpus"] = "gpu_facts failed: constructed"
    for check in registry.CHECKS.values():
        res = wiring.run(check, state, {}, None)
        if check.kind == "gpu":
            assert res["status"] == core.FAIL and "GPU facts unavailable" in res["summary"], res
        else:
            assert res["summary"] and "GPU facts unavailable" not in res["summary"]


# --- the pytest run verify starts collects the registry ----------------------------------------

_EXTRA_PLUGIN = """
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core, registry

def extra_probe_free():
    return core.result("extra_probe_free", core.PASS, "registered by a test")


registry.CHECKS["extra_probe_free"] = registry.Check(
    "extra_probe_free", "full", "software", "Registered by a test", extra_probe_free
)
"""


def _collected(tmp_path, *args):
    env = dict(os.environ)
    # this checkout's collection and package first, as tests/conftest.py arranges for this process
    paths = [str(tmp_path), str(REPO / ".collections"), str(REPO / "src"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    command = [sys.executable, "-m", "pytest", "-p", "gpufleet.verify.plugin", *args]
    command += [
        "--pyargs",
        "gpufleet.verify.checks.test_host",
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # Ids are "<host>-<check>" where testinfra parametrizes the host, "<check>" where it is absent
    # (make newest's venv); check names have no dash.
    return {
        line.split("[", 1)[1].rstrip("]").rsplit("-", 1)[-1]
        for line in out.stdout.splitlines()
        if "::test_check[" in line
    }


def test_pytest_collects_every_registered_check_and_nothing_else(tmp_path):
    (tmp_path / "extra_check_plugin.py").write_text(_EXTRA_PLUGIN)
    assert _collected(tmp_path, "--gpufleet-tier", "burnin") == set(registry.CHECKS)
    # one more registration, nothing else: verify collects it (in its tier)
    extra = _collected(tmp_path, "-p", "extra_check_plugin", "--gpufleet-tier", "burnin")
    assert extra == set(registry.CHECKS) | {"extra_probe_free"}
    assert _collected(tmp_path, "-p", "extra_check_plugin", "--gpufleet-tier", "quick") == set(
        registry.CHECKS
    )


def test_tier_full_reads_the_ib_error_counters_twice_quick_once():
    from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import ib_counters

    assert wiring.collect_options("quick") == {"ib_counter_interval": 0}
    assert wiring.collect_options("full") == {"ib_counter_interval": ib_counters.FULL_TIER_INTERVAL_S}
    for tier, interval in (("quick", None), ("full", ib_counters.FULL_TIER_INTERVAL_S)):
        host = FakeHost()
        collect.collect(host, {}, services=[], **wiring.collect_options(tier))
        assert host.args().get("counter_interval") == interval, tier


def test_a_collect_option_collect_does_not_take_is_a_wiring_problem(monkeypatch):
    monkeypatch.setitem(registry.COLLECT_OPTIONS, "full", {"ib_counter_interval": 5, "bogus": 1})
    assert "collect options (full): collect.collect() takes no 'bogus'" in wiring.problems()


def test_loaded_modules_on_this_machine_is_read_or_empty_never_an_error():
    """Run for real on the test machine (the CI kind has no /proc/modules: no loadable modules)."""
    import testinfra

    text, error = collect.loaded_modules(testinfra.get_host("local://"))
    assert error is None
    assert isinstance(text, str)
    if not Path("/proc/modules").exists():
        assert text == ""


def test_an_unreadable_module_list_is_reported():
    class Broken:
        def run(self, cmd):
            return _Out(rc=1, stderr="cat: /proc/modules: Permission denied")

    assert collect.loaded_modules(Broken()) == (None, "cat: /proc/modules: Permission denied")
