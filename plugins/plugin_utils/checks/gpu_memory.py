# Copyright: gpufleet developers
# Apache-2.0
"""GPU memory error checks: ECC, row remapping (Ampere on), dynamic page retirement (before).

Thresholds from DCGM, NVIDIA's RMA policy and azurehpc-health-checks (cited in ``core``)."""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.module_utils.versions import to_int
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import policy as site_policy
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks.core import (
    AZURE,
    DCGM,
    DPR_URL,
    FAIL,
    ISOLATE,
    MONITOR,
    PASS,
    POLICY,
    POLICY_STATUS,
    REBOOT,
    RECONFIGURE,
    RESET_GPU,
    RMA_URL,
    SKIP,
    WARN,
    gpu_check,
    gpu_list,
    label,
    labels,
    plural,
    result,
)

# DCGM_LIMIT_MAX_RETIRED_PAGES in current DCGM (60 before it was aligned with NVIDIA's field
# diagnostic); DCGM_LIMIT_MAX_RETIRED_PAGES_SOFT_LIMIT for DBE pages.
RETIRED_PAGES_LIMIT = 63
RETIRED_DBE_SOFT_LIMIT = 15
# NVIDIA RMA policy / azurehpc azure_gpu_ecc.nhc: more remaps than this set the failure flag.
REMAPPED_ROWS_UNC_LIMIT = 512


# --- ecc ------------------------------------------------------------------------------------


def _sram(g):
    """(aggregate SRAM uncorrectable count or None, SRAM threshold exceeded flag or None)."""
    split = g.get("ecc_split") or {}
    aggregate = split.get("aggregate") or {}
    return to_int(aggregate.get("sram_uncorrectable")), split.get("sram_threshold_exceeded")


@gpu_check()
def ecc(gpus, policy=None):
    """ECC enabled where the site wants it, nothing pending, no uncorrectable errors that matter.

    Volatile uncorrectable > 0 fails RESET_GPU (DCGM MonitorMemVolatileDbes fails on any; the GPU
    needs a reset to map the page/row out). SRAM is judged apart from DRAM and over the GPU's life
    (aggregate counts survive a reboot, where volatile ones are cleared): the driver's SRAM threshold
    flag (``SRAM Threshold Exceeded: Yes``, R535+) fails ISOLATE (NVIDIA's RMA criterion for SRAM);
    lifetime SRAM uncorrectable errors below it warn MONITOR (azurehpc-health-checks fails on any;
    SRAM cannot be remapped, so they are watched until NVIDIA's threshold says RMA). ECC disabled is
    a policy result (RECONFIGURE: ``nvidia-smi -e 1``, then reboot) where the site requires ECC
    (``ecc_required``, default true), a pass with a note where it does not. Pending mode different
    from current warns REBOOT. GPUs whose ECC mode nvidia-smi reports as not supported (GeForce, some
    workstation cards) are said so: skip when no GPU supports ECC, warn when only some do not report
    it. Aggregate counts go to details.
    """
    check = "ecc"
    policy = site_policy.validate(policy)
    items = gpu_list(gpus)
    details = []
    for g in items:
        mode = g.get("ecc_mode") or {}
        errors = g.get("ecc_errors") or {}
        details.append(
            {
                "index": g.get("index"),
                "pci_bus_id": g.get("pci_bus_id"),
                "current": mode.get("current"),
                "pending": mode.get("pending"),
                "volatile": (errors.get("volatile") or {}),
                "aggregate": (errors.get("aggregate") or {}),
                "sram_dram": g.get("ecc_split"),
            }
        )
    by_index = dict(zip((id(g) for g in items), details, strict=True))
    unsupported = [g for g in items if by_index[id(g)]["current"] is None]
    if len(unsupported) == len(items):
        return result(
            check,
            SKIP,
            f"nvidia-smi reports no ECC mode for {labels(items)} (ECC not supported on this GPU model)",
            details=details,
        )
    common = {"unit": "errors", "source": DCGM, "details": details}
    dbe = [g for g in items if (to_int(by_index[id(g)]["volatile"].get("uncorrectable")) or 0) > 0]
    if dbe:
        listing = ", ".join(f"{label(g)} {by_index[id(g)]['volatile'].get('uncorrectable')}" for g in dbe)
        return result(
            check,
            FAIL,
            f"volatile uncorrectable ECC errors: {listing}; 0 expected",
            measured=sum(to_int(by_index[id(g)]["volatile"].get("uncorrectable")) or 0 for g in dbe),
            expected=0,
            action=RESET_GPU,
            **common,
        )
    over = [g for g in items if _sram(g)[1] is True]
    if over:
        return result(
            check,
            FAIL,
            f"SRAM ECC error threshold exceeded on {labels(over)} (SRAM Threshold Exceeded: Yes): "
            "the GPU meets NVIDIA's RMA criterion for SRAM errors",
            measured=max(_sram(g)[0] or 0 for g in over),
            expected=0,
            action=ISOLATE,
            **{**common, "source": DCGM + "; " + AZURE + " (SRAM uncorrectable)"},
        )
    sram = [g for g in items if (_sram(g)[0] or 0) > 0]
    if sram:
        listing = ", ".join(f"{label(g)} {_sram(g)[0]}" for g in sram)
        return result(
            check,
            WARN,
            f"lifetime (aggregate) SRAM uncorrectable ECC errors: {listing}; SRAM cannot be remapped: "
            "watch for growth and for the SRAM threshold flag",
            measured=sum(_sram(g)[0] or 0 for g in sram),
            expected=0,
            action=MONITOR,
            **{**common, "source": AZURE + " (fails on any SRAM uncorrectable); " + POLICY + " (warn)"},
        )
    disabled = [g for g in items if by_index[id(g)]["current"] is False]
    if disabled and policy["ecc_required"]:
        return result(
            check,
            POLICY_STATUS,
            f"ECC Disabled on {labels(disabled)}, Enabled required by the site's policy (ecc_required): "
            "nvidia-smi -e 1, then reboot",
            measured="Disabled",
            expected="Enabled",
            action=RECONFIGURE,
            **{**common, "unit": None, "source": POLICY},
        )
    pending = [
        g
        for g in items
        if by_index[id(g)]["pending"] is not None and by_index[id(g)]["pending"] != by_index[id(g)]["current"]
    ]
    if pending:
        return result(
            check,
            WARN,
            f"ECC mode change pending on {labels(pending)}: it takes effect at the next reboot",
            measured="pending",
            expected="Enabled",
            action=REBOOT,
            **{**common, "unit": None, "source": POLICY},
        )
    if unsupported:
        return result(
            check,
            WARN,
            f"nvidia-smi reports no ECC mode for {labels(unsupported)} while other GPUs have ECC Enabled",
            measured=None,
            expected="Enabled",
            action=MONITOR,
            **{**common, "unit": None},
        )
    aggregate = sum(to_int(d["aggregate"].get("uncorrectable")) or 0 for d in details)
    note = f"; {aggregate} aggregate uncorrectable (lifetime, see details)" if aggregate else ""
    if disabled:
        return result(
            check,
            PASS,
            f"ECC Disabled on {labels(disabled)}; the site's policy does not require it{note}",
            measured="Disabled",
            expected="any",
            **{**common, "source": POLICY},
        )
    return result(
        check,
        PASS,
        f"ECC Enabled on all {plural(len(items), 'GPU')}, 0 volatile uncorrectable errors{note}",
        measured=0,
        expected=0,
        **common,
    )


