"""Fabric checks (plugin_utils/checks/fabric.py) against recorded nvlink/ibstat output.

Inputs and their provenance: ``checks_inputs.py``.
"""

import copy

from ansible_collections.gpufleet.cluster.plugins.module_utils.infiniband import (
    add_counter_deltas,
    read_sysfs,
    summarize,
)
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core, fabric
from checks_inputs import (
    HEALTH,
    IB,
    a100,
    assert_result,
    ib_active,
    ib_initializing,
    ib_none,
    t4,
)

# --- nvlink ----------------------------------------------------------------------------------


def two_a100():
    host = a100()
    # derived from a100-sxm4-80gb-mig.xml, edited: indexes 0 and 1 to match the nvlink recording
    host["gpus"][0]["index"] = 0
    second = copy.deepcopy(host["gpus"][0])
    second.update(index=1, pci_bus_id="0000:02:00.0")
    host["gpus"].append(second)
    host["gpu_count"] = 2
    return host


def test_parse_nvlink_status_recorded():
    parsed = fabric.parse_nvlink_status((HEALTH / "nvlink-s-a100-sxm4-80gb.txt").read_text())
    assert sorted(parsed) == [0, 1]
    assert parsed[0]["name"] == "NVIDIA A100-SXM4-80GB"
    assert parsed[0]["links"] == dict.fromkeys(range(12), 25.0)
    v100 = fabric.parse_nvlink_status((HEALTH / "nvlink-s-v100-sxm2-inactive.txt").read_text())
    assert v100 == {
        3: {
            "name": "Tesla V100-SXM2-32GB",
            "links": {0: 25.781, 1: 25.781, 2: 25.781, 3: None, 4: 25.781, 5: None},
        }
    }
    assert fabric.parse_nvlink_status("") == {}


def test_nvlink_a100_all_twelve_pass():
    res = assert_result(
        fabric.nvlink(two_a100(), (HEALTH / "nvlink-s-a100-sxm4-80gb.txt").read_text()), "nvlink", core.PASS
    )
    assert res["measured"] == 12 and res["expected"] == 12


def test_nvlink_inactive_link_fails():
    # derived from nvlink-s-a100-sxm4-80gb.txt, edited: GPU 1 link 3 inactive (as in azhpc-diagnostics#73)
    text = (HEALTH / "nvlink-s-a100-sxm4-80gb.txt").read_text().split("\n")
    text[13 + 1 + 3] = "\t Link 3: <inactive>"
    res = assert_result(fabric.nvlink(two_a100(), "\n".join(text)), "nvlink", core.FAIL)
    assert (
        res["action"] == core.REBOOT
        and "GPU 1 (0000:02:00.0) 11 of 12 active (inactive: 3)" in res["summary"]
    )


def test_nvlink_unknown_sku_skips_and_h100_nvl_expects_twelve():
    assert (
        "no NVLink link-count baseline"
        in assert_result(
            fabric.nvlink(t4(), (HEALTH / "nvlink-s-v100-sxm2-inactive.txt").read_text()), "nvlink", core.SKIP
        )["summary"]
    )
    host = two_a100()
    for gpu in host["gpus"]:
        gpu["name"] = "NVIDIA H100 NVL"  # constructed: no H100 NVL recording; the A100 one has 12 links
    res = assert_result(
        fabric.nvlink(host, (HEALTH / "nvlink-s-a100-sxm4-80gb.txt").read_text()), "nvlink", core.PASS
    )
    assert res["expected"] == 12
    assert assert_result(fabric.nvlink(host, None), "nvlink", core.WARN)["action"] == core.MONITOR


# --- fabric_manager --------------------------------------------------------------------------


def with_nvswitch(host):
    # derived from the recorded report, edited: NVSwitches on PCI (constructed pci dicts)
    switches = [
        {"pci_bus_id": f"0000:0{i}:00.0", "device_id": "0x22a3", "name": "NVSwitch"} for i in range(4)
    ]
    return {**host, "nvswitch_count": len(switches), "nvswitches": switches}


