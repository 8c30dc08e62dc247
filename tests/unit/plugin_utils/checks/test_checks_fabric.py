"""Fabric checks (plugin_utils/checks/fabric.py) against recorded nvlink/ibstat output.

Inputs and their provenance: ``checks_inputs.py``.
"""

import copy

from ansible_collections.gpufleet.cluster.plugins.module_utils.infiniband import read_sysfs, summarize
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core, fabric
from checks_inputs import (
    HEALTH,
    IB,
    a100,
    assert_result,
    ib_active,
    ib_initializing,
    ib_none,
    t4,
)

# --- nvlink ----------------------------------------------------------------------------------


def two_a100():
    host = a100()
    # derived from a100-sxm4-80gb-mig.xml, edited: indexes 0 and 1 to match the nvlink recording
    host["gpus"][0]["index"] = 0
    second = copy.deepcopy(host["gpus"][0])
    second.update(index=1, pci_bus_id="0000:02:00.0")
    host["gpus"].append(second)
    host["gpu_count"] = 2
    return host


def test_parse_nvlink_status_recorded():
    parsed = fabric.parse_nvlink_status((HEALTH / "nvlink-s-a100-sxm4-80gb.txt").read_text())
    assert sorted(parsed) == [0, 1]
    assert parsed[0]["name"] == "NVIDIA A100-SXM4-80GB"
    assert parsed[0]["links"] == dict.fromkeys(range(12), 25.0)
    v100 = fabric.parse_nvlink_status((HEALTH / "nvlink-s-v100-sxm2-inactive.txt").read_text())
    assert v100 == {
        3: {
            "name": "Tesla V100-SXM2-32GB",
            "links": {0: 25.781, 1: 25.781, 2: 25.781, 3: None, 4: 25.781, 5: None},
        }
    }
    assert fabric.parse_nvlink_status("") == {}


def test_nvlink_a100_all_twelve_pass():
    res = assert_result(
        fabric.nvlink(two_a100(), (HEALTH / "nvlink-s-a100-sxm4-80gb.txt").read_text()), "nvlink", core.PASS
    )
    assert res["measured"] == 12 and res["expected"] == 12


def test_nvlink_inactive_link_fails():
    # derived from nvlink-s-a100-sxm4-80gb.txt, edited: GPU 1 link 3 inactive (as in azhpc-diagnostics#73)
    text = (HEALTH / "nvlink-s-a100-sxm4-80gb.txt").read_text().split("\n")
    text[13 + 1 + 3] = "\t Link 3: <inactive>"
    res = assert_result(fabric.nvlink(two_a100(), "\n".join(text)), "nvlink", core.FAIL)
    assert (
        res["action"] == core.REBOOT
        and "GPU 1 (0000:02:00.0) 11 of 12 active (inactive: 3)" in res["summary"]
    )


def test_nvlink_unknown_sku_skips_and_h100_nvl_expects_twelve():
    assert (
        "no NVLink link-count baseline"
        in assert_result(
            fabric.nvlink(t4(), (HEALTH / "nvlink-s-v100-sxm2-inactive.txt").read_text()), "nvlink", core.SKIP
        )["summary"]
    )
    host = two_a100()
    for gpu in host["gpus"]:
        gpu["name"] = "NVIDIA H100 NVL"  # constructed: no H100 NVL recording; the A100 one has 12 links
    res = assert_result(
        fabric.nvlink(host, (HEALTH / "nvlink-s-a100-sxm4-80gb.txt").read_text()), "nvlink", core.PASS
    )
    assert res["expected"] == 12
    assert assert_result(fabric.nvlink(host, None), "nvlink", core.WARN)["action"] == core.MONITOR


# --- fabric_manager --------------------------------------------------------------------------


def with_nvswitch(host):
    # derived from the recorded report, edited: NVSwitches on PCI (constructed pci dicts)
    switches = [
        {"pci_bus_id": f"0000:0{i}:00.0", "device_id": "0x22a3", "name": "NVSwitch"} for i in range(4)
    ]
    return {**host, "nvswitch_count": len(switches), "nvswitches": switches}


def test_fabric_manager():
    assert (
        "no NVSwitch"
        in assert_result(fabric.fabric_manager(a100(), {}), "fabric_manager", core.SKIP)["summary"]
    )
    host = with_nvswitch(a100())
    assert_result(
        fabric.fabric_manager(host, {"nvidia-fabricmanager": "active"}), "fabric_manager", core.PASS
    )
    assert fabric.fabric_manager(host, {"nvidia-fabricmanager": "failed"})["action"] == core.REBOOT
    assert fabric.fabric_manager(host, {})["action"] == core.REPROVISION


# --- peermem ---------------------------------------------------------------------------------

# /proc/modules lines (constructed: no recording with a GPU host here; the module names are those the
# driver packages build, Debian's renamed by its dkms.conf, see nvidia_driver.driver_plan).
PROC_MODULES_PEERMEM = (
    "nvidia_current_peermem 16384 0 - Live 0x0000000000000000\n"
    "nvidia_current 56823808 2 nvidia_current_peermem, Live 0x0000000000000000 (POE)\n"
    "ib_core 430080 8 nvidia_current_peermem, Live 0x0000000000000000\n"
)


def test_peermem():
    assert_result(fabric.peermem(a100(), ib_active(), PROC_MODULES_PEERMEM), "peermem", core.PASS)
    without = "\n".join(line for line in PROC_MODULES_PEERMEM.splitlines() if "peermem 16384" not in line)
    res = assert_result(fabric.peermem(a100(), ib_active(), without), "peermem", core.FAIL)
    assert res["action"] == core.REPROVISION and "mlx4_0:1" in res["summary"]
    assert_result(fabric.peermem(a100(), ib_initializing(), ""), "peermem", core.SKIP)
    assert_result(fabric.peermem(a100(), ib_none(), ""), "peermem", core.SKIP)


# --- ib_ports --------------------------------------------------------------------------------


def test_ib_ports_recorded():
    res = assert_result(
        fabric.ib_ports(ib_active(), expected_ports=1, expected_rate_gbps=40), "ib_ports", core.PASS
    )
    assert "mlx4_0:1" in res["summary"] and "40 Gb/s" in res["summary"]
    res = assert_result(fabric.ib_ports(ib_initializing(), expected_ports=1), "ib_ports", core.FAIL)
    assert res["action"] == core.ISOLATE and "mlx5_0:1 INIT" in res["summary"]
    assert_result(fabric.ib_ports(ib_initializing()), "ib_ports", core.WARN)
    res = assert_result(fabric.ib_ports(ib_active(), expected_rate_gbps=100), "ib_ports", core.FAIL)
    assert "below 100 Gb/s" in res["summary"]


def test_ib_ports_sysfs_tree_and_absent():
    facts = {"present": True, **summarize(read_sysfs(str(IB / "sysfs-procfs"), "/nonexistent"))}
    assert_result(fabric.ib_ports(facts, expected_ports=4), "ib_ports", core.PASS)
    assert_result(fabric.ib_ports(ib_none()), "ib_ports", core.SKIP)
    assert_result(fabric.ib_ports(None), "ib_ports", core.SKIP)
    assert fabric.ib_ports(ib_none(), expected_ports=2)["status"] == core.FAIL
