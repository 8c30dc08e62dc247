"""The XID check (plugin_utils/checks/kernel_log.py) against recorded kernel log lines.

Inputs and their provenance: ``checks_inputs.py``.
"""

from datetime import datetime

from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core, kernel_log
from checks_inputs import GPUD_13, GPUD_119, HYPERION, MLENG_63, OGKM_79, assert_result

# --- xid --------------------------------------------------------------------------------------


def test_xid_clean_log_passes():
    res = assert_result(
        kernel_log.xid("kernel: usb 1-1: new high-speed USB device\n", since=0, window_hours=24),
        "xid",
        core.PASS,
    )
    assert res["summary"] == "no XID in the last 24 h"
    assert_result(kernel_log.xid(None), "xid", core.SKIP)


def test_xid_hardware_fails_with_worst_action():
    res = assert_result(kernel_log.xid(GPUD_119 + OGKM_79 + "\n" + MLENG_63), "xid", core.FAIL)
    assert res["action"] == core.ISOLATE  # 79 fell off the bus
    by_pci = {d["pci"]: d for d in res["details"]}
    assert by_pci["0000:9b:00"]["xids"][0] == {**by_pci["0000:9b:00"]["xids"][0], "xid": 119, "count": 3}
    assert "XID 119 x3" in res["summary"]


def test_xid_application_only_warns():
    res = assert_result(kernel_log.xid(GPUD_13), "xid", core.WARN)
    assert res["action"] == core.MONITOR
    # HYPERION: XID 69 (hardware) and 31 (application) on one GPU: hardware wins
    assert assert_result(kernel_log.xid(HYPERION), "xid", core.FAIL)["action"] == core.REBOOT


def test_xid_since_window():
    since = datetime(2025, 2, 24)  # the GPUD_119 events are on Feb 23 2025 (dmesg --ctime, naive)
    assert_result(kernel_log.xid(GPUD_119, since=since), "xid", core.PASS)
