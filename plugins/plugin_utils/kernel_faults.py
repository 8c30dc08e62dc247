# Copyright: gpufleet developers
# Apache-2.0
"""GPU faults the NVIDIA driver logs without an ``Xid`` number, found in kernel log text.

Controller code. ``xid.parse_kernel_log`` reads ``NVRM: Xid`` lines; a GPU can also fail with no
such line: it falls off the bus while the driver is loading (no Xid 79 yet), its GSP firmware stops
answering, or the adapter never initialises. ``parse`` finds those by the patterns of ``FAULTS``
(each with the public recording it was taken from) and returns events ``xid.classify`` groups per
GPU with the XID events. A fallen-off-the-bus line for a GPU that also has an Xid 79 is the same
fault and is dropped (``merge``), so it is not counted twice.

Sources of the patterns (recorded kernel logs, quoted in the tests' fixtures):

- [NVS155] NVIDIA/NVSentinel#155: dmesg of an on-prem node, driver 570.158.01: ``NVRM: The NVIDIA
  GPU 0000:b3:00.0`` / ``NVRM: (PCI ID: 10de:26b5) installed in this system has`` / ``NVRM: fallen
  off the bus and is not responding to commands.`` (three lines, no Xid). leptonai/gpud#1209
  treats the same lines as Xid 79.
- [BB554] Bumblebee-Project/Bumblebee#554: ``NVRM: GPU at 0000:01:00.0 has fallen off the bus.``
  (one line, older drivers).
- [OGKM1230] NVIDIA/open-gpu-kernel-modules#1230: ``NVRM: GPU6 _kgspIsHeartbeatTimedOut: Heartbeat
  timed out, ...`` and ``NVRM: GPU6 _kgspLogRpcTimeout: ... GSP Timeout ...`` (GSP firmware
  heartbeat / RPC timeout; the GPU is named by index, not PCI address). open-gpu-kernel-modules#446
  is the long-running report of ``Timeout waiting for RPC from GSP!``.
- [GPUOP1146] NVIDIA/gpu-operator#1146 and #649: ``NVRM: GPU 0000:0a:00.0: RmInitAdapter failed!
  (0x24:0x72:1568)`` followed by ``rm_init_adapter failed, device minor number 5``.
"""

from __future__ import annotations

import re

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import xid

_BDF = r"(?P<pci>[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2})(?:\.[0-7])?"

# id -> (class, action, meaning, source)
FAULTS = {
    "fallen_off_bus": (
        xid.HARDWARE,
        xid.ISOLATE,
        "GPU has fallen off the bus (no Xid line; as XID 79)",
        "NVIDIA/NVSentinel#155; Bumblebee-Project/Bumblebee#554",
    ),
    "gsp_timeout": (
        xid.DRIVER,
        xid.REBOOT,
        "GSP firmware heartbeat or RPC timeout (no Xid line; as XID 119)",
        "NVIDIA/open-gpu-kernel-modules#1230, #446",
    ),
    "rm_init_adapter_failed": (
        xid.DRIVER,
        xid.REBOOT,
        "RmInitAdapter failed: the driver could not initialise the GPU (as XID 143)",
        "NVIDIA/gpu-operator#1146, #649",
    ),
}

# (fault id, pattern). A pattern's ``pci`` group names the GPU, ``gpu`` its index when that is all.
_LINES = (
    ("fallen_off_bus", re.compile(r"NVRM: GPU at (?:PCI:)?" + _BDF + r" has fallen off the bus")),
    ("fallen_off_bus", re.compile(r"NVRM: GPU " + _BDF + r": GPU has fallen off the bus")),
    ("gsp_timeout", re.compile(r"NVRM: GPU(?P<gpu>\d+) _kgspIsHeartbeatTimedOut: Heartbeat timed out")),
    ("gsp_timeout", re.compile(r"NVRM: (?:GPU(?P<gpu>\d+) )?_kgspLogRpcTimeout: .*GSP Timeout")),
    ("gsp_timeout", re.compile(r"NVRM: Timeout waiting for RPC from GSP(?P<gpu>\d+)!")),
    ("rm_init_adapter_failed", re.compile(r"NVRM: (?:GPU " + _BDF + r": )?RmInitAdapter failed!")),
)
# The multi-line form: "The NVIDIA GPU <bdf>" then, within a few lines, "fallen off the bus".
_FALLEN_START = re.compile(r"NVRM: The NVIDIA GPU " + _BDF)
_FALLEN_END = re.compile(r"fallen off the bus")
_FALLEN_SPAN = 4


def _event(fault, pci, line, when, uptime):
    cls, action, meaning, source = FAULTS[fault]
    return {
        "xid": None,
        "fault": fault,
        "pci": pci,
        "class": cls,
        "action": action,
        "meaning": meaning,
        "source": source,
        "message": line.strip()[-300:],
        "timestamp": when.isoformat() if when is not None else None,
        "uptime": uptime,
    }


def parse(text, since=None):
    """Non-XID GPU fault events in kernel log text, in log order (``since`` as in
    ``xid.parse_kernel_log``). Each: ``{"xid": None, "fault", "pci", "class", "action", "meaning",
    "source", "message", "timestamp", "uptime"}``; ``pci`` is ``0000:b3:00`` (as XID events name
    GPUs) or ``GPU6`` when the line names the GPU by index only."""
    events = []
    if not isinstance(text, str):
        return events
    lines = text.splitlines()
    for number, raw in enumerate(lines):
        line = raw.strip()
        if "NVRM" not in line or "NVRM: Xid" in line:
            continue
        found = None
        start = _FALLEN_START.search(line)
        if start:
            span = " ".join(lines[number : number + _FALLEN_SPAN])
            if _FALLEN_END.search(span):
                found = ("fallen_off_bus", start.group("pci"), start)
        if found is None:
            for fault, pattern in _LINES:
                match = pattern.search(line)
                if match:
                    groups = match.groupdict()
                    name = groups.get("pci") or (f"GPU{groups['gpu']}" if groups.get("gpu") else None)
                    found = (fault, name, match)
                    break
        if found is None:
            continue
        fault, pci, match = found
        when, uptime = xid._timestamps(line, line[: match.start()])
        if xid._before(since, when, uptime):
            continue
        events.append(_event(fault, (pci or xid.UNKNOWN).lower(), line, when, uptime))
    return events


def merge(xid_events, fault_events):
    """All events, without fallen-off-the-bus faults on GPUs that also logged Xid 79 (one fault)."""
    with_79 = {e.get("pci") for e in xid_events if e.get("xid") == 79}
    kept = [e for e in fault_events if not (e["fault"] == "fallen_off_bus" and e["pci"] in with_79)]
    return list(xid_events) + kept
