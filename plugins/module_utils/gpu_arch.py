# Copyright: gpufleet developers
# Apache-2.0
"""NVIDIA PCI device id -> (product name, architecture), for hosts where nvidia-smi cannot answer.

Host code: stdlib only, Python >= 3.8 (Ansible ships it to hosts). A freshly installed host (no driver yet),
or one whose driver failed to load, still shows its GPUs on the PCI bus; this table turns their device ids
into a name and an architecture, so preflight can choose the right driver branch before anything is installed.

Sources (facts, quoted per row):

- ``pci.ids`` -- the PCI ID Repository, vendor ``10de`` (https://pci-ids.ucw.cz/), as stored in
  github.com/pciutils/pciids at commit 006181e2c5d5b9a3b57d252aa5b3d827971d41a9, cross-checked
  against Debian 12's ``pci.ids`` package (version 2023.04.10) for the rows that existed then.
  Each row's comment quotes the pci.ids line ``<id>  <chip> [<name>]``.
- "README.md" of github.com/NVIDIA/open-gpu-kernel-modules (commit
  015742d32fa615353199b11589ecaba828040859), the driver's list of supported GPUs
  ("NVIDIA H100 NVL | 2321 10DE 1839"), where it names a product pci.ids labels differently.

The architecture of a row is derived from the chip code name that pci.ids gives for *that exact id*
(GV100 -> Volta, GH100 -> Hopper, ...), never from device-id ranges: an id not in the table is
``"unknown"``, because a wrong guess would pick the wrong driver branch.
"""

from __future__ import annotations

UNKNOWN = "unknown"

# Chip code-name prefix (as pci.ids writes it) -> NVIDIA architecture, spelled the way
# ``nvidia-smi -q`` prints <product_architecture>.
CHIP_ARCHITECTURES = {
    "GP": "Pascal",
    "GV": "Volta",
    "TU": "Turing",
    "GA": "Ampere",
    "AD": "Ada Lovelace",
    "GH": "Hopper",
    "GB": "Blackwell",
}

