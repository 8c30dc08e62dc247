"""Host resource checks (plugin_utils/checks/host.py) against recorded df and meminfo.

Inputs and their provenance: ``checks_inputs.py``.
"""

from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core, host
from checks_inputs import HEALTH, assert_result

# --- disk_headroom ---------------------------------------------------------------------------


def test_disk_headroom_recorded_passes():
    res = assert_result(host.disk_headroom((HEALTH / "df-P-m.txt").read_text()), "disk_headroom", core.PASS)
    assert {d["mount"] for d in res["details"]} == {"/", "/dev/shm"}


def test_disk_headroom_low_and_full():
    text = (HEALTH / "df-P-m.txt").read_text()
    # derived from df-P-m.txt, edited: / has 5000 MiB available, then 500 MiB
    low = text.replace("25837     78061", "253020     5000")
    assert assert_result(host.disk_headroom(low), "disk_headroom", core.WARN)["measured"] == 5000
    full = text.replace("25837     78061", "257520      500")
    assert assert_result(host.disk_headroom(full), "disk_headroom", core.FAIL)["action"] == core.MONITOR
    assert_result(host.disk_headroom(""), "disk_headroom", core.WARN)


# --- memory_headroom -------------------------------------------------------------------------


def test_memory_headroom():
    text = (HEALTH / "proc-meminfo.txt").read_text()
    assert_result(host.memory_headroom(text), "memory_headroom", core.PASS)
    assert_result(host.memory_headroom(text, min_available_pct=99.9), "memory_headroom", core.WARN)
    assert_result(host.memory_headroom("garbage"), "memory_headroom", core.WARN)
