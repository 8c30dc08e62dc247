# Copyright: gpufleet developers
# Apache-2.0
"""Kernel log checks: XID errors (``plugin_utils/xid.py``) and the GPU faults the driver logs
without an XID (``plugin_utils/kernel_faults.py``)."""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import kernel_faults
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import xid as xid_table
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks.core import (
    AZURE,
    FAIL,
    MONITOR,
    PASS,
    SKIP,
    WARN,
    no_gpu,
    result,
    worst_action,
)

# --- xid ------------------------------------------------------------------------------------

DETAIL_KEYS = ("xid", "count", "class", "action", "meaning", "first", "last")


def _label(entry):
    if entry.get("fault"):
        return entry["fault"].replace("_", " ")
    if entry.get("root_cause"):
        return f"XID {entry['xid']} caused by XID {entry['root_cause']}"
    return f"XID {entry['xid']}"


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
    events = kernel_faults.merge(
        xid_table.parse_kernel_log(kernel_log, since=since), kernel_faults.parse(kernel_log, since=since)
    )
    summary = xid_table.classify(events)
    details = [
        {
            "pci": dev["pci"],
            "events": dev["events"],
            "worst_class": dev["worst_class"],
            "worst_action": dev["worst_action"],
            "xids": [
                {
                    k: entry.get(k)
                    for k in (*DETAIL_KEYS, "root_cause", "fault", "source", "message")
                    if k in entry
                }
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
        f"PCI {dev['pci']}: " + ", ".join(f"{_label(e)} x{e['count']} ({e['class']})" for e in dev["xids"])
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
        faults = sorted({e["source"] for dev in serious for e in dev["xids"] if e.get("fault")})
        return result(
            check,
            FAIL,
            f"{events} XID or GPU fault event(s) in {window}, hardware/driver class: {listing}",
            source=AZURE
            + " (XID list); NVIDIA XID catalogue (XIDs after 120); gcm (application XIDs)"
            + "".join(f"; {s} (no-Xid fault)" for s in faults),
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


def xid_on_host(gpus, kernel_log, error=None, window_hours=24):
    """``xid`` as ``gpufleet verify`` runs it: on a GPU host whose kernel log could not be read
    (``error``: what journalctl and dmesg said) the check fails MONITOR instead of skipping, since
    an XID may be hiding there. A host without GPUs skips (``no_gpu``); ``gpus`` None (unknown, as
    in a recording of the kernel log alone) judges the log."""
    skip = no_gpu("xid", gpus) if gpus is not None else None
    if skip:
        return skip
    if kernel_log is None:
        return result(
            "xid",
            FAIL,
            f"kernel log not readable (journalctl -k and dmesg failed: {error or 'no output'})",
            action=MONITOR,
        )
    return xid(kernel_log, window_hours=window_hours)
