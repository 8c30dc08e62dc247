# Copyright: gpufleet developers
# Apache-2.0
"""NVIDIA XID errors: find them in a kernel log and say what each one means for the host.

Controller code (plugin_utils): runs in filters and the CLI, never on managed hosts. ``parse_kernel_log``
turns ``dmesg`` / ``journalctl -k`` / syslog text into events; ``classify`` folds events into one summary per
GPU (PCI address) with deduplicated counts and the worst class and action seen. No function raises on bad
input: lines that are not XID lines are skipped, and an XID missing from the table is reported as class
``unknown`` (never dropped, never called harmless).

Each row has a class (whose fault: ``hardware``, ``driver``, ``application``; ``unknown`` is kept
for XIDs not in the table) and an action (how urgent), ordered
``MONITOR`` < ``RESET_GPU`` < ``REBOOT`` < ``ISOLATE``:

- MONITOR: nothing to do now; count it and watch for repeats.
- RESET_GPU: drain the GPU's work, then reset that GPU (``nvidia-smi -r``) when convenient.
- REBOOT: drain the node and reboot it (a GPU reset is not enough or not reliable).
- ISOLATE: take the node out of service for hardware inspection / RMA.

Sources (each row cites its own; documents named here once):

- [AZ] Azure/azurehpc-health-checks ``customTests/azure_gpu_xid.nhc``: ``XID_EC="48 56 57 58 62 63 64
  65 68 69 73 74 79 80 81 92 119 120"`` fail the node (also in facts.md, "Health checks").
- [GCM] facebookresearch/gcm ``health_checks check-syslogs xid``: 13 31 43 45 63 68 92 109 are
  non-critical (WARN, application-level) (facts.md, "Health checks";
  https://facebookresearch.github.io/gcm/docs/GCM_Health_Checks/health_checks/check-syslogs/xid).
- [CAT] NVIDIA, "Analyzing Xid Errors with the Xid Catalog", Table 1 "Xids",
  https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html
- [MEM] NVIDIA, "A100 GPU Memory Error Management", "User Visible Statistics",
  https://docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt/user-visible-statistics.html (XID 48, 63,
  64, 94, 95).
- [R555] the "Xid error listing" of https://docs.nvidia.com/deploy/xid-errors/index.html as of
  driver r555 (Sep 24, 2024), read here through the verbatim copy in leptonai/gpud
  ``pkg/nvidia-query/xid/xid.go`` (names and "possible causes" columns).
- [CAT25] the same catalogue as read through the verbatim copy in leptonai/gpud
  ``pkg/nvidia-query/xid/xid.go`` (2025-2026: codes up to 173, the NVLink5 XIDs 144-150 "NVLINK:
  SAW/RLW/TLW/TREX/NVLPW_CTRL/NETIR/MSE Error" whose immediate action is the catalogue's
  WORKFLOW_NVLINK5_ERR, and 154 "GPU Recovery Action Changed"). The NVLink5 lines carry their own
  severity (``NETIR_LINK_EVT Fatal XC0 ...`` / ``SAW_MVB Nonfatal ...``): Fatal means the link
  (and so the GPU's place in the fabric) is gone, RESET_GPU; Nonfatal is counted, MONITOR. XID 154
  says the driver's new recovery action (``... to 0x2 (Node Reboot Required)``): its action is that.
- Root cause: the driver appends `` caused by previous Xid N`` to an XID 45 (preemptive cleanup)
  that another fault forced (NVIDIA open-gpu-kernel-modules, ``krcErrorSendEventNotifications``
  prints ``rootCauseXidStr``). Such an event is judged by XID N, not by the 45.
- Rows marked "name not re-read" carry the name of NVIDIA's listing as commonly quoted; that row
  of the listing was not re-read while this table was written. Their class and action rest on
  [AZ]/[GCM] only.

The overlap of [AZ] and [GCM] (63, 68, 92) is resolved by splitting the two questions: [AZ] answers
"whose fault" (hardware), [GCM] answers "how urgent" (not critical). So 63 (row remap recorded; it
takes effect at the next GPU reset, [MEM]) is hardware / RESET_GPU; 92 (high rate of corrected
single-bit errors) is hardware / MONITOR; 68 (NVDEC0 exception: [R555] names hardware, driver and
user application as possible causes) is hardware / RESET_GPU, because an LLM-serving fleet does not
feed NVDEC user streams and a reset, not isolation, is the proportionate first step.
"""

