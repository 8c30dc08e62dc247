"""Build a fake ``/sys/bus/pci/devices`` tree for tests (not a fixture file: made in tmp_path).

The layout is the kernel's: one directory per bus id holding one-line ``vendor``, ``device``,
``class``, ``subsystem_vendor``, ``subsystem_device`` files (``0x``-prefixed hex), optional link
attributes, ``numa_node``, and a ``driver`` symlink to ``/sys/bus/pci/drivers/<name>``.
"""

import os


def add_pci_device(
    root,
    bus_id,
    vendor,
    device,
    pci_class,
    *,
    subsystem_vendor=None,
    subsystem_device=None,
    driver=None,
    numa_node=None,
    link=None,
):
    """Create one device directory under ``root`` (a pathlib.Path). ``link`` is
    ``(current_speed, current_width, max_speed, max_width)`` as sysfs prints them."""
    path = root / bus_id
    path.mkdir(parents=True)
    files = {
        "vendor": f"0x{vendor:04x}",
        "device": f"0x{device:04x}",
        "class": f"0x{pci_class:06x}",
    }
    if subsystem_vendor is not None:
        files["subsystem_vendor"] = f"0x{subsystem_vendor:04x}"
    if subsystem_device is not None:
        files["subsystem_device"] = f"0x{subsystem_device:04x}"
    if numa_node is not None:
        files["numa_node"] = str(numa_node)
    if link is not None:
        cur_speed, cur_width, max_speed, max_width = link
        files.update(
            current_link_speed=cur_speed,
            current_link_width=str(cur_width),
            max_link_speed=max_speed,
            max_link_width=str(max_width),
        )
    for name, value in files.items():
        (path / name).write_text(value + "\n")
    if driver:
        drivers = root.parent / "drivers" / driver
        drivers.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(drivers, path), path / "driver")
    return path


def hgx_h100(root, *, driver="nvidia"):
    """Eight H100 SXM5 (10de:2330, subsystem 10de:16c1 -- "NVIDIA H100 80GB HBM3" in the driver's
    supported-GPU list) on two NUMA nodes, four NVSwitches, plus
    non-NVIDIA devices (a host bridge, an ASPEED VGA and a Mellanox NIC) that must be ignored."""
    gpu_buses = ["18", "2a", "3a", "5d", "9a", "ab", "ba", "db"]
    for n, bus in enumerate(gpu_buses):
        add_pci_device(
            root,
            f"0000:{bus}:00.0",
            0x10DE,
            0x2330,
            0x030200,
            subsystem_vendor=0x10DE,
            subsystem_device=0x16C1,
            driver=driver,
            numa_node=0 if n < 4 else 1,
            link=("32.0 GT/s PCIe", 16, "32.0 GT/s PCIe", 16),
        )
    for bus in ["05", "06", "07", "08"]:
        add_pci_device(
            root,
            f"0000:{bus}:00.0",
            0x10DE,
            0x22A3,
            0x068000,
            driver="nvidia-nvswitch" if driver == "nvidia" else None,
        )
    add_pci_device(root, "0000:00:00.0", 0x8086, 0x09A2, 0x060000)
    add_pci_device(root, "0000:03:00.0", 0x1A03, 0x2000, 0x030000, driver="ast")
    add_pci_device(root, "0000:19:00.0", 0x15B3, 0x1021, 0x020700, driver="mlx5_core")
    return root
