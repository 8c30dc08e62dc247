# Copyright: gpufleet developers
# Apache-2.0
"""GPU checks where the platform decides what is normal: clock throttle reasons (a software power
cap on a busy GPU is the cap at work) and the PCIe link (pass-through VMs may show a narrower link).
Sources and the result shape: ``core``."""

from __future__ import annotations

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
    WARN,
    gpu_check,
    gpu_list,
    label,
    labels,
    result,
)

THROTTLE_HARDWARE = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown")
THROTTLE_WARN = ("sw_power_cap",)
THROTTLE_BENIGN = ("gpu_idle", "applications_clocks_setting", "sync_boost", "display_clocks_setting")


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
