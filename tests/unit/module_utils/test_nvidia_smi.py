"""parse_nvidia_smi_xml against real recorded nvidia-smi reports (see tests/fixtures/nvidia_smi)."""

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils.nvidia_smi import (
    NvidiaSmiParseError,
    clean,
    device_id_from_smi,
    normalize_pci_bus_id,
    parse_nvidia_smi_xml,
    to_bool,
    to_int,
)
from conftest import FIXTURES

SMI = FIXTURES / "nvidia_smi"


def load(name):
    return parse_nvidia_smi_xml((SMI / name).read_text(encoding="utf-8"))


# --- Pascal, driver 510: older per-location ECC layout, clocks_throttle_reasons -----------------


def test_p100_top_level():
    report = load("tesla-p100-pcie-16gb.xml")
    assert report["driver_version"] == "510.47.03"
    assert report["cuda_version"] == "11.6"
    assert report["attached_gpus"] == 1
    assert report["gpu_count"] == 1


def test_p100_gpu_identity():
    gpu = load("tesla-p100-pcie-16gb.xml")["gpus"][0]
    assert gpu["index"] == 0
    assert gpu["name"] == "Tesla P100-PCIE-16GB"
    assert gpu["uuid"] == "GPU-d3da8716-eaab-75db-efc1-60e88e1cd55e"
    assert gpu["serial"] == "0324217145110"
    assert gpu["vbios_version"] == "86.00.52.00.02"
    assert gpu["architecture"] == "Pascal"
    assert gpu["pci_bus_id"] == "0000:00:04.0"
    assert gpu["device_id"] == "0x15f8"
    assert gpu["persistence_mode"] is False


def test_p100_older_ecc_layout_totals():
    gpu = load("tesla-p100-pcie-16gb.xml")["gpus"][0]
    assert gpu["ecc_mode"] == {"current": True, "pending": True}
    assert gpu["ecc_errors"] == {
        "volatile": {"correctable": 0, "uncorrectable": 0},
        "aggregate": {"correctable": 3, "uncorrectable": 0},
    }
    assert gpu["retired_pages"] == {"single_bit": 0, "double_bit": 0, "pending": False}
    assert gpu["remapped_rows"] is None


def test_p100_mig_not_available_is_none():
    gpu = load("tesla-p100-pcie-16gb.xml")["gpus"][0]
    assert gpu["mig_mode"] == {"current": None, "pending": None}
    assert gpu["mig_device_count"] == 0


def test_p100_throttle_reasons_old_tag_name():
    gpu = load("tesla-p100-pcie-16gb.xml")["gpus"][0]
    reasons = gpu["clocks_event_reasons"]
    assert reasons["gpu_idle"] is True
    assert reasons["hw_slowdown"] is False
    assert reasons["sw_thermal_slowdown"] is False
    assert len(reasons) == 9
    assert gpu["clocks_event_reasons_active"] == ["gpu_idle"]


def test_p100_pcie_memory_power_temperature():
    gpu = load("tesla-p100-pcie-16gb.xml")["gpus"][0]
    assert gpu["pcie"] == {"gen_current": 3, "gen_max": 3, "width_current": 16, "width_max": 16}
    assert gpu["memory"] == {"total_mib": 16384, "used_mib": 0}
    assert gpu["power"] == {"draw_w": 26.16, "limit_w": 250.0}
    assert gpu["temperature_c"] == 38
    assert gpu["memory_temperature_c"] is None


# --- Turing, driver 515: sram/dram ECC layout, x8 link of a x16 card -----------------------------


def test_t4():
    report = load("tesla-t4.xml")
    assert report["driver_version"] == "515.105.01"
    assert report["cuda_version"] == "11.7"
    gpu = report["gpus"][0]
    assert gpu["name"] == "Tesla T4"
    assert gpu["architecture"] == "Turing"
    assert gpu["uuid"] == "GPU-d37e67a5-91dd-3774-a5cb-99096249601a"
    assert gpu["pci_bus_id"] == "0000:00:1e.0"
    assert gpu["device_id"] == "0x1eb8"
    assert gpu["vbios_version"] == "90.04.84.00.06"
    assert gpu["pcie"] == {"gen_current": 3, "gen_max": 3, "width_current": 8, "width_max": 16}
    assert gpu["ecc_errors"]["aggregate"] == {"correctable": 0, "uncorrectable": 0}
    assert gpu["retired_pages"] == {"single_bit": 0, "double_bit": 0, "pending": False}
    assert gpu["clocks_event_reasons_active"] == []
    assert gpu["clocks_event_reasons"]["sw_power_cap"] is False
    assert gpu["memory"] == {"total_mib": 15360, "used_mib": 1032}
    assert gpu["power"] == {"draw_w": 26.78, "limit_w": 70.0}
    assert gpu["temperature_c"] == 40


