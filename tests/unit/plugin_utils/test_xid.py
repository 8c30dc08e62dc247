"""XID parsing and classification against kernel log lines seen in public sources.

Where each input line comes from (all verbatim, only the journal prefix of the last one is built):

- GPUD_119: leptonai/gpud pkg/nvidia-query/xid/testdata/dmesg-with-xid-119.log (dmesg --ctime, H100
  in a Dell XE9680), lines 1-3 and the Xid lines after them.
- T450S_79: congphase/my-t450s troubleshoot_log.md (syslog prefix + dmesg uptime).
- OGKM_79: NVIDIA/open-gpu-kernel-modules issue #1151 (journal "short" format, no pid).
- MLENG_63: stas00/ml-engineering compute/accelerator/nvidia/debug.md.
- MEM_94_MIG: NVIDIA "A100 GPU Memory Error Management", "User Visible Statistics", Table 3.
- HYPERION: pastebin.com/fTNHmgzB (syslog, Xid 69 and 31 on one GPU).
- OLD_3: pastebin.com/xJaypMZt (old driver: "Xid (0000:01:00)" without "PCI:").
- DMESG_79: pastebin.com/jJdbRLSr (plain dmesg uptime prefix).
- GPUD_13: leptonai/gpud components README (dmesg --ctime, message cut short in the source).
- PLEXUS_64: plexus.company/guides/gpu-xid-errors/64 ("pid='N/A'").
- JOURNAL_ISO: the OGKM_79 message with a journalctl -o short-iso prefix (constructed; no real
  short-iso capture was found).
"""

from datetime import UTC, datetime

import pytest
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import xid as X

GPUD_119 = """\
[Sun Feb 23 16:24:18 2025] NVRM: GPU at PCI:0000:9b:00: GPU-509665ad-b600-ac93-3616-d754b23d636d
[Sun Feb 23 16:24:18 2025] NVRM: GPU Board Serial Number: 1650124014249
[Sun Feb 23 16:24:18 2025] NVRM: Xid (PCI:0000:9b:00): 119, pid=2024380, name=nvidia-smi, \
Timeout after 6s of waiting for RPC response from GPU4 GSP! Expected function 103 (GSP_RM_ALLOC) (0x2081 0x4).
[Sun Feb 23 16:24:24 2025] NVRM: Xid (PCI:0000:9b:00): 119, pid=2024380, name=nvidia-smi, \
Timeout after 6s of waiting for RPC response from GPU4 GSP! Expected function 10 (FREE) (0xa55a0210 0x0).
[Sun Feb 23 16:24:30 2025] clocksource: Long readout interval, skipping watchdog check: cs_nsec: 1584036171
[Sun Feb 23 16:27:12 2025] NVRM: Xid (PCI:0000:9b:00): 119, pid=1263500, name=cache_mgr_main, \
Timeout after 6s of waiting for RPC response from GPU4 GSP! \
Expected function 76 (GSP_RM_CONTROL) (0x20801813 0x4c).
"""
T450S_79 = (
    "Mar 21 20:18:56 pc kernel: [   65.315783] NVRM: Xid (PCI:0000:01:00): 79, pid='<unknown>', "
    "name=<unknown>, GPU has fallen off the bus."
)
OGKM_79 = "May 18 19:02:39 kernel: NVRM: Xid (PCI:0000:2b:00): 79, GPU has fallen off the bus."
MLENG_63 = (
    "NVRM: Xid (PCI:0000:10:1c): 63, pid=1896, Row Remapper: New row marked for remapping, "
    "reset gpu to activate."
)
MEM_94_MIG = (
    "NVRM: Xid (PCI:0000:01:00 GPU-I:05): 94, pid=7194, Contained: CE User Channel (0x9). RST: No, D-RST: No"
)
HYPERION = """\
May 13 17:18:47 hyperion kernel: NVRM: Xid (PCI:0000:08:00): 69, Class Error: ChId 003b, \
Class 0000c197, Offset 00002040, Data 00004b30, ErrorCode 0000000c
May 13 17:18:48 hyperion kernel: NVRM: Xid (PCI:0000:08:00): 69, Class Error: ChId 003b, \
Class 0000c197, Offset 00002040, Data 00000830, ErrorCode 0000000c
May 13 17:19:01 hyperion kernel: NVRM: Xid (PCI:0000:08:00): 31, Ch 0000003b, intr 10000000. \
MMU Fault: ENGINE GRAPHICS HUBCLIENT_SCC faulted @ 0x0_04687000. Fault is of type FAULT_PDE ACCESS_TYPE_READ
"""
OLD_3 = (
    "Jan 18 11:38:05 localhost kernel: [ 269.517039] NVRM: Xid (0000:01:00): 3, "
    "C 00000005 SC 00000007 M 00001ffc Data ffffffff"
)
DMESG_79 = "[ 5107.644336] NVRM: Xid (PCI:0000:03:00): 79, GPU has fallen off the bus.)"
GPUD_13 = (
    "[Fri Aug 30 11:43:09 2024] NVRM: Xid (PCI:0000:cb:00): 13, pid='<unknown>', name=<unknown>, "
    "Graphics SM Warp Exception on (GPC 7"
)
PLEXUS_64 = "NVRM: Xid (PCI:0000:65:00): 64, pid='N/A', Row Remapper: Failed to remap row"
JOURNAL_ISO = (
    "2025-05-18T19:02:39+0000 node7 kernel: NVRM: Xid (PCI:0000:2B:00): 79, GPU has fallen off the bus."
)


