# Copyright: gpufleet developers
# Apache-2.0
"""Find NVIDIA GPUs and NVSwitches on the PCI bus, with or without a driver.

Host code: stdlib only, Python >= 3.8 (Ansible ships it to hosts). Reads the kernel's sysfs view
(``/sys/bus/pci/devices/<bus id>/{vendor,device,class,subsystem_*}``), which is there before any
NVIDIA software is installed; ``parse_lspci_nmm`` reads ``lspci -Dnmm`` output where sysfs is not
available (a report collected from another machine, say).

Every device is a dict with the same keys::

    kind          "gpu" or "nvswitch"
    pci_bus_id    "0000:17:00.0" (domain:bus:device.function, lower case)
    vendor_id     "0x10de"
    device_id     "0x2330"
    subsystem_vendor_id / subsystem_device_id   "0x10de" / "0x16c1" (None when unknown)
    class_code    "0x030200"
    name          product name from gpu_arch (None for ids it does not list)
    architecture  from gpu_arch ("unknown" for ids it does not list)
    driver        kernel driver bound to the device ("nvidia", "nouveau", "vfio-pci") or None
    numa_node     NUMA node of the device, None when the kernel does not say
    pcie          {"gen_current", "gen_max", "width_current", "width_max"} (None when unknown)
"""

from __future__ import annotations

import os
import re
import shlex