# --- Ampere, driver 535: MIG enabled, clocks_event_reasons, gpu_power_readings ------------------


def test_a100_mig():
    report = load("a100-sxm4-80gb-mig.xml")
    assert report["driver_version"] == "535.54.03"
    assert report["cuda_version"] == "12.2"
    # The recorded report claims 4 attached GPUs but (as published upstream) holds one <gpu>.
    assert report["attached_gpus"] == 4
    assert report["gpu_count"] == 1
    gpu = report["gpus"][0]
    assert gpu["name"] == "NVIDIA A100-SXM4-80GB"
    assert gpu["architecture"] == "Ampere"
    assert gpu["uuid"] == "GPU-513536b6-7d19-9063-b049-1e69664bb298"
    assert gpu["serial"] == "1650522003820"
    assert gpu["minor_number"] == 1
    assert gpu["pci_bus_id"] == "0000:01:00.0"
    assert gpu["device_id"] == "0x20b2"
    assert gpu["mig_mode"] == {"current": True, "pending": True}
    assert gpu["mig_device_count"] == 4


def test_a100_newer_tags():
    gpu = load("a100-sxm4-80gb-mig.xml")["gpus"][0]
    assert set(gpu["clocks_event_reasons"]) >= {"gpu_idle", "hw_thermal_slowdown", "sw_power_cap"}
    assert not any(gpu["clocks_event_reasons"].values())
    assert gpu["power"] == {"draw_w": 67.03, "limit_w": 500.0}
    assert gpu["memory"] == {"total_mib": 81920, "used_mib": 50}
    assert gpu["temperature_c"] == 27
    assert gpu["memory_temperature_c"] == 44
    assert gpu["pcie"] == {"gen_current": 4, "gen_max": 4, "width_current": 16, "width_max": 16}
    # A100 retires pages by row remapping; this report prints both as N/A.
    assert gpu["retired_pages"] is None
    assert gpu["remapped_rows"] is None
    assert gpu["ecc_errors"]["volatile"] == {"correctable": 0, "uncorrectable": 0}


# --- Layouts no recorded fixture shows (constructed snippets, NOT recordings) -------------------

HOPPER_STYLE = """<?xml version="1.0" ?>
<nvidia_smi_log>
  <driver_version>550.54.15</driver_version>
  <cuda_version>12.4</cuda_version>
  <attached_gpus>1</attached_gpus>
  <gpu id="00000000:19:00.0">
    <product_name>NVIDIA H100 80GB HBM3</product_name>
    <uuid>GPU-00000000-0000-0000-0000-000000000000</uuid>
    <pci><pci_device_id>233010DE</pci_device_id></pci>
    <mig_mode><current_mig>Disabled</current_mig><pending_mig>Enabled</pending_mig></mig_mode>
    <ecc_errors>
      <volatile>
        <sram_correctable>2</sram_correctable>
        <sram_uncorrectable_parity>1</sram_uncorrectable_parity>
        <sram_uncorrectable_secded>0</sram_uncorrectable_secded>
        <dram_correctable>5</dram_correctable>
        <dram_uncorrectable>1</dram_uncorrectable>
      </volatile>
      <aggregate>
        <sram_correctable>N/A</sram_correctable>
        <dram_correctable>[N/A]</dram_correctable>
      </aggregate>
    </ecc_errors>
    <remapped_rows>
      <remapped_row_corr>1</remapped_row_corr>
      <remapped_row_unc>2</remapped_row_unc>
      <remapped_row_pending>Yes</remapped_row_pending>
      <remapped_row_failure>No</remapped_row_failure>
    </remapped_rows>
    <clocks_event_reasons>
      <clocks_event_reason_sw_power_cap>Active</clocks_event_reason_sw_power_cap>
      <clocks_event_reason_hw_thermal_slowdown>Active</clocks_event_reason_hw_thermal_slowdown>
      <clocks_event_reason_sync_boost>[Not Supported]</clocks_event_reason_sync_boost>
    </clocks_event_reasons>
    <gpu_power_readings>
      <power_draw>N/A</power_draw>
      <instant_power_draw>71.50 W</instant_power_draw>
      <current_power_limit>700.00 W</current_power_limit>
    </gpu_power_readings>
  </gpu>
</nvidia_smi_log>
"""