# --- row_remap ------------------------------------------------------------------------------


@gpu_check()
def row_remap(gpus):
    """Row remapping (Ampere and later): failure fails ISOLATE (NVIDIA's RMA criterion), more than
    512 uncorrectable remaps fails ISOLATE (azurehpc-health-checks; the RMA policy sets the failure
    flag there), a pending remap fails RESET_GPU (it takes effect at the next GPU reset). GPUs
    without remapped-rows data (pre-Ampere, or N/A as on MIG-enabled A100s) are skipped, with reason."""
    check = "row_remap"
    items = gpu_list(gpus)
    details = [
        {"index": g.get("index"), "pci_bus_id": g.get("pci_bus_id"), "remapped_rows": g.get("remapped_rows")}
        for g in items
    ]
    have = [g for g in items if isinstance(g.get("remapped_rows"), dict)]
    if not have:
        return result(
            check,
            SKIP,
            f"nvidia-smi reports no remapped-rows data for {labels(items)} "
            "(row remapping exists from Ampere on; pre-Ampere GPUs retire pages instead)",
            details=details,
        )
    failed = [g for g in have if g["remapped_rows"].get("failure") is True]
    if failed:
        return result(
            check,
            FAIL,
            f"row remapping failure on {labels(failed)}: the GPU meets NVIDIA's RMA criterion",
            measured="failure",
            expected="no failure",
            source=RMA_URL,
            action=ISOLATE,
            details=details,
        )
    too_many = [
        g for g in have if (to_int(g["remapped_rows"].get("uncorrectable")) or 0) > REMAPPED_ROWS_UNC_LIMIT
    ]
    if too_many:
        listing = ", ".join(f"{label(g)} {g['remapped_rows'].get('uncorrectable')}" for g in too_many)
        return result(
            check,
            FAIL,
            f"uncorrectable remapped rows above {REMAPPED_ROWS_UNC_LIMIT}: {listing}",
            measured=max(to_int(g["remapped_rows"].get("uncorrectable")) or 0 for g in too_many),
            expected=REMAPPED_ROWS_UNC_LIMIT,
            unit="rows",
            source=AZURE + "; " + RMA_URL,
            action=ISOLATE,
            details=details,
        )
    pending = [g for g in have if g["remapped_rows"].get("pending") is True]
    if pending:
        return result(
            check,
            FAIL,
            f"row remap pending on {labels(pending)}: it takes effect at the next GPU reset",
            measured="pending",
            expected="none pending",
            source=AZURE,
            action=RESET_GPU,
            details=details,
        )
    missing = [g for g in items if g not in have]
    unknown = [g for g in have if g["remapped_rows"].get("pending") is None]
    if unknown:
        return result(
            check,
            WARN,
            f"nvidia-smi did not report the remap pending flag for {labels(unknown)}",
            action=MONITOR,
            source=AZURE,
            details=details,
        )
    note = f"; no remapped-rows data for {labels(missing)}" if missing else ""
    return result(
        check,
        PASS,
        f"no row remap pending or failed on {labels(have)}{note}",
        measured="none pending",
        expected="none pending",
        source=AZURE,
        details=details,
    )


