"""Non-Xid GPU faults and the XID lines whose meaning depends on the line (kernel_faults, xid).

Lines from the recordings in tests/fixtures/diagnose (PROVENANCE.md), and from the NVLink5 and
XID 154 lines quoted in leptonai/gpud PR #1160 and stas00-style debugging notes as noted.
"""

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import kernel_faults as K
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import xid as X
from conftest import FIXTURES

DIAG = FIXTURES / "diagnose"
# leptonai/gpud PR #1160 (kmsg lines of an NVLink5 system)
SAW_NONFATAL = (
    "NVRM: Xid (PCI:0000:01:00): 144, SAW_MVB Nonfatal XC0 i0 Link 0 "
    "(0x00000001 0x00000008 0x00000000 0x00000000 0x00000000 0x00000000)"
)
NETIR_FATAL = (
    "NVRM: Xid (PCI:0000:00:00): 149, NETIR_LINK_EVT Fatal XC0 i0 Link 00 "
    "(0x026001c6 0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)"
)
# the XID 154 line as quoted in public operator notes (found with find_string "GPU recovery action")
XID_154 = (
    "NVRM: Xid (PCI:0000:01:00): 154, GPU recovery action changed from 0x0 (None) "
    "to 0x2 (Node Reboot Required)"
)


def test_fallen_off_the_bus_three_lines_and_one_line():
    (event,) = K.parse((DIAG / "fallen-off-bus-no-xid" / "kernel.log").read_text())
    assert (event["fault"], event["pci"], event["uptime"]) == ("fallen_off_bus", "0000:b3:00", 1843.308145)
    (event,) = K.parse("[   49.261458] NVRM: GPU at 0000:01:00.0 has fallen off the bus.")  # Bumblebee#554
    assert event["pci"] == "0000:01:00"


def test_fallen_off_the_bus_with_an_xid_79_is_one_fault():
    text = (
        "NVRM: GPU at 0000:01:00.0 has fallen off the bus.\n"
        "NVRM: Xid (PCI:0000:01:00): 79, GPU has fallen off the bus."
    )
    events = K.merge(X.parse_kernel_log(text), K.parse(text))
    assert [(e["xid"], e.get("fault")) for e in events] == [(79, None)]


def test_gsp_and_rm_init_adapter():
    events = K.parse((DIAG / "gsp-heartbeat-timeout" / "kernel.log").read_text())
    assert [(e["fault"], e["pci"]) for e in events] == [("gsp_timeout", "gpu6")] * 3
    events = K.parse((DIAG / "rm-init-adapter-failed" / "kernel.log").read_text())
    assert [e["pci"] for e in events] == ["0000:0a:00"] * 3  # rm_init_adapter lines are the same fault
    assert K.parse("") == [] and K.parse(None) == []


def test_nvlink5_severity_and_recovery_action_and_root_cause():
    assert X.judge_event(144, SAW_NONFATAL.split(": 144, ")[1])["action"] == X.MONITOR
    assert X.judge_event(149, NETIR_FATAL.split(": 149, ")[1])["action"] == X.RESET_GPU
    assert X.judge_event(154, XID_154)["action"] == X.REBOOT
    row = X.judge_event(45, "Ch 00000001 caused by previous Xid 149")
    assert (row["xid"], row["root_cause"], row["class"], row["action"]) == (45, 149, X.HARDWARE, X.RESET_GPU)
    summary = X.classify(X.parse_kernel_log("\n".join([SAW_NONFATAL, SAW_NONFATAL, XID_154])))
    entries = {e["xid"]: e for e in summary["0000:01:00"]["xids"]}
    assert (entries[144]["count"], entries[144]["action"], entries[154]["action"]) == (2, X.MONITOR, X.REBOOT)