# (device id, product name, chip) -- datacenter GPUs. Comments quote the source line.
_GPUS = (
    # --- Pascal ---
    (0x15F7, "Tesla P100 PCIe 12GB", "GP100"),  # pci.ids: 15f7  GP100GL [Tesla P100 PCIe 12GB]
    (0x15F8, "Tesla P100 PCIe 16GB", "GP100"),  # pci.ids: 15f8  GP100GL [Tesla P100 PCIe 16GB]
    (0x15F9, "Tesla P100 SXM2 16GB", "GP100"),  # pci.ids: 15f9  GP100GL [Tesla P100 SXM2 16GB]
    (0x1B38, "Tesla P40", "GP102"),  # pci.ids: 1b38  GP102GL [Tesla P40]
    (0x1BB3, "Tesla P4", "GP104"),  # pci.ids: 1bb3  GP104GL [Tesla P4]
    # --- Volta ---
    (0x1DB1, "Tesla V100 SXM2 16GB", "GV100"),  # pci.ids: 1db1  GV100GL [Tesla V100 SXM2 16GB]
    (0x1DB2, "Tesla V100 DGXS 16GB", "GV100"),  # pci.ids: 1db2  GV100GL [Tesla V100 DGXS 16GB]
    (0x1DB3, "Tesla V100 FHHL 16GB", "GV100"),  # pci.ids: 1db3  GV100GL [Tesla V100 FHHL 16GB]
    (0x1DB4, "Tesla V100 PCIe 16GB", "GV100"),  # pci.ids: 1db4  GV100GL [Tesla V100 PCIe 16GB]
    (0x1DB5, "Tesla V100 SXM2 32GB", "GV100"),  # pci.ids: 1db5  GV100GL [Tesla V100 SXM2 32GB]
    (0x1DB6, "Tesla V100 PCIe 32GB", "GV100"),  # pci.ids: 1db6  GV100GL [Tesla V100 PCIe 32GB]
    (0x1DB7, "Tesla V100 DGXS 32GB", "GV100"),  # pci.ids: 1db7  GV100GL [Tesla V100 DGXS 32GB]
    (0x1DB8, "Tesla V100 SXM3 32GB", "GV100"),  # pci.ids: 1db8  GV100GL [Tesla V100 SXM3 32GB]
    (0x1DF5, "Tesla V100 SXM2 16GB", "GV100"),  # pci.ids: 1df5  GV100GL [Tesla V100 SXM2 16GB]
    (0x1DF6, "Tesla V100S PCIe 32GB", "GV100"),  # pci.ids: 1df6  GV100GL [Tesla V100S PCIe 32GB]
    # --- Turing ---
    (0x1EB8, "Tesla T4", "TU104"),  # pci.ids: 1eb8  TU104GL [Tesla T4]
    # --- Ampere ---
    (0x20B0, "A100 SXM4 40GB", "GA100"),  # pci.ids: 20b0  GA100 [A100 SXM4 40GB]
    (0x20B1, "A100 PCIe 40GB", "GA100"),  # pci.ids: 20b1  GA100 [A100 PCIe 40GB]
    (0x20B2, "A100 SXM4 80GB", "GA100"),  # pci.ids: 20b2  GA100 [A100 SXM4 80GB]
    (0x20B3, "A100 SXM 64GB", "GA100"),  # pci.ids: 20b3  GA100 [A100-SXM-64GB]
    (0x20B5, "A100 PCIe 80GB", "GA100"),  # pci.ids: 20b5  GA100 [A100 PCIe 80GB]
    (0x20B7, "A30 PCIe", "GA100"),  # pci.ids: 20b7  GA100GL [A30 PCIe]
    (0x20B8, "A100X", "GA100"),  # pci.ids: 20b8  GA100 [A100X]
    (0x20B9, "A30X", "GA100"),  # pci.ids: 20b9  GA100 [A30X]
    (0x20BD, "A800 SXM4 40GB", "GA100"),  # pci.ids: 20bd  GA100 [A800 SXM4 40GB]
    (0x20F1, "A100 PCIe 40GB", "GA100"),  # pci.ids: 20f1  GA100 [A100 PCIe 40GB]
    (0x20F3, "A800 SXM4 80GB", "GA100"),  # pci.ids: 20f3  GA100 [A800-SXM4-80GB]
    (0x20F5, "A800 80GB PCIe", "GA100"),  # pci.ids: 20f5  GA100 [A800 80GB PCIe]
    (0x20F6, "A800 40GB PCIe", "GA100"),  # pci.ids: 20f6  GA100 [A800 40GB PCIe]
    (0x2235, "A40", "GA102"),  # pci.ids: 2235  GA102GL [A40]
    (0x2236, "A10", "GA102"),  # pci.ids: 2236  GA102GL [A10]
    (0x2237, "A10G", "GA102"),  # pci.ids: 2237  GA102GL [A10G]
    (0x25B6, "A2 / A16", "GA107"),  # pci.ids: 25b6  GA107GL [A2 / A16] (subsystem tells which)
    # --- Ada Lovelace ---
    (0x26B5, "L40", "AD102"),  # pci.ids: 26b5  AD102GL [L40]
    (0x26B9, "L40S", "AD102"),  # pci.ids: 26b9  AD102GL [L40S]
    (0x26BA, "L20", "AD102"),  # pci.ids: 26ba  AD102GL [L20]; driver README: L20 26BA 10DE 1957
    (0x27B6, "L2", "AD104"),  # pci.ids: 27b6  AD104GL [L2]
    (0x27B8, "L4", "AD104"),  # pci.ids: 27b8  AD104GL [L4]
    # --- Hopper ---
    (0x2313, "H100 CNX", "GH100"),  # pci.ids: 2313  GH100 [H100 CNX]
    # pci.ids: 2321  GH100 [H100L 94GB]; driver README: "NVIDIA H100 NVL | 2321 10DE 1839"
    (0x2321, "H100 NVL", "GH100"),
    (0x2322, "H800 PCIe", "GH100"),  # pci.ids: 2322  GH100 [H800 PCIe]
    (0x2324, "H800", "GH100"),  # pci.ids: 2324  GH100 [H800]
    (0x2329, "H20", "GH100"),  # pci.ids: 2329  GH100 [H20]; driver README: H20 2329 10DE 198B
    (0x232C, "H20 HBM3e", "GH100"),  # pci.ids: 232c  GH100 [H20 HBM3e]; driver README: H20-3e
    (0x2330, "H100 SXM5 80GB", "GH100"),  # pci.ids: 2330  GH100 [H100 SXM5 80GB]
    (0x2331, "H100 PCIe", "GH100"),  # pci.ids: 2331  GH100 [H100 PCIe]
    (0x2335, "H200 SXM 141GB", "GH100"),  # pci.ids: 2335  GH100 [H200 SXM 141GB]
    (0x2336, "H100", "GH100"),  # pci.ids: 2336  GH100 [H100]
    (0x2337, "H100 SXM5 64GB", "GH100"),  # pci.ids: 2337  GH100 [H100 SXM5 64GB]
    (0x2338, "H100 SXM5 96GB", "GH100"),  # pci.ids: 2338  GH100 [H100 SXM5 96GB]
    (0x2339, "H100 SXM5 94GB", "GH100"),  # pci.ids: 2339  GH100 [H100 SXM5 94GB]
    (0x233A, "H800 NVL", "GH100"),  # pci.ids: 233a  GH100 [H800L 94GB]; driver README: H800 NVL
    (0x233B, "H200 NVL", "GH100"),  # pci.ids: 233b  GH100 [H200 NVL]
    (0x233D, "H100 96GB", "GH100"),  # pci.ids: 233d  GH100 [H100 96GB]
    (0x2342, "GH200 120GB / 480GB", "GH100"),  # pci.ids: 2342  GH100 [GH200 120GB / 480GB]
    (0x2348, "GH200 144G HBM3e", "GH100"),  # pci.ids: 2348  GH100 [GH200 144G HBM3e]
    # --- Blackwell ---
    (0x2901, "B200", "GB100"),  # pci.ids: 2901  GB100 [B200]
    (0x2909, "HGX B200 168GB", "GB100"),  # pci.ids: 2909  GB100 [HGX B200 168GB]
    (0x2920, "TS4 / B100", "GB100"),  # pci.ids: 2920  GB100 [TS4 / B100]
    (0x2941, "HGX GB200", "GB100"),  # pci.ids: 2941  GB100 [HGX GB200]
    (0x29BC, "B100", "GB102"),  # pci.ids: 29bc  GB102 [B100]
    # pci.ids: 2bb5  GB202GL [RTX PRO 6000 Blackwell Server Edition]
    (0x2BB5, "RTX PRO 6000 Blackwell Server Edition", "GB202"),
    (0x3182, "B300 SXM6 AC", "GB110"),  # pci.ids: 3182  GB110 [B300 SXM6 AC]
    (0x31C2, "GB300", "GB110"),  # pci.ids: 31c2  GB110 [GB300]
)

