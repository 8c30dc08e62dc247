"""GPU checks (plugin_utils/checks/gpu.py) against recorded nvidia-smi output.

Inputs and their provenance: ``checks_inputs.py``.
"""

import copy

from ansible_collections.gpufleet.cluster.plugins.module_utils.gpu_inventory import build_facts
from ansible_collections.gpufleet.cluster.plugins.module_utils.nvidia_smi import parse_nvidia_smi_xml
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core, gpu, gpu_platform
from checks_inputs import (
    SMI,
    a100,
    assert_result,
    driver_not_loaded,
    no_gpu,
    p100,
    t4,
)

# --- gpu_count --------------------------------------------------------------------------------


def test_gpu_count_no_gpu_needs_an_expectation():
    res = assert_result(gpu.gpu_count(no_gpu()), "gpu_count", core.FAIL)
    assert "set gpufleet_expected_gpus: 0" in res["summary"]
    assert_result(gpu.gpu_count(no_gpu(), expected=0), "gpu_count", core.PASS)


def test_gpu_count_matches_and_differs():
    res = assert_result(gpu.gpu_count(t4(), expected=1), "gpu_count", core.PASS)
    assert res["measured"] == 1 and res["expected"] == 1
    res = assert_result(gpu.gpu_count(t4(), expected=8), "gpu_count", core.FAIL)
    assert (
        res["action"] == core.REBOOT and "1 GPU(s) found" in res["summary"] and "8 expected" in res["summary"]
    )
    assert assert_result(gpu.gpu_count(t4(), expected=0), "gpu_count", core.FAIL)["action"] == core.MONITOR


def test_gpu_count_smi_sees_fewer_than_pci():
    # derived from tesla-t4.xml, edited: a second T4 added on the PCI side only (constructed pci dicts)
    pci = [
        {"pci_bus_id": "0000:00:1e.0", "driver": "nvidia"},
        {"pci_bus_id": "0000:00:1f.0", "driver": "nvidia"},
    ]
    host = build_facts(parse_nvidia_smi_xml((SMI / "tesla-t4.xml").read_text()), pci)
    res = assert_result(gpu.gpu_count(host), "gpu_count", core.FAIL)
    assert res["action"] == core.REBOOT and "1 of the 2" in res["summary"]


# --- driver_loaded ----------------------------------------------------------------------------


def test_driver_loaded_on_branch_and_pinned():
    res = assert_result(gpu.driver_loaded(a100(), branch="535"), "driver_loaded", core.PASS)
    assert "535.54.03" in res["summary"]
    assert_result(gpu.driver_loaded(a100(), branch="535", version="535.54.03-1"), "driver_loaded", core.PASS)


def test_driver_loaded_off_branch_or_version():
    res = assert_result(gpu.driver_loaded(t4(), branch="535"), "driver_loaded", core.FAIL)
    assert res["action"] == core.REPROVISION and "515.105.01" in res["summary"] and "535" in res["summary"]
    res = assert_result(gpu.driver_loaded(a100(), version="535.261.03"), "driver_loaded", core.FAIL)
    assert "535.261.03 pinned" in res["summary"]


def test_driver_not_loaded_quotes_the_error():
    res = assert_result(gpu.driver_loaded(driver_not_loaded()), "driver_loaded", core.FAIL)
    assert res["action"] == core.REPROVISION
    assert "couldn't communicate with the NVIDIA driver" in res["summary"]
    assert "GPU 0 (0000:00:1e.0)" in res["summary"]


def test_driver_loaded_mixed_vbios_warns():
    host = a100()
    # derived from a100-sxm4-80gb-mig.xml, edited: a second GPU copied with another VBIOS version
    second = copy.deepcopy(host["gpus"][0])
    second.update(index=1, pci_bus_id="0000:02:00.0", vbios_version="92.00.45.00.03")
    host["gpus"].append(second)
    host["gpu_count"] = 2
    res = assert_result(gpu.driver_loaded(host, branch="535"), "driver_loaded", core.WARN)
    assert "92.00.36.00.02" in res["summary"] and "92.00.45.00.03" in res["summary"]


# --- persistence_mode -------------------------------------------------------------------------


def test_persistence_disabled_in_recordings_is_policy_not_health():
    # issue 13, class 1: a setting the site wants, not a fault (was FAIL REPROVISION)
    res = assert_result(gpu.persistence_mode(t4()), "persistence_mode", core.POLICY_STATUS)
    assert res["action"] == core.RECONFIGURE and "GPU 0 (0000:00:1e.0)" in res["summary"]
    res = gpu.persistence_mode(t4(), policy={"persistence_required": False})
    assert res["status"] == core.PASS and "does not require" in res["summary"]


