# Copyright: gpufleet developers
# Apache-2.0
"""GPU checks read from nvidia-smi: count, driver, persistence, leftover processes, the driver's
recovery action. Clocks and PCIe (where the platform matters): ``gpu_platform``. Sources and the
result shape: ``core``."""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.module_utils.versions import to_int
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import nvidia_driver
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import policy as site_policy
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks.core import (
    AZURE,
    FAIL,
    MONITOR,
    PASS,
    POLICY,
    POLICY_STATUS,
    REBOOT,
    RECONFIGURE,
    REPROVISION,
    RESET_GPU,
    SKIP,
    WARN,
    gpu_check,
    gpu_list,
    label,
    labels,
    plural,
    result,
    tail,
    worst_action,
)

# --- gpu_count ------------------------------------------------------------------------------


def gpu_count(gpus, expected=None):
    """GPUs found against ``gpufleet_expected_gpus``, and nvidia-smi against the PCI bus.

    No GPU with no expectation fails (a GPU fleet host without GPUs is a question, not a pass);
    ``expected: 0`` makes a GPU-less host pass. Fewer GPUs than expected, or nvidia-smi seeing fewer
    than the PCI bus, fails REBOOT (a GPU fell off the bus or did not initialise); more than expected
    fails MONITOR (the inventory is wrong). No expectation and GPUs found passes on the nvidia-smi/PCI
    agreement alone, saying that no count was set.
    """
    check = "gpu_count"
    gpus = gpus or {}
    found = int(gpus.get("gpu_count") or 0)
    on_pci = int(gpus.get("pci_gpu_count") or 0)
    source = gpus.get("source")
    details = [
        {"index": g.get("index"), "pci_bus_id": g.get("pci_bus_id"), "name": g.get("name")}
        for g in gpu_list(gpus)
    ]
    common = {"measured": found, "expected": expected, "unit": "GPUs", "source": POLICY, "details": details}
    where = " (container: no GPU here)" if gpus.get("in_container") else ""
    if expected is not None and to_int(expected) is None:
        return result(
            check, FAIL, f"gpufleet_expected_gpus {expected!r} is not a number", action=MONITOR, **common
        )
    expected = to_int(expected)
    common["expected"] = expected
    if found == 0 and expected is None:
        return result(
            check,
            FAIL,
            f"no GPU present{where}; set gpufleet_expected_gpus: 0 for hosts without GPUs",
            action=MONITOR,
            **common,
        )
    if source == "nvidia-smi" and on_pci > found:
        return result(
            check,
            FAIL,
            f"nvidia-smi sees {found} of the {on_pci} NVIDIA GPUs on the PCI bus: a GPU fell off the bus "
            "or did not initialise",
            action=REBOOT,
            **{**common, "expected": expected if expected is not None else on_pci},
        )
    attached = to_int(gpus.get("attached_gpus"))
    if source == "nvidia-smi" and attached is not None and attached > found:
        return result(
            check,
            FAIL,
            f"nvidia-smi says {attached} GPUs are attached but reports {found}: "
            f"{attached - found} GPU(s) could not be queried (or the report was cut)",
            action=REBOOT,
            **{**common, "expected": expected if expected is not None else attached},
        )
    if expected is None:
        return result(
            check,
            PASS,
            f"{plural(found, 'GPU')} found ({source}); no gpufleet_expected_gpus set to compare with",
            **common,
        )
    if found < expected:
        return result(
            check,
            FAIL,
            f"{found} GPU(s) found{where}, {expected} expected (gpufleet_expected_gpus)",
            action=REBOOT,
            **common,
        )
    if found > expected:
        return result(
            check,
            FAIL,
            f"{found} GPU(s) found, only {expected} expected: correct gpufleet_expected_gpus",
            action=MONITOR,
            **common,
        )
    return result(check, PASS, f"{plural(found, 'GPU')} found, {expected} expected{where}", **common)


# --- driver_loaded --------------------------------------------------------------------------


