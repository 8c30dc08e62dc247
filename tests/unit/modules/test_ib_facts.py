"""gpufleet.cluster.ib_facts driven with recorded sysfs trees and ibstat reports.

Same pattern as test_gpu_facts.py: exit_json/fail_json raise, run_command/get_bin_path are
replaced, module arguments come from ansible-core 2.19's ``patch_module_args``.
"""

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
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
        monkeypatch.setattr(ib_facts, "detect_container", lambda: container)

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