# NVSwitch bridge devices (PCI class 0x0680) that appear on the host's PCI bus of HGX/DGX systems.
NVSWITCH_DEVICE_IDS = {
    0x1AF1: ("NVSwitch (A100 generation)", "Ampere"),  # pci.ids: 1af1  GA100 [A100 NVSwitch]
    0x22A3: ("NVSwitch (H100 generation)", "Hopper"),  # pci.ids: 22a3  GH100 [H100 NVSwitch]
}


def chip_architecture(chip):
    """Architecture for a chip code name such as ``GH100`` (``"unknown"`` when not recognised)."""
    return CHIP_ARCHITECTURES.get(str(chip or "")[:2].upper(), UNKNOWN)


GPU_DEVICE_IDS = {dev: (name, chip_architecture(chip)) for dev, name, chip in _GPUS}


def normalize_device_id(value):
    """Return a device id as an int from ``0x2330``, ``2330``, ``"233010DE"`` (nvidia-smi) or an int.

    nvidia-smi writes <pci_device_id> as device and vendor together (``233010DE``); that form is
    accepted when its low half is NVIDIA's vendor id. Returns None for anything unparseable.
    """
    if value is None:
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    try:
        number = int(text, 16)
    except ValueError:
        return None
    if len(text) == 8 and text.endswith("10de"):
        return number >> 16
    return number


def format_device_id(value):
    """``0x2330`` style string for a device id, or None."""
    number = normalize_device_id(value)
    return None if number is None else f"0x{number:04x}"


def lookup(device_id):
    """Return ``{"device_id", "name", "architecture"}`` for an NVIDIA PCI device id.

    Unknown ids give ``name`` None and ``architecture`` ``"unknown"``.
    """
    number = normalize_device_id(device_id)
    name, architecture = GPU_DEVICE_IDS.get(number, (None, UNKNOWN))
    if number in NVSWITCH_DEVICE_IDS:
        name, architecture = NVSWITCH_DEVICE_IDS[number]
    return {"device_id": format_device_id(number), "name": name, "architecture": architecture}


def architecture_for(device_id):
    """Architecture name for a GPU device id, ``"unknown"`` when the id is not in the table."""
    return GPU_DEVICE_IDS.get(normalize_device_id(device_id), (None, UNKNOWN))[1]


def is_nvswitch(device_id):
    """True when the NVIDIA device id is an NVSwitch bridge."""
    return normalize_device_id(device_id) in NVSWITCH_DEVICE_IDS