@gpu_check(smi=False)
def driver_loaded(gpus, branch=None, version=None):
    """The NVIDIA kernel driver answers nvidia-smi, on the pinned branch/version, with one VBIOS
    per GPU model.

    Not loaded (nvidia-smi failed) fails REPROVISION with the tail of nvidia-smi's error. A driver
    off the pinned branch (``nvidia_driver_branch``) or version (``nvidia_driver_version``) fails
    REPROVISION. GPUs of one model with different VBIOS versions warn MONITOR (azurehpc-health-checks
    checks the VBIOS is the same across GPUs). A driver version nvidia-smi did not report warns.
    """
    check = "driver_loaded"
    items = gpu_list(gpus)
    expected = str(version) if version else (f"{branch}.x" if branch else None)
    if gpus.get("source") != "nvidia-smi":
        error = tail(gpus.get("driver_error")) or "no output"
        return result(
            check,
            FAIL,
            f"NVIDIA driver not answering on {labels(items)}: nvidia-smi failed: {error}",
            measured=None,
            expected=expected,
            source=POLICY,
            action=REPROVISION,
            details=[
                {"index": g.get("index"), "pci_bus_id": g.get("pci_bus_id"), "driver": g.get("driver")}
                for g in items
            ],
        )
    loaded = gpus.get("driver_version")
    common = {"measured": loaded, "expected": expected, "source": POLICY}
    by_model = {}
    for g in items:
        by_model.setdefault(g.get("name") or "unknown model", []).append(g)
    details = [
        {
            "index": g.get("index"),
            "pci_bus_id": g.get("pci_bus_id"),
            "name": g.get("name"),
            "vbios_version": g.get("vbios_version"),
        }
        for g in items
    ]
    if not loaded:
        return result(
            check,
            WARN,
            "nvidia-smi answered but reported no driver version",
            action=MONITOR,
            details=details,
            **common,
        )
    if version and not nvidia_driver.match_version(nvidia_driver.upstream_version(version), [loaded]):
        return result(
            check,
            FAIL,
            f"driver {loaded} loaded, {nvidia_driver.upstream_version(version)} pinned "
            "(nvidia_driver_version)",
            action=REPROVISION,
            details=details,
            **common,
        )
    if branch and not nvidia_driver.on_branch(branch, [loaded]):
        return result(
            check,
            FAIL,
            f"driver {loaded} loaded, branch {branch} pinned (nvidia_driver_branch)",
            action=REPROVISION,
            details=details,
            **common,
        )
    mixed = []
    for model, members in sorted(by_model.items()):
        found = sorted({g.get("vbios_version") for g in members if g.get("vbios_version")})
        if len(found) > 1:
            per = "; ".join(f"{label(g)} {g.get('vbios_version') or 'not reported'}" for g in members)
            mixed.append(f"{model}: {per}")
    if mixed:
        return result(
            check,
            WARN,
            f"driver {loaded} loaded; VBIOS versions differ across GPUs of one model: {' | '.join(mixed)}",
            action=MONITOR,
            details=details,
            **{**common, "source": AZURE + " (VBIOS same across GPUs)"},
        )
    pin = f", pinned {expected}" if expected else ", no branch or version pinned"
    return result(
        check, PASS, f"driver {loaded} loaded on {plural(len(items), 'GPU')}{pin}", details=details, **common
    )


# --- persistence_mode -----------------------------------------------------------------------


@gpu_check()
def persistence_mode(gpus, policy=None):
    """Persistence mode on every GPU, as the site's policy wants it.

    Persistence mode is a setting, not a fault: disabled is a policy result (RECONFIGURE) where the
    site requires it (``persistence_required``, default true: the nvidia_driver role starts
    nvidia-persistenced, and azurehpc-health-checks' azure_gpu_persistence.nhc and DCGM's per-SKU
    config expect it), and passes with a note where it does not. Not reported (None) warns MONITOR.
    """
    check = "persistence_mode"
    policy = site_policy.validate(policy)
    items = gpu_list(gpus)
    off = [g for g in items if g.get("persistence_mode") is False]
    unknown = [g for g in items if g.get("persistence_mode") is None]
    details = [
        {
            "index": g.get("index"),
            "pci_bus_id": g.get("pci_bus_id"),
            "persistence_mode": g.get("persistence_mode"),
        }
        for g in items
    ]
    common = {
        "expected": "Enabled",
        "source": AZURE + "; " + POLICY + " (nvidia-persistenced)",
        "details": details,
    }
    if off and policy["persistence_required"]:
        return result(
            check,
            POLICY_STATUS,
            f"persistence mode Disabled on {labels(off)}, Enabled required by the site's policy "
            "(persistence_required): start nvidia-persistenced (playbooks/site.yml)",
            measured="Disabled",
            action=RECONFIGURE,
            **common,
        )
    if off:
        return result(
            check,
            PASS,
            f"persistence mode Disabled on {labels(off)}; the site's policy does not require it",
            measured="Disabled",
            **{**common, "expected": "any"},
        )
    if unknown:
        return result(
            check,
            WARN,
            f"nvidia-smi did not report persistence mode for {labels(unknown)}; Enabled expected",
            measured=None,
            action=MONITOR,
            **common,
        )
    return result(
        check,
        PASS,
        f"persistence mode Enabled on all {plural(len(items), 'GPU')}",
        measured="Enabled",
        **common,
    )