# --- retired_pages --------------------------------------------------------------------------


@gpu_check()
def retired_pages(gpus):
    """Dynamic page retirement (pre-Ampere ECC GPUs; NVIDIA DPR).

    A pending retirement fails RESET_GPU (the page is blacklisted when the GPU is next reattached).
    Single- plus double-bit retired pages at or above DCGM's limit (63) fail ISOLATE (DCGM health
    watch, aligned with NVIDIA's field diagnostic that decides RMA). Double-bit retired pages above
    DCGM's soft limit (15) warn MONITOR (DCGM fails only if they keep growing by more than one a
    week, which one snapshot cannot tell). No retired-pages data (Ampere and later use row
    remapping) skips, with the reason.
    """
    check = "retired_pages"
    items = gpu_list(gpus)
    details = [
        {"index": g.get("index"), "pci_bus_id": g.get("pci_bus_id"), "retired_pages": g.get("retired_pages")}
        for g in items
    ]
    have = [g for g in items if isinstance(g.get("retired_pages"), dict)]
    if not have:
        return result(
            check,
            SKIP,
            f"nvidia-smi reports no retired-pages data for {labels(items)} "
            "(Ampere and later GPUs remap rows instead; see row_remap)",
            details=details,
        )

    def total(g):
        pages = g["retired_pages"]
        return (to_int(pages.get("single_bit")) or 0) + (to_int(pages.get("double_bit")) or 0)

    worst = max(total(g) for g in have)
    common = {"measured": worst, "expected": RETIRED_PAGES_LIMIT, "unit": "pages", "details": details}
    full = [g for g in have if total(g) >= RETIRED_PAGES_LIMIT]
    if full:
        listing = ", ".join(f"{label(g)} {total(g)}" for g in full)
        return result(
            check,
            FAIL,
            f"retired pages (single + double bit) at or above {RETIRED_PAGES_LIMIT}: {listing}",
            source=DCGM + " (DCGM_LIMIT_MAX_RETIRED_PAGES); " + DPR_URL,
            action=ISOLATE,
            **common,
        )
    pending = [g for g in have if g["retired_pages"].get("pending") is True]
    if pending:
        return result(
            check,
            FAIL,
            f"page retirement pending on {labels(pending)}: it takes effect when the GPU is reset",
            source=DPR_URL,
            action=RESET_GPU,
            **common,
        )
    dbe = [g for g in have if (to_int(g["retired_pages"].get("double_bit")) or 0) > RETIRED_DBE_SOFT_LIMIT]
    if dbe:
        listing = ", ".join(f"{label(g)} {g['retired_pages'].get('double_bit')}" for g in dbe)
        return result(
            check,
            WARN,
            f"double-bit retired pages above {RETIRED_DBE_SOFT_LIMIT}: {listing}; watch whether they grow",
            source=DCGM + " (DCGM_LIMIT_MAX_RETIRED_PAGES_SOFT_LIMIT)",
            action=MONITOR,
            **{
                **common,
                "measured": max(to_int(g["retired_pages"].get("double_bit")) or 0 for g in dbe),
                "expected": RETIRED_DBE_SOFT_LIMIT,
            },
        )
    return result(
        check,
        PASS,
        f"{worst} retired pages at most on {labels(have)} (limit {RETIRED_PAGES_LIMIT}), none pending",
        source=DCGM + " (DCGM_LIMIT_MAX_RETIRED_PAGES); " + DPR_URL,
        **common,
    )
