"""Health checks (plugins/module_utils/health.py) against recorded output.

Inputs and where they come from (tests/fixtures/health/PROVENANCE.md for the files there):

- nvidia-smi -q -x reports: tests/fixtures/nvidia_smi (P100, T4, A100 MIG; recorded by other
  projects), parsed with nvidia_smi.parse_nvidia_smi_xml + gpu_inventory.build_facts.
- XID lines: the recorded kernel log lines of test_xid.py, imported from there.
- InfiniBand: tests/fixtures/infiniband (ibstat reports and sysfs trees).
- df -P -m, /proc/meminfo, docker info, Ansible network facts: recorded on the build machine.
- nvidia-smi nvlink -s: excerpts of recorded output quoted in NVIDIA/nccl-tests#228 and
  Azure/azhpc-diagnostics#73.

Bad variants derived from a recorded input say "derived from X, edited: ..." where they are made;
inputs with no recording at all say "constructed".
"""

import copy
import json
from datetime import datetime

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import health as H
from ansible_collections.gpufleet.cluster.plugins.module_utils import nccl_tuning
from ansible_collections.gpufleet.cluster.plugins.module_utils.gpu_inventory import build_facts
from ansible_collections.gpufleet.cluster.plugins.module_utils.infiniband import (
    parse_ibstat,
    read_sysfs,
    summarize,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.nvidia_smi import parse_nvidia_smi_xml
from conftest import FIXTURES
from test_cuda_toolkit import NVCC_118
from test_xid import GPUD_13, GPUD_119, HYPERION, MLENG_63, OGKM_79

SMI = FIXTURES / "nvidia_smi"
IB = FIXTURES / "infiniband"
HEALTH = FIXTURES / "health"


def smi(name, **kwargs):
    return build_facts(parse_nvidia_smi_xml((SMI / name).read_text()), **kwargs)


def p100():
    return smi("tesla-p100-pcie-16gb.xml")


def t4():
    return smi("tesla-t4.xml")


def a100():
    return smi("a100-sxm4-80gb-mig.xml")


def no_gpu(in_container=False):
    return build_facts(in_container=in_container)


def driver_not_loaded():
    """A host whose GPU is on PCI but nvidia-smi fails (driver-not-loaded.txt is the recorded text)."""
    pci_gpu = {
        "kind": "gpu",
        "pci_bus_id": "0000:00:1e.0",
        "device_id": "0x1eb8",  # the T4 of tesla-t4.xml
        "name": "Tesla T4",
        "architecture": "Turing",
        "driver": None,
        "numa_node": None,
        "pcie": None,
    }
    return build_facts(None, [pci_gpu], driver_error=(SMI / "driver-not-loaded.txt").read_text())


def ib_active():
    return {"present": True, **summarize(parse_ibstat((IB / "ibstat-connectx3-active.txt").read_text()))}


def ib_initializing():
    return {
        "present": True,
        **summarize(parse_ibstat((IB / "ibstat-connectx4-initializing.txt").read_text())),
    }


def ib_none():
    return {"present": False, **summarize([])}


def interfaces():
    return nccl_tuning.interfaces_from_facts(json.loads((HEALTH / "ansible-network-facts.json").read_text()))


def assert_result(res, check, status):
    assert res["check"] == check
    assert res["status"] == status, res["summary"]
    assert res["status"] in H.STATUSES
    assert "\n" not in res["summary"]
    if status in (H.PASS, H.SKIP):
        assert res["action"] is None
    else:
        assert res["action"] in H.ACTIONS
    return res


# --- every GPU check on a GPU-less host -----------------------------------------------------------

GPU_CHECKS = {
    "driver_loaded": lambda g: H.driver_loaded(g, branch="535"),
    "persistence_mode": H.persistence_mode,
    "ecc": H.ecc,
    "row_remap": H.row_remap,
    "retired_pages": H.retired_pages,
    "throttle": H.throttle,
    "pcie_link": H.pcie_link,
    "nvlink": lambda g: H.nvlink(g, (HEALTH / "nvlink-s-a100-sxm4-80gb.txt").read_text()),
    "fabric_manager": lambda g: H.fabric_manager(g, {"nvidia-fabricmanager": "active"}),
    "peermem": lambda g: H.peermem(g, ib_active(), ""),
    "gpu_processes": lambda g: H.gpu_processes(g, ""),
    "container_runtime": lambda g: H.container_runtime(
        g, (HEALTH / "docker-info-runc-only.json").read_text()
    ),
}


@pytest.mark.parametrize("name", sorted(GPU_CHECKS))
@pytest.mark.parametrize("in_container", [False, True])
def test_gpu_checks_skip_without_gpu(name, in_container):
    res = assert_result(GPU_CHECKS[name](no_gpu(in_container)), name, H.SKIP)
    assert res["summary"].startswith("no GPU present")
    assert ("(container: no GPU here)" in res["summary"]) is in_container


def test_no_gpu_host_never_passes_a_gpu_check():
    host = no_gpu(in_container=True)
    results = [fn(host) for fn in GPU_CHECKS.values()] + [H.gpu_count(host)]
    assert all(r["status"] != H.PASS for r in results)
    assert H.gpu_count(host)["status"] == H.FAIL  # no expectation set: a question, never a pass


def test_checks_table_lists_every_check_once():
    assert len(H.CHECKS) == 22
    for name, meta in H.CHECKS.items():
        assert callable(getattr(H, name)), name
        assert meta["tier"] in ("quick", "full", "burnin")
        assert meta["kind"] in ("gpu", "software", "fabric")
        assert meta["title"]


# --- 1. gpu_count --------------------------------------------------------------------------------


def test_gpu_count_no_gpu_needs_an_expectation():
    res = assert_result(H.gpu_count(no_gpu()), "gpu_count", H.FAIL)
    assert "set gpufleet_expected_gpus: 0" in res["summary"]
    assert_result(H.gpu_count(no_gpu(), expected=0), "gpu_count", H.PASS)


def test_gpu_count_matches_and_differs():
    res = assert_result(H.gpu_count(t4(), expected=1), "gpu_count", H.PASS)
    assert res["measured"] == 1 and res["expected"] == 1
    res = assert_result(H.gpu_count(t4(), expected=8), "gpu_count", H.FAIL)
    assert res["action"] == H.REBOOT and "1 GPU(s) found" in res["summary"] and "8 expected" in res["summary"]
    assert assert_result(H.gpu_count(t4(), expected=0), "gpu_count", H.FAIL)["action"] == H.MONITOR


def test_gpu_count_smi_sees_fewer_than_pci():
    # derived from tesla-t4.xml, edited: a second T4 added on the PCI side only (constructed pci dicts)
    pci = [
        {"pci_bus_id": "0000:00:1e.0", "driver": "nvidia"},
        {"pci_bus_id": "0000:00:1f.0", "driver": "nvidia"},
    ]
    host = build_facts(parse_nvidia_smi_xml((SMI / "tesla-t4.xml").read_text()), pci)
    res = assert_result(H.gpu_count(host), "gpu_count", H.FAIL)
    assert res["action"] == H.REBOOT and "1 of the 2" in res["summary"]


# --- 2. driver_loaded ----------------------------------------------------------------------------


def test_driver_loaded_on_branch_and_pinned():
    res = assert_result(H.driver_loaded(a100(), branch="535"), "driver_loaded", H.PASS)
    assert "535.54.03" in res["summary"]
    assert_result(H.driver_loaded(a100(), branch="535", version="535.54.03-1"), "driver_loaded", H.PASS)


def test_driver_loaded_off_branch_or_version():
    res = assert_result(H.driver_loaded(t4(), branch="535"), "driver_loaded", H.FAIL)
    assert res["action"] == H.REPROVISION and "515.105.01" in res["summary"] and "535" in res["summary"]
    res = assert_result(H.driver_loaded(a100(), version="535.261.03"), "driver_loaded", H.FAIL)
    assert "535.261.03 pinned" in res["summary"]


def test_driver_not_loaded_quotes_the_error():
    res = assert_result(H.driver_loaded(driver_not_loaded()), "driver_loaded", H.FAIL)
    assert res["action"] == H.REPROVISION
    assert "couldn't communicate with the NVIDIA driver" in res["summary"]
    assert "GPU 0 (0000:00:1e.0)" in res["summary"]


def test_driver_loaded_mixed_vbios_warns():
    host = a100()
    # derived from a100-sxm4-80gb-mig.xml, edited: a second GPU copied with another VBIOS version
    second = copy.deepcopy(host["gpus"][0])
    second.update(index=1, pci_bus_id="0000:02:00.0", vbios_version="92.00.45.00.03")
    host["gpus"].append(second)
    host["gpu_count"] = 2
    res = assert_result(H.driver_loaded(host, branch="535"), "driver_loaded", H.WARN)
    assert "92.00.36.00.02" in res["summary"] and "92.00.45.00.03" in res["summary"]


# --- 3. driver_package ---------------------------------------------------------------------------

# The Debian 12 lab install (facts.md "This machine kind": nvidia-driver 535.261.03, the package
# version as bookworm ships it); the fact keys are those activate.yml records.
DEBIAN_FACT = {
    "source": "debian",
    "flavor": "proprietary",
    "branch": "535",
    "package_version": "535.261.03-1~deb12u1",
    "dkms_module": "nvidia-current",
    "kernels_built": ["6.1.0-27-amd64"],
    "in_container": True,
    "activation": "none",
}
DEBIAN_PACKAGES = {
    "nvidia-kernel-dkms": "535.261.03-1~deb12u1",
    "nvidia-smi": "535.261.03-1~deb12u1",
    "libcuda1": "535.261.03-1~deb12u1",
    "nvidia-modprobe": "535.161.07-1~deb12u1",
    "dkms": "3.0.10-8+deb12u1",
}


def test_driver_package_as_recorded():
    res = assert_result(
        H.driver_package(DEBIAN_FACT, DEBIAN_PACKAGES, branch="535"), "driver_package", H.PASS
    )
    assert "nvidia-kernel-dkms 535.261.03-1~deb12u1" in res["summary"]


def test_driver_package_role_not_run_or_drifted():
    res = assert_result(H.driver_package(None, DEBIAN_PACKAGES), "driver_package", H.FAIL)
    assert res["action"] == H.REPROVISION and "has not run" in res["summary"]
    # derived from DEBIAN_PACKAGES, edited: upgraded outside gpufleet
    upgraded = {k: ("550.163.01-2" if v.startswith("535.261") else v) for k, v in DEBIAN_PACKAGES.items()}
    res = assert_result(H.driver_package(DEBIAN_FACT, upgraded), "driver_package", H.FAIL)
    assert "535.261.03-1~deb12u1" in res["summary"] and "550.163.01-2" in res["summary"]
    res = assert_result(H.driver_package(DEBIAN_FACT, {"dkms": "3.0.10-8"}), "driver_package", H.FAIL)
    assert "no NVIDIA driver package" in res["summary"]
    res = assert_result(
        H.driver_package(DEBIAN_FACT, DEBIAN_PACKAGES, version="535.183.01"), "driver_package", H.FAIL
    )
    assert "535.183.01 pinned" in res["summary"]


# --- 4. persistence_mode -------------------------------------------------------------------------


def test_persistence_disabled_in_recordings_fails():
    res = assert_result(H.persistence_mode(t4()), "persistence_mode", H.FAIL)
    assert res["action"] == H.REPROVISION and "GPU 0 (0000:00:1e.0)" in res["summary"]


def test_persistence_enabled_passes_and_unknown_warns():
    host = t4()
    host["gpus"][0]["persistence_mode"] = True  # derived from tesla-t4.xml, edited: persistence on
    assert_result(H.persistence_mode(host), "persistence_mode", H.PASS)
    host["gpus"][0]["persistence_mode"] = None  # derived, edited: not reported
    assert_result(H.persistence_mode(host), "persistence_mode", H.WARN)
    assert_result(H.persistence_mode(driver_not_loaded()), "persistence_mode", H.SKIP)


# --- 5. ecc --------------------------------------------------------------------------------------


def test_ecc_enabled_passes_with_aggregate_in_details():
    res = assert_result(H.ecc(p100()), "ecc", H.PASS)
    assert res["details"][0]["aggregate"]["correctable"] == 3  # recorded aggregate single-bit total
    assert_result(H.ecc(t4()), "ecc", H.PASS)


def test_ecc_volatile_uncorrectable_fails_reset():
    host = p100()
    host["gpus"][0]["ecc_errors"]["volatile"]["uncorrectable"] = 2  # derived from P100, edited: 2 DBE
    res = assert_result(H.ecc(host), "ecc", H.FAIL)
    assert res["action"] == H.RESET_GPU and "GPU 0 (0000:00:04.0) 2" in res["summary"]


def test_ecc_disabled_pending_and_unsupported():
    host = t4()
    host["gpus"][0]["ecc_mode"] = {"current": False, "pending": False}  # derived from T4, edited
    assert assert_result(H.ecc(host), "ecc", H.FAIL)["action"] == H.REBOOT
    host["gpus"][0]["ecc_mode"] = {"current": False, "pending": True}  # derived, edited: change pending
    # current disabled still fails first
    assert_result(H.ecc(host), "ecc", H.FAIL)
    host["gpus"][0]["ecc_mode"] = {"current": True, "pending": False}  # derived, edited: disable pending
    assert assert_result(H.ecc(host), "ecc", H.WARN)["action"] == H.REBOOT
    host["gpus"][0]["ecc_mode"] = {"current": None, "pending": None}  # derived, edited: not supported
    assert "not supported" in assert_result(H.ecc(host), "ecc", H.SKIP)["summary"]


# --- 6. row_remap --------------------------------------------------------------------------------


def test_row_remap_absent_skips_with_reason():
    assert "pre-Ampere" in assert_result(H.row_remap(p100()), "row_remap", H.SKIP)["summary"]
    assert_result(H.row_remap(a100()), "row_remap", H.SKIP)  # recorded <remapped_rows>N/A</remapped_rows>


def test_row_remap_good_pending_failure():
    host = a100()
    rows = {"correctable": 0, "uncorrectable": 0, "pending": False, "failure": False}
    host["gpus"][0]["remapped_rows"] = dict(rows)  # derived from the A100 report, edited: rows reported
    assert_result(H.row_remap(host), "row_remap", H.PASS)
    host["gpus"][0]["remapped_rows"] = {**rows, "uncorrectable": 1, "pending": True}  # edited: pending
    assert assert_result(H.row_remap(host), "row_remap", H.FAIL)["action"] == H.RESET_GPU
    host["gpus"][0]["remapped_rows"] = {**rows, "failure": True}  # edited: failure flag
    assert assert_result(H.row_remap(host), "row_remap", H.FAIL)["action"] == H.ISOLATE
    host["gpus"][0]["remapped_rows"] = {**rows, "uncorrectable": 513}  # edited: past the RMA limit
    assert assert_result(H.row_remap(host), "row_remap", H.FAIL)["action"] == H.ISOLATE


# --- 7. retired_pages ----------------------------------------------------------------------------


def test_retired_pages_recorded_zero_passes_and_ampere_skips():
    res = assert_result(H.retired_pages(p100()), "retired_pages", H.PASS)
    assert res["measured"] == 0 and res["expected"] == H.RETIRED_PAGES_LIMIT
    assert "row_remap" in assert_result(H.retired_pages(a100()), "retired_pages", H.SKIP)["summary"]


def test_retired_pages_pending_and_full():
    host = p100()
    host["gpus"][0]["retired_pages"] = {"single_bit": 2, "double_bit": 1, "pending": True}  # derived, edited
    assert assert_result(H.retired_pages(host), "retired_pages", H.FAIL)["action"] == H.RESET_GPU
    host["gpus"][0]["retired_pages"] = {"single_bit": 50, "double_bit": 13, "pending": False}  # edited: 63
    res = assert_result(H.retired_pages(host), "retired_pages", H.FAIL)
    assert res["action"] == H.ISOLATE and res["measured"] == 63
    host["gpus"][0]["retired_pages"] = {"single_bit": 0, "double_bit": 16, "pending": False}  # edited
    assert_result(H.retired_pages(host), "retired_pages", H.WARN)


# --- 8. xid --------------------------------------------------------------------------------------


def test_xid_clean_log_passes():
    res = assert_result(
        H.xid("kernel: usb 1-1: new high-speed USB device\n", since=0, window_hours=24), "xid", H.PASS
    )
    assert res["summary"] == "no XID in the last 24 h"
    assert_result(H.xid(None), "xid", H.SKIP)


def test_xid_hardware_fails_with_worst_action():
    res = assert_result(H.xid(GPUD_119 + OGKM_79 + "\n" + MLENG_63), "xid", H.FAIL)
    assert res["action"] == H.ISOLATE  # 79 fell off the bus
    by_pci = {d["pci"]: d for d in res["details"]}
    assert by_pci["0000:9b:00"]["xids"][0] == {**by_pci["0000:9b:00"]["xids"][0], "xid": 119, "count": 3}
    assert "XID 119 x3" in res["summary"]


def test_xid_application_only_warns():
    res = assert_result(H.xid(GPUD_13), "xid", H.WARN)
    assert res["action"] == H.MONITOR
    # HYPERION: XID 69 (hardware) and 31 (application) on one GPU: hardware wins
    assert assert_result(H.xid(HYPERION), "xid", H.FAIL)["action"] == H.REBOOT


def test_xid_since_window():
    since = datetime(2025, 2, 24)  # the GPUD_119 events are on Feb 23 2025 (dmesg --ctime, naive)
    assert_result(H.xid(GPUD_119, since=since), "xid", H.PASS)


# --- 9. throttle ---------------------------------------------------------------------------------


def test_throttle_recorded_idle_is_benign():
    res = assert_result(H.throttle(p100()), "throttle", H.PASS)
    assert "gpu_idle" in res["summary"]
    assert_result(H.throttle(a100()), "throttle", H.PASS)


def test_throttle_hardware_and_power_cap():
    host = a100()
    gpu = host["gpus"][0]
    gpu["clocks_event_reasons"]["hw_power_brake_slowdown"] = True  # derived from A100 report, edited
    gpu["clocks_event_reasons_active"] = ["hw_power_brake_slowdown"]
    res = assert_result(H.throttle(host), "throttle", H.FAIL)
    assert res["action"] == H.ISOLATE and "hw_power_brake_slowdown" in res["summary"]
    gpu["clocks_event_reasons_active"] = ["sw_power_cap"]  # edited: power cap only
    assert assert_result(H.throttle(host), "throttle", H.WARN)["action"] == H.MONITOR


# --- 10. pcie_link -------------------------------------------------------------------------------


def test_pcie_link_full_width_passes_and_recorded_t4_x8_fails():
    assert_result(H.pcie_link(p100()), "pcie_link", H.PASS)
    res = assert_result(H.pcie_link(t4()), "pcie_link", H.FAIL)  # recorded: x8 of x16
    assert res["action"] == H.REBOOT and "GPU 0 (0000:00:1e.0) x8 of x16" in res["summary"]


def test_pcie_link_low_generation_only_warns():
    host = p100()
    host["gpus"][0]["pcie"]["gen_current"] = 1  # derived from P100, edited: idle downshift
    res = assert_result(H.pcie_link(host), "pcie_link", H.WARN)
    assert "re-check under load" in res["summary"]


# --- 11. nvlink ----------------------------------------------------------------------------------


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
    parsed = H.parse_nvlink_status((HEALTH / "nvlink-s-a100-sxm4-80gb.txt").read_text())
    assert sorted(parsed) == [0, 1]
    assert parsed[0]["name"] == "NVIDIA A100-SXM4-80GB"
    assert parsed[0]["links"] == dict.fromkeys(range(12), 25.0)
    v100 = H.parse_nvlink_status((HEALTH / "nvlink-s-v100-sxm2-inactive.txt").read_text())
    assert v100 == {
        3: {
            "name": "Tesla V100-SXM2-32GB",
            "links": {0: 25.781, 1: 25.781, 2: 25.781, 3: None, 4: 25.781, 5: None},
        }
    }
    assert H.parse_nvlink_status("") == {}


def test_nvlink_a100_all_twelve_pass():
    res = assert_result(
        H.nvlink(two_a100(), (HEALTH / "nvlink-s-a100-sxm4-80gb.txt").read_text()), "nvlink", H.PASS
    )
    assert res["measured"] == 12 and res["expected"] == 12


def test_nvlink_inactive_link_fails():
    # derived from nvlink-s-a100-sxm4-80gb.txt, edited: GPU 1 link 3 inactive (as in azhpc-diagnostics#73)
    text = (HEALTH / "nvlink-s-a100-sxm4-80gb.txt").read_text().split("\n")
    text[13 + 1 + 3] = "\t Link 3: <inactive>"
    res = assert_result(H.nvlink(two_a100(), "\n".join(text)), "nvlink", H.FAIL)
    assert (
        res["action"] == H.REBOOT and "GPU 1 (0000:02:00.0) 11 of 12 active (inactive: 3)" in res["summary"]
    )


def test_nvlink_unknown_sku_skips_and_h100_nvl_expects_twelve():
    assert (
        "no NVLink link-count baseline"
        in assert_result(
            H.nvlink(t4(), (HEALTH / "nvlink-s-v100-sxm2-inactive.txt").read_text()), "nvlink", H.SKIP
        )["summary"]
    )
    host = two_a100()
    for gpu in host["gpus"]:
        gpu["name"] = "NVIDIA H100 NVL"  # constructed: no H100 NVL recording; the A100 one has 12 links
    res = assert_result(
        H.nvlink(host, (HEALTH / "nvlink-s-a100-sxm4-80gb.txt").read_text()), "nvlink", H.PASS
    )
    assert res["expected"] == 12
    assert assert_result(H.nvlink(host, None), "nvlink", H.WARN)["action"] == H.MONITOR


# --- 12. fabric_manager --------------------------------------------------------------------------


def with_nvswitch(host):
    # derived from the recorded report, edited: NVSwitches on PCI (constructed pci dicts)
    switches = [
        {"pci_bus_id": f"0000:0{i}:00.0", "device_id": "0x22a3", "name": "NVSwitch"} for i in range(4)
    ]
    return {**host, "nvswitch_count": len(switches), "nvswitches": switches}


def test_fabric_manager():
    assert "no NVSwitch" in assert_result(H.fabric_manager(a100(), {}), "fabric_manager", H.SKIP)["summary"]
    host = with_nvswitch(a100())
    assert_result(H.fabric_manager(host, {"nvidia-fabricmanager": "active"}), "fabric_manager", H.PASS)
    assert H.fabric_manager(host, {"nvidia-fabricmanager": "failed"})["action"] == H.REBOOT
    assert H.fabric_manager(host, {})["action"] == H.REPROVISION


# --- 13. peermem ---------------------------------------------------------------------------------

# /proc/modules lines (constructed: no recording with a GPU host here; the module names are those the
# driver packages build, Debian's renamed by its dkms.conf, see nvidia_driver.driver_plan).
PROC_MODULES_PEERMEM = (
    "nvidia_current_peermem 16384 0 - Live 0x0000000000000000\n"
    "nvidia_current 56823808 2 nvidia_current_peermem, Live 0x0000000000000000 (POE)\n"
    "ib_core 430080 8 nvidia_current_peermem, Live 0x0000000000000000\n"
)


def test_peermem():
    assert_result(H.peermem(a100(), ib_active(), PROC_MODULES_PEERMEM), "peermem", H.PASS)
    without = "\n".join(line for line in PROC_MODULES_PEERMEM.splitlines() if "peermem 16384" not in line)
    res = assert_result(H.peermem(a100(), ib_active(), without), "peermem", H.FAIL)
    assert res["action"] == H.REPROVISION and "mlx4_0:1" in res["summary"]
    assert_result(H.peermem(a100(), ib_initializing(), ""), "peermem", H.SKIP)
    assert_result(H.peermem(a100(), ib_none(), ""), "peermem", H.SKIP)


# --- 14. ib_ports --------------------------------------------------------------------------------


def test_ib_ports_recorded():
    res = assert_result(H.ib_ports(ib_active(), expected_ports=1, expected_rate_gbps=40), "ib_ports", H.PASS)
    assert "mlx4_0:1" in res["summary"] and "40 Gb/s" in res["summary"]
    res = assert_result(H.ib_ports(ib_initializing(), expected_ports=1), "ib_ports", H.FAIL)
    assert res["action"] == H.ISOLATE and "mlx5_0:1 INIT" in res["summary"]
    assert_result(H.ib_ports(ib_initializing()), "ib_ports", H.WARN)
    res = assert_result(H.ib_ports(ib_active(), expected_rate_gbps=100), "ib_ports", H.FAIL)
    assert "below 100 Gb/s" in res["summary"]


def test_ib_ports_sysfs_tree_and_absent():
    facts = {"present": True, **summarize(read_sysfs(str(IB / "sysfs-procfs"), "/nonexistent"))}
    assert_result(H.ib_ports(facts, expected_ports=4), "ib_ports", H.PASS)
    assert_result(H.ib_ports(ib_none()), "ib_ports", H.SKIP)
    assert_result(H.ib_ports(None), "ib_ports", H.SKIP)
    assert H.ib_ports(ib_none(), expected_ports=2)["status"] == H.FAIL


# --- 15. nccl_conf -------------------------------------------------------------------------------


def rendered_conf(ib):
    """What the nccl role writes for this machine's recorded interfaces and ``ib``."""
    plan = nccl_tuning.plan(ib, interfaces())
    return nccl_tuning.nccl_conf_text(plan["settings"]), nccl_tuning.nccl_values(plan["settings"])


def test_nccl_conf_as_the_role_writes_it():
    text, values = rendered_conf(ib_active())
    assert "NCCL_SOCKET_IFNAME==eth0" in text  # the default-route interface recorded here
    fact = {"version": "2.21.5", "conf": "/etc/nccl.conf", "settings": values}
    assert_result(H.nccl_conf(text, fact, ib_active(), interfaces()), "nccl_conf", H.PASS)
    text, values = rendered_conf(ib_none())
    assert_result(
        H.nccl_conf(text, {**fact, "settings": values}, ib_none(), interfaces()), "nccl_conf", H.PASS
    )


def test_nccl_conf_absent_missing_and_bad_entries():
    assert_result(H.nccl_conf(None, None, ib_none(), interfaces()), "nccl_conf", H.SKIP)
    res = assert_result(
        H.nccl_conf(None, {"conf": "/etc/nccl.conf"}, ib_none(), interfaces()), "nccl_conf", H.FAIL
    )
    assert res["action"] == H.REPROVISION
    # constructed hand edits: ifb0 is down and mlx5_3 does not exist on this host (recorded facts)
    bad = "# edited by hand\nNCCL_SOCKET_IFNAME==ifb0,eth9\nNCCL_IB_HCA==mlx5_3:1\n"
    res = assert_result(H.nccl_conf(bad, None, ib_active(), interfaces()), "nccl_conf", H.FAIL)
    problems = [d["problem"] for d in res["details"]]
    assert any("ifb0, which is down" in p for p in problems)
    assert any("eth9, which this host does not have" in p for p in problems)
    assert any("mlx5_3:1" in p for p in problems)


def test_nccl_conf_ib_disable_mismatches_warn():
    res = assert_result(
        H.nccl_conf("NCCL_IB_DISABLE=1\n", None, ib_active(), interfaces()), "nccl_conf", H.WARN
    )
    assert "TCP sockets" in res["summary"]
    res = assert_result(
        H.nccl_conf("NCCL_SOCKET_IFNAME=eth\n", None, ib_none(), interfaces()), "nccl_conf", H.WARN
    )
    assert "probes RDMA" in res["summary"]


# --- 16. container_runtime -----------------------------------------------------------------------


def test_container_runtime_recorded_runc_only():
    text = (HEALTH / "docker-info-runc-only.json").read_text()
    res = assert_result(H.container_runtime(t4(), text), "container_runtime", H.FAIL)
    assert res["action"] == H.REPROVISION and "runc" in res["summary"]
    res = assert_result(H.container_runtime(no_gpu(), text), "container_runtime", H.SKIP)
    assert "docker 20.10.24+dfsg1 answers" in res["summary"]
    assert_result(H.container_runtime(t4(), None), "container_runtime", H.SKIP)


def test_container_runtime_nvidia_and_daemon_down():
    info = json.loads((HEALTH / "docker-info-runc-only.json").read_text())
    # derived from docker-info-runc-only.json, edited: nvidia-container-toolkit's runtime registered
    info["Runtimes"]["nvidia"] = {"path": "nvidia-container-runtime"}
    assert_result(H.container_runtime(t4(), json.dumps(info)), "container_runtime", H.PASS)
    down = (HEALTH / "docker-info-no-daemon.json").read_text() + (
        HEALTH / "docker-info-no-daemon.stderr.txt"
    ).read_text()
    res = assert_result(H.container_runtime(t4(), down), "container_runtime", H.FAIL)
    assert "Cannot connect to the Docker daemon" in res["summary"]
    assert_result(H.container_runtime(no_gpu(), down), "container_runtime", H.FAIL)


# --- 17. services --------------------------------------------------------------------------------


def test_services():
    assert_result(H.services({}, []), "services", H.SKIP)
    assert_result(H.services({"nginx": "active"}, ["nginx"]), "services", H.PASS)
    res = assert_result(
        H.services({"nginx": "failed"}, ["nginx", "prometheus-node-exporter"]), "services", H.FAIL
    )
    assert "nginx failed" in res["summary"] and "prometheus-node-exporter not found" in res["summary"]


# --- 18. disk_headroom ---------------------------------------------------------------------------


def test_disk_headroom_recorded_passes():
    res = assert_result(H.disk_headroom((HEALTH / "df-P-m.txt").read_text()), "disk_headroom", H.PASS)
    assert {d["mount"] for d in res["details"]} == {"/", "/dev/shm"}


def test_disk_headroom_low_and_full():
    text = (HEALTH / "df-P-m.txt").read_text()
    # derived from df-P-m.txt, edited: / has 5000 MiB available, then 500 MiB
    low = text.replace("25837     78061", "253020     5000")
    assert assert_result(H.disk_headroom(low), "disk_headroom", H.WARN)["measured"] == 5000
    full = text.replace("25837     78061", "257520      500")
    assert assert_result(H.disk_headroom(full), "disk_headroom", H.FAIL)["action"] == H.MONITOR
    assert_result(H.disk_headroom(""), "disk_headroom", H.WARN)


# --- 19. memory_headroom -------------------------------------------------------------------------


def test_memory_headroom():
    text = (HEALTH / "proc-meminfo.txt").read_text()
    assert_result(H.memory_headroom(text), "memory_headroom", H.PASS)
    assert_result(H.memory_headroom(text, min_available_pct=99.9), "memory_headroom", H.WARN)
    assert_result(H.memory_headroom("garbage"), "memory_headroom", H.WARN)


# --- 20. gpu_processes ---------------------------------------------------------------------------


def test_gpu_processes():
    assert_result(H.gpu_processes(t4(), ""), "gpu_processes", H.PASS)
    # constructed: the compute process tesla-t4.xml records (pid 5762, python, 1005 MiB) in the csv
    # form --query-compute-apps prints; no recording of that command was found
    res = assert_result(H.gpu_processes(t4(), "5762, python, 1005 MiB\n"), "gpu_processes", H.WARN)
    assert res["details"] == [{"pid": 5762, "process_name": "python", "used_memory": "1005 MiB"}]
    assert_result(H.gpu_processes(t4(), None), "gpu_processes", H.WARN)
    assert_result(H.gpu_processes(driver_not_loaded(), ""), "gpu_processes", H.SKIP)


# --- 21. cuda_toolkit ----------------------------------------------------------------------------

CUDA_FACT = {
    "source": "debian",
    "versions": ["11.8"],
    "default": "11.8",
    "homes": {"11.8": "/usr/local/cuda-11.8"},
}


def test_cuda_toolkit():
    assert_result(H.cuda_toolkit(None, NVCC_118, "/usr/local/cuda-11.8"), "cuda_toolkit", H.SKIP)
    res = assert_result(H.cuda_toolkit(CUDA_FACT, NVCC_118, "/usr/local/cuda-11.8"), "cuda_toolkit", H.PASS)
    assert "11.8.89" in res["summary"]
    res = assert_result(H.cuda_toolkit(CUDA_FACT, NVCC_118, "/usr/local/cuda-12.4"), "cuda_toolkit", H.FAIL)
    assert res["action"] == H.REPROVISION
    fact_124 = {**CUDA_FACT, "default": "12.4", "homes": {"12.4": "/usr/local/cuda-12.4"}}
    res = assert_result(H.cuda_toolkit(fact_124, NVCC_118, "/usr/local/cuda-12.4"), "cuda_toolkit", H.FAIL)
    assert "nvcc reports CUDA 11.8.89, 12.4 expected" in res["summary"]
    assert_result(H.cuda_toolkit(CUDA_FACT, "", "/usr/local/cuda-11.8"), "cuda_toolkit", H.FAIL)


# --- 22. nccl_library ----------------------------------------------------------------------------

NCCL_FACT = {
    "source": "pip",
    "version": "2.21.5",
    "library": "/opt/gpufleet/nccl/lib/libnccl.so.2",
    "venv": "/opt/gpufleet/nccl",
}


def test_nccl_library():
    assert_result(H.nccl_library(None, 22105), "nccl_library", H.SKIP)
    assert_result(H.nccl_library(NCCL_FACT, 22105), "nccl_library", H.PASS)
    res = assert_result(H.nccl_library(NCCL_FACT, 21903), "nccl_library", H.FAIL)
    assert "NCCL 2.19.3" in res["summary"]
    res = assert_result(
        H.nccl_library(NCCL_FACT, None, error="OSError: libnccl.so.2: cannot open"), "nccl_library", H.FAIL
    )
    assert res["action"] == H.REPROVISION


def test_nccl_version_text():
    assert H.nccl_version_text(22105) == "2.21.5"
    assert H.nccl_version_text(2708) == "2.7.8"
    assert H.nccl_version_text("x") is None


def test_nccl_version_snippet_is_python(tmp_path):
    compile(H.NCCL_VERSION_SNIPPET, "snippet", "exec")
    assert "ncclGetVersion" in H.NCCL_VERSION_SNIPPET and "sys.argv[1]" in H.NCCL_VERSION_SNIPPET