def test_persistence_enabled_passes_and_unknown_warns():
    host = t4()
    host["gpus"][0]["persistence_mode"] = True  # derived from tesla-t4.xml, edited: persistence on
    assert_result(gpu.persistence_mode(host), "persistence_mode", core.PASS)
    host["gpus"][0]["persistence_mode"] = None  # derived, edited: not reported
    assert_result(gpu.persistence_mode(host), "persistence_mode", core.WARN)
    assert_result(gpu.persistence_mode(driver_not_loaded()), "persistence_mode", core.SKIP)


# --- throttle ---------------------------------------------------------------------------------


def test_throttle_recorded_idle_is_benign():
    res = assert_result(gpu_platform.throttle(p100()), "throttle", core.PASS)
    assert "gpu_idle" in res["summary"]
    assert_result(gpu_platform.throttle(a100()), "throttle", core.PASS)


def test_throttle_hardware_and_power_cap():
    host = a100()
    first = host["gpus"][0]
    first["clocks_event_reasons"]["hw_power_brake_slowdown"] = True  # derived from A100 report, edited
    first["clocks_event_reasons_active"] = ["hw_power_brake_slowdown"]
    res = assert_result(gpu_platform.throttle(host), "throttle", core.FAIL)
    assert res["action"] == core.ISOLATE and "hw_power_brake_slowdown" in res["summary"]
    first["clocks_event_reasons_active"] = ["sw_power_cap"]  # edited: power cap only
    assert assert_result(gpu_platform.throttle(host), "throttle", core.WARN)["action"] == core.MONITOR


# --- pcie_link -------------------------------------------------------------------------------


def test_pcie_link_full_width_passes_and_recorded_t4_x8_fails():
    assert_result(gpu_platform.pcie_link(p100()), "pcie_link", core.PASS)
    # issue 13, class 2: the recorded T4 is x8 of x16 in a pass-through VM: a platform trait, a
    # policy result (was FAIL REBOOT); the same width on bare metal still fails REBOOT.
    res = assert_result(gpu_platform.pcie_link(t4()), "pcie_link", core.POLICY_STATUS)
    assert res["action"] == core.RECONFIGURE and "GPU 0 (0000:00:1e.0) x8 of x16" in res["summary"]
    assert gpu_platform.pcie_link(t4(), policy={"pcie_passthrough_narrow_ok": True})["status"] == core.PASS
    host = t4()
    host["gpus"][0]["virtualization_mode"] = None  # derived from tesla-t4.xml, edited: bare metal
    res = assert_result(gpu_platform.pcie_link(host), "pcie_link", core.FAIL)
    assert res["action"] == core.REBOOT and "GPU 0 (0000:00:1e.0) x8 of x16" in res["summary"]
    assert gpu_platform.pcie_link(host, policy={"pcie_min_width": 8})["status"] == core.PASS


def test_pcie_link_low_generation_only_warns():
    host = p100()
    host["gpus"][0]["pcie"]["gen_current"] = 1  # derived from P100, edited: idle downshift
    res = assert_result(gpu_platform.pcie_link(host), "pcie_link", core.WARN)
    assert "re-check under load" in res["summary"]


# --- gpu_processes ---------------------------------------------------------------------------


def test_gpu_processes():
    assert_result(gpu.gpu_processes(t4(), ""), "gpu_processes", core.PASS)
    # constructed: the compute process tesla-t4.xml records (pid 5762, python, 1005 MiB) in the csv
    # form --query-compute-apps prints; no recording of that command was found
    res = assert_result(gpu.gpu_processes(t4(), "5762, python, 1005 MiB\n"), "gpu_processes", core.WARN)
    assert res["details"] == [{"pid": 5762, "process_name": "python", "used_memory": "1005 MiB"}]
    assert_result(gpu.gpu_processes(t4(), None), "gpu_processes", core.WARN)
    assert_result(gpu.gpu_processes(driver_not_loaded(), ""), "gpu_processes", core.SKIP)


def test_power_cap_judged_with_the_power_readings():
    # issue 13, class 2: the software power cap on a GPU busy at its limit is the cap at work
    host = a100()
    first = host["gpus"][0]
    first["clocks_event_reasons_active"] = ["sw_power_cap"]  # derived from the A100 report, edited
    first["power"] = {"draw_w": 495.0, "limit_w": 500.0}  # edited: busy at its limit
    res = assert_result(gpu_platform.throttle(host), "throttle", core.PASS)
    assert "the cap at work" in res["summary"]
    first["power"] = {"draw_w": 290.0, "limit_w": 300.0}  # edited: limit lowered below the default
    first["power_limits"] = {"default_w": 500.0, "max_w": 500.0}
    res = assert_result(gpu_platform.throttle(host), "throttle", core.POLICY_STATUS)
    assert res["action"] == core.RECONFIGURE and "300 W of 500 W default" in res["summary"]
    first["power"] = {"draw_w": 100.0, "limit_w": 500.0}  # edited: capped far below its limit
    assert assert_result(gpu_platform.throttle(host), "throttle", core.WARN)["action"] == core.MONITOR