# --- gpu_processes -------------------------------------------------------------------------


@gpu_check()
def gpu_processes(gpus, query_text):
    """Compute processes left on the GPUs (``nvidia-smi --query-compute-apps=pid,process_name,
    used_memory --format=csv,noheader``): any warns MONITOR, since burn-in and probes would fight
    them for memory and SMs. Output not collected warns."""
    check = "gpu_processes"
    if query_text is None:
        return result(
            check, WARN, "nvidia-smi --query-compute-apps output not collected", source=POLICY, action=MONITOR
        )
    procs = []
    for line in query_text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        procs.append(
            {"pid": int(fields[0]), "process_name": ", ".join(fields[1:-1]), "used_memory": fields[-1]}
        )
    common = {"measured": len(procs), "expected": 0, "unit": "processes", "source": POLICY, "details": procs}
    if procs:
        listing = ", ".join(f"pid {p['pid']} {p['process_name']} ({p['used_memory']})" for p in procs)
        return result(
            check, WARN, f"{len(procs)} compute process(es) on the GPUs: {listing}", action=MONITOR, **common
        )
    return result(check, PASS, f"no compute processes on {labels(gpu_list(gpus))}", **common)


# --- recovery_action -----------------------------------------------------------------------

# nvidia-smi's "GPU Recovery Action" (NVML nvmlDeviceGetRecoveryAction, R550+; XID 154 in the
# kernel log when it changes): the driver's own verdict on what the GPU needs.
RECOVERY_ACTIONS = {
    "none": None,
    "reset": RESET_GPU,
    "gpu reset": RESET_GPU,
    "reboot": REBOOT,
    "node reboot": REBOOT,
    "drain p2p": RESET_GPU,
    "drain and reset": RESET_GPU,
}


@gpu_check()
def recovery_action(gpus):
    """The driver's own recovery verdict per GPU (``gpu_recovery_action``, current drivers).

    ``None`` on every GPU passes; a reset, drain-and-reset or drain-P2P verdict fails RESET_GPU, a
    reboot verdict fails REBOOT (NVIDIA, XID catalogue: XID 154 "GPU Recovery Action Changed");
    a value gpufleet does not know fails REBOOT with it quoted. A driver that does not report the
    field (before R550, or N/A) skips with the reason.
    """
    check = "recovery_action"
    items = gpu_list(gpus)
    details = [
        {
            "index": g.get("index"),
            "pci_bus_id": g.get("pci_bus_id"),
            "gpu_recovery_action": g.get("gpu_recovery_action"),
        }
        for g in items
    ]
    have = [g for g in items if g.get("gpu_recovery_action")]
    if not have:
        return result(
            check,
            SKIP,
            f"nvidia-smi reports no GPU recovery action for {labels(items)} (drivers before R550 do not)",
            details=details,
        )
    source = "NVIDIA XID catalogue (XID 154, GPU Recovery Action)"
    wanted = []
    for g in have:
        value = str(g["gpu_recovery_action"]).strip()
        key = value.lower()
        if key == "none":
            continue
        wanted.append((g, value, RECOVERY_ACTIONS.get(key, REBOOT)))
    if wanted:
        action = worst_action(a for _g, _v, a in wanted)
        listing = ", ".join(f"{label(g)} {v}" for g, v, _a in wanted)
        return result(
            check,
            FAIL,
            f"the driver asks for recovery: {listing}",
            measured=sorted({v for _g, v, _a in wanted}),
            expected="None",
            source=source,
            action=action,
            details=details,
        )
    return result(
        check,
        PASS,
        f"no recovery action pending on {labels(have)}",
        measured="None",
        expected="None",
        source=source,
        details=details,
    )
