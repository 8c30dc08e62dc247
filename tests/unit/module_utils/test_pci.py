"""PCI discovery from a fake sysfs tree (built in tmp_path) and from lspci -Dnmm text."""

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils.pci import (
    classify,
    parse_lspci_nmm,
    pcie_gen,
    scan_nvswitches,
    scan_pci,
    split_by_kind,
)
from fake_sysfs import add_pci_device, hgx_h100


@pytest.fixture
def sysfs(tmp_path):
    root = tmp_path / "sys" / "bus" / "pci" / "devices"
    root.mkdir(parents=True)
    return root


def test_hgx_h100_gpus(sysfs):
    hgx_h100(sysfs)
    gpus = scan_pci(str(sysfs))
    assert [g["pci_bus_id"] for g in gpus] == [
        "0000:18:00.0",
        "0000:2a:00.0",
        "0000:3a:00.0",
        "0000:5d:00.0",
        "0000:9a:00.0",
        "0000:ab:00.0",
        "0000:ba:00.0",
        "0000:db:00.0",
    ]
    first = gpus[0]
    assert first == {
        "kind": "gpu",
        "pci_bus_id": "0000:18:00.0",
        "vendor_id": "0x10de",
        "device_id": "0x2330",
        "subsystem_vendor_id": "0x10de",
        "subsystem_device_id": "0x16c1",
        "class_code": "0x030200",
        "name": "H100 SXM5 80GB",
        "architecture": "Hopper",
        "driver": "nvidia",
        "numa_node": 0,
        "pcie": {"gen_current": 5, "gen_max": 5, "width_current": 16, "width_max": 16},
    }
    assert [g["numa_node"] for g in gpus] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_hgx_h100_nvswitches_are_separate(sysfs):
    hgx_h100(sysfs)
    switches = scan_nvswitches(str(sysfs))
    assert [s["pci_bus_id"] for s in switches] == [f"0000:0{n}:00.0" for n in (5, 6, 7, 8)]
    assert {s["device_id"] for s in switches} == {"0x22a3"}
    assert {s["kind"] for s in switches} == {"nvswitch"}
    assert switches[0]["driver"] == "nvidia-nvswitch"
    assert switches[0]["subsystem_device_id"] is None
    assert all(g["kind"] == "gpu" for g in scan_pci(str(sysfs)))


def test_no_driver_bound_on_a_fresh_host(sysfs):
    hgx_h100(sysfs, driver=None)
    gpus = scan_pci(str(sysfs))
    assert len(gpus) == 8
    assert {g["driver"] for g in gpus} == {None}
    assert {g["architecture"] for g in gpus} == {"Hopper"}


def test_nouveau_or_vfio_binding_is_reported(sysfs):
    add_pci_device(sysfs, "0000:3b:00.0", 0x10DE, 0x20B2, 0x030200, driver="nouveau")
    add_pci_device(sysfs, "0000:86:00.0", 0x10DE, 0x1DB4, 0x030200, driver="vfio-pci")
    gpus = scan_pci(str(sysfs))
    assert [(g["device_id"], g["driver"], g["architecture"]) for g in gpus] == [
        ("0x20b2", "nouveau", "Ampere"),
        ("0x1db4", "vfio-pci", "Volta"),
    ]


def test_vga_class_gpu_and_unknown_id(sysfs):
    # A GeForce-class id the datacenter table does not list: found, but architecture unknown.
    add_pci_device(sysfs, "0000:01:00.0", 0x10DE, 0x2684, 0x030000, numa_node=-1)
    (gpu,) = scan_pci(str(sysfs))
    assert gpu["class_code"] == "0x030000"
    assert gpu["name"] is None
    assert gpu["architecture"] == "unknown"
    assert gpu["numa_node"] is None  # the kernel writes -1 for "no NUMA information"
    assert gpu["pcie"] == {"gen_current": None, "gen_max": None, "width_current": None, "width_max": None}


