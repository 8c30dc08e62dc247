# Copyright: gpufleet developers
# Apache-2.0
"""GPU checks read from nvidia-smi and the PCI bus: count, driver, persistence, clocks, PCIe,
leftover processes. Sources and the result shape: ``core``."""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.module_utils.versions import to_int
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import nvidia_driver
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import policy as site_policy
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks.core import (
    AZURE,
    DCGM,
    FAIL,
    ISOLATE,
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

THROTTLE_HARDWARE = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown")
THROTTLE_WARN = ("sw_power_cap",)
THROTTLE_BENIGN = ("gpu_idle", "applications_clocks_setting", "sync_boost", "display_clocks_setting")


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


# --- throttle -------------------------------------------------------------------------------


def _power_cap_reading(g, tolerance_pct):
    """Why the software power cap holds ``g``'s clocks: ``"lowered"`` (the limit was set more than
    ``tolerance_pct`` below the GPU's default), ``"at_limit"`` (drawing within ``tolerance_pct`` of
    the limit: the cap at work on a busy GPU), or None when the readings cannot tell."""
    power = g.get("power") or {}
    limits = g.get("power_limits") or {}
    draw, limit, default = power.get("draw_w"), power.get("limit_w"), limits.get("default_w")
    if limit and default and limit < default * (1 - tolerance_pct / 100.0):
        return "lowered"
    if draw is not None and limit and draw >= limit * (1 - tolerance_pct / 100.0):
        return "at_limit"
    return None


@gpu_check()
def throttle(gpus, policy=None):
    """Active clock event (throttle) reasons, as nvidia-smi names them without the
    ``clocks_event_reason_`` / ``clocks_throttle_reason_`` prefix.

    HW slowdown (0x8), HW thermal slowdown (0x40), HW power brake (0x80) and SW thermal slowdown
    (0x20) fail ISOLATE: on a node being verified (idle or under a probe) they mean the cooling or
    the power delivery is at fault, which a reset or reboot does not fix. azurehpc-health-checks flags
    the same reasons (it only logs a warning) and DCGM warns on thermal/power violations; failing is
    gpufleet policy, because a throttled GPU drags every collective it is part of. SW power cap warns
    MONITOR (azurehpc does not flag it; it is the power limit at work). GPU idle, applications clocks,
    sync boost and display clocks are benign. No reasons reported warns MONITOR.

    The software power cap is judged with the power readings and the site's
    ``power_cap_tolerance_pct`` (policy): a GPU drawing within the tolerance of its power limit is
    busy at its limit, which is what the cap is for (pass, said so); a power limit set below the
    GPU's default by more than the tolerance is a policy result (RECONFIGURE); otherwise it warns.
    """
    check = "throttle"
    policy = site_policy.validate(policy)
    items = gpu_list(gpus)
    details = [
        {
            "index": g.get("index"),
            "pci_bus_id": g.get("pci_bus_id"),
            "active": list(g.get("clocks_event_reasons_active") or []),
        }
        for g in items
    ]
    hard = [
        (g, [r for r in g.get("clocks_event_reasons_active") or () if r in THROTTLE_HARDWARE]) for g in items
    ]
    hard = [(g, r) for g, r in hard if r]
    if hard:
        listing = "; ".join(f"{label(g)} {', '.join(r)}" for g, r in hard)
        return result(
            check,
            FAIL,
            f"hardware/thermal clock slowdown active: {listing}; none expected",
            measured=sorted({x for _g, r in hard for x in r}),
            expected=[],
            source=AZURE + " (flags these reasons); " + POLICY + " (fail)",
            action=ISOLATE,
            details=details,
        )
    capped = [g for g in items if any(r in THROTTLE_WARN for r in g.get("clocks_event_reasons_active") or ())]
    tolerance = policy["power_cap_tolerance_pct"]
    readings = {id(g): _power_cap_reading(g, tolerance) for g in capped}
    lowered = [g for g in capped if readings[id(g)] == "lowered"]
    if lowered and all(readings[id(g)] is not None for g in capped):
        listing = "; ".join(
            f"{label(g)} {(g.get('power') or {}).get('limit_w'):g} W of "
            f"{(g.get('power_limits') or {}).get('default_w'):g} W default"
            for g in lowered
        )
        return result(
            check,
            POLICY_STATUS,
            f"clocks held by a power limit set below the default: {listing} "
            f"(more than {tolerance:g}% below, power_cap_tolerance_pct)",
            measured=["sw_power_cap"],
            expected=[],
            source=POLICY,
            action=RECONFIGURE,
            details=details,
        )
    capped = [g for g in capped if readings[id(g)] is None]
    at_limit = [key for key, why in readings.items() if why == "at_limit"]
    if capped:
        return result(
            check,
            WARN,
            f"clocks held by the software power cap on {labels(capped)}",
            measured=["sw_power_cap"],
            expected=[],
            source=DCGM + " (power violation is WARN)",
            action=MONITOR,
            details=details,
        )
    unknown = [g for g in items if not g.get("clocks_event_reasons")]
    if unknown:
        return result(
            check,
            WARN,
            f"nvidia-smi reported no clock event reasons for {labels(unknown)}",
            action=MONITOR,
            source=AZURE,
            details=details,
        )
    benign = sorted(
        {r for g in items for r in g.get("clocks_event_reasons_active") or () if r not in THROTTLE_WARN}
    )
    note = f" (benign: {', '.join(benign)})" if benign else ""
    if at_limit:
        note += (
            f"; software power cap on {len(at_limit)} GPU(s) drawing within {tolerance:g}% of their "
            "power limit: busy at the limit, the cap at work"
        )
    return result(
        check,
        PASS,
        f"no throttling on {labels(items)}{note}",
        measured=benign,
        expected=[],
        source=AZURE,
        details=details,
    )


# --- pcie_link -----------------------------------------------------------------------------


def _virtualized(g):
    """True when nvidia-smi says the GPU is handed to a VM (pass-through, vGPU), not bare metal."""
    mode = (g.get("virtualization_mode") or "").strip().lower()
    return bool(mode) and mode != "none"


@gpu_check()
def pcie_link(gpus, policy=None):
    """PCIe link width and generation against the maximum the GPU and slot support.

    On bare metal a narrower link than the maximum (or than the site's ``pcie_min_width``) fails
    REBOOT: a reboot retrains the link; when it stays narrow the GPU needs reseating (width does not
    drop for power saving). In a VM (nvidia-smi's virtualization mode Pass-Through or vGPU) the
    guest sees the hypervisor's virtual link, not the trained one: narrower than the maximum there
    is a platform trait, a policy result (RECONFIGURE) unless the site accepts it
    (``pcie_passthrough_narrow_ok``). A lower generation only warns MONITOR: GPUs drop the link
    generation when idle to save power, so it has to be re-checked under load. Values nvidia-smi
    did not report warn.
    """
    check = "pcie_link"
    policy = site_policy.validate(policy)
    items = gpu_list(gpus)
    details = [
        {
            "index": g.get("index"),
            "pci_bus_id": g.get("pci_bus_id"),
            "virtualization_mode": g.get("virtualization_mode"),
            **(g.get("pcie") or {}),
        }
        for g in items
    ]
    narrow, in_vm, accepted, slow, unknown = [], [], [], [], []
    for g in items:
        link = g.get("pcie") or {}
        wc, wm, gc, gm = (link.get(k) for k in ("width_current", "width_max", "gen_current", "gen_max"))
        if None in (wc, wm, gc, gm):
            unknown.append(g)
        if wc is not None and wm is not None and wc < wm:
            text = f"{label(g)} x{wc} of x{wm}"
            if policy["pcie_min_width"] is not None and wc >= policy["pcie_min_width"]:
                accepted.append(text + f" (pcie_min_width {policy['pcie_min_width']})")
            elif _virtualized(g) and policy["pcie_passthrough_narrow_ok"]:
                accepted.append(text + f" ({g.get('virtualization_mode')}, pcie_passthrough_narrow_ok)")
            elif _virtualized(g):
                in_vm.append(text + f" ({g.get('virtualization_mode')})")
            else:
                narrow.append(text)
        if gc is not None and gm is not None and gc < gm:
            slow.append(f"{label(g)} gen{gc} of gen{gm}")
    if narrow:
        return result(
            check,
            FAIL,
            f"PCIe link narrower than the maximum: {'; '.join(narrow)}; "
            "reboot to retrain, reseat if it stays",
            measured=min((g.get("pcie") or {}).get("width_current") or 0 for g in items),
            expected="max width",
            unit="lanes",
            source=POLICY,
            action=REBOOT,
            details=details,
        )
    if in_vm:
        return result(
            check,
            POLICY_STATUS,
            f"PCIe link narrower than the maximum in a VM: {'; '.join(in_vm)}: the guest sees the "
            "hypervisor's virtual link; set pcie_passthrough_narrow_ok in the site's policy if this "
            "platform is intended",
            measured=min((g.get("pcie") or {}).get("width_current") or 0 for g in items),
            expected="max width",
            unit="lanes",
            source=POLICY,
            action=RECONFIGURE,
            details=details,
        )
    if slow:
        return result(
            check,
            WARN,
            f"PCIe link below its maximum generation: {'; '.join(slow)} (GPUs drop the generation when idle "
            "to save power: re-check under load)",
            expected="max generation",
            source=POLICY,
            action=MONITOR,
            details=details,
        )
    if unknown:
        return result(
            check,
            WARN,
            f"nvidia-smi did not report the PCIe link of {labels(unknown)}",
            source=POLICY,
            action=MONITOR,
            details=details,
        )
    links = sorted(
        {
            f"gen{(g.get('pcie') or {}).get('gen_current')} x{(g.get('pcie') or {}).get('width_current')}"
            for g in items
        }
    )
    if accepted:
        return result(
            check,
            PASS,
            f"PCIe links as the site's policy accepts: {'; '.join(accepted)}",
            expected="policy width",
            source=POLICY,
            details=details,
        )
    return result(
        check,
        PASS,
        f"PCIe links at their maximum on {labels(items)} ({', '.join(links)})",
        expected="max width and generation",
        source=POLICY,
        details=details,
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
