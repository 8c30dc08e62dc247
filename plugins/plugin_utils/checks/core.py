# Copyright: gpufleet developers
# Apache-2.0
"""What every health check shares: the result type, the verdict fold, the sources, the GPU preamble.

Checks are pure functions: collected state in, one typed result out. ``gpufleet verify`` (pytest +
testinfra) collects the raw state of a host (``gpu_facts``/``ib_facts`` output, command output,
local fact files) and hands it to them through ``registry.CHECKS``; the judgement lives in the
family modules (gpu, gpu_memory, kernel_log, fabric, software, host), once. Controller code.

Every check returns ``result(...)``::

    {"check": str, "status": "pass"|"warn"|"fail"|"skip"|"policy"|"unverified", "summary": str,
     "measured": JSON value or None, "expected": JSON value or None, "unit": str or None,
     "source": str or None, "action": one of ACTIONS or None, "details": list}

``skip`` always carries its reason in ``summary`` ("no GPU present", ...) and is never a pass.
``action`` is None for pass and skip, and set for warn, fail, policy and unverified.

``unverified`` says a GPU benchmark could not measure hardware that is there (no probe runtime
recorded on a GPU host, GPU memory held by other processes): the GPUs were not verified. It is not
a fault (never degraded or unhealthy on its own: a missing package is not broken hardware), and it
is not a pass either: a host with one is ``unverified``, not ``healthy`` (``verdict``).

Health and policy are different results. ``fail``/``warn`` say something is broken or going wrong
(hardware, driver, fabric). ``policy`` says the host differs from what this site intends (ECC or
persistence mode off, a PCIe width the site did not plan for) while nothing is broken: its action
is RECONFIGURE (or MONITOR), never RESET_GPU/REBOOT/ISOLATE, and it never makes a host degraded or
unhealthy on its own (``verdict`` lists it apart). What a site intends is ``policy.validate``'s.
"""

from __future__ import annotations

import functools

PASS = "pass"  # noqa: S105 (a status word, not a password)
WARN = "warn"
FAIL = "fail"
SKIP = "skip"
POLICY_STATUS = "policy"  # differs from the site's intended configuration; nothing broken
UNVERIFIED_STATUS = "unverified"  # GPUs present but a benchmark could not measure them
STATUSES = (PASS, WARN, FAIL, SKIP, POLICY_STATUS, UNVERIFIED_STATUS)

# Suggested actions, least to most severe. MONITOR: nothing to do now, watch for repeats.
# RECONFIGURE: the host differs from the site's policy (a setting, not a fault): apply the site's
# configuration (playbooks/site.yml) or change the policy if the difference is intended.
# REPROVISION: software state differs from what gpufleet installs; re-run playbooks/site.yml.
# RESET_GPU: drain the GPU's work and reset it (nvidia-smi -r). REBOOT: drain and reboot the node.
# ISOLATE: take the node out of service for hardware inspection.
MONITOR = "MONITOR"
RECONFIGURE = "RECONFIGURE"
REPROVISION = "REPROVISION"
RESET_GPU = "RESET_GPU"
REBOOT = "REBOOT"
ISOLATE = "ISOLATE"
ACTIONS = (MONITOR, RECONFIGURE, REPROVISION, RESET_GPU, REBOOT, ISOLATE)
POLICY_ACTIONS = (MONITOR, RECONFIGURE)  # the only actions a policy result may carry

HEALTHY = "healthy"
DEGRADED = "degraded"
UNHEALTHY = "unhealthy"
UNREACHABLE = "unreachable"
VERDICTS = (HEALTHY, DEGRADED, UNHEALTHY, UNREACHABLE)
# Nothing failed or warned, but some GPU benchmark could not run: not known to be healthy. Kept out
# of VERDICTS so reports without such a host read as before (summaries and metrics list it only
# when a host has it, as the policy status is listed only where there is one).
UNVERIFIED = "unverified"
ALL_VERDICTS = (*VERDICTS, UNVERIFIED)