from __future__ import annotations

import re
from datetime import datetime

HARDWARE = "hardware"
APPLICATION = "application"
DRIVER = "driver"
UNKNOWN = "unknown"

MONITOR = "MONITOR"
RESET_GPU = "RESET_GPU"
REBOOT = "REBOOT"
ISOLATE = "ISOLATE"

# Worst last. "unknown" ranks above "application": an XID we cannot place may be a hardware fault.
CLASS_ORDER = (APPLICATION, UNKNOWN, DRIVER, HARDWARE)
ACTION_ORDER = (MONITOR, RESET_GPU, REBOOT, ISOLATE)


def _row(cls, meaning, action):
    return {"class": cls, "meaning": meaning, "action": action}


XID_TABLE = {
    # --- driver-only causes per [R555] (only "driver error" is marked); gpud also reboots -------
    9: _row(DRIVER, "Driver error programming GPU", REBOOT),  # [R555]
    12: _row(DRIVER, "Driver error handling GPU exception", REBOOT),  # [R555]
    38: _row(DRIVER, "Driver firmware error", REBOOT),  # [R555]
    # --- application-level per [GCM] --------------------------------------------------------------
    13: _row(APPLICATION, "Graphics Engine Exception", MONITOR),  # [GCM]; name [CAT] (RESTART_APP)
    31: _row(APPLICATION, "GPU memory page fault", MONITOR),  # [GCM]; name not re-read
    43: _row(APPLICATION, "GPU stopped processing", MONITOR),  # [GCM]; name [R555]
    45: _row(APPLICATION, "Preemptive cleanup, due to previous errors", MONITOR),  # [GCM]; not re-read
    109: _row(APPLICATION, "Context Switch Timeout Error", MONITOR),  # [GCM]; name not re-read
    # --- hardware per [AZ] -------------------------------------------------------------------------
    48: _row(HARDWARE, "Double Bit ECC Error (uncorrectable ECC error)", RESET_GPU),  # [AZ]; [MEM]
    56: _row(HARDWARE, "Display Engine error", RESET_GPU),  # [AZ]; name not re-read
    57: _row(HARDWARE, "Error programming video memory interface", ISOLATE),  # [AZ]; not re-read
    58: _row(HARDWARE, "Unstable video memory interface detected", ISOLATE),  # [AZ]; not re-read
    62: _row(HARDWARE, "Internal micro-controller halt", RESET_GPU),  # [AZ]; [R555] "Reset GPU(s)"
    63: _row(HARDWARE, "ECC page retirement or row remapping recording event", RESET_GPU),  # [AZ][GCM]
    64: _row(HARDWARE, "ECC page retirement or row remapper recording failure", REBOOT),  # [AZ]; [R555]
    65: _row(HARDWARE, "Video processor exception", RESET_GPU),  # [AZ]; name [R555]
    68: _row(HARDWARE, "NVDEC0 Exception", RESET_GPU),  # [AZ][GCM]; name [R555]
    69: _row(HARDWARE, "Graphics Engine class error", REBOOT),  # [AZ]; name [R555]
    73: _row(HARDWARE, "NVENC2 Error", RESET_GPU),  # [AZ]; name [R555]
    74: _row(HARDWARE, "NVLINK Error", REBOOT),  # [AZ]; [R555] "GPU reset or node reboot is needed"
    79: _row(HARDWARE, "GPU has fallen off the bus", ISOLATE),  # [AZ]; name [R555]
    80: _row(HARDWARE, "Corrupted data sent to GPU", REBOOT),  # [AZ]; name not re-read
    81: _row(HARDWARE, "VGA Subsystem Error", REBOOT),  # [AZ]; name not re-read
    92: _row(HARDWARE, "High single-bit ECC error rate", MONITOR),  # [AZ][GCM]; name not re-read
    94: _row(HARDWARE, "Contained ECC error", RESET_GPU),  # [MEM]; [R555] "reset ... when convenient"
    95: _row(HARDWARE, "Uncontained ECC error", REBOOT),  # [MEM]; [R555] MIG off: reboot immediately
    119: _row(HARDWARE, "GSP RPC Timeout", REBOOT),  # [AZ]; name [R555]
    120: _row(HARDWARE, "GSP Error", REBOOT),  # [AZ]; name [R555]
    # --- the current catalogue beyond [AZ]/[GCM] ([CAT25]; class and action gpufleet's) ----------
    121: _row(HARDWARE, "C2C Link Error", REBOOT),  # [CAT25]
    140: _row(HARDWARE, "Unrecovered ECC Error", RESET_GPU),  # [CAT25]
    143: _row(HARDWARE, "GPU Initialization Failure", REBOOT),  # [CAT25]
    144: _row(HARDWARE, "NVLINK: SAW Error", RESET_GPU),  # [CAT25]; Nonfatal lines: MONITOR
    145: _row(HARDWARE, "NVLINK: RLW Error", RESET_GPU),  # [CAT25]; Nonfatal lines: MONITOR
    146: _row(HARDWARE, "NVLINK: TLW Error", RESET_GPU),  # [CAT25]; Nonfatal lines: MONITOR
    147: _row(HARDWARE, "NVLINK: TREX Error", RESET_GPU),  # [CAT25]; Nonfatal lines: MONITOR
    148: _row(HARDWARE, "NVLINK: NVLPW_CTRL Error", RESET_GPU),  # [CAT25]; Nonfatal lines: MONITOR
    149: _row(HARDWARE, "NVLINK: NETIR Error", RESET_GPU),  # [CAT25]; Nonfatal lines: MONITOR
    150: _row(HARDWARE, "NVLINK: MSE Error", RESET_GPU),  # [CAT25]; Nonfatal lines: MONITOR
    151: _row(DRIVER, "Key rotation Error", REBOOT),  # [CAT25] (RESTART_VM)
    154: _row(DRIVER, "GPU Recovery Action Changed", REBOOT),  # [CAT25]; the line's new action
    155: _row(HARDWARE, "NVLINK: SW Defined Error", RESET_GPU),  # [CAT25]
    156: _row(HARDWARE, "Resource Retirement Event", RESET_GPU),  # [CAT25]
    157: _row(HARDWARE, "Resource Retirement Failure", ISOLATE),  # [CAT25]
    158: _row(HARDWARE, "GPU Fatal Timeout", REBOOT),  # [CAT25]
    159: _row(HARDWARE, "CHI Non-Data Error", REBOOT),  # [CAT25]
    160: _row(HARDWARE, "Channel Retirement Event", RESET_GPU),  # [CAT25]
    161: _row(HARDWARE, "Channel Retirement Failure", ISOLATE),  # [CAT25]
    167: _row(HARDWARE, "PCIE_FATAL_TIMEOUT", REBOOT),  # [CAT25]
    169: _row(HARDWARE, "Internal micro-controller halt", RESET_GPU),  # [CAT25]
    171: _row(HARDWARE, "Uncorrectable ECC error details (DRAM/SRAM), with XID 48", RESET_GPU),  # [CAT25]
    172: _row(HARDWARE, "Uncorrectable ECC error details (DRAM/SRAM), with XID 48", RESET_GPU),  # [CAT25]
    173: _row(HARDWARE, "C2C Fatal Link Failure", ISOLATE),  # [CAT25]
}
NVLINK5_XIDS = frozenset(range(144, 151))
# XID 154's new recovery action (NVML nvmlDeviceGetRecoveryAction): code -> action.
RECOVERY_CODES = {0: MONITOR, 1: RESET_GPU, 2: REBOOT, 3: RESET_GPU, 4: RESET_GPU}
_SEVERITY_WORD = re.compile(r"\b(?P<word>Nonfatal|Non-fatal|Fatal)\b", re.IGNORECASE)
_RECOVERY_TO = re.compile(r"\bto\s+0x(?P<code>[0-9a-fA-F]+)")
_CAUSED_BY = re.compile(r"caused by previous Xid\s+(?P<xid>\d+)", re.IGNORECASE)

