# Copyright: gpufleet developers
# Apache-2.0
"""Fabric checks: NVLink, Fabric Manager (NVSwitch), GPUDirect RDMA, InfiniBand/RoCE ports."""

from __future__ import annotations

import re

from ansible_collections.gpufleet.cluster.plugins.module_utils.versions import to_int
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import baselines
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import ib_counters
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks.core import (
    AZURE,
    FAIL,
    ISOLATE,
    MONITOR,
    PASS,
    POLICY,
    REBOOT,
    REPROVISION,
    SKIP,
    WARN,
    gpu_check,
    gpu_list,
    label,
    labels,
    result,
)

# --- nvlink --------------------------------------------------------------------------------

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


@gpu_check()
def nvlink(gpus, nvlink_text, overrides=None):
    """Active NVLinks per GPU against the SKU's ``nvlink_active_links`` baseline.

    The expected count comes from ``baselines`` (H100 NVL 12 by design, H100 SXM/H200 18, A100 SXM
    12), judged by ``baselines.judge``: fewer active links than expected fails REBOOT (a reboot
    retrains the links; if they stay down the board or the NVSwitch baseboard needs service). A SKU
    without a figure (PCIe cards, unknown names) skips with the reason; no ``nvlink -s`` output for a
    SKU that has NVLinks warns MONITOR.
    """
    check = "nvlink"
    items = gpu_list(gpus)
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
        reasons = "; ".join(f"{label(g)}: {reason}" for g, reason in unjudged)
        return result(check, SKIP, f"no NVLink link-count baseline: {reasons}", details=details)
    source = judged[0][2]["source"]
    if parsed is None:
        return result(
            check,
            WARN,
            f"nvidia-smi nvlink -s output not collected for {labels([g for g, _e, _v in judged])}",
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
            f"{label(g)} {e['active']} of {e['expected']:g} active"
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
    note = f"; not judged: {labels([g for g, _r in unjudged])}" if unjudged else ""
    return result(
        check,
        PASS,
        f"{measured} NVLinks active per GPU on {labels([g for g, _e, _v in judged])}, "
        f"{expected:g} expected{note}",
        measured=measured,
        expected=expected,
        unit="links",
        source=source,
        details=details,
    )


# --- fabric_manager ------------------------------------------------------------------------

FABRIC_MANAGER = "nvidia-fabricmanager"


@gpu_check(smi=False)
def fabric_manager(gpus, services):
    """nvidia-fabricmanager active where NVSwitches are on the PCI bus.

    ``services``: {unit: ``systemctl is-active`` word}. Without Fabric Manager the NVSwitch fabric
    is not set up and CUDA cannot use the GPUs' NVLinks. Unit not known (not installed) fails
    REPROVISION; failed/inactive fails REBOOT (Fabric Manager must come up before CUDA uses the
    GPUs; a reboot brings both up in order); activating warns MONITOR. No NVSwitch skips.
    """
    check = "fabric_manager"
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


# --- peermem -------------------------------------------------------------------------------

# nvidia_peermem (NVIDIA's packages); Debian's dkms.conf renames it nvidia-current[-open]-peermem.
_PEERMEM = re.compile(r"^nvidia(?:_current(?:_open)?)?_peermem(?:\s|$)")


@gpu_check()
def peermem(gpus, ib, lsmod_text):
    """nvidia-peermem loaded where GPUs and an ACTIVE InfiniBand/RoCE port meet (GPUDirect RDMA).

    ``lsmod_text``: /proc/modules or ``lsmod`` output. Missing fails REPROVISION (the nvidia_driver
    role loads it). No GPU, or no ACTIVE RDMA port, skips with the reason.
    """
    check = "peermem"
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


# --- ib_ports ------------------------------------------------------------------------------


_WIDTH = re.compile(r"\((?P<width>\d+)X\b")
_NOT_UP = {
    "INIT": "INIT (trained, but no subnet manager has configured it)",
    "ARMED": "ARMED (configured, not yet activated by the subnet manager)",
    "DOWN": "DOWN",
}


# Physical states of a link that is not up (IB architecture names, as sysfs and ibstat print them).
PHYS_NOT_UP = ("Sleep", "Polling", "Disabled", "PortConfigurationTraining", "LinkErrorRecovery", "Phy Test")


def _port_id(d, p):
    return f"{d.get('name')}:{p.get('port')}"


def _is_rail(d, p, rail_ports):
    """A rail: an InfiniBand link-layer port, or a port (``mlx5_0:1``) or device (``mlx5_0``) the site
    names as a rail (RoCE). A port whose link layer is not reported is taken as InfiniBand (old
    ibstat)."""
    named = set(rail_ports or ())
    if _port_id(d, p) in named or d.get("name") in named:
        return True
    return not named and p.get("link_layer") in ("InfiniBand", None)


def _rail_problem(p, expected_rate_gbps):
    state, phys = p.get("state"), p.get("phys_state")
    if state != "ACTIVE":
        return _NOT_UP.get(state or "", state or "state unknown") + (f", physical {phys}" if phys else "")
    if phys in PHYS_NOT_UP:
        return f"ACTIVE but physical state {phys}"
    if expected_rate_gbps is not None and (p.get("rate_gbps") or 0) < float(expected_rate_gbps):
        width = _WIDTH.search(p.get("rate") or "")
        return f"rate {p.get('rate') or p.get('rate_gbps')}" + (
            f" ({width.group('width')}X link width)" if width else ""
        )
    return None


def ib_ports(ib, expected_ports=None, expected_rate_gbps=None, rail_ports=None, error=None):
    """The host's InfiniBand rails, each judged on state, physical state, rate and width, and on the
    rate of change of its error counters where two reads exist.

    Rails are the InfiniBand link-layer ports, or, where the site names them
    (``gpufleet_ib_rails``: ``mlx5_0:1`` or ``mlx5_0``), exactly the ports named (RoCE fabrics).
    Other ports (an Ethernet front-end port, a BlueField bond) are listed, never judged as rails:
    they neither fail the rate check nor make up for a dead rail. A rail is up when ACTIVE with
    physical state LinkUp; INIT means no subnet manager configured it, Polling no peer, Disabled
    switched off. Fewer rails up than ``expected_ports`` fails ISOLATE (a cable, transceiver or
    switch port: hands-on work; azurehpc-health-checks checks the IB ports the same way); a rail
    slower than ``expected_rate_gbps`` fails ISOLATE (it trained down: a lower rate or a narrower
    width, 1X where 4X is normal, shows in its rate). No HCA and none expected skips; rails not up
    with no expectation warn MONITOR. ``error``: ibstat's error when it failed part-way (reported
    by the ``collection`` check; the ports it printed are judged here).

    Error counters (``ib_counters``): with two reads (``ib_facts`` ``counter_interval``, gpufleet
    verify's tier full) a rail whose ``link_downed`` or ``link_error_recovery`` rose during the
    interval fails ISOLATE (a flapping link); ``symbol_error`` above the IBTA rate, or rising
    ``port_rcv_errors``, warns MONITOR with the rate per second; the worse of this and the state
    verdict decides. After one read the counters are reported, not judged, and the summary says a
    second read is needed.
    """
    res = _rails_state(ib, expected_ports, expected_rate_gbps, rail_ports)
    ib = ib or {}
    rails = [(_port_id(d, p), p) for d, p in _ports(ib) if _is_rail(d, p, rail_ports)]
    return ib_counters.merge(res, ib_counters.judge(rails, ib.get("counter_interval_s")))


def _ports(ib):
    devices = [d for d in ib.get("devices") or () if isinstance(d, dict)] if ib.get("present", True) else []
    return [(d, p) for d in devices for p in d.get("ports") or () if isinstance(p, dict)]


def _rails_state(ib, expected_ports, expected_rate_gbps, rail_ports):
    """``ib_ports`` without the error counters: the rails' state, physical state, rate and width."""
    check = "ib_ports"
    ib = ib or {}
    expected_ports = to_int(expected_ports)
    devices = [d for d in ib.get("devices") or () if isinstance(d, dict)] if ib.get("present", True) else []
    ports = [(d, p) for d in devices for p in d.get("ports") or () if isinstance(p, dict)]
    details = [
        {
            "port": _port_id(d, p),
            "rail": _is_rail(d, p, rail_ports),
            "state": p.get("state"),
            "phys_state": p.get("phys_state"),
            "rate_gbps": p.get("rate_gbps"),
            "rate": p.get("rate"),
            "link_layer": p.get("link_layer"),
            "counters": p.get("counters"),
            "counter_deltas": p.get("counter_deltas"),
        }
        for d, p in ports
    ]
    rails = [(d, p) for d, p in ports if _is_rail(d, p, rail_ports)]
    others = [(d, p) for d, p in ports if not _is_rail(d, p, rail_ports)]
    up = [(d, p) for d, p in rails if _rail_problem(p, None) is None]
    common = {"measured": len(up), "expected": expected_ports, "unit": "rails", "details": details}
    if not devices:
        if not expected_ports:
            return result(check, SKIP, "no InfiniBand/RoCE HCA on this host and none expected")
        return result(
            check,
            FAIL,
            f"no InfiniBand/RoCE HCA found, {expected_ports} rail(s) expected",
            source=AZURE + "; " + POLICY,
            action=ISOLATE,
            **common,
        )
    names = ", ".join(_port_id(d, p) for d, p in up) or "none"
    down = [f"{_port_id(d, p)} {_rail_problem(p, None)}" for d, p in rails if (d, p) not in up]
    not_rails = (
        "; not rails (not judged): "
        + ", ".join(
            f"{_port_id(d, p)} {p.get('link_layer') or '?'} {p.get('state') or '?'}" for d, p in others
        )
        if others
        else ""
    )
    if not rails:
        hint = "name RoCE rails in gpufleet_ib_rails" if others else ""
        if expected_ports:
            return result(
                check,
                FAIL,
                f"no InfiniBand rail, {expected_ports} expected{not_rails}" + (f" ({hint})" if hint else ""),
                source=AZURE + "; " + POLICY,
                action=ISOLATE,
                **common,
            )
        return result(check, PASS, f"no InfiniBand rail{not_rails}", source=POLICY, **common)
    if expected_ports is not None and len(up) < expected_ports:
        return result(
            check,
            FAIL,
            f"{len(up)} rail(s) up ({names}), {expected_ports} expected; "
            f"not up: {', '.join(down) or 'none'}{not_rails}",
            source=AZURE + "; " + POLICY,
            action=ISOLATE,
            **common,
        )
    if expected_rate_gbps is not None:
        slow = [(d, p) for d, p in up if _rail_problem(p, expected_rate_gbps)]
        if slow:
            listing = ", ".join(f"{_port_id(d, p)} {_rail_problem(p, expected_rate_gbps)}" for d, p in slow)
            return result(
                check,
                FAIL,
                f"rails below {expected_rate_gbps:g} Gb/s: {listing}",
                measured=min(p.get("rate_gbps") or 0 for _d, p in slow),
                expected=expected_rate_gbps,
                unit="Gb/s",
                source=POLICY,
                action=ISOLATE,
                details=details,
            )
    if down and (expected_ports is None or len(up) < len(rails)):
        advice = " (set gpufleet_expected_ib_ports to judge)" if expected_ports is None else ""
        return result(
            check,
            WARN,
            f"{len(up)} rail(s) up ({names}); not up: {', '.join(down)}{advice}{not_rails}",
            source=POLICY,
            action=MONITOR,
            **common,
        )
    rates = sorted({p.get("rate_gbps") for _d, p in up if p.get("rate_gbps") is not None})
    rate_note = f" at {', '.join(f'{r:g}' for r in rates)} Gb/s" if rates else ""
    return result(
        check,
        PASS,
        f"{len(up)} rail(s) up{rate_note}: {names}"
        + (f"; {expected_ports} expected" if expected_ports is not None else "")
        + not_rails,
        source=POLICY,
        **common,
    )


# --- fabric_registration --------------------------------------------------------------------

FABRIC_DONE = "completed"
FABRIC_OK = "success"


@gpu_check()
def fabric_registration(gpus):
    """Each GPU's NVSwitch/NVLink fabric registration (nvidia-smi ``Fabric`` State and Status, R535+).

    A GPU whose registration never completed cannot run CUDA work across the fabric even while
    nvidia-fabricmanager is "active" (so ``fabric_manager`` alone cannot see it): state Not Started
    or In Progress, or Completed with a status other than Success, fails REBOOT (Fabric Manager
    registers GPUs when it starts, before CUDA uses them; a reboot brings both up in order). GPUs
    that report no fabric state (no NVSwitch fabric: PCIe cards, single-GPU VMs, drivers before
    R535) skip with the reason.
    """
    check = "fabric_registration"
    items = gpu_list(gpus)
    details = [
        {"index": g.get("index"), "pci_bus_id": g.get("pci_bus_id"), **(g.get("fabric") or {})} for g in items
    ]
    have = [g for g in items if (g.get("fabric") or {}).get("state")]
    if not have:
        return result(
            check,
            SKIP,
            f"no fabric registration state reported for {labels(items)} (no NVSwitch fabric, or a "
            "driver before R535)",
            details=details,
        )
    bad = []
    for g in have:
        state = str(g["fabric"]["state"]).strip()
        status = str(g["fabric"].get("status") or "").strip()
        if state.lower() != FABRIC_DONE or (status and status.lower() != FABRIC_OK):
            bad.append(f"{label(g)} state {state}" + (f", status {status}" if status else ""))
    common = {"expected": "Completed, Success", "source": POLICY + " (NVIDIA Fabric Manager user guide)"}
    if bad:
        return result(
            check,
            FAIL,
            f"fabric registration not completed: {'; '.join(bad)}: CUDA cannot use these GPUs "
            "across the NVLink fabric",
            measured=len(bad),
            action=REBOOT,
            details=details,
            **common,
        )
    return result(
        check, PASS, f"fabric registration Completed/Success on {labels(have)}", details=details, **common
    )