# --- the table -------------------------------------------------------------------------------


def test_table_rows_are_well_formed():
    for number, row in X.XID_TABLE.items():
        assert isinstance(number, int)
        assert row["class"] in X.CLASS_ORDER and row["class"] != X.UNKNOWN
        assert row["action"] in X.ACTION_ORDER
        assert row["meaning"]


def test_azurehpc_list_is_hardware():
    for number in (48, 56, 57, 58, 62, 63, 64, 65, 68, 69, 73, 74, 79, 80, 81, 92, 119, 120):
        assert X.XID_TABLE[number]["class"] == X.HARDWARE, number


def test_gcm_only_list_is_application_and_monitor():
    for number in (13, 31, 43, 45, 109):
        assert X.XID_TABLE[number] == {**X.XID_TABLE[number], "class": X.APPLICATION, "action": X.MONITOR}


def test_overlap_decisions():
    assert (X.XID_TABLE[63]["class"], X.XID_TABLE[63]["action"]) == (X.HARDWARE, X.RESET_GPU)
    assert (X.XID_TABLE[68]["class"], X.XID_TABLE[68]["action"]) == (X.HARDWARE, X.RESET_GPU)
    assert (X.XID_TABLE[92]["class"], X.XID_TABLE[92]["action"]) == (X.HARDWARE, X.MONITOR)


def test_lookup_known_unknown_and_garbage():
    assert X.lookup(79) == {
        "xid": 79,
        "class": X.HARDWARE,
        "meaning": "GPU has fallen off the bus",
        "action": X.ISOLATE,
    }
    assert X.lookup(3)["class"] == X.UNKNOWN and X.lookup(3)["action"] == X.MONITOR
    assert X.lookup("79")["class"] == X.UNKNOWN
    row = X.lookup(79)
    row["action"] = "x"
    assert X.XID_TABLE[79]["action"] == X.ISOLATE  # lookup returns a copy


def test_worse_orders():
    assert X.worse_class(X.APPLICATION, X.HARDWARE) == X.HARDWARE
    assert X.worse_class(X.UNKNOWN, X.APPLICATION) == X.UNKNOWN
    assert X.worse_class(X.DRIVER, X.UNKNOWN) == X.DRIVER
    assert X.worse_action(X.MONITOR, X.REBOOT) == X.REBOOT
    assert X.worse_action(X.ISOLATE, X.RESET_GPU) == X.ISOLATE


# --- parse_kernel_log ----------------------------------------------------------------------------


def test_parse_gpud_ctime_log():
    events = X.parse_kernel_log(GPUD_119)
    assert [e["xid"] for e in events] == [119, 119, 119]
    first = events[0]
    assert first["pci"] == "0000:9b:00"
    assert first["pid"] == 2024380
    assert first["process"] == "nvidia-smi"
    assert first["message"].startswith("Timeout after 6s of waiting for RPC response from GPU4 GSP!")
    assert first["timestamp"] == "2025-02-23T16:24:18"
    assert first["uptime"] is None
    assert events[2]["process"] == "cache_mgr_main"


def test_parse_syslog_with_uptime_and_unknown_pid():
    (event,) = X.parse_kernel_log(T450S_79)
    assert event == {
        "xid": 79,
        "pci": "0000:01:00",
        "pid": None,
        "process": None,
        "message": "GPU has fallen off the bus.",
        "timestamp": None,
        "uptime": 65.315783,
    }


def test_parse_journal_short_without_pid():
    (event,) = X.parse_kernel_log(OGKM_79)
    assert (event["xid"], event["pci"], event["pid"], event["message"]) == (
        79,
        "0000:2b:00",
        None,
        "GPU has fallen off the bus.",
    )
    assert event["timestamp"] is None and event["uptime"] is None


def test_parse_bare_line_with_pid_no_name():
    (event,) = X.parse_kernel_log(MLENG_63)
    assert (event["xid"], event["pci"], event["pid"], event["process"]) == (63, "0000:10:1c", 1896, None)
    assert event["message"] == "Row Remapper: New row marked for remapping, reset gpu to activate."


def test_parse_mig_instance_suffix():
    (event,) = X.parse_kernel_log(MEM_94_MIG)
    assert (event["xid"], event["pci"], event["pid"]) == (94, "0000:01:00", 7194)
    assert event["message"].startswith("Contained: CE User Channel")


