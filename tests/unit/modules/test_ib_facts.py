"""gpufleet.cluster.ib_facts driven with recorded sysfs trees and ibstat reports.

Same pattern as test_gpu_facts.py: exit_json/fail_json raise, run_command/get_bin_path are
replaced, module arguments come from ansible-core 2.19's ``patch_module_args``.
"""

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.module_utils import host_facts
from ansible_collections.gpufleet.cluster.plugins.modules import ib_facts
from conftest import FIXTURES
from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401

IB = FIXTURES / "infiniband"
PROCFS_TREE = str(IB / "sysfs-procfs")
IBSTAT = "/usr/sbin/ibstat"
TIMEOUT = "/usr/bin/timeout"


class Host:
    """Binaries on PATH, ibstat's answer and container state, as the module sees them."""

    def __init__(self, monkeypatch, *, bins=None, result=None, container=(False, None)):
        self.bins = {"ibstat": IBSTAT, "timeout": TIMEOUT} if bins is None else bins
        self.result = result
        self.calls = []
        self.check_modes = []
        host = self

        def get_bin_path(_module, name, required=False, opt_dirs=None):
            return host.bins.get(name)

        def run_command(_module, args, **kwargs):
            host.calls.append((list(args), kwargs))
            host.check_modes.append(_module.check_mode)
            return host.result

        monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", get_bin_path)
        monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
        monkeypatch.setattr(host_facts, "detect_container", lambda: container)

    def run(self, **args):
        with patch_module_args(args), pytest.raises(AnsibleExitJson) as exc:
            ib_facts.main()
        result = exc.value.args[0]
        assert result["changed"] is False
        return result["ansible_facts"]["gpufleet_ib"]


def ibstat_ok(name):
    return 0, (IB / name).read_text(encoding="utf-8"), ""


def test_ib_host_from_recorded_sysfs(monkeypatch, tmp_path):
    host = Host(monkeypatch)
    facts = host.run(sysfs_root=PROCFS_TREE, net_root=str(tmp_path))
    assert host.calls == []  # ibstat only when asked
    assert facts["source"] == "sysfs"
    assert facts["present"] is True
    assert facts["kernel_support"] is True
    assert facts["in_container"] is False
    assert facts["hca_count"] == 3
    assert facts["port_count"] == 4
    assert facts["active_ports"] == ["hfi1_0:1", "mlx4_0:1", "mlx4_0:2", "mlx5_0:1"]
    assert facts["ib_active"] is True
    assert facts["roce_active"] is False
    assert [d["name"] for d in facts["devices"]] == ["hfi1_0", "mlx4_0", "mlx5_0"]
    assert facts["ibstat"] is None
    assert facts["ibstat_error"] is None


def test_no_infiniband_is_not_an_error(monkeypatch, tmp_path):
    facts = Host(monkeypatch, bins={}, container=(True, "/.dockerenv")).run(
        sysfs_root=str(tmp_path / "infiniband"), net_root=str(tmp_path), ibstat=True
    )
    assert facts == {
        "source": "sysfs",
        "present": False,
        "kernel_support": False,
        "in_container": True,
        "hca_count": 0,
        "port_count": 0,
        "active_ports": [],
        "ib_active": False,
        "roce_active": False,
        "devices": [],
        "counter_interval_s": None,
        "ibstat": None,  # not installed: not an error either
        "ibstat_error": None,
    }


def test_empty_class_directory_is_kernel_support_without_devices(monkeypatch, tmp_path):
    root = tmp_path / "infiniband"
    root.mkdir()
    facts = Host(monkeypatch, bins={}).run(sysfs_root=str(root), net_root=str(tmp_path))
    assert (facts["present"], facts["kernel_support"], facts["hca_count"]) == (False, True, 0)


def test_ibstat_is_run_and_parsed(monkeypatch, tmp_path):
    host = Host(monkeypatch, result=ibstat_ok("ibstat-connectx3-active.txt"))
    facts = host.run(sysfs_root=PROCFS_TREE, net_root=str(tmp_path), ibstat=True)
    assert host.calls == [
        ([TIMEOUT, "-k", "5", "30", IBSTAT], {"environ_update": {"LANG": "C", "LC_ALL": "C"}})
    ]
    assert [ca["name"] for ca in facts["ibstat"]] == ["mlx4_0"]
    assert facts["ibstat"][0]["ports"][0]["port_guid"] == "0x7cfe900300c40491"
    assert facts["ibstat_error"] is None
    assert facts["hca_count"] == 3  # the facts themselves still come from sysfs


def test_ibstat_that_lists_no_ca_is_an_empty_report_not_a_missing_one(monkeypatch, tmp_path):
    # What the lab's Debian 12 node prints (no InfiniBand in its kernel): nothing, exit 0.
    facts = Host(monkeypatch, result=(0, "", "")).run(
        sysfs_root=str(tmp_path / "none"), net_root=str(tmp_path), ibstat=True
    )
    assert facts["ibstat"] == []
    assert facts["ibstat_error"] is None