def test_newest_layout_sums_parity_and_secded_and_reads_remapped_rows():
    gpu = parse_nvidia_smi_xml(HOPPER_STYLE)["gpus"][0]
    # The pci_bus_id comes from the <gpu id=...> attribute when <pci_bus_id> is missing.
    assert gpu["pci_bus_id"] == "0000:19:00.0"
    assert gpu["device_id"] == "0x2330"
    assert gpu["architecture"] is None  # nvidia-smi did not say; gpu_inventory fills it in
    assert gpu["mig_mode"] == {"current": False, "pending": True}
    assert gpu["ecc_errors"]["volatile"] == {"correctable": 7, "uncorrectable": 2}
    assert gpu["ecc_errors"]["aggregate"] == {"correctable": None, "uncorrectable": None}
    assert gpu["remapped_rows"] == {"correctable": 1, "uncorrectable": 2, "pending": True, "failure": False}
    assert gpu["clocks_event_reasons"] == {
        "sw_power_cap": True,
        "hw_thermal_slowdown": True,
        "sync_boost": None,
    }
    assert gpu["clocks_event_reasons_active"] == ["hw_thermal_slowdown", "sw_power_cap"]
    assert gpu["power"] == {"draw_w": 71.5, "limit_w": 700.0}
    assert gpu["ecc_mode"] == {"current": None, "pending": None}


def test_no_gpu_elements_is_zero_gpus():
    report = parse_nvidia_smi_xml(
        "<nvidia_smi_log><driver_version>550.54.15</driver_version></nvidia_smi_log>"
    )
    assert report["gpu_count"] == 0
    assert report["gpus"] == []
    assert report["driver_version"] == "550.54.15"
    assert report["cuda_version"] is None


# --- errors ---------------------------------------------------------------------------------


def test_malformed_xml_raises_dedicated_error():
    text = (SMI / "tesla-t4.xml").read_text(encoding="utf-8")[:5000]  # cut mid-document
    with pytest.raises(NvidiaSmiParseError, match="not well-formed XML"):
        parse_nvidia_smi_xml(text)


def test_driver_failure_text_is_not_xml():
    text = (SMI / "driver-not-loaded.txt").read_text(encoding="utf-8")
    with pytest.raises(NvidiaSmiParseError):
        parse_nvidia_smi_xml(text)


def test_wrong_root_element():
    with pytest.raises(NvidiaSmiParseError, match=r"<gpu>, expected <nvidia_smi_log>"):
        parse_nvidia_smi_xml("<gpu><product_name>x</product_name></gpu>")


@pytest.mark.parametrize("text", ["", "   \n", b""])
def test_empty_output(text):
    with pytest.raises(NvidiaSmiParseError, match="empty"):
        parse_nvidia_smi_xml(text)


def test_parse_error_is_a_value_error():
    assert issubclass(NvidiaSmiParseError, ValueError)


# --- helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["N/A", "[N/A]", "Not Supported", "[Not Supported]", "  ", None])
def test_not_available_values_are_none(value):
    assert clean(value) is None
    assert to_int(value) is None
    assert to_bool(value) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00000000:17:00.0", "0000:17:00.0"),
        ("00000000:9B:00.0", "0000:9b:00.0"),
        ("0000:3b:00.0", "0000:3b:00.0"),
        ("00010000:01:00.0", "10000:01:00.0"),
    ],
)
def test_normalize_pci_bus_id(raw, expected):
    assert normalize_pci_bus_id(raw) == expected


def test_numbers_and_ids():
    assert to_int("16x") == 16
    assert to_int("81920 MiB") == 81920
    assert to_int("-5 C") == -5
    assert to_int("abc") is None
    assert device_id_from_smi("20B210DE") == "0x20b2"
    assert device_id_from_smi("N/A") is None
    assert to_bool("Not Active") is False
    assert to_bool("Active") is True