def test_parse_old_driver_without_pci_prefix():
    (event,) = X.parse_kernel_log(OLD_3)
    assert (event["xid"], event["pci"], event["uptime"]) == (3, "0000:01:00", 269.517039)
    assert event["message"].startswith("C 00000005")


def test_parse_plain_dmesg_and_na_pid_and_truncated():
    assert X.parse_kernel_log(DMESG_79)[0]["uptime"] == 5107.644336
    assert X.parse_kernel_log(PLEXUS_64)[0]["pid"] is None
    event = X.parse_kernel_log(GPUD_13)[0]
    assert (event["xid"], event["timestamp"], event["process"]) == (13, "2024-08-30T11:43:09", None)


def test_parse_journal_short_iso_lowercases_pci():
    (event,) = X.parse_kernel_log(JOURNAL_ISO)
    assert event["pci"] == "0000:2b:00"
    assert event["timestamp"] == "2025-05-18T19:02:39+00:00"


def test_parse_ignores_non_xid_and_garbage():
    assert X.parse_kernel_log("") == []
    assert X.parse_kernel_log(None) == []
    assert X.parse_kernel_log(b"NVRM: Xid (PCI:0000:01:00): 79, x") == []
    assert X.parse_kernel_log("NVRM: GPU at PCI:0000:9b:00: GPU-509665ad\nNVRM: Xid (PCI:zz): 79, x\n") == []


def test_since_datetime_filters_aware_and_naive_separately():
    aware = datetime(2025, 5, 18, 19, 3, tzinfo=UTC)
    assert X.parse_kernel_log(JOURNAL_ISO, since=aware) == []
    assert len(X.parse_kernel_log(JOURNAL_ISO, since=datetime(2025, 5, 18, tzinfo=UTC))) == 1
    # naive ctime stamps: compared with a naive since, kept (not comparable) with an aware one
    assert len(X.parse_kernel_log(GPUD_119, since=datetime(2025, 2, 23, 16, 25))) == 1
    assert len(X.parse_kernel_log(GPUD_119, since=aware)) == 3
    # no timestamp at all: kept
    assert len(X.parse_kernel_log(MLENG_63, since=aware)) == 1


def test_since_uptime_number():
    text = T450S_79 + "\n" + DMESG_79
    assert [e["uptime"] for e in X.parse_kernel_log(text, since=100)] == [5107.644336]
    assert len(X.parse_kernel_log(text, since=0)) == 2
    assert len(X.parse_kernel_log(GPUD_119, since=10**9)) == 3  # no uptime: kept
    assert len(X.parse_kernel_log(text, since=True)) == 2  # a bool is not a window


# --- classify ----------------------------------------------------------------------------------------


def test_classify_dedups_per_device():
    summary = X.classify(X.parse_kernel_log(GPUD_119))
    assert list(summary) == ["0000:9b:00"]
    device = summary["0000:9b:00"]
    assert device["events"] == 3
    assert device["worst_class"] == X.HARDWARE and device["worst_action"] == X.REBOOT
    (entry,) = device["xids"]
    assert entry["xid"] == 119 and entry["count"] == 3
    assert entry["first"] == "2025-02-23T16:24:18" and entry["last"] == "2025-02-23T16:27:12"
    assert entry["meaning"] == "GSP RPC Timeout"


def test_classify_several_devices_sorted_and_worst():
    text = "\n".join([HYPERION, T450S_79, OLD_3, MLENG_63])
    summary = X.classify(X.parse_kernel_log(text))
    assert list(summary) == ["0000:01:00", "0000:08:00", "0000:10:1c"]
    gpu01 = summary["0000:01:00"]
    assert [e["xid"] for e in gpu01["xids"]] == [3, 79]
    assert (gpu01["worst_class"], gpu01["worst_action"]) == (X.HARDWARE, X.ISOLATE)
    assert gpu01["xids"][0]["first"] == 269.517039  # uptime when there is no timestamp
    gpu08 = summary["0000:08:00"]
    assert [(e["xid"], e["count"]) for e in gpu08["xids"]] == [(31, 1), (69, 2)]
    assert (gpu08["worst_class"], gpu08["worst_action"]) == (X.HARDWARE, X.REBOOT)


def test_classify_application_only_and_unknown_only():
    app = X.classify(X.parse_kernel_log(GPUD_13))["0000:cb:00"]
    assert (app["worst_class"], app["worst_action"]) == (X.APPLICATION, X.MONITOR)
    unknown = X.classify(X.parse_kernel_log(OLD_3))["0000:01:00"]
    assert (unknown["worst_class"], unknown["worst_action"]) == (X.UNKNOWN, X.MONITOR)


@pytest.mark.parametrize("events", [None, [], ["x", {"xid": "79"}, {"pci": "0000:01:00"}]])
def test_classify_empty_or_garbage(events):
    assert X.classify(events) == {}


def test_classify_event_without_pci():
    summary = X.classify([{"xid": 48}])
    assert summary["unknown"]["xids"][0]["first"] is None
    assert summary["unknown"]["worst_action"] == X.RESET_GPU