def test_fabric_manager():
    assert (
        "no NVSwitch"
        in assert_result(fabric.fabric_manager(a100(), {}), "fabric_manager", core.SKIP)["summary"]
    )
    host = with_nvswitch(a100())
    assert_result(
        fabric.fabric_manager(host, {"nvidia-fabricmanager": "active"}), "fabric_manager", core.PASS
    )
    assert fabric.fabric_manager(host, {"nvidia-fabricmanager": "failed"})["action"] == core.REBOOT
    assert fabric.fabric_manager(host, {})["action"] == core.REPROVISION


# --- peermem ---------------------------------------------------------------------------------

# /proc/modules lines (constructed: no recording with a GPU host here; the module names are those the
# driver packages build, Debian's renamed by its dkms.conf, see nvidia_driver.driver_plan).
PROC_MODULES_PEERMEM = (
    "nvidia_current_peermem 16384 0 - Live 0x0000000000000000\n"
    "nvidia_current 56823808 2 nvidia_current_peermem, Live 0x0000000000000000 (POE)\n"
    "ib_core 430080 8 nvidia_current_peermem, Live 0x0000000000000000\n"
)


def test_peermem():
    assert_result(fabric.peermem(a100(), ib_active(), PROC_MODULES_PEERMEM), "peermem", core.PASS)
    without = "\n".join(line for line in PROC_MODULES_PEERMEM.splitlines() if "peermem 16384" not in line)
    res = assert_result(fabric.peermem(a100(), ib_active(), without), "peermem", core.FAIL)
    assert res["action"] == core.REPROVISION and "mlx4_0:1" in res["summary"]
    assert_result(fabric.peermem(a100(), ib_initializing(), ""), "peermem", core.SKIP)
    assert_result(fabric.peermem(a100(), ib_none(), ""), "peermem", core.SKIP)


# --- ib_ports --------------------------------------------------------------------------------


def test_ib_ports_recorded():
    res = assert_result(
        fabric.ib_ports(ib_active(), expected_ports=1, expected_rate_gbps=40), "ib_ports", core.PASS
    )
    assert "mlx4_0:1" in res["summary"] and "40 Gb/s" in res["summary"]
    res = assert_result(fabric.ib_ports(ib_initializing(), expected_ports=1), "ib_ports", core.FAIL)
    assert res["action"] == core.ISOLATE and "mlx5_0:1 INIT" in res["summary"]
    assert_result(fabric.ib_ports(ib_initializing()), "ib_ports", core.WARN)
    res = assert_result(fabric.ib_ports(ib_active(), expected_rate_gbps=100), "ib_ports", core.FAIL)
    assert "below 100 Gb/s" in res["summary"]


def test_ib_ports_sysfs_tree_and_absent():
    facts = {"present": True, **summarize(read_sysfs(str(IB / "sysfs-procfs"), "/nonexistent"))}
    assert_result(fabric.ib_ports(facts, expected_ports=4), "ib_ports", core.PASS)
    assert_result(fabric.ib_ports(ib_none()), "ib_ports", core.SKIP)
    assert_result(fabric.ib_ports(None), "ib_ports", core.SKIP)
    assert fabric.ib_ports(ib_none(), expected_ports=2)["status"] == core.FAIL


# --- ib_ports: error counters by rate of change ------------------------------------------------


def procfs_reads(edit=None, interval_s=5.0):
    """Two reads of the recorded procfs tree (counters all 0, as recorded). ``edit(second)``:
    CONSTRUCTED changes to the second read's counters, as ib_facts would have read them."""
    first = read_sysfs(str(IB / "sysfs-procfs"), "/nonexistent")
    second = read_sysfs(str(IB / "sysfs-procfs"), "/nonexistent")
    if edit:
        edit({f"{d['name']}:{p['port']}": p["counters"] for d in second for p in d["ports"]})
    add_counter_deltas(first, second)
    return {"present": True, "counter_interval_s": interval_s, **summarize(second)}


