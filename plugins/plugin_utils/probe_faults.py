# Copyright: gpufleet developers
# Apache-2.0
"""Why a benchmark probe failed, and what to do about it: remedies by cause, not one for all.

Controller code (plugin_utils). ``classify(text, kernel_log=None)`` reads what a failed probe left
(its error line and stderr tail) and, when given, the kernel log written while it ran, and returns
``{"cause", "action", "remedy", "source", "evidence"}``. The first cause that matches wins, in this
order:

1. ``xid``: the kernel logged an XID or a fault without one while the probe ran: that event's
   class and action from the XID table (``xid.py``, ``kernel_faults.py``; knowledge kept there, once).
2. ``cuda_init``: CUDA could not start (PyTorch's "Unexpected error from cudaGetDeviceCount() ...
   Error 802: system not yet initialized", cudaErrorSystemNotReady, is the NVSwitch fabric not
   initialised on HGX): by the CUDA error code (``CUDA_INIT_ERRORS``).
3. ``ecc``: CUDA reported an uncorrectable ECC error (cudaErrorECCUncorrectable, "uncorrectable ECC
   error encountered"): as XID 48, its row of the XID table.
4. ``nccl_transport``: NCCL's "unhandled system error" / "remote process exited or there was a
   network error" / "internal error": the fabric between the GPUs (NVLink, NVSwitch, fabric manager,
   PCIe P2P), not the probe.
5. ``out_of_memory``: "CUDA out of memory": the memory is held by other processes (see the
   ``gpu_processes`` check); the GPUs were not measured, which is no fault of theirs.
6. ``nccl_cuda``: NCCL's "unhandled cuda error" with no CUDA error recognised above: a CUDA fault
   under NCCL; the CUDA error text is in the NCCL_DEBUG=INFO log.
7. ``software``: the probe runtime itself is broken (an import error, an undefined symbol, "no kernel
   image is available for execution on the device": a PyTorch build without this GPU's
   architecture): provision the runtime again.
8. ``cuda``: any other CUDA error ("CUDA error: ...", "cudaError..."): reset the GPU.
9. ``unknown``: none of these: the stderr tail says more; repeat before acting.

Sources: the CUDA runtime API error list (``cudaError_t``: 802 cudaErrorSystemNotReady "system not yet
initialized", 803 cudaErrorSystemDriverMismatch, 804 cudaErrorCompatNotSupportedOnDevice "forward
compatibility was attempted on non supported HW", 214 cudaErrorECCUncorrectable "uncorrectable ECC error
encountered"); the error-802 remedy (install and start nvidia-fabricmanager at the driver's version)
from pytorch/pytorch#35710 and gpustack/gpustack#4154; NCCL's result strings (``ncclGetErrorString``:
"unhandled cuda error", "unhandled system error", "internal error", "remote process exited or there
was a network error").
"""

from __future__ import annotations

import re

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import kernel_faults, xid
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core as health

CUDA_API = "CUDA runtime API, cudaError_t"
FABRIC_802 = "pytorch/pytorch#35710; gpustack/gpustack#4154 (error 802: install/start nvidia-fabricmanager)"
NCCL_RESULTS = "NCCL ncclGetErrorString result strings"

# CUDA error code at initialisation -> (meaning, action, remedy)
CUDA_INIT_ERRORS = {
    802: (
        "the NVSwitch fabric is not initialised (cudaErrorSystemNotReady)",
        health.REBOOT,
        "start nvidia-fabricmanager at the driver's exact version (see the fabric_manager and "
        "fabric_registration checks); when the GPUs' fabric state stays 'In Progress', reboot the node",
    ),
    803: (
        "the CUDA user-mode driver and the kernel driver differ (cudaErrorSystemDriverMismatch)",
        health.REPROVISION,
        "install the driver's matching user-space libraries (playbooks/site.yml), or reboot after a "
        "driver upgrade so the new kernel module is loaded",
    ),
    804: (
        "a CUDA forward-compatibility library is used on a GPU that does not support it "
        "(cudaErrorCompatNotSupportedOnDevice)",
        health.REPROVISION,
        "remove cuda-compat from the probe runtime's library path or pick a PyTorch build the driver "
        "supports natively (compatibility matrix)",
    ),
}
CUDA_INIT_DEFAULT = (
    "CUDA could not initialise the GPUs",
    health.REBOOT,
    "read the CUDA error; check driver_loaded and the kernel log; reboot the node if it persists",
)

_CUDA_INIT = re.compile(
    r"(?:cudaGetDeviceCount\(\)|CUDA initialization|cuda runtime error \((?P<rt>\d+)\)|cuInit|"
    r"CUDA driver initialization failed|CUDA usable)",
    re.IGNORECASE,
)
_CUDA_CODE = re.compile(r"(?:Error|error)\s+(?P<code>\d{3}):\s*(?P<text>[^\n(]+)")
_ECC = re.compile(r"uncorrectable ECC error encountered|cudaErrorECCUncorrectable", re.IGNORECASE)
_NCCL_TRANSPORT = re.compile(
    r"unhandled system error|remote process exited or there was a network error|"
    r"NCCL error[^\n]*internal error",
    re.IGNORECASE,
)
_NCCL_CUDA = re.compile(r"unhandled cuda error", re.IGNORECASE)
_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|cudaErrorMemoryAllocation", re.IGNORECASE)
_SOFTWARE = re.compile(
    r"ModuleNotFoundError|ImportError|undefined symbol|no kernel image is available|"
    r"version `GLIBC|cannot open shared object file",
    re.IGNORECASE,
)
_CUDA_ANY = re.compile(r"CUDA error|cudaError\w+|CUDA_ERROR_\w+", re.IGNORECASE)


