# Copyright: gpufleet developers
# Apache-2.0
"""Assemble the ``gpufleet_gpus`` facts from nvidia-smi and the PCI bus.

Host code: stdlib only, Python >= 3.8 (Ansible ships it to hosts). The ``gpufleet.cluster.gpu_facts``
module runs the commands; everything it decides from their results is here, so the CLI and checks
reach the same conclusions from the same data.
"""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.module_utils.gpu_arch import UNKNOWN, architecture_for

# Keys every entry of ``gpus`` carries, whichever source produced it.
COMMON_GPU_KEYS = (
    "index",
    "name",
    "uuid",
    "pci_bus_id",
    "device_id",
    "architecture",
    "driver",
    "numa_node",
    "pcie",
)


def _from_pci(index, device):
    gpu = {key: device.get(key) for key in COMMON_GPU_KEYS}
    gpu["index"] = index
    gpu["uuid"] = None
    gpu["subsystem_device_id"] = device.get("subsystem_device_id")
    return gpu


def _from_smi(gpu, pci_by_bus):
    merged = dict(gpu)
    pci = pci_by_bus.get(gpu.get("pci_bus_id"))
    # nvidia-smi can only see GPUs through the nvidia kernel driver; sysfs says so too when visible.
    merged["driver"] = (pci or {}).get("driver") or "nvidia"
    merged["numa_node"] = (pci or {}).get("numa_node")
    if not merged.get("architecture"):
        merged["architecture"] = architecture_for(gpu.get("device_id"))
    return merged


def build_facts(
    smi_report=None,
    pci_gpus=(),
    pci_nvswitches=(),
    *,
    nvidia_smi_path=None,
    driver_error=None,
    in_container=False,
):
    """Return the ``gpufleet_gpus`` fact.

    ``smi_report`` is ``nvidia_smi.parse_nvidia_smi_xml`` output when nvidia-smi answered, else None;
    then the GPUs come from ``pci_gpus`` (``pci.scan_pci``) so a host without a working driver still
    reports what it has. No GPU at all is a valid answer: ``gpu_count`` 0.
    """
    pci_gpus = list(pci_gpus or ())
    pci_nvswitches = list(pci_nvswitches or ())
    if smi_report is not None:
        pci_by_bus = {g["pci_bus_id"]: g for g in pci_gpus}
        gpus = [_from_smi(g, pci_by_bus) for g in smi_report.get("gpus", [])]
        source = "nvidia-smi"
        driver_loaded = True
        driver_version = smi_report.get("driver_version")
        cuda_version = smi_report.get("cuda_version")
    else:
        gpus = [_from_pci(i, d) for i, d in enumerate(pci_gpus)]
        source = "pci"
        driver_loaded = any(g.get("driver") == "nvidia" for g in pci_gpus)
        driver_version = None
        cuda_version = None
    architectures = sorted({g.get("architecture") or UNKNOWN for g in gpus})
    return {
        "source": source,
        "driver_loaded": driver_loaded,
        "driver_version": driver_version,
        "cuda_version": cuda_version,
        "driver_error": driver_error,
        "nvidia_smi_path": nvidia_smi_path,
        "gpu_count": len(gpus),
        # what nvidia-smi says is attached; more than gpu_count: GPUs it could not query
        "attached_gpus": smi_report.get("attached_gpus") if smi_report is not None else None,
        "pci_gpu_count": len(pci_gpus),
        "gpus": gpus,
        "architectures": architectures,
        "nvswitch_count": len(pci_nvswitches),
        "nvswitches": [
            {k: s.get(k) for k in ("pci_bus_id", "device_id", "name", "driver")} for s in pci_nvswitches
        ],
        "in_container": bool(in_container),
    }
