"""The PCI device-id table: facts from pci.ids / the NVIDIA driver's supported-GPU list."""

from pathlib import Path

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import gpu_arch
from ansible_collections.gpufleet.cluster.plugins.module_utils.gpu_arch import (
    GPU_DEVICE_IDS,
    NVSWITCH_DEVICE_IDS,
    architecture_for,
    chip_architecture,
    format_device_id,
    is_nvswitch,
    lookup,
    normalize_device_id,
)


@pytest.mark.parametrize(
    ("device_id", "name", "architecture"),
    [
        (0x1DB4, "Tesla V100 PCIe 16GB", "Volta"),
        (0x1DB5, "Tesla V100 SXM2 32GB", "Volta"),
        (0x1EB8, "Tesla T4", "Turing"),
        (0x20B0, "A100 SXM4 40GB", "Ampere"),
        (0x20B1, "A100 PCIe 40GB", "Ampere"),
        (0x20B2, "A100 SXM4 80GB", "Ampere"),
        (0x20B5, "A100 PCIe 80GB", "Ampere"),
        (0x20B7, "A30 PCIe", "Ampere"),
        (0x2235, "A40", "Ampere"),
        (0x2236, "A10", "Ampere"),
        (0x27B8, "L4", "Ada Lovelace"),
        (0x26B5, "L40", "Ada Lovelace"),
        (0x26B9, "L40S", "Ada Lovelace"),
        (0x2330, "H100 SXM5 80GB", "Hopper"),
        (0x2331, "H100 PCIe", "Hopper"),
        (0x2321, "H100 NVL", "Hopper"),
        (0x2335, "H200 SXM 141GB", "Hopper"),
        (0x233B, "H200 NVL", "Hopper"),
        (0x2329, "H20", "Hopper"),
        (0x2342, "GH200 120GB / 480GB", "Hopper"),
        (0x2901, "B200", "Blackwell"),
        (0x15F8, "Tesla P100 PCIe 16GB", "Pascal"),
    ],
)
def test_datacenter_gpus(device_id, name, architecture):
    assert lookup(device_id) == {
        "device_id": f"0x{device_id:04x}",
        "name": name,
        "architecture": architecture,
    }
    assert architecture_for(device_id) == architecture


@pytest.mark.parametrize("device_id", [0x2332, 0x20B4, 0x2684, 0xFFFF, 0x0000])
def test_unknown_ids_are_unknown_not_guessed(device_id):
    # 0x2332 sits between two Hopper ids and 0x20b4 between A100 ids: no range guessing.
    # 0x2684 (GeForce RTX 4090) is real but not a datacenter part this table lists.
    assert architecture_for(device_id) == "unknown"
    assert lookup(device_id)["name"] is None


def test_every_row_has_a_known_architecture():
    assert all(arch != "unknown" for _name, arch in GPU_DEVICE_IDS.values())
    assert set(arch for _name, arch in GPU_DEVICE_IDS.values()) == {
        "Pascal",
        "Volta",
        "Turing",
        "Ampere",
        "Ada Lovelace",
        "Hopper",
        "Blackwell",
    }


def test_every_row_cites_its_source():
    source = Path(gpu_arch.__file__).read_text(encoding="utf-8")
    for device_id in GPU_DEVICE_IDS:
        assert f"pci.ids: {device_id:04x}  " in source, f"no pci.ids quote for 0x{device_id:04x}"
    for device_id in NVSWITCH_DEVICE_IDS:
        assert f"pci.ids: {device_id:04x}  " in source


def test_chip_architecture():
    assert chip_architecture("GH100") == "Hopper"
    assert chip_architecture("AD104") == "Ada Lovelace"
    assert chip_architecture("XY100") == "unknown"
    assert chip_architecture(None) == "unknown"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0x2330, 0x2330),
        ("0x2330", 0x2330),
        ("2330", 0x2330),
        ("233010DE", 0x2330),
        ("zz", None),
        (None, None),
    ],
)
def test_normalize_device_id(value, expected):
    assert normalize_device_id(value) == expected


def test_format_device_id():
    assert format_device_id("233010DE") == "0x2330"
    assert format_device_id(None) is None


def test_nvswitch():
    assert is_nvswitch(0x22A3)
    assert is_nvswitch("0x1af1")
    assert not is_nvswitch(0x2330)
    assert lookup(0x22A3)["architecture"] == "Hopper"
    assert lookup(0x1AF1)["architecture"] == "Ampere"
