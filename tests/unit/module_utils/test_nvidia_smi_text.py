"""The plain-text nvidia-smi -q report, read through the XML reader (nvidia_smi.parse_nvidia_smi_text).

Recorded inputs: tests/fixtures/diagnose (PROVENANCE.md there). The inline report below is
constructed (marked), for the layout of current drivers no public full recording shows.
"""

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils.nvidia_smi import (
    NvidiaSmiParseError,
    parse_nvidia_smi_text,
)
from conftest import FIXTURES

DIAG = FIXTURES / "diagnose"


def test_recorded_a100_excerpt():
    report = parse_nvidia_smi_text((DIAG / "a100-row-remap-pending" / "nvidia-smi-q.txt").read_text())
    assert (report["driver_version"], report["cuda_version"], report["attached_gpus"]) == (
        "510.73.08",
        "11.6",
        8,
    )
    (gpu,) = report["gpus"]
    assert (gpu["name"], gpu["pci_bus_id"]) == ("NVIDIA A100-SXM4-80GB", "0000:10:1c.0")
    assert gpu["ecc_errors"]["volatile"] == {"correctable": 177, "uncorrectable": 0}
    assert gpu["ecc_split"]["aggregate"]["dram_correctable"] == 177
    assert gpu["remapped_rows"] == {"correctable": 1, "uncorrectable": 0, "pending": True, "failure": False}
    assert gpu["retired_pages"] is None  # all N/A


def test_constructed_current_layout_fields():  # constructed, see PROVENANCE.md
    text = (DIAG / "recovery-reset-fabric-constructed" / "nvidia-smi-q.txt").read_text()
    (gpu,) = parse_nvidia_smi_text(text)["gpus"]
    assert gpu["persistence_mode"] is True
    assert gpu["gpu_recovery_action"] == "Reset"
    assert gpu["fabric"] == {"state": "In Progress", "status": None}
    assert gpu["pcie"] == {"gen_current": 5, "gen_max": 5, "width_current": 16, "width_max": 16}
    assert gpu["device_id"] == "0x2330"
    # HW Thermal Slowdown is printed under HW Slowdown: a sibling in the XML, so a reason here too
    assert gpu["clocks_event_reasons"]["hw_thermal_slowdown"] is False
    assert gpu["clocks_event_reasons_active"] == ["gpu_idle"]
    assert gpu["ecc_mode"] == {"current": True, "pending": True}
    assert gpu["ecc_split"]["aggregate"]["sram_uncorrectable"] == 2  # parity + SEC-DED
    assert gpu["ecc_split"]["sram_threshold_exceeded"] is False


@pytest.mark.parametrize("text", ["", "No devices were found", "just: a line"])
def test_not_a_report(text):
    with pytest.raises(NvidiaSmiParseError):
        parse_nvidia_smi_text(text)