def _line(text, match):
    """The whole line of ``text`` that holds ``match`` (the evidence, kept whole)."""
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    return text[start : end if end != -1 else len(text)].strip()[:500]


def _out(cause, action, remedy, source, evidence, **extra):
    return {
        "cause": cause,
        "action": action,
        "remedy": remedy,
        "source": source,
        "evidence": evidence,
        **extra,
    }


def _xid_during(kernel_log):
    """The worst hardware/driver event the kernel logged during the probe, as a classification."""
    events = kernel_faults.merge(xid.parse_kernel_log(kernel_log), kernel_faults.parse(kernel_log))
    summary = xid.classify(events)
    serious = [
        entry
        for dev in summary.values()
        for entry in dev["xids"]
        if entry["class"] in (xid.HARDWARE, xid.DRIVER)
    ]
    if not serious:
        return None
    action = health.worst_action(e["action"] for e in serious)
    worst = next(e for e in serious if e["action"] == action)
    label = worst.get("fault") or f"XID {worst.get('xid')}"
    return _out(
        "xid",
        action,
        f"the kernel logged {label} ({worst.get('meaning')}) while the probe ran: act on that fault "
        "(see the xid check)",
        "XID table (plugins/plugin_utils/xid.py)" + (f"; {worst['source']}" if worst.get("source") else ""),
        str(worst.get("message") or label)[:500],
        xids=sorted({str(e.get("fault") or e.get("xid")) for e in serious}),
    )


def classify(text, kernel_log=None):
    """The cause of a failed probe from its error text and the kernel log of its run (see module doc)."""
    text = str(text or "")
    if kernel_log:
        found = _xid_during(kernel_log)
        if found:
            return found
    init = _CUDA_INIT.search(text)
    code = _CUDA_CODE.search(text)
    if init and (code or init.group("rt")):
        number = int(code.group("code")) if code else int(init.group("rt"))
        meaning, action, remedy = CUDA_INIT_ERRORS.get(number, CUDA_INIT_DEFAULT)
        source = CUDA_API + ("; " + FABRIC_802 if number == 802 else "")
        evidence = _line(text, code) if code else _line(text, init)
        return _out("cuda_init", action, f"CUDA error {number}: {meaning}: {remedy}", source, evidence)
    match = _ECC.search(text)
    if match:
        row = xid.lookup(48)
        return _out(
            "ecc",
            row["action"],
            f"CUDA reported an uncorrectable ECC error, as XID 48 ({row['meaning']}): drain the GPU and "
            "act as for XID 48; see the ecc and row_remap checks",
            CUDA_API + "; XID table (plugins/plugin_utils/xid.py, XID 48)",
            _line(text, match),
        )
    match = _NCCL_TRANSPORT.search(text)
    if match:
        return _out(
            "nccl_transport",
            health.REBOOT,
            "NCCL lost a peer or a transport between the GPUs: check the fabric (nvlink, fabric_manager, "
            "fabric_registration checks; nvidia-smi topo -m; PCIe ACS/IOMMU for P2P), run again with "
            "NCCL_DEBUG=INFO for the failing transport; reboot when the links stay down",
            NCCL_RESULTS,
            _line(text, match),
        )
    match = _OOM.search(text)
    if match:
        return _out(
            "out_of_memory",
            health.MONITOR,
            "GPU memory is held by other processes (see the gpu_processes check): stop leftover processes "
            "or drain the node, then verify again",
            CUDA_API,
            _line(text, match),
        )
    match = _NCCL_CUDA.search(text)
    if match:
        return _out(
            "nccl_cuda",
            health.RESET_GPU,
            "NCCL hit a CUDA error it does not name here: run again with NCCL_DEBUG=INFO to read the CUDA "
            "error; reset the GPU it names",
            NCCL_RESULTS,
            _line(text, match),
        )
    match = _SOFTWARE.search(text)
    if match:
        return _out(
            "software",
            health.REPROVISION,
            "the probe runtime is broken or its PyTorch build does not fit this GPU/driver: provision it "
            "again (playbooks/site.yml) or point gpufleet_verify_python at a working one",
            "gpufleet",
            _line(text, match),
        )
    match = _CUDA_ANY.search(text)
    if match:
        return _out(
            "cuda",
            health.RESET_GPU,
            "a CUDA error during the measurement: reset the GPU (nvidia-smi -r) and verify again; if it "
            "repeats, check the xid and ecc checks",
            CUDA_API,
            _line(text, match),
        )
    return _out(
        "unknown",
        health.MONITOR,
        "cause not recognised: read the stderr tail; run the probe again before acting",
        "gpufleet",
        text.strip().splitlines()[-1][:500] if text.strip() else "",
    )