def test_nvidia_audio_function_and_other_vendors_are_ignored(sysfs):
    add_pci_device(sysfs, "0000:01:00.1", 0x10DE, 0x22BA, 0x040300)  # HD audio of an AD102 card
    add_pci_device(sysfs, "0000:02:00.0", 0x1002, 0x74A1, 0x038000)  # AMD Instinct MI300X
    add_pci_device(sysfs, "0000:03:00.0", 0x10DE, 0x1234, 0x068000)  # class 0680, not an NVSwitch id
    assert scan_pci(str(sysfs)) == []
    assert scan_nvswitches(str(sysfs)) == []


def test_no_gpu_at_all(sysfs):
    add_pci_device(sysfs, "0000:00:00.0", 0x8086, 0x09A2, 0x060000)
    assert scan_pci(str(sysfs)) == []


def test_missing_sysfs_root(tmp_path):
    assert scan_pci(str(tmp_path / "does-not-exist")) == []
    assert scan_nvswitches(str(tmp_path / "does-not-exist")) == []


def test_classify():
    assert classify(0x10DE, 0x2330, 0x030200) == "gpu"
    assert classify(0x10DE, 0x2330, 0x030000) == "gpu"
    assert classify(0x10DE, 0x22A3, 0x068000) == "nvswitch"
    assert classify(0x10DE, 0x22BA, 0x040300) is None
    assert classify(0x1002, 0x74A1, 0x030200) is None
    assert classify(0x10DE, 0x2330, None) is None


@pytest.mark.parametrize(
    ("speed", "gen"),
    [("2.5 GT/s PCIe", 1), ("8.0 GT/s PCIe", 3), ("16.0 GT/s PCIe", 4), ("32.0 GT/s PCIe", 5), ("", None)],
)
def test_pcie_gen(speed, gen):
    assert pcie_gen(speed) == gen


# lspci -Dnmm lines in the format lspci prints (bus id, class, vendor, device, -r<rev>, -p<progif>,
# subsystem vendor, subsystem device). Constructed in that format, not recorded; the T4 subsystem
# 12a2 is the one the recorded tests/fixtures/nvidia_smi/tesla-t4.xml reports.
LSPCI_NMM = """\
0000:00:00.0 "0600" "8086" "1237" -p00 "1d0f" "1237"
0000:00:1e.0 "0302" "10de" "1eb8" -ra1 "10de" "12a2"
0000:10:1c.0 "0302" "10de" "20b0" -ra1 "10de" "134f"
0000:80:1a.0 "0680" "10de" "1af1" -ra1
0000:90:00.1 "0403" "10de" "22ba" -ra1 "" ""
0000:91:00.0 "0300" "10de" "2901" -ra1 -p00 "" ""
"""


def test_parse_lspci_nmm():
    devices = parse_lspci_nmm(LSPCI_NMM)
    gpus, switches = split_by_kind(devices)
    assert [(g["pci_bus_id"], g["device_id"], g["architecture"]) for g in gpus] == [
        ("0000:00:1e.0", "0x1eb8", "Turing"),
        ("0000:10:1c.0", "0x20b0", "Ampere"),
        ("0000:91:00.0", "0x2901", "Blackwell"),
    ]
    assert gpus[0]["subsystem_device_id"] == "0x12a2"
    assert gpus[0]["class_code"] == "0x030200"
    assert gpus[0]["driver"] is None
    assert gpus[2]["subsystem_vendor_id"] is None
    assert [(s["pci_bus_id"], s["name"]) for s in switches] == [
        ("0000:80:1a.0", "NVSwitch (A100 generation)")
    ]


def test_parse_lspci_nnmm_names_and_no_domain():
    text = (
        '17:00.0 "3D controller [0302]" "NVIDIA Corporation [10de]" "GH100 [H100 SXM5 80GB] [2330]" '
        '-ra1 "NVIDIA Corporation [10de]" "Device [16c1]"\n'
        "garbage line\n"
        '18:00.0 "unterminated\n'
    )
    (gpu,) = parse_lspci_nmm(text)
    assert gpu["pci_bus_id"] == "0000:17:00.0"
    assert gpu["device_id"] == "0x2330"
    assert gpu["subsystem_device_id"] == "0x16c1"
    assert gpu["architecture"] == "Hopper"


def test_parse_lspci_empty():
    assert parse_lspci_nmm("") == []
    assert parse_lspci_nmm(None) == []