UNKNOWN_ROW = _row(UNKNOWN, "not in gpufleet's XID table", MONITOR)

# "NVRM: Xid (PCI:0000:3b:00): 79, pid=..., ..." ; older drivers omit "PCI:" ; MIG adds " GPU-I:05".
_XID = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<pci>[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2})(?:\.\d)?[^)]*\):"
    r"\s*(?P<xid>\d+)\s*,?\s*(?P<rest>.*)$"
)
_PID = re.compile(r"^pid=(?:'(?P<q>[^']*)'|(?P<p>[^,\s]+)),\s*")
_NAME = re.compile(r"^name=(?P<name>[^,]*),\s*")
# journalctl -o short-iso / short-iso-precise: 2024-05-18T19:02:39+0000 / ...39.123456+00:00
_ISO = re.compile(r"^(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s")
# dmesg --ctime / -T: [Sun Feb 23 16:24:18 2025]
_CTIME = re.compile(r"\[(?P<ts>[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2} \d{4})\]")
# dmesg default: [ 5107.644336]
_UPTIME = re.compile(r"\[\s*(?P<up>\d+\.\d+)\]")


def _parse_iso(text):
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _timestamps(line, prefix):
    """(datetime or None, uptime seconds or None) found before the XID text on one line."""
    when = None
    match = _ISO.match(line)
    if match:
        when = _parse_iso(match.group("ts"))
    if when is None:
        match = _CTIME.search(prefix)
        if match:
            try:
                when = datetime.strptime(" ".join(match.group("ts").split()), "%a %b %d %H:%M:%S %Y")
            except ValueError:
                when = None
    match = _UPTIME.search(prefix)
    return when, (float(match.group("up")) if match else None)