def test_ib_counters_steady_over_two_reads_pass():
    res = assert_result(fabric.ib_ports(procfs_reads(), expected_ports=4), "ib_ports", core.PASS)
    assert "error counters steady over 5 s on 4 rail(s)" in res["summary"]
    assert res["details"][0]["counter_deltas"]["link_downed"] == 0


def test_ib_counters_flapping_link_fails_isolate():
    def flap(ports):
        ports["mlx4_0:2"].update(link_downed=1, link_error_recovery=2)

    res = assert_result(fabric.ib_ports(procfs_reads(flap), expected_ports=4), "ib_ports", core.FAIL)
    assert res["action"] == core.ISOLATE
    assert res["summary"].startswith("link flapping during 5 s between two counter reads: ")
    assert "mlx4_0:2 link_downed +1" in res["summary"] and "mlx4_0:2 link_error_recovery +2" in res["summary"]
    assert "4 rail(s) up" in res["summary"]  # the state verdict is still said
    assert res["measured"] == 0.4 and res["unit"] == "errors/s"
    assert core.AZURE in res["source"]


def test_ib_counters_rising_symbol_errors_warn_with_the_rate():
    def noisy(ports):
        ports["mlx5_0:1"].update(symbol_error=50)

    res = assert_result(fabric.ib_ports(procfs_reads(noisy), expected_ports=4), "ib_ports", core.WARN)
    assert res["action"] == core.MONITOR
    assert "error counters rising" in res["summary"]
    assert "mlx5_0:1 symbol_error +50 (10/s" in res["summary"]
    assert res["measured"] == 10.0
    assert "IBTA" in res["source"]


def test_ib_counters_symbol_errors_within_the_ibta_rate_pass():
    # 120 per hour is the limit: 1 symbol error in an hour-long interval is within it
    def one(ports):
        ports["mlx5_0:1"].update(symbol_error=1)

    res = fabric.ib_ports(procfs_reads(one, interval_s=3600.0), expected_ports=4)
    assert res["status"] == core.PASS, res["summary"]


def test_ib_counters_rising_receive_errors_warn():
    def rcv(ports):
        ports["hfi1_0:1"].update(port_rcv_errors=3)

    res = assert_result(fabric.ib_ports(procfs_reads(rcv)), "ib_ports", core.WARN)
    assert "hfi1_0:1 port_rcv_errors +3 (0.6/s" in res["summary"]


def test_ib_counters_flap_on_a_host_already_failing_keeps_the_failure_and_says_both():
    def flap(ports):
        ports["mlx4_0:1"].update(link_downed=1)

    res = assert_result(fabric.ib_ports(procfs_reads(flap), expected_ports=6), "ib_ports", core.FAIL)
    assert res["summary"].startswith("4 rail(s) up")
    assert "also link flapping" in res["summary"] and res["action"] == core.ISOLATE


def test_ib_counters_single_read_reported_not_judged():
    # one read of the recorded tree, as gpufleet diagnose has from a copy of /sys/class/infiniband
    facts = {"present": True, **summarize(read_sysfs(str(IB / "sysfs-procfs"), "/nonexistent"))}
    facts["devices"][1]["ports"][0]["counters"]["link_downed"] = 7  # CONSTRUCTED: a total since boot
    res = assert_result(fabric.ib_ports(facts, expected_ports=4), "ib_ports", core.PASS)
    assert "error counters read once on 4 rail(s), not judged: a second read is needed" in res["summary"]
    assert "totals since boot or reset: mlx4_0:1 link_downed 7" in res["summary"]
    assert res["details"][1]["counters"]["link_downed"] == 7


def test_ib_counters_absent_say_nothing():
    res = assert_result(fabric.ib_ports(ib_active(), expected_ports=1), "ib_ports", core.PASS)
    assert "counter" not in res["summary"]  # ibstat gives no counters