from ansible_collections.gpufleet.cluster.plugins.module_utils.gpu_arch import (
    format_device_id,
    is_nvswitch,
    lookup,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.versions import to_int

NVIDIA_VENDOR_ID = 0x10DE
SYSFS_PCI_DEVICES = "/sys/bus/pci/devices"

# PCI class codes (base class << 8 | sub class): display controllers that are GPUs, and the
# "other bridge" class NVSwitches use.
GPU_CLASSES = (0x0300, 0x0302)  # VGA-compatible controller, 3D controller
NVSWITCH_CLASS = 0x0680  # Bridge: other

# PCIe link speed per lane (GT/s, as sysfs prints it) -> generation.
_SPEED_TO_GEN = {"2.5": 1, "5.0": 2, "5": 2, "8.0": 3, "8": 3, "16.0": 4, "16": 4, "32.0": 5, "32": 5}
_SPEED_TO_GEN.update({"64.0": 6, "64": 6, "128.0": 7, "128": 7})
_SPEED = re.compile(r"^\s*([0-9.]+)\s*GT/s")
_BRACKET_ID = re.compile(r"\[([0-9a-fA-F]{4})\]\s*$")


def _read(path):
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _hex(text):
    if text is None:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None


def pcie_gen(speed):
    """``"16.0 GT/s PCIe"`` (sysfs ``*_link_speed``) -> 4; None when unknown."""
    if not speed:
        return None
    match = _SPEED.match(speed)
    return _SPEED_TO_GEN.get(match.group(1)) if match else None


def classify(vendor_id, device_id, class_code):
    """``"gpu"``, ``"nvswitch"`` or None for a (vendor, device, 24-bit class code) triple."""
    if vendor_id != NVIDIA_VENDOR_ID or class_code is None:
        return None
    base_sub = class_code >> 8
    if base_sub in GPU_CLASSES:
        return "gpu"
    if base_sub == NVSWITCH_CLASS and is_nvswitch(device_id):
        return "nvswitch"
    return None


def _device_record(kind, bus_id, device_id, class_code, subsystem_vendor=None, subsystem_device=None):
    info = lookup(device_id)
    return {
        "kind": kind,
        "pci_bus_id": bus_id.lower(),
        "vendor_id": f"0x{NVIDIA_VENDOR_ID:04x}",
        "device_id": format_device_id(device_id),
        "subsystem_vendor_id": format_device_id(subsystem_vendor),
        "subsystem_device_id": format_device_id(subsystem_device),
        "class_code": f"0x{class_code:06x}",
        "name": info["name"],
        "architecture": info["architecture"],
        "driver": None,
        "numa_node": None,
        "pcie": {"gen_current": None, "gen_max": None, "width_current": None, "width_max": None},
    }


def _sysfs_devices(sysfs_root):
    try:
        entries = sorted(os.listdir(sysfs_root))
    except OSError:
        return []
    devices = []
    for bus_id in entries:
        path = os.path.join(sysfs_root, bus_id)
        vendor = _hex(_read(os.path.join(path, "vendor")))
        device = _hex(_read(os.path.join(path, "device")))
        class_code = _hex(_read(os.path.join(path, "class")))
        kind = classify(vendor, device, class_code)
        if kind is None:
            continue
        record = _device_record(
            kind,
            bus_id,
            device,
            class_code,
            _hex(_read(os.path.join(path, "subsystem_vendor"))),
            _hex(_read(os.path.join(path, "subsystem_device"))),
        )
        driver_link = os.path.join(path, "driver")
        if os.path.islink(driver_link):
            record["driver"] = os.path.basename(os.readlink(driver_link))
        numa = to_int(_read(os.path.join(path, "numa_node")))
        record["numa_node"] = numa if numa is not None and numa >= 0 else None
        record["pcie"] = {
            "gen_current": pcie_gen(_read(os.path.join(path, "current_link_speed"))),
            "gen_max": pcie_gen(_read(os.path.join(path, "max_link_speed"))),
            "width_current": to_int(_read(os.path.join(path, "current_link_width"))),
            "width_max": to_int(_read(os.path.join(path, "max_link_width"))),
        }
        devices.append(record)
    return devices


def scan_pci(sysfs_root=SYSFS_PCI_DEVICES):
    """NVIDIA GPUs (display / 3D controllers) found under ``sysfs_root``, in bus order.

    A missing or unreadable ``sysfs_root`` gives an empty list (a host or container with no PCI
    view has no GPUs to report).
    """
    return [d for d in _sysfs_devices(sysfs_root) if d["kind"] == "gpu"]


def scan_nvswitches(sysfs_root=SYSFS_PCI_DEVICES):
    """NVIDIA NVSwitch bridges (class 0x0680, ids in ``gpu_arch.NVSWITCH_DEVICE_IDS``)."""
    return [d for d in _sysfs_devices(sysfs_root) if d["kind"] == "nvswitch"]


def _id_field(field):
    """``"10de"`` (``-n``) or ``"NVIDIA Corporation [10de]"`` (``-nn``) -> int; None otherwise."""
    field = field.strip()
    match = _BRACKET_ID.search(field)
    if match:
        return int(match.group(1), 16)
    if re.fullmatch(r"[0-9a-fA-F]{4}", field):
        return int(field, 16)
    return None


def _normalize_bus_id(bus_id):
    # lspci without -D omits the domain; it is then 0000.
    return bus_id.lower() if bus_id.count(":") == 2 else f"0000:{bus_id.lower()}"


def parse_lspci_nmm(text):
    """NVIDIA GPUs and NVSwitches from ``lspci -Dnmm`` (or ``-Dnnmm``) output, in the order listed.

    Each line is ``<bus id> "<class>" "<vendor>" "<device>" [-r<rev>] [-p<progif>]
    ["<subsystem vendor>" "<subsystem device>"]``. lspci's machine format prints no driver, so
    ``driver`` is None. Class here is 16 bits (base, sub); ``class_code`` is reported with a 00
    programming interface.
    """
    devices = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            fields = shlex.split(line)
        except ValueError:
            continue
        if len(fields) < 4:
            continue
        bus_id, positional = fields[0], [f for f in fields[1:] if not re.match(r"^-[rp]\S*$", f)]
        if len(positional) < 3:
            continue
        base_sub = _id_field(positional[0])
        vendor = _id_field(positional[1])
        device = _id_field(positional[2])
        if base_sub is None or vendor is None or device is None:
            continue
        class_code = base_sub << 8
        kind = classify(vendor, device, class_code)
        if kind is None:
            continue
        sub_vendor = _id_field(positional[3]) if len(positional) > 3 and positional[3] else None
        sub_device = _id_field(positional[4]) if len(positional) > 4 and positional[4] else None
        devices.append(
            _device_record(kind, _normalize_bus_id(bus_id), device, class_code, sub_vendor, sub_device)
        )
    return devices


def split_by_kind(devices):
    """``(gpus, nvswitches)`` from a mixed device list."""
    return (
        [d for d in devices if d["kind"] == "gpu"],
        [d for d in devices if d["kind"] == "nvswitch"],
    )
