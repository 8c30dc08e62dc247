# Copyright: gpufleet developers
# Apache-2.0
"""Host health checks as pure functions: collected state in, one typed result out.

Stdlib only, so Ansible can ship it to hosts. ``gpufleet verify`` (pytest + testinfra) collects the
raw state of a host (``gpu_facts``/``ib_facts`` output, command output, local fact files) and hands
it to these functions; the judgement lives here, once.

Every check returns ``result(...)``::

    {"check": str, "status": "pass"|"warn"|"fail"|"skip", "summary": str,
     "measured": JSON value or None, "expected": JSON value or None, "unit": str or None,
     "source": str or None, "action": one of ACTIONS or None, "details": list}

``skip`` always carries its reason in ``summary`` ("no GPU present", ...) and is never a pass.
``action`` is None for pass and skip, and set for warn and fail.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict

from ansible_collections.gpufleet.cluster.plugins.module_utils import (
    baselines,
    nccl_tuning,
    nvidia_driver,
    preflight,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils import cuda_toolkit as cuda_utils
from ansible_collections.gpufleet.cluster.plugins.module_utils import xid as xid_table

PASS = "pass"  # noqa: S105 (a status word, not a password)
WARN = "warn"
FAIL = "fail"
SKIP = "skip"
STATUSES = (PASS, WARN, FAIL, SKIP)

# Suggested actions, least to most severe. MONITOR: nothing to do now, watch for repeats.
# REPROVISION: software state differs from what gpufleet installs; re-run playbooks/site.yml.
# RESET_GPU: drain the GPU's work and reset it (nvidia-smi -r). REBOOT: drain and reboot the node.
# ISOLATE: take the node out of service for hardware inspection.
MONITOR = "MONITOR"
REPROVISION = "REPROVISION"
RESET_GPU = "RESET_GPU"
REBOOT = "REBOOT"
ISOLATE = "ISOLATE"
ACTIONS = (MONITOR, REPROVISION, RESET_GPU, REBOOT, ISOLATE)

HEALTHY = "healthy"
DEGRADED = "degraded"
UNHEALTHY = "unhealthy"
UNREACHABLE = "unreachable"
VERDICTS = (HEALTHY, DEGRADED, UNHEALTHY, UNREACHABLE)


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
        action = MONITOR
    if action is not None and action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
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
    """Fold a host's check results into ``{"verdict", "action", "failing", "warning", "skipped"}``.

    unreachable when the host could not be reached; unhealthy when any check failed; degraded when
    any warned; healthy otherwise. ``failing``/``warning``/``skipped`` list check names.
    """
    results = list(results or ())
    failing = [r["check"] for r in results if r.get("status") == FAIL]
    warning = [r["check"] for r in results if r.get("status") == WARN]
    skipped = [r["check"] for r in results if r.get("status") == SKIP]
    if not reachable:
        state = UNREACHABLE
        action = None  # the error says why; nothing about the host's health is known
    elif failing:
        state = UNHEALTHY
        action = worst_action(r.get("action") for r in results if r.get("status") == FAIL)
    elif warning:
        state = DEGRADED
        action = worst_action(r.get("action") for r in results if r.get("status") == WARN)
    else:
        state = HEALTHY
        action = None
    return {"verdict": state, "action": action, "failing": failing, "warning": warning, "skipped": skipped}


# ================================================================================================
# The checks. Each takes collected state (facts, command output, local fact files) and returns
# one ``result``. Sources named once here and cited by key in ``source``:
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

# DCGM_LIMIT_MAX_RETIRED_PAGES in current DCGM (60 before it was aligned with NVIDIA's field
# diagnostic); DCGM_LIMIT_MAX_RETIRED_PAGES_SOFT_LIMIT for DBE pages.
RETIRED_PAGES_LIMIT = 63
RETIRED_DBE_SOFT_LIMIT = 15
# NVIDIA RMA policy / azurehpc azure_gpu_ecc.nhc: more remaps than this set the failure flag.
REMAPPED_ROWS_UNC_LIMIT = 512

THROTTLE_HARDWARE = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown")
THROTTLE_WARN = ("sw_power_cap",)
THROTTLE_BENIGN = ("gpu_idle", "applications_clocks_setting", "sync_boost", "display_clocks_setting")

CHECKS = OrderedDict(
    [
        ("gpu_count", {"tier": "quick", "kind": "gpu", "title": "GPU count"}),
        ("driver_loaded", {"tier": "quick", "kind": "gpu", "title": "NVIDIA driver loaded and pinned"}),
        ("driver_package", {"tier": "quick", "kind": "software", "title": "NVIDIA driver package"}),
        ("persistence_mode", {"tier": "quick", "kind": "gpu", "title": "Persistence mode"}),
        ("ecc", {"tier": "quick", "kind": "gpu", "title": "ECC mode and error counts"}),
        ("row_remap", {"tier": "quick", "kind": "gpu", "title": "Row remapping"}),
        ("retired_pages", {"tier": "quick", "kind": "gpu", "title": "Retired pages"}),
        ("xid", {"tier": "quick", "kind": "gpu", "title": "XID errors in the kernel log"}),
        ("throttle", {"tier": "quick", "kind": "gpu", "title": "Clock throttle reasons"}),
        ("pcie_link", {"tier": "quick", "kind": "gpu", "title": "PCIe link width and generation"}),
        ("nvlink", {"tier": "quick", "kind": "fabric", "title": "NVLink active links"}),
        ("fabric_manager", {"tier": "quick", "kind": "fabric", "title": "Fabric Manager (NVSwitch)"}),
        ("peermem", {"tier": "quick", "kind": "fabric", "title": "GPUDirect RDMA (nvidia-peermem)"}),
        ("ib_ports", {"tier": "quick", "kind": "fabric", "title": "InfiniBand/RoCE ports"}),
        ("nccl_conf", {"tier": "quick", "kind": "software", "title": "NCCL configuration"}),
        ("container_runtime", {"tier": "quick", "kind": "software", "title": "Container GPU runtime"}),
        ("services", {"tier": "quick", "kind": "software", "title": "Required services"}),
        ("disk_headroom", {"tier": "quick", "kind": "software", "title": "Free disk"}),
        ("memory_headroom", {"tier": "quick", "kind": "software", "title": "Available memory"}),
        ("gpu_processes", {"tier": "quick", "kind": "gpu", "title": "Leftover GPU processes"}),
        ("cuda_toolkit", {"tier": "quick", "kind": "software", "title": "CUDA toolkit default"}),
        # Loads the NCCL library in a Python process on the host: seconds, not milliseconds.
        ("nccl_library", {"tier": "quick", "kind": "software", "title": "NCCL library version"}),
    ]
)


# --- helpers ------------------------------------------------------------------------------------


def _gpus(gpus):
    return [g for g in (gpus or {}).get("gpus") or () if isinstance(g, dict)]


def _label(gpu):
    return f"GPU {gpu.get('index')} ({gpu.get('pci_bus_id') or 'bus id unknown'})"


def _labels(items):
    return ", ".join(_label(g) for g in items)


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


def _no_smi(check, gpus):
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


def _gate(check, gpus):
    return no_gpu(check, gpus) or _no_smi(check, gpus)


def _int(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def _plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


# --- 1. gpu_count ------------------------------------------------------------------------------


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
        for g in _gpus(gpus)
    ]
    common = {"measured": found, "expected": expected, "unit": "GPUs", "source": POLICY, "details": details}
    where = " (container: no GPU here)" if gpus.get("in_container") else ""
    if expected is not None and _int(expected) is None:
        return result(
            check, FAIL, f"gpufleet_expected_gpus {expected!r} is not a number", action=MONITOR, **common
        )
    expected = _int(expected)
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
    if expected is None:
        return result(
            check,
            PASS,
            f"{_plural(found, 'GPU')} found ({source}); no gpufleet_expected_gpus set to compare with",
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
    return result(check, PASS, f"{_plural(found, 'GPU')} found, {expected} expected{where}", **common)


# --- 2. driver_loaded --------------------------------------------------------------------------


def _tail(text, limit=300):
    text = " ".join(str(text or "").split())
    return text[-limit:] if text else ""


def driver_loaded(gpus, branch=None, version=None):
    """The NVIDIA kernel driver answers nvidia-smi, on the pinned branch/version, with one VBIOS
    per GPU model.

    Not loaded (nvidia-smi failed) fails REPROVISION with the tail of nvidia-smi's error. A driver
    off the pinned branch (``nvidia_driver_branch``) or version (``nvidia_driver_version``) fails
    REPROVISION. GPUs of one model with different VBIOS versions warn MONITOR (azurehpc-health-checks
    checks the VBIOS is the same across GPUs). A driver version nvidia-smi did not report warns.
    """
    check = "driver_loaded"
    skip = no_gpu(check, gpus)
    if skip:
        return skip
    items = _gpus(gpus)
    expected = str(version) if version else (f"{branch}.x" if branch else None)
    if gpus.get("source") != "nvidia-smi":
        error = _tail(gpus.get("driver_error")) or "no output"
        return result(
            check,
            FAIL,
            f"NVIDIA driver not answering on {_labels(items)}: nvidia-smi failed: {error}",
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
            per = "; ".join(f"{_label(g)} {g.get('vbios_version') or 'not reported'}" for g in members)
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
        check, PASS, f"driver {loaded} loaded on {_plural(len(items), 'GPU')}{pin}", details=details, **common
    )


# --- 3. driver_package -------------------------------------------------------------------------

_DRIVER_VERSION = re.compile(r"^\d{3}\.\d+(\.\d+)?$")
_DRIVER_PACKAGE = re.compile(r"(nvidia|libcuda|cuda-drivers|firmware-nvidia)")


def driver_package(driver_fact, packages, branch=None, version=None):
    """The driver package the nvidia_driver role recorded is still the installed one.

    ``driver_fact``: /etc/ansible/facts.d/gpufleet_nvidia_driver.fact, or None (the role has not run:
    fail REPROVISION). ``packages``: {name: version} of installed packages. Fails REPROVISION when no
    installed package carries the recorded ``package_version`` any more, or an installed NVIDIA driver
    package is off the pinned branch / version. Runs on GPU-less hosts too (software state).
    """
    check = "driver_package"
    branch = str(branch or (driver_fact or {}).get("branch") or "")
    pinned = nvidia_driver.upstream_version(version) if version else ""
    expected = pinned or (f"{branch}.x" if branch else None)
    if not isinstance(driver_fact, dict):
        return result(
            check,
            FAIL,
            "the nvidia_driver role has not run on this host (no gpufleet_nvidia_driver local fact)",
            expected=expected,
            source=POLICY,
            action=REPROVISION,
        )
    packages = packages if isinstance(packages, dict) else {}
    driver_pkgs = {
        name: str(ver)
        for name, ver in sorted(packages.items())
        if _DRIVER_PACKAGE.search(str(name)) and _DRIVER_VERSION.match(nvidia_driver.upstream_version(ver))
    }
    recorded = str(driver_fact.get("package_version") or "")
    details = [
        {"package": name, "version": ver, "upstream": nvidia_driver.upstream_version(ver)}
        for name, ver in driver_pkgs.items()
    ]
    common = {"expected": expected, "source": POLICY, "details": details}
    if not driver_pkgs:
        return result(
            check,
            FAIL,
            f"no NVIDIA driver package is installed; the nvidia_driver role recorded "
            f"{recorded or 'branch ' + (branch or '?')}",
            action=REPROVISION,
            **common,
        )
    holders = [name for name, ver in driver_pkgs.items() if recorded and ver == recorded]
    if recorded and not holders:
        listing = ", ".join(f"{n} {v}" for n, v in driver_pkgs.items())
        return result(
            check,
            FAIL,
            f"no installed package has the driver version the nvidia_driver role recorded ({recorded}); "
            f"installed: {listing}",
            measured=sorted(set(driver_pkgs.values())),
            action=REPROVISION,
            **{**common, "expected": recorded},
        )
    off_branch = [n for n, v in driver_pkgs.items() if branch and not nvidia_driver.on_branch(branch, [v])]
    if off_branch:
        listing = ", ".join(f"{n} {driver_pkgs[n]}" for n in off_branch)
        return result(
            check,
            FAIL,
            f"driver packages off the pinned branch {branch}: {listing}",
            measured=sorted({driver_pkgs[n] for n in off_branch}),
            action=REPROVISION,
            **common,
        )
    main = holders or list(driver_pkgs)
    primary = next((n for n in main if "kernel" in n or "headless" in n or "cuda-drivers" in n), main[0])
    if pinned and nvidia_driver.upstream_version(driver_pkgs[primary]) != pinned:
        return result(
            check,
            FAIL,
            f"{primary} {driver_pkgs[primary]} installed, {pinned} pinned (nvidia_driver_version)",
            measured=driver_pkgs[primary],
            action=REPROVISION,
            **common,
        )
    how = "as the nvidia_driver role recorded" if holders else "(the role recorded no package version)"
    return result(
        check,
        PASS,
        f"{primary} {driver_pkgs[primary]} installed {how}"
        + (f", branch {branch}" if branch else "")
        + (f" ({len(driver_pkgs)} driver packages)" if len(driver_pkgs) > 1 else ""),
        measured=driver_pkgs[primary],
        **common,
    )


# --- 4. persistence_mode -----------------------------------------------------------------------


def persistence_mode(gpus):
    """Persistence mode on every GPU.

    Disabled fails REPROVISION: the nvidia_driver role starts nvidia-persistenced, so persistence off
    means that state is gone (the driver may unload between jobs and every CUDA start pays the
    initialisation). azurehpc-health-checks (azure_gpu_persistence.nhc) and DCGM's per-SKU config
    expect it enabled. Not reported (None) warns MONITOR.
    """
    check = "persistence_mode"
    skip = _gate(check, gpus)
    if skip:
        return skip
    items = _gpus(gpus)
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
    if off:
        return result(
            check,
            FAIL,
            f"persistence mode Disabled on {_labels(off)}, Enabled expected: "
            "nvidia-persistenced is not running",
            measured="Disabled",
            action=REPROVISION,
            **common,
        )
    if unknown:
        return result(
            check,
            WARN,
            f"nvidia-smi did not report persistence mode for {_labels(unknown)}; Enabled expected",
            measured=None,
            action=MONITOR,
            **common,
        )
    return result(
        check,
        PASS,
        f"persistence mode Enabled on all {_plural(len(items), 'GPU')}",
        measured="Enabled",
        **common,
    )


# --- 5. ecc ------------------------------------------------------------------------------------


def ecc(gpus):
    """ECC enabled where the GPU supports it, nothing pending, no volatile uncorrectable errors.

    Volatile uncorrectable > 0 fails RESET_GPU (DCGM MonitorMemVolatileDbes fails on any; the GPU
    needs a reset to map the page/row out). ECC disabled fails REBOOT (enable with ``nvidia-smi -e 1``;
    the mode changes at the next reboot). Pending mode different from current warns REBOOT. GPUs whose
    ECC mode nvidia-smi reports as not supported (GeForce, some workstation cards) are said so: skip
    when no GPU supports ECC, warn when only some do not report it. Aggregate counts go to details.
    """
    check = "ecc"
    skip = _gate(check, gpus)
    if skip:
        return skip
    items = _gpus(gpus)
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
            }
        )
    by_index = dict(zip((id(g) for g in items), details, strict=True))
    unsupported = [g for g in items if by_index[id(g)]["current"] is None]
    if len(unsupported) == len(items):
        return result(
            check,
            SKIP,
            f"nvidia-smi reports no ECC mode for {_labels(items)} (ECC not supported on this GPU model)",
            details=details,
        )
    common = {"unit": "errors", "source": DCGM, "details": details}
    dbe = [g for g in items if (_int(by_index[id(g)]["volatile"].get("uncorrectable")) or 0) > 0]
    if dbe:
        listing = ", ".join(f"{_label(g)} {by_index[id(g)]['volatile'].get('uncorrectable')}" for g in dbe)
        return result(
            check,
            FAIL,
            f"volatile uncorrectable ECC errors: {listing}; 0 expected",
            measured=sum(_int(by_index[id(g)]["volatile"].get("uncorrectable")) or 0 for g in dbe),
            expected=0,
            action=RESET_GPU,
            **common,
        )
    disabled = [g for g in items if by_index[id(g)]["current"] is False]
    if disabled:
        return result(
            check,
            FAIL,
            f"ECC Disabled on {_labels(disabled)}, Enabled expected: nvidia-smi -e 1, then reboot",
            measured="Disabled",
            expected="Enabled",
            action=REBOOT,
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
            f"ECC mode change pending on {_labels(pending)}: it takes effect at the next reboot",
            measured="pending",
            expected="Enabled",
            action=REBOOT,
            **{**common, "unit": None, "source": POLICY},
        )
    if unsupported:
        return result(
            check,
            WARN,
            f"nvidia-smi reports no ECC mode for {_labels(unsupported)} while other GPUs have ECC Enabled",
            measured=None,
            expected="Enabled",
            action=MONITOR,
            **{**common, "unit": None},
        )
    aggregate = sum(_int(d["aggregate"].get("uncorrectable")) or 0 for d in details)
    note = f"; {aggregate} aggregate uncorrectable (lifetime, see details)" if aggregate else ""
    return result(
        check,
        PASS,
        f"ECC Enabled on all {_plural(len(items), 'GPU')}, 0 volatile uncorrectable errors{note}",
        measured=0,
        expected=0,
        **common,
    )


# --- 6. row_remap ------------------------------------------------------------------------------


def row_remap(gpus):
    """Row remapping (Ampere and later): failure fails ISOLATE (NVIDIA's RMA criterion), more than
    512 uncorrectable remaps fails ISOLATE (azurehpc-health-checks; the RMA policy sets the failure
    flag there), a pending remap fails RESET_GPU (it takes effect at the next GPU reset). GPUs
    without remapped-rows data (pre-Ampere, or N/A as on MIG-enabled A100s) are skipped, with reason."""
    check = "row_remap"
    skip = _gate(check, gpus)
    if skip:
        return skip
    items = _gpus(gpus)
    details = [
        {"index": g.get("index"), "pci_bus_id": g.get("pci_bus_id"), "remapped_rows": g.get("remapped_rows")}
        for g in items
    ]
    have = [g for g in items if isinstance(g.get("remapped_rows"), dict)]
    if not have:
        return result(
            check,
            SKIP,
            f"nvidia-smi reports no remapped-rows data for {_labels(items)} "
            "(row remapping exists from Ampere on; pre-Ampere GPUs retire pages instead)",
            details=details,
        )
    failed = [g for g in have if g["remapped_rows"].get("failure") is True]
    if failed:
        return result(
            check,
            FAIL,
            f"row remapping failure on {_labels(failed)}: the GPU meets NVIDIA's RMA criterion",
            measured="failure",
            expected="no failure",
            source=RMA_URL,
            action=ISOLATE,
            details=details,
        )
    too_many = [
        g for g in have if (_int(g["remapped_rows"].get("uncorrectable")) or 0) > REMAPPED_ROWS_UNC_LIMIT
    ]
    if too_many:
        listing = ", ".join(f"{_label(g)} {g['remapped_rows'].get('uncorrectable')}" for g in too_many)
        return result(
            check,
            FAIL,
            f"uncorrectable remapped rows above {REMAPPED_ROWS_UNC_LIMIT}: {listing}",
            measured=max(_int(g["remapped_rows"].get("uncorrectable")) or 0 for g in too_many),
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
            f"row remap pending on {_labels(pending)}: it takes effect at the next GPU reset",
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
            f"nvidia-smi did not report the remap pending flag for {_labels(unknown)}",
            action=MONITOR,
            source=AZURE,
            details=details,
        )
    note = f"; no remapped-rows data for {_labels(missing)}" if missing else ""
    return result(
        check,
        PASS,
        f"no row remap pending or failed on {_labels(have)}{note}",
        measured="none pending",
        expected="none pending",
        source=AZURE,
        details=details,
    )


# --- 7. retired_pages --------------------------------------------------------------------------


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
    skip = _gate(check, gpus)
    if skip:
        return skip
    items = _gpus(gpus)
    details = [
        {"index": g.get("index"), "pci_bus_id": g.get("pci_bus_id"), "retired_pages": g.get("retired_pages")}
        for g in items
    ]
    have = [g for g in items if isinstance(g.get("retired_pages"), dict)]
    if not have:
        return result(
            check,
            SKIP,
            f"nvidia-smi reports no retired-pages data for {_labels(items)} "
            "(Ampere and later GPUs remap rows instead; see row_remap)",
            details=details,
        )

    def total(g):
        pages = g["retired_pages"]
        return (_int(pages.get("single_bit")) or 0) + (_int(pages.get("double_bit")) or 0)

    worst = max(total(g) for g in have)
    common = {"measured": worst, "expected": RETIRED_PAGES_LIMIT, "unit": "pages", "details": details}
    full = [g for g in have if total(g) >= RETIRED_PAGES_LIMIT]
    if full:
        listing = ", ".join(f"{_label(g)} {total(g)}" for g in full)
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
            f"page retirement pending on {_labels(pending)}: it takes effect when the GPU is reset",
            source=DPR_URL,
            action=RESET_GPU,
            **common,
        )
    dbe = [g for g in have if (_int(g["retired_pages"].get("double_bit")) or 0) > RETIRED_DBE_SOFT_LIMIT]
    if dbe:
        listing = ", ".join(f"{_label(g)} {g['retired_pages'].get('double_bit')}" for g in dbe)
        return result(
            check,
            WARN,
            f"double-bit retired pages above {RETIRED_DBE_SOFT_LIMIT}: {listing}; watch whether they grow",
            source=DCGM + " (DCGM_LIMIT_MAX_RETIRED_PAGES_SOFT_LIMIT)",
            action=MONITOR,
            **{
                **common,
                "measured": max(_int(g["retired_pages"].get("double_bit")) or 0 for g in dbe),
                "expected": RETIRED_DBE_SOFT_LIMIT,
            },
        )
    return result(
        check,
        PASS,
        f"{worst} retired pages at most on {_labels(have)} (limit {RETIRED_PAGES_LIMIT}), none pending",
        source=DCGM + " (DCGM_LIMIT_MAX_RETIRED_PAGES); " + DPR_URL,
        **common,
    )


# --- 8. xid ------------------------------------------------------------------------------------


def xid(kernel_log, since=None, window_hours=24):
    """XID errors in the kernel log (``xid.parse_kernel_log`` + ``xid.classify``).

    ``since`` is handed to ``parse_kernel_log`` (a datetime or an uptime in seconds; events it cannot
    place are kept); ``window_hours`` only names the window in the summary. Hardware or driver class
    XIDs fail with the worst action of the table (azurehpc-health-checks list, see xid.py);
    application-level or unknown XIDs only warn MONITOR (gcm); none passes. ``kernel_log`` None (not
    collected) skips with the reason.
    """
    check = "xid"
    window = f"the last {window_hours} h" if since is not None else "the kernel log"
    if kernel_log is None:
        return result(check, SKIP, "kernel log not collected (journalctl -k / dmesg gave nothing)")
    summary = xid_table.classify(xid_table.parse_kernel_log(kernel_log, since=since))
    details = [
        {
            "pci": dev["pci"],
            "events": dev["events"],
            "worst_class": dev["worst_class"],
            "worst_action": dev["worst_action"],
            "xids": [
                {k: entry.get(k) for k in ("xid", "count", "class", "action", "meaning", "first", "last")}
                for entry in dev["xids"]
            ],
        }
        for dev in summary.values()
    ]
    events = sum(dev["events"] for dev in summary.values())
    common = {"measured": events, "expected": 0, "unit": "XID events", "details": details}
    if not summary:
        return result(check, PASS, f"no XID in {window}", source=AZURE, **common)
    listing = "; ".join(
        f"PCI {dev['pci']}: " + ", ".join(f"XID {e['xid']} x{e['count']} ({e['class']})" for e in dev["xids"])
        for dev in summary.values()
    )
    serious = [
        dev for dev in summary.values() if dev["worst_class"] in (xid_table.HARDWARE, xid_table.DRIVER)
    ]
    if serious:
        action = worst_action(
            e["action"]
            for dev in serious
            for e in dev["xids"]
            if e["class"] in (xid_table.HARDWARE, xid_table.DRIVER)
        )
        return result(
            check,
            FAIL,
            f"{events} XID event(s) in {window}, hardware/driver class: {listing}",
            source=AZURE + " (XID list); gcm (application XIDs)",
            action=action,
            **common,
        )
    return result(
        check,
        WARN,
        f"{events} application-level or unknown XID event(s) in {window}: {listing}",
        source="gcm (non-critical XIDs)",
        action=MONITOR,
        **common,
    )


# --- 9. throttle -------------------------------------------------------------------------------


def throttle(gpus):
    """Active clock event (throttle) reasons, as nvidia-smi names them without the
    ``clocks_event_reason_`` / ``clocks_throttle_reason_`` prefix.

    HW slowdown (0x8), HW thermal slowdown (0x40), HW power brake (0x80) and SW thermal slowdown
    (0x20) fail ISOLATE: on a node being verified (idle or under a probe) they mean the cooling or
    the power delivery is at fault, which a reset or reboot does not fix. azurehpc-health-checks flags
    the same reasons (it only logs a warning) and DCGM warns on thermal/power violations; failing is
    gpufleet policy, because a throttled GPU drags every collective it is part of. SW power cap warns
    MONITOR (azurehpc does not flag it; it is the power limit at work). GPU idle, applications clocks,
    sync boost and display clocks are benign. No reasons reported warns MONITOR.
    """
    check = "throttle"
    skip = _gate(check, gpus)
    if skip:
        return skip
    items = _gpus(gpus)
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
        listing = "; ".join(f"{_label(g)} {', '.join(r)}" for g, r in hard)
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
    if capped:
        return result(
            check,
            WARN,
            f"clocks held by the software power cap on {_labels(capped)}",
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
            f"nvidia-smi reported no clock event reasons for {_labels(unknown)}",
            action=MONITOR,
            source=AZURE,
            details=details,
        )
    benign = sorted({r for g in items for r in g.get("clocks_event_reasons_active") or ()})
    note = f" (benign: {', '.join(benign)})" if benign else ""
    return result(
        check,
        PASS,
        f"no throttling on {_labels(items)}{note}",
        measured=benign,
        expected=[],
        source=AZURE,
        details=details,
    )


# --- 10. pcie_link -----------------------------------------------------------------------------


def pcie_link(gpus):
    """PCIe link width and generation against the maximum the GPU and slot support.

    A narrower link than the maximum fails REBOOT: a reboot retrains the link; when it stays narrow
    the GPU needs reseating (gpufleet policy; width does not drop for power saving). A lower
    generation only warns MONITOR: GPUs drop the link generation when idle to save power, so it
    has to be re-checked under load. Values nvidia-smi did not report warn.
    """
    check = "pcie_link"
    skip = _gate(check, gpus)
    if skip:
        return skip
    items = _gpus(gpus)
    details = [
        {"index": g.get("index"), "pci_bus_id": g.get("pci_bus_id"), **(g.get("pcie") or {})} for g in items
    ]
    narrow, slow, unknown = [], [], []
    for g in items:
        link = g.get("pcie") or {}
        wc, wm, gc, gm = (link.get(k) for k in ("width_current", "width_max", "gen_current", "gen_max"))
        if None in (wc, wm, gc, gm):
            unknown.append(g)
        if wc is not None and wm is not None and wc < wm:
            narrow.append(f"{_label(g)} x{wc} of x{wm}")
        if gc is not None and gm is not None and gc < gm:
            slow.append(f"{_label(g)} gen{gc} of gen{gm}")
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
            f"nvidia-smi did not report the PCIe link of {_labels(unknown)}",
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
    return result(
        check,
        PASS,
        f"PCIe links at their maximum on {_labels(items)} ({', '.join(links)})",
        expected="max width and generation",
        source=POLICY,
        details=details,
    )


# --- 11. nvlink --------------------------------------------------------------------------------

_NVLINK_GPU = re.compile(r"^GPU (?P<index>\d+):")
_NVLINK_LINK = re.compile(r"^Link (?P<link>\d+):\s*(?P<rest>.*)$")
_NUMBER = re.compile(r"^(?P<value>\d+(?:\.\d+)?)\s*GB/s", re.IGNORECASE)


def parse_nvlink_status(text):
    """``nvidia-smi nvlink -s`` / ``--status`` -> ``{gpu_index: {"name", "links": {link: GB/s or None}}}``.

    ``None`` for a link marks it ``<inactive>`` (or any state that is not a speed). A GPU without
    NVLink prints its header line only (or nothing at all), so it is present with no links, or absent.
    """
    out = {}
    current = None
    for raw in (text or "").splitlines():
        line = raw.strip()
        match = _NVLINK_GPU.match(line)
        if match:
            name = line.split(":", 1)[1].split("(UUID", 1)[0].strip() or None
            current = out.setdefault(int(match.group("index")), {"name": name, "links": {}})
            continue
        match = _NVLINK_LINK.match(line)
        if match and current is not None:
            speed = _NUMBER.match(match.group("rest").strip())
            current["links"][int(match.group("link"))] = float(speed.group("value")) if speed else None
    return out


def nvlink(gpus, nvlink_text, overrides=None):
    """Active NVLinks per GPU against the SKU's ``nvlink_active_links`` baseline.

    The expected count comes from ``baselines`` (H100 NVL 12 by design, H100 SXM/H200 18, A100 SXM
    12), judged by ``baselines.judge``: fewer active links than expected fails REBOOT (a reboot
    retrains the links; if they stay down the board or the NVSwitch baseboard needs service). A SKU
    without a figure (PCIe cards, unknown names) skips with the reason; no ``nvlink -s`` output for a
    SKU that has NVLinks warns MONITOR.
    """
    check = "nvlink"
    skip = _gate(check, gpus)
    if skip:
        return skip
    items = _gpus(gpus)
    parsed = parse_nvlink_status(nvlink_text) if nvlink_text is not None else None
    details, judged, unjudged = [], [], []
    for g in items:
        sku = baselines.sku_for(g.get("name"))
        links = ((parsed or {}).get(g.get("index")) or {}).get("links") or {}
        active = sum(1 for speed in links.values() if speed is not None)
        inactive = sorted(n for n, speed in links.items() if speed is None)
        verdict_ = baselines.judge(sku, "nvlink_active_links", active, overrides) if sku else None
        entry = {
            "index": g.get("index"),
            "pci_bus_id": g.get("pci_bus_id"),
            "name": g.get("name"),
            "sku": sku,
            "active": active,
            "inactive_links": inactive,
            "expected": verdict_["expected"] if verdict_ else None,
        }
        details.append(entry)
        if verdict_ is None or verdict_["status"] == SKIP:
            reason = verdict_["reason"] if verdict_ else f"GPU name {g.get('name')!r} is no known SKU"
            unjudged.append((g, reason))
        else:
            judged.append((g, entry, verdict_))
    if not judged:
        reasons = "; ".join(f"{_label(g)}: {reason}" for g, reason in unjudged)
        return result(check, SKIP, f"no NVLink link-count baseline: {reasons}", details=details)
    source = judged[0][2]["source"]
    if parsed is None:
        return result(
            check,
            WARN,
            f"nvidia-smi nvlink -s output not collected for {_labels([g for g, _e, _v in judged])}",
            expected=judged[0][2]["expected"],
            unit="links",
            source=source,
            action=MONITOR,
            details=details,
        )
    short = [(g, e) for g, e, v in judged if v["status"] != PASS]
    measured = min(e["active"] for _g, e, _v in judged)
    expected = judged[0][2]["expected"]
    if short:
        listing = "; ".join(
            f"{_label(g)} {e['active']} of {e['expected']:g} active"
            + (
                f" (inactive: {', '.join(str(n) for n in e['inactive_links'])})"
                if e["inactive_links"]
                else ""
            )
            for g, e in short
        )
        return result(
            check,
            FAIL,
            f"fewer NVLinks active than expected: {listing}",
            measured=measured,
            expected=expected,
            unit="links",
            source=source,
            action=REBOOT,
            details=details,
        )
    note = f"; not judged: {_labels([g for g, _r in unjudged])}" if unjudged else ""
    return result(
        check,
        PASS,
        f"{measured} NVLinks active per GPU on {_labels([g for g, _e, _v in judged])}, "
        f"{expected:g} expected{note}",
        measured=measured,
        expected=expected,
        unit="links",
        source=source,
        details=details,
    )


# --- 12. fabric_manager ------------------------------------------------------------------------

FABRIC_MANAGER = "nvidia-fabricmanager"


def fabric_manager(gpus, services):
    """nvidia-fabricmanager active where NVSwitches are on the PCI bus.

    ``services``: {unit: ``systemctl is-active`` word}. Without Fabric Manager the NVSwitch fabric
    is not set up and CUDA cannot use the GPUs' NVLinks. Unit not known (not installed) fails
    REPROVISION; failed/inactive fails REBOOT (Fabric Manager must come up before CUDA uses the
    GPUs; a reboot brings both up in order); activating warns MONITOR. No NVSwitch skips.
    """
    check = "fabric_manager"
    skip = no_gpu(check, gpus)
    if skip:
        return skip
    switches = int((gpus or {}).get("nvswitch_count") or 0)
    if switches == 0:
        return result(check, SKIP, "no NVSwitch on PCI: Fabric Manager not needed")
    state = (services or {}).get(FABRIC_MANAGER)
    details = [{"unit": FABRIC_MANAGER, "state": state, "nvswitch_count": switches}]
    common = {"measured": state, "expected": "active", "source": POLICY, "details": details}
    if state in (None, "", "unknown"):
        return result(
            check,
            FAIL,
            f"{switches} NVSwitch(es) on PCI but {FABRIC_MANAGER} is not installed "
            "(nvidia_driver_fabricmanager)",
            action=REPROVISION,
            **common,
        )
    if state == "active":
        return result(check, PASS, f"{FABRIC_MANAGER} active for {switches} NVSwitch(es)", **common)
    if state in ("activating", "reloading"):
        return result(check, WARN, f"{FABRIC_MANAGER} is {state}; active expected", action=MONITOR, **common)
    return result(
        check,
        FAIL,
        f"{FABRIC_MANAGER} is {state}, active expected, with {switches} NVSwitch(es) on PCI",
        action=REBOOT,
        **common,
    )


# --- 13. peermem -------------------------------------------------------------------------------

# nvidia_peermem (NVIDIA's packages); Debian's dkms.conf renames it nvidia-current[-open]-peermem.
_PEERMEM = re.compile(r"^nvidia(?:_current(?:_open)?)?_peermem(?:\s|$)")


def peermem(gpus, ib, lsmod_text):
    """nvidia-peermem loaded where GPUs and an ACTIVE InfiniBand/RoCE port meet (GPUDirect RDMA).

    ``lsmod_text``: /proc/modules or ``lsmod`` output. Missing fails REPROVISION (the nvidia_driver
    role loads it). No GPU, or no ACTIVE RDMA port, skips with the reason.
    """
    check = "peermem"
    skip = _gate(check, gpus)
    if skip:
        return skip
    ib = ib or {}
    if not (ib.get("ib_active") or ib.get("roce_active")):
        return result(
            check,
            SKIP,
            f"no ACTIVE InfiniBand/RoCE port ({int(ib.get('hca_count') or 0)} RDMA device(s)): "
            "GPUDirect RDMA not used",
        )
    if lsmod_text is None:
        return result(check, WARN, "module list (/proc/modules) not collected", action=MONITOR, source=POLICY)
    found = [line.split()[0] for line in lsmod_text.splitlines() if _PEERMEM.match(line.strip())]
    details = [{"module": name} for name in found]
    ports = ", ".join(ib.get("active_ports") or [])
    if not found:
        return result(
            check,
            FAIL,
            f"nvidia-peermem not loaded although ACTIVE RDMA ports ({ports}) and GPUs are present: "
            "NCCL stages network traffic through host memory",
            measured="not loaded",
            expected="loaded",
            source=POLICY,
            action=REPROVISION,
            details=details,
        )
    return result(
        check,
        PASS,
        f"{found[0]} loaded for ACTIVE RDMA ports {ports}",
        measured="loaded",
        expected="loaded",
        source=POLICY,
        details=details,
    )


# --- 14. ib_ports ------------------------------------------------------------------------------


def ib_ports(ib, expected_ports=None, expected_rate_gbps=None):
    """ACTIVE InfiniBand/RoCE ports and their rate.

    Fewer ACTIVE ports than ``expected_ports`` fails ISOLATE (a cable, transceiver or switch port:
    hands-on work, azurehpc-health-checks checks the IB ports the same way); a port slower than
    ``expected_rate_gbps`` fails ISOLATE (the link trained down). No HCA and none expected skips;
    ports not ACTIVE with no expectation warn MONITOR.
    """
    check = "ib_ports"
    ib = ib or {}
    expected_ports = _int(expected_ports)
    devices = [d for d in ib.get("devices") or () if isinstance(d, dict)] if ib.get("present", True) else []
    ports = [(d, p) for d in devices for p in d.get("ports") or () if isinstance(p, dict)]
    details = [
        {
            "port": f"{d.get('name')}:{p.get('port')}",
            "state": p.get("state"),
            "phys_state": p.get("phys_state"),
            "rate_gbps": p.get("rate_gbps"),
            "link_layer": p.get("link_layer"),
        }
        for d, p in ports
    ]
    active = [(d, p) for d, p in ports if p.get("state") == "ACTIVE"]
    common = {"measured": len(active), "expected": expected_ports, "unit": "ports", "details": details}
    if not devices:
        if not expected_ports:
            return result(check, SKIP, "no InfiniBand/RoCE HCA on this host and none expected")
        return result(
            check,
            FAIL,
            f"no InfiniBand/RoCE HCA found, {expected_ports} ACTIVE port(s) expected",
            source=AZURE + "; " + POLICY,
            action=ISOLATE,
            **common,
        )
    names = ", ".join(f"{d.get('name')}:{p.get('port')}" for d, p in active) or "none"
    down = [
        f"{d.get('name')}:{p.get('port')} {p.get('state') or 'unknown'}"
        for d, p in ports
        if p.get("state") != "ACTIVE"
    ]
    if expected_ports is not None and len(active) < expected_ports:
        return result(
            check,
            FAIL,
            f"{len(active)} ACTIVE port(s) ({names}), {expected_ports} expected; "
            f"not active: {', '.join(down) or 'none'}",
            source=AZURE + "; " + POLICY,
            action=ISOLATE,
            **common,
        )
    if expected_rate_gbps is not None:
        slow = [(d, p) for d, p in active if (p.get("rate_gbps") or 0) < float(expected_rate_gbps)]
        if slow:
            listing = ", ".join(
                f"{d.get('name')}:{p.get('port')} {p.get('rate') or p.get('rate_gbps')}" for d, p in slow
            )
            return result(
                check,
                FAIL,
                f"ports below {expected_rate_gbps:g} Gb/s: {listing}",
                measured=min(p.get("rate_gbps") or 0 for _d, p in slow),
                expected=expected_rate_gbps,
                unit="Gb/s",
                source=POLICY,
                action=ISOLATE,
                details=details,
            )
    if expected_ports is None and down:
        return result(
            check,
            WARN,
            f"{len(active)} ACTIVE port(s) ({names}); not active: {', '.join(down)} "
            "(set gpufleet_expected_ib_ports to judge)",
            source=POLICY,
            action=MONITOR,
            **common,
        )
    rates = sorted({p.get("rate_gbps") for _d, p in active if p.get("rate_gbps") is not None})
    rate_note = f" at {', '.join(f'{r:g}' for r in rates)} Gb/s" if rates else ""
    return result(
        check,
        PASS,
        f"{len(active)} ACTIVE port(s){rate_note}: {names}"
        + (f"; {expected_ports} expected" if expected_ports is not None else ""),
        source=POLICY,
        **common,
    )


# --- 15. nccl_conf -----------------------------------------------------------------------------


def parse_nccl_conf(text):
    """/etc/nccl.conf -> {KEY: value}: NCCL's rule, the name up to the first '=', the rest the value;
    lines starting with '#' and lines without '=' are skipped."""
    out = {}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


def _socket_problems(value, interfaces):
    """Every NCCL_SOCKET_IFNAME entry must name an interface that exists and is up."""
    text = value.strip()
    if text.startswith("^"):
        return []  # an exclusion of an absent interface is harmless
    exact = text.startswith("=")
    text = text[1:] if exact else text
    ifaces = nccl_tuning._interfaces(interfaces)
    problems = []
    for token in [t.strip() for t in text.split(",") if t.strip()]:
        named = [i for i in ifaces if (i["name"] == token if exact else i["name"].startswith(token))]
        if not named:
            problems.append(
                f"NCCL_SOCKET_IFNAME names {token}, which this host does not have "
                f"(interfaces: {', '.join(i['name'] for i in ifaces) or 'none'})"
            )
        elif not any(i["active"] for i in named):
            problems.append(f"NCCL_SOCKET_IFNAME names {token}, which is down")
    return problems


def nccl_conf(conf_text, nccl_fact, ib, interfaces):
    """/etc/nccl.conf against this host's interfaces and RDMA ports.

    Not written and no nccl fact: skip (role not applied). The role recorded a conf path but the file
    is missing: fail REPROVISION. NCCL_SOCKET_IFNAME entries that do not exist or are down and
    NCCL_IB_HCA entries that ``nccl_tuning.hca_problems`` rejects fail REPROVISION (the role
    recomputes them from facts). NCCL_IB_DISABLE=1 with an ACTIVE RDMA port, no NCCL_IB_DISABLE without
    one, and values that differ from what the role recorded warn MONITOR. Every problem is in details.
    """
    check = "nccl_conf"
    fact = nccl_fact if isinstance(nccl_fact, dict) else None
    path = (fact or {}).get("conf") or "/etc/nccl.conf"
    if conf_text is None:
        if fact is None:
            return result(check, SKIP, "nccl role not applied (no nccl.conf, no gpufleet_nccl local fact)")
        if not fact.get("conf"):
            return result(
                check, SKIP, "the nccl role did not write nccl.conf on this host (nccl_conf: false)"
            )
        return result(
            check,
            FAIL,
            f"{path} is missing although the nccl role wrote it",
            expected="present",
            source=POLICY,
            action=REPROVISION,
        )
    values = parse_nccl_conf(conf_text)
    fails, warns = [], []
    if "NCCL_SOCKET_IFNAME" in values:
        fails += _socket_problems(values["NCCL_SOCKET_IFNAME"], interfaces)
    if "NCCL_IB_HCA" in values:
        fails += nccl_tuning.hca_problems(ib, values["NCCL_IB_HCA"])
    kind = nccl_tuning.fabric(ib)
    disable = values.get("NCCL_IB_DISABLE")
    if disable == "1" and kind != "ethernet":
        warns.append(f"NCCL_IB_DISABLE=1 although this host has ACTIVE {kind} ports: NCCL uses TCP sockets")
    if disable is None and kind == "ethernet":
        warns.append("no ACTIVE InfiniBand/RoCE port and no NCCL_IB_DISABLE: NCCL probes RDMA devices first")
    recorded = (fact or {}).get("settings")
    if isinstance(recorded, dict):
        for key in sorted(set(recorded) | set(values)):
            if str(recorded.get(key)) != str(values.get(key)) and (key in recorded or key in values):
                warns.append(
                    f"{key}={values.get(key, '(unset)')} in {path}, "
                    f"the nccl role wrote {recorded.get(key, '(unset)')}"
                )
    details = [{"problem": p, "severity": FAIL} for p in fails] + [
        {"problem": p, "severity": WARN} for p in warns
    ]
    common = {"measured": values, "source": nccl_tuning.DOC_URL, "details": details}
    if fails:
        return result(check, FAIL, f"{path}: " + "; ".join(fails), action=REPROVISION, **common)
    if warns:
        return result(check, WARN, f"{path}: " + "; ".join(warns), action=MONITOR, **common)
    shown = ", ".join(f"{k}={v}" for k, v in values.items()) or "no variables"
    return result(check, PASS, f"{path} fits this host ({kind}): {shown}", **common)


# --- 16. container_runtime ---------------------------------------------------------------------


def _docker_info(text):
    """(dict or None, error text). The first JSON object in the text (stderr may follow it)."""
    text = text or ""
    start = text.find("{")
    if start < 0:
        return None, _tail(text) or "no output"
    try:
        data, end = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None, _tail(text) or "no output"
    rest = _tail(text[start + end :])
    return (data if isinstance(data, dict) else None), rest


def container_runtime(gpus, docker_info_json):
    """Docker can hand GPUs to containers.

    ``docker_info_json``: ``docker info --format '{{json .}}'`` output (None: docker not installed,
    skip). A daemon that does not answer fails REPROVISION. On a GPU host the runtimes must include
    ``nvidia`` (nvidia-container-toolkit) or the daemon must list NVIDIA CDI devices; else fail
    REPROVISION. Without a GPU the check skips once the daemon answers.
    """
    check = "container_runtime"
    if docker_info_json is None:
        return result(check, SKIP, "docker not installed")
    info, error = _docker_info(docker_info_json)
    server_errors = (info or {}).get("ServerErrors") or []
    if info is None or server_errors or not info.get("ServerVersion"):
        why = "; ".join(str(e) for e in server_errors) or error or "no server version in docker info"
        return result(
            check,
            FAIL,
            f"the docker daemon does not answer: {why}",
            expected="daemon answers",
            source=POLICY,
            action=REPROVISION,
        )
    runtimes = sorted((info.get("Runtimes") or {}).keys())
    cdi = [
        d.get("ID")
        for d in info.get("DiscoveredDevices") or ()
        if isinstance(d, dict) and str(d.get("ID") or "").startswith("nvidia.com/gpu")
    ]
    details = [
        {
            "server_version": info.get("ServerVersion"),
            "runtimes": runtimes,
            "default_runtime": info.get("DefaultRuntime"),
            "cdi_devices": cdi,
        }
    ]
    version = info.get("ServerVersion")
    skip = no_gpu(check, gpus)
    if skip:
        skip["summary"] += f"; docker {version} answers"
        skip["details"] = details
        return skip
    common = {
        "measured": runtimes,
        "expected": "nvidia runtime or CDI devices",
        "source": POLICY,
        "details": details,
    }
    if "nvidia" in runtimes or cdi:
        how = (
            "nvidia runtime" + (" (default)" if info.get("DefaultRuntime") == "nvidia" else "")
            if "nvidia" in runtimes
            else f"CDI devices {', '.join(cdi)}"
        )
        return result(check, PASS, f"docker {version} can give GPUs to containers: {how}", **common)
    return result(
        check,
        FAIL,
        f"docker {version} has no nvidia runtime and no NVIDIA CDI devices "
        f"(runtimes: {', '.join(runtimes) or 'none'})",
        action=REPROVISION,
        **common,
    )


# --- 17. services ------------------------------------------------------------------------------


def services(states, required):
    """Each unit in ``required`` (gpufleet_verify_services) is ``active`` per ``systemctl is-active``.
    Anything else fails REPROVISION (site.yml starts them); none required skips."""
    check = "services"
    required = [str(u) for u in required or ()]
    if not required:
        return result(check, SKIP, "no services required (gpufleet_verify_services)")
    states = states or {}
    details = [{"unit": u, "state": states.get(u)} for u in required]
    bad = [f"{u} {states.get(u) or 'not found'}" for u in required if states.get(u) != "active"]
    common = {
        "measured": {u: states.get(u) for u in required},
        "expected": "active",
        "source": POLICY,
        "details": details,
    }
    if bad:
        return result(check, FAIL, f"services not active: {', '.join(bad)}", action=REPROVISION, **common)
    return result(check, PASS, f"{_plural(len(required), 'service')} active: {', '.join(required)}", **common)


# --- 18. disk_headroom -------------------------------------------------------------------------

# Below both of these the host cannot write logs or unpack a package: fail instead of warn.
DISK_CRITICAL_MIB = 1024
DISK_CRITICAL_PCT = 1


def _df_sizes(text):
    """{mount point: size MiB} from the same ``df -P -m`` text ``preflight.parse_df`` reads."""
    out = {}
    for line in (text or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 6 and fields[1].isdigit():
            out[" ".join(fields[5:])] = int(fields[1])
    return out


def disk_headroom(df_text, min_free_mib=10240, min_free_pct=5):
    """Free disk per mount point of ``df -P -m`` output (``preflight.parse_df``).

    Below ``min_free_mib`` or ``min_free_pct`` warns MONITOR: no gpufleet action frees disk, an
    operator does (model files, container images, logs). Below 1 GiB and 1 % fails MONITOR: the
    host can no longer write logs or install anything. Thresholds are gpufleet policy.
    """
    check = "disk_headroom"
    free = preflight.parse_df(df_text)
    sizes = _df_sizes(df_text)
    if not free:
        return result(check, WARN, "df -P -m gave no file systems to judge", source=POLICY, action=MONITOR)
    details, low, critical = [], [], []
    for mount, mib in free.items():
        size = sizes.get(mount) or 0
        pct = round(100.0 * mib / size, 1) if size else None
        details.append({"mount": mount, "free_mib": mib, "size_mib": size, "free_pct": pct})
        if mib < min_free_mib or (pct is not None and pct < min_free_pct):
            low.append(f"{mount} {mib} MiB free ({pct if pct is not None else '?'} %)")
        if mib < DISK_CRITICAL_MIB and (pct is None or pct < DISK_CRITICAL_PCT):
            critical.append(f"{mount} {mib} MiB")
    least = min(free.values())
    common = {
        "measured": least,
        "expected": f">= {min_free_mib} MiB and >= {min_free_pct} %",
        "unit": "MiB",
        "source": POLICY,
        "details": details,
    }
    if critical:
        return result(
            check,
            FAIL,
            f"disk almost full: {', '.join(critical)} free; free space now",
            action=MONITOR,
            **common,
        )
    if low:
        return result(
            check,
            WARN,
            f"low free disk: {'; '.join(low)}; {min_free_mib} MiB and {min_free_pct} % expected",
            action=MONITOR,
            **common,
        )
    return result(
        check,
        PASS,
        f"free disk fine on {', '.join(free)} (least {least} MiB; "
        f"{min_free_mib} MiB and {min_free_pct} % expected)",
        **common,
    )


# --- 19. memory_headroom -----------------------------------------------------------------------


def memory_headroom(meminfo_text, min_available_pct=10):
    """MemAvailable / MemTotal from /proc/meminfo: below ``min_available_pct`` warns MONITOR (a
    leftover process or a leak; burn-in and model loading need the memory). Unreadable warns."""
    check = "memory_headroom"
    values = {}
    for line in (meminfo_text or "").splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key.strip()] = int(fields[0])
    total, available = values.get("MemTotal"), values.get("MemAvailable")
    if not total or available is None:
        return result(
            check, WARN, "/proc/meminfo has no MemTotal/MemAvailable", source=POLICY, action=MONITOR
        )
    pct = round(100.0 * available / total, 1)
    details = [{"mem_total_kib": total, "mem_available_kib": available, "available_pct": pct}]
    common = {
        "measured": pct,
        "expected": min_available_pct,
        "unit": "%",
        "source": POLICY,
        "details": details,
    }
    text = (
        f"{available // 1024} MiB of {total // 1024} MiB available ({pct} %), {min_available_pct} % expected"
    )
    if pct < min_available_pct:
        return result(check, WARN, f"low memory: {text}", action=MONITOR, **common)
    return result(check, PASS, text, **common)


# --- 20. gpu_processes -------------------------------------------------------------------------


def gpu_processes(gpus, query_text):
    """Compute processes left on the GPUs (``nvidia-smi --query-compute-apps=pid,process_name,
    used_memory --format=csv,noheader``): any warns MONITOR, since burn-in and probes would fight
    them for memory and SMs. Output not collected warns."""
    check = "gpu_processes"
    skip = _gate(check, gpus)
    if skip:
        return skip
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
    return result(check, PASS, f"no compute processes on {_labels(_gpus(gpus))}", **common)


# --- 21. cuda_toolkit --------------------------------------------------------------------------


def cuda_toolkit(cuda_fact, nvcc_text, cuda_link):
    """/usr/local/cuda points at the default toolkit the cuda_toolkit role recorded, and that
    toolkit's nvcc reports the same release (``cuda_toolkit.nvcc_release``). ``cuda_link``: the
    resolved target of /usr/local/cuda. Anything else fails REPROVISION; no fact skips."""
    check = "cuda_toolkit"
    if not isinstance(cuda_fact, dict):
        return result(check, SKIP, "cuda_toolkit role not applied (no gpufleet_cuda_toolkit local fact)")
    default = str(cuda_fact.get("default") or "")
    home = (cuda_fact.get("homes") or {}).get(default) or cuda_utils.HOME.format(version=default)
    release = cuda_utils.nvcc_release(nvcc_text or "")
    details = [{"default": default, "home": home, "link": cuda_link, "nvcc": release}]
    common = {"expected": default, "source": POLICY, "details": details}
    link = str(cuda_link or "").rstrip("/")
    if link != home.rstrip("/"):
        return result(
            check,
            FAIL,
            f"/usr/local/cuda points to {cuda_link or 'nothing'}, {home} (CUDA {default}) expected",
            measured=cuda_link,
            action=REPROVISION,
            **common,
        )
    if not release:
        return result(
            check,
            FAIL,
            f"{home}/bin/nvcc gave no release ({_tail(nvcc_text, 120) or 'no output'}); "
            f"CUDA {default} expected",
            action=REPROVISION,
            **common,
        )
    if release["release"] != default:
        return result(
            check,
            FAIL,
            f"nvcc reports CUDA {release['version']}, {default} expected (/usr/local/cuda -> {home})",
            measured=release["release"],
            action=REPROVISION,
            **common,
        )
    return result(
        check,
        PASS,
        f"/usr/local/cuda -> {home}, nvcc {release['version']} (CUDA {default} as recorded)",
        measured=release["release"],
        **common,
    )


# --- 22. nccl_library --------------------------------------------------------------------------

# Run with the nccl fact's venv python: ``python -c NCCL_VERSION_SNIPPET <libnccl.so path>``.
NCCL_VERSION_SNIPPET = """\
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
version = ctypes.c_int(0)
rc = lib.ncclGetVersion(ctypes.byref(version))
if rc != 0:
    sys.exit("ncclGetVersion returned %d" % rc)
print(version.value)
"""


def nccl_version_text(code):
    """ncclGetVersion's int -> "2.21.5" (NCCL_VERSION_CODE: major*10000 + minor*100 + patch since
    2.9; major*1000 + minor*100 + patch before)."""
    code = _int(code)
    if code is None or code < 0:
        return None
    if code >= 20900:
        return f"{code // 10000}.{code // 100 % 100}.{code % 100}"
    return f"{code // 1000}.{code // 100 % 10}.{code % 100}"


def nccl_library(nccl_fact, loaded_version, error=None):
    """The NCCL library the nccl role recorded loads and reports the recorded version.

    ``loaded_version``: the int ``NCCL_VERSION_SNIPPET`` printed (22105 for 2.21.5). A load error or
    a different version fails REPROVISION; no nccl fact skips.
    """
    check = "nccl_library"
    if not isinstance(nccl_fact, dict):
        return result(check, SKIP, "nccl role not applied (no gpufleet_nccl local fact)")
    expected = str(nccl_fact.get("version") or "")
    library = nccl_fact.get("library") or "libnccl"
    details = [
        {"library": library, "venv": nccl_fact.get("venv"), "loaded_version": loaded_version, "error": error}
    ]
    common = {"expected": expected, "source": POLICY, "details": details}
    if error:
        return result(
            check, FAIL, f"{library} did not load: {_tail(error, 200)}", action=REPROVISION, **common
        )
    found = nccl_version_text(loaded_version)
    if found is None:
        return result(
            check,
            FAIL,
            f"no NCCL version read from {library} (got {loaded_version!r})",
            action=REPROVISION,
            **common,
        )
    if found != expected:
        return result(
            check,
            FAIL,
            f"{library} reports NCCL {found}, {expected or 'no version'} recorded by the nccl role",
            measured=found,
            action=REPROVISION,
            **common,
        )
    return result(check, PASS, f"{library} reports NCCL {found} as recorded", measured=found, **common)