def _before(since, when, uptime):
    """True when the event is placed before ``since``; False when after or not comparable."""
    if isinstance(since, datetime):
        return when is not None and (when.tzinfo is None) == (since.tzinfo is None) and when < since
    if isinstance(since, (int, float)) and not isinstance(since, bool):
        return uptime is not None and uptime < since
    return False


def parse_kernel_log(text, since=None):
    """XID events in kernel log text, in log order.

    Each event: ``{"xid": int, "pci": "0000:3b:00", "pid": int or None, "process": str or None,
    "message": str, "timestamp": ISO 8601 str or None, "uptime": float or None}``. ``timestamp`` comes
    from ``journalctl -o short-iso[-precise]`` (with its offset) or ``dmesg --ctime`` (local time,
    no offset); ``uptime`` from ``dmesg``'s ``[12345.678]``. Syslog's ``May 18 19:02:39`` has no year
    and is not used.

    ``since``: a ``datetime`` keeps events at or after it (compared only with timestamps of the same
    kind, offset-aware or naive); a number keeps events whose ``uptime`` is at or after it. An event
    that cannot be compared with ``since`` is kept: a time window never hides an XID it cannot place.
    """
    events = []
    if not isinstance(text, str):
        return events
    for raw in text.splitlines():
        line = raw.strip()
        match = _XID.search(line)
        if not match:
            continue
        when, uptime = _timestamps(line, line[: match.start()])
        if _before(since, when, uptime):
            continue
        rest = match.group("rest").strip()
        pid = process = None
        pid_match = _PID.match(rest)
        if pid_match:
            value = pid_match.group("q") if pid_match.group("q") is not None else pid_match.group("p")
            pid = int(value) if value.isdigit() else None
            rest = rest[pid_match.end() :]
            name_match = _NAME.match(rest)
            if name_match:
                name = name_match.group("name").strip()
                process = None if name in ("", "<unknown>") else name
                rest = rest[name_match.end() :]
        events.append(
            {
                "xid": int(match.group("xid")),
                "pci": match.group("pci").lower(),
                "pid": pid,
                "process": process,
                "message": rest.strip(),
                "timestamp": when.isoformat() if when is not None else None,
                "uptime": uptime,
            }
        )
    return events


def lookup(xid):
    """The table row for an XID number (a copy), or the ``unknown`` row; ``xid`` added."""
    row = dict(XID_TABLE.get(xid, UNKNOWN_ROW)) if isinstance(xid, int) else dict(UNKNOWN_ROW)
    row["xid"] = xid
    return row