def test_ibstat_failure_is_reported(monkeypatch, tmp_path):
    panic = (IB / "ibstat-no-device.txt").read_text(encoding="utf-8")
    facts = Host(monkeypatch, result=(1, "", panic)).run(
        sysfs_root=str(tmp_path / "none"), net_root=str(tmp_path), ibstat=True
    )
    assert facts["ibstat"] is None
    assert facts["ibstat_error"] == (
        "ibpanic: [2137592] main: stat of IB device 'mthca0' failed: No such file or directory"
    )


def test_ibstat_timeout(monkeypatch, tmp_path):
    facts = Host(monkeypatch, result=(124, "", "")).run(
        sysfs_root=PROCFS_TREE, net_root=str(tmp_path), ibstat=True, timeout=5
    )
    assert facts["ibstat_error"] == "ibstat did not answer within 5 seconds"


def test_timeout_zero_runs_ibstat_directly(monkeypatch, tmp_path):
    host = Host(monkeypatch, result=ibstat_ok("ibstat-connectx4-initializing.txt"))
    facts = host.run(sysfs_root=PROCFS_TREE, net_root=str(tmp_path), ibstat=True, timeout=0)
    assert host.calls[0][0] == [IBSTAT]
    assert facts["ibstat"][0]["ports"][0]["state"] == "INIT"


def test_negative_timeout_fails(monkeypatch):
    Host(monkeypatch)
    with patch_module_args({"timeout": -1}), pytest.raises(AnsibleFailJson) as exc:
        ib_facts.main()
    assert "timeout must be 0 or more" in exc.value.args[0]["msg"]


def test_check_mode_and_second_run_are_identical(monkeypatch, tmp_path):
    args = {"sysfs_root": PROCFS_TREE, "net_root": str(tmp_path), "ibstat": True}
    first = Host(monkeypatch, result=ibstat_ok("ibstat-connectx3-active.txt")).run(**args)
    host = Host(monkeypatch, result=ibstat_ok("ibstat-connectx3-active.txt"))
    checked = host.run(_ansible_check_mode=True, **args)
    assert checked == first
    assert host.check_modes == [True]  # read-only: ibstat runs in check mode too


# --- counter_interval: two reads of the error counters ---------------------------------------------


def copy_tree(tmp_path):
    import shutil

    tree = tmp_path / "infiniband"
    shutil.copytree(PROCFS_TREE, tree)
    return tree


class Clock:
    """time.sleep/time.monotonic for the module: sleeping advances the clock and runs ``between``
    (what happens on the host between the two reads)."""

    def __init__(self, monkeypatch, between=None):
        self.now = 1000.0
        self.slept = []
        self.between = between
        monkeypatch.setattr(host_facts.time, "sleep", self.sleep)
        monkeypatch.setattr(host_facts.time, "monotonic", lambda: self.now)

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds
        if self.between:
            self.between()


def test_one_read_by_default_reports_counters_without_deltas(monkeypatch, tmp_path):
    clock = Clock(monkeypatch)
    facts = Host(monkeypatch).run(sysfs_root=PROCFS_TREE, net_root=str(tmp_path))
    assert clock.slept == []
    assert facts["counter_interval_s"] is None
    port = facts["devices"][1]["ports"][0]
    assert port["counters"]["link_downed"] == 0 and port["counters"]["symbol_error"] == 0
    assert port["counter_deltas"] is None


def test_two_reads_report_the_increase_over_the_interval(monkeypatch, tmp_path):
    tree = copy_tree(tmp_path)
    counters = tree / "mlx4_0" / "ports" / "2" / "counters"

    def flap():  # CONSTRUCTED: mlx4_0:2 goes down and retrains once, and counts symbol errors
        (counters / "link_downed").write_text("1\n")
        (counters / "link_error_recovery").write_text("1\n")
        (counters / "symbol_error").write_text("25\n")

    clock = Clock(monkeypatch, flap)
    facts = Host(monkeypatch).run(sysfs_root=str(tree), net_root=str(tmp_path), counter_interval=5)
    assert clock.slept == [5]
    assert facts["counter_interval_s"] == 5.0
    steady, flapping = facts["devices"][1]["ports"]
    assert set(steady["counter_deltas"].values()) == {0}
    assert flapping["counters"]["link_downed"] == 1  # the second read's values
    assert flapping["counter_deltas"]["link_downed"] == 1
    assert flapping["counter_deltas"]["link_error_recovery"] == 1
    assert flapping["counter_deltas"]["symbol_error"] == 25
    assert flapping["counter_deltas"]["port_rcv_errors"] == 0


def test_no_device_means_no_wait(monkeypatch, tmp_path):
    clock = Clock(monkeypatch)
    facts = Host(monkeypatch, bins={}).run(
        sysfs_root=str(tmp_path / "infiniband"), net_root=str(tmp_path), counter_interval=5
    )
    assert clock.slept == [] and facts["counter_interval_s"] is None


@pytest.mark.parametrize("interval", [-1, 3601])
def test_counter_interval_out_of_range_fails(monkeypatch, tmp_path, interval):
    Host(monkeypatch)
    args = {"sysfs_root": PROCFS_TREE, "counter_interval": interval}
    with patch_module_args(args), pytest.raises(AnsibleFailJson) as exc:
        ib_facts.main()
    assert "counter_interval must be 0 to 3600 seconds" in exc.value.args[0]["msg"]