def result(
    check,
    status,
    summary,
    *,
    measured=None,
    expected=None,
    unit=None,
    source=None,
    action=None,
    details=None,
):
    """One typed check result. Raises ValueError for a status/action outside the vocabulary."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; known: {', '.join(STATUSES)}")
    if status in (PASS, SKIP):
        action = None
    elif action is None:
        action = RECONFIGURE if status == POLICY_STATUS else MONITOR
    if action is not None and action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    if status == POLICY_STATUS and action not in POLICY_ACTIONS:
        raise ValueError(f"a policy result suggests {' or '.join(POLICY_ACTIONS)}, not {action!r}")
    return {
        "check": check,
        "status": status,
        "summary": summary,
        "measured": measured,
        "expected": expected,
        "unit": unit,
        "source": source,
        "action": action,
        "details": list(details or []),
    }


def worst_action(actions):
    """The most severe of ``actions`` (None entries ignored), or None."""
    known = [a for a in actions if a in ACTIONS]
    return max(known, key=ACTIONS.index) if known else None


def verdict(results, reachable=True):
    """Fold a host's check results into ``{"verdict", "action", "failing", "warning", "skipped",
    "policy"}``.

    unreachable when the host could not be reached; unhealthy when any check failed; degraded when
    any warned; unverified when a GPU benchmark could not measure (and nothing failed or warned);
    healthy otherwise. Policy results never change the verdict: a healthy host that differs from
    the site's policy stays healthy, with action RECONFIGURE. ``failing``/``warning``/``skipped``/
    ``policy``/``unverified`` list check names (``policy``, ``unverified`` only when there are any).
    """
    results = list(results or ())
    failing = [r["check"] for r in results if r.get("status") == FAIL]
    warning = [r["check"] for r in results if r.get("status") == WARN]
    skipped = [r["check"] for r in results if r.get("status") == SKIP]
    policy = [r["check"] for r in results if r.get("status") == POLICY_STATUS]
    unverified = [r["check"] for r in results if r.get("status") == UNVERIFIED_STATUS]
    if not reachable:
        state = UNREACHABLE
        action = None  # the error says why; nothing about the host's health is known
    elif failing:
        state = UNHEALTHY
        action = worst_action(r.get("action") for r in results if r.get("status") == FAIL)
    elif warning:
        state = DEGRADED
        action = worst_action(r.get("action") for r in results if r.get("status") == WARN)
    elif unverified:
        state = UNVERIFIED
        action = worst_action(r.get("action") for r in results if r.get("status") == UNVERIFIED_STATUS)
    else:
        state = HEALTHY
        action = worst_action(r.get("action") for r in results if r.get("status") == POLICY_STATUS)
    out = {"verdict": state, "action": action, "failing": failing, "warning": warning, "skipped": skipped}
    if policy:
        out["policy"] = policy
    if unverified:
        out["unverified"] = unverified
    return out


# ================================================================================================
# The sources of the checks' thresholds (every family module), named once here and cited by key
# in ``source``:
#
# - azurehpc-health-checks: Azure/azurehpc-health-checks customTests/*.nhc (facts.md "Health checks").
#   azure_gpu_persistence.nhc enables persistence mode where it is off and fails when it cannot;
#   azure_gpu_ecc.nhc fails on row remap pending, row remap failure, > 512 uncorrectable remapped
#   rows, any uncorrectable SRAM count, and (V100) a full page retirement table (>= 62 pages with a
#   pending retirement); azure_gpu_clock_throttling.nhc flags every active reason except GPU idle,
#   none and SW power cap (it logs a warning, it does not fail); azure_gpu_xid.nhc for XIDs.
# - DCGM: NVIDIA DCGM health watch (DcgmHealthWatch: MonitorMemVolatileDbes fails on any volatile
#   DBE; MonitorMemSbeDbeRetiredPages fails when SBE + DBE retired pages >= DCGM_LIMIT_MAX_RETIRED_PAGES,
#   60 in older releases, 63 "to match the field diag" in newer ones, and when DBE pages exceed the
#   soft limit 15 while growing by more than one a week; MonitorMemRowRemapFailures fails on a row
#   remap failure; thermal and power violations are WARN).
# - NVIDIA DPR: "Dynamic Page Retirement", https://docs.nvidia.com/deploy/dynamic-page-retirement/
#   (a page is retired after one DBE or two SBEs on one address; "Pending Page Blacklist: Yes" means
#   the retirement takes effect when the GPU is next reattached, i.e. after a reset / driver reload).
# - NVIDIA RMA: "RMA Policy Thresholds", https://docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt/
#   rma-policy-thresholds-for-row-remapping.html (the row-remapping failure flag is the RMA criterion;
#   it is set at the latest after 512 remappings for uncorrectable errors).
# - NCCL env: https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html (via nccl_tuning).
# ================================================================================================


AZURE = "azurehpc-health-checks"
DCGM = "DCGM"
POLICY = "gpufleet policy"
DPR_URL = "https://docs.nvidia.com/deploy/dynamic-page-retirement/"
RMA_URL = (
    "https://docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt/rma-policy-thresholds-for-row-remapping.html"
)

# --- shared helpers ---------------------------------------------------------------------------


def gpu_list(gpus):
    return [g for g in (gpus or {}).get("gpus") or () if isinstance(g, dict)]


def label(gpu):
    return f"GPU {gpu.get('index')} ({gpu.get('pci_bus_id') or 'bus id unknown'})"


def labels(items):
    return ", ".join(label(g) for g in items)


def no_gpu(check, gpus):
    """The skip result for a GPU check on a host without GPUs, else None (used by the verify
    checks and probes too, so the reason reads the same everywhere)."""
    gpus = gpus or {}
    if int(gpus.get("gpu_count") or 0) > 0:
        return None
    summary = "no GPU present"
    if gpus.get("in_container"):
        summary += " (container: no GPU here)"
    return result(check, SKIP, summary)


def no_smi(check, gpus):
    """Skip for checks that read nvidia-smi fields when nvidia-smi did not answer (driver_loaded fails)."""
    gpus = gpus or {}
    if gpus.get("source") == "nvidia-smi":
        return None
    return result(
        check,
        SKIP,
        f"nvidia-smi did not answer, so no {check} data for {int(gpus.get('gpu_count') or 0)} GPU(s) "
        "on PCI; see the driver_loaded check",
    )


def gpu_check(smi=True, name=None):
    """The preamble every GPU check shares, written once: a decorator for ``check(gpus, ...)``.

    On a host without GPUs the check skips with ``no_gpu``'s reason; with ``smi`` (the check reads
    nvidia-smi fields) it also skips when nvidia-smi did not answer (``no_smi``), which
    driver_loaded reports as the failure. The check's name is ``name``, else the function's name.
    """

    def wrap(func):
        check_name = name or func.__name__

        @functools.wraps(func)
        def check(gpus, *args, **kwargs):
            skip = no_gpu(check_name, gpus) or (no_smi(check_name, gpus) if smi else None)
            return skip or func(gpus, *args, **kwargs)

        return check

    return wrap


def plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def tail(text, limit=300):
    text = " ".join(str(text or "").split())
    return text[-limit:] if text else ""
