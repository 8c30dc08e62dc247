# Copyright: gpufleet developers
# Apache-2.0
"""The gathering of the GPU and InfiniBand facts, written once: the bodies of the ``gpu_facts`` and
``ib_facts`` modules, which ``verify_collect`` runs too (one module call reads a host for
``gpufleet verify``).

Each takes the running ``AnsibleModule`` (for ``run_command``, ``get_bin_path`` and ``warn``) and
its options as arguments, and raises ValueError naming the option when one is out of range.
Host code: stdlib only, Python >= 3.8.
"""

from __future__ import annotations

import os
import time

from ansible_collections.gpufleet.cluster.plugins.module_utils.gpu_inventory import build_facts
from ansible_collections.gpufleet.cluster.plugins.module_utils.host_env import detect_container
from ansible_collections.gpufleet.cluster.plugins.module_utils.infiniband import (
    add_counter_deltas,
    parse_ibstat,
    read_sysfs,
    summarize,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.nvidia_smi import (
    NvidiaSmiParseError,
    parse_nvidia_smi_xml,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.pci import scan_nvswitches, scan_pci
from ansible_collections.gpufleet.cluster.plugins.module_utils.tool_run import run_tool

PCI_ROOT = "/sys/bus/pci/devices"
IB_ROOT = "/sys/class/infiniband"
NET_ROOT = "/sys/class/net"
NVIDIA_SMI_TIMEOUT = 60
IBSTAT_TIMEOUT = 30
MAX_COUNTER_INTERVAL = 3600


def _check_timeout(timeout):
    if timeout < 0:
        raise ValueError(f"timeout must be 0 or more seconds, got {timeout}")


def find_nvidia_smi(module, path=None):
    """``path`` when it is an executable file (else None, with a warning); without ``path``,
    nvidia-smi on PATH and in the usual system directories."""
    if path:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        module.warn(f"nvidia_smi_path {path} is not an executable file; treating nvidia-smi as absent")
        return None
    return module.get_bin_path("nvidia-smi")


def query_nvidia_smi(module, nvidia_smi, timeout):
    """Return ``(report, error)``: the parsed report, or None and the reason nvidia-smi gave none."""
    out, error = run_tool(module, [nvidia_smi, "-q", "-x"], timeout, "nvidia-smi")
    if error is not None:
        return None, error
    try:
        return parse_nvidia_smi_xml(out), None
    except NvidiaSmiParseError as exc:
        return None, str(exc)


def gather_gpus(module, nvidia_smi_path=None, sysfs_pci_root=PCI_ROOT, timeout=NVIDIA_SMI_TIMEOUT):
    """The ``gpufleet_gpus`` facts (module ``gpu_facts``): nvidia-smi's report, else the PCI bus."""
    _check_timeout(timeout)
    pci_gpus = scan_pci(sysfs_pci_root)
    nvswitches = scan_nvswitches(sysfs_pci_root)
    nvidia_smi = find_nvidia_smi(module, nvidia_smi_path)
    report, driver_error = (None, None)
    if nvidia_smi:
        report, driver_error = query_nvidia_smi(module, nvidia_smi, timeout)
    in_container, _evidence = detect_container()
    return build_facts(
        report,
        pci_gpus,
        nvswitches,
        nvidia_smi_path=nvidia_smi,
        driver_error=driver_error,
        in_container=in_container,
    )


def query_ibstat(module, timeout):
    """Return ``(devices, error)``: the parsed report or None, and why there is none."""
    ibstat = module.get_bin_path("ibstat")
    if not ibstat:
        return None, None
    out, error = run_tool(module, [ibstat], timeout, "ibstat", partial=True)
    # ibstat exits non-zero at the first device it cannot read, after printing the ones it could:
    # keep those and its error lines whole.
    if error is None:
        return parse_ibstat(out or ""), None  # ran cleanly: [] when it lists no CA
    return (parse_ibstat(out) if out and out.strip() else None), error


def gather_ib(
    module,
    sysfs_root=IB_ROOT,
    net_root=NET_ROOT,
    ibstat=False,
    counter_interval=0,
    timeout=IBSTAT_TIMEOUT,
):
    """The ``gpufleet_ib`` facts (module ``ib_facts``): sysfs, the error counters read once or twice
    ``counter_interval`` seconds apart, and ``ibstat`` when asked for."""
    _check_timeout(timeout)
    if not 0 <= counter_interval <= MAX_COUNTER_INTERVAL:
        raise ValueError(
            f"counter_interval must be 0 to {MAX_COUNTER_INTERVAL} seconds, got {counter_interval}"
        )
    devices = read_sysfs(sysfs_root, net_root)
    interval_s = None
    if counter_interval and devices:
        first, started = devices, time.monotonic()
        time.sleep(counter_interval)
        devices = add_counter_deltas(first, read_sysfs(sysfs_root, net_root))
        interval_s = round(time.monotonic() - started, 3)
    facts = {
        "source": "sysfs",
        "present": bool(devices),
        "kernel_support": os.path.isdir(sysfs_root),
        "in_container": detect_container()[0],
    }
    facts.update(summarize(devices))
    facts["counter_interval_s"] = interval_s
    facts["ibstat"], facts["ibstat_error"] = (None, None)
    if ibstat:
        facts["ibstat"], facts["ibstat_error"] = query_ibstat(module, timeout)
    return facts