def caused_by(message):
    """The root-cause XID an XID line names (``... caused by previous Xid 149``), or None."""
    match = _CAUSED_BY.search(message or "")
    return int(match.group("xid")) if match else None


def judge_event(xid, message):
    """The row for one XID line: ``lookup`` refined by what the line itself says.

    An NVLink5 XID (144-150) marked Nonfatal is MONITOR; XID 154 takes the action of the recovery
    code it changed to; an XID naming a root cause (``caused by previous Xid N``) is judged as N,
    with ``root_cause`` N and its meaning saying so.
    """
    root = caused_by(message)
    if root is not None and root != xid:
        row = judge_event(root, "")
        row.update(
            xid=xid,
            root_cause=root,
            meaning=f"{lookup(xid)['meaning']}, caused by previous XID {root} ({row['meaning']})",
        )
        return row
    row = lookup(xid)
    if xid in NVLINK5_XIDS:
        match = _SEVERITY_WORD.search(message or "")
        if match and match.group("word").lower() != "fatal":
            row["action"] = MONITOR
    elif xid == 154:
        match = _RECOVERY_TO.search(message or "")
        if match:
            row["action"] = RECOVERY_CODES.get(int(match.group("code"), 16), REBOOT)
    return row


def _entry_key(event):
    """How repeats are grouped: the XID (and its root cause), or the non-XID fault's id."""
    if event.get("fault"):
        return (1, 0, str(event["fault"]))
    return (0, event["xid"], str(caused_by(event.get("message")) or ""))


def worse_class(a, b):
    return a if CLASS_ORDER.index(a) >= CLASS_ORDER.index(b) else b


def worse_action(a, b):
    return a if ACTION_ORDER.index(a) >= ACTION_ORDER.index(b) else b


def classify(events):
    """One summary per GPU, keyed and sorted by PCI address.

    ``{pci: {"pci", "events": total, "xids": [{"xid", "count", "class", "meaning", "action",
    "first", "last", "message"}...] (by XID number), "worst_class", "worst_action"}}``. Repeats of
    the same XID on the same GPU are counted, not listed: ``first``/``last`` are the timestamps
    (or uptimes) of the first and last repeat, ``message`` the first one's text. Each line is
    judged by ``judge_event`` (an XID 45 caused by XID 149 is grouped and judged apart from a plain
    45, as the 149). Non-XID faults (``kernel_faults.parse``: ``"fault"`` set, ``"xid"`` None)
    are grouped by their fault id, after the XIDs. Other events are skipped.
    """
    devices = {}
    for event in events or ():
        if not isinstance(event, dict):
            continue
        fault = event.get("fault")
        if not fault and not isinstance(event.get("xid"), int):
            continue
        pci = event.get("pci") or UNKNOWN
        when = event.get("timestamp") if event.get("timestamp") is not None else event.get("uptime")
        device = devices.setdefault(pci, {"pci": pci, "events": 0, "_xids": {}})
        device["events"] += 1
        key = _entry_key(event)
        entry = device["_xids"].get(key)
        if entry is None:
            if fault:
                entry = {k: event.get(k) for k in ("xid", "fault", "class", "meaning", "action", "source")}
            else:
                entry = judge_event(event["xid"], event.get("message"))
            entry.update({"count": 0, "first": when, "last": when, "message": event.get("message")})
            device["_xids"][key] = entry
        entry["count"] += 1
        entry["last"] = when
        if not fault and entry["xid"] in NVLINK5_XIDS | {154}:
            # the worst line of a repeated XID decides (a Fatal among Nonfatal ones)
            entry["action"] = worse_action(
                judge_event(event["xid"], event.get("message"))["action"], entry["action"]
            )
    summary = {}
    for pci in sorted(devices):
        device = devices[pci]
        xids = [device["_xids"][key] for key in sorted(device["_xids"])]
        worst_cls, worst_act = CLASS_ORDER[0], ACTION_ORDER[0]
        for entry in xids:
            worst_cls = worse_class(entry["class"], worst_cls)
            worst_act = worse_action(entry["action"], worst_act)
        summary[pci] = {
            "pci": pci,
            "events": device["events"],
            "xids": xids,
            "worst_class": worst_cls,
            "worst_action": worst_act,
        }
    return summary
