"""gpufleet diagnose: recorded outputs judged by the registered checks (tests/fixtures/diagnose).

One test per failure class of issue 13, each on a recording whose provenance is in
tests/fixtures/diagnose/PROVENANCE.md, through the API and, for the exit codes, the CLI.
"""

import json
import shutil
import xml.etree.ElementTree as ET

import pytest
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core
from conftest import FIXTURES

from gpufleet import cli
from gpufleet.verify import diagnose as D
from gpufleet.verify import recorded

CASES = FIXTURES / "diagnose"


def run(case, **kwargs):
    return D.diagnose(CASES / case, **kwargs)


def check(result, name):
    (res,) = [c for c in result.report["hosts"][0]["checks"] if c["check"] == name]
    return res


def test_class1_and_2_policy_not_health_on_a_passthrough_vm():
    # Persistence off and PCIe x8 of x16 in a pass-through VM: policy results, the host stays healthy.
    result = run("t4-passthrough-vm")
    host = result.report["hosts"][0]
    assert (host["verdict"], host["action"], result.exit_code) == ("healthy", core.RECONFIGURE, 0)
    assert host["policy"] == ["persistence_mode", "pcie_link"]
    assert check(result, "pcie_link")["status"] == core.POLICY_STATUS
    assert "Pass-Through" in check(result, "pcie_link")["summary"]


def test_class1_policy_settings_from_expect(tmp_path):
    case = tmp_path / "t4"
    shutil.copytree(CASES / "t4-passthrough-vm", case)
    (case / "expect.yml").write_text(
        "gpus: 1\npolicy:\n  persistence_required: false\n  pcie_passthrough_narrow_ok: true\n"
    )
    result = D.diagnose(case)
    host = result.report["hosts"][0]
    assert (host["verdict"], host["action"], host["policy"]) == ("healthy", None, [])
    assert check(result, "gpu_count")["status"] == core.PASS


def test_bad_expectations_are_exit_2(tmp_path, capsys):
    case = tmp_path / "t4"
    shutil.copytree(CASES / "t4-passthrough-vm", case)
    (case / "expect.yml").write_text("policy:\n  ecc_requird: true\n")
    assert cli.main(["diagnose", "-q", str(case)]) == 2
    assert "unknown setting(s) ecc_requird" in capsys.readouterr().err
    (case / "expect.yml").write_text("gpus: many\n")
    with pytest.raises(D.DiagnoseError, match="gpus must be a whole number"):
        D.diagnose(case)
    assert cli.main(["diagnose", "-q", str(tmp_path / "missing")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    with pytest.raises(D.DiagnoseError, match=r"notes.txt \(unknown\)"):
        D.diagnose(empty)


def test_class3_rail_down_with_its_physical_state():
    result = run("ibstat-rail-disabled")
    res = check(result, "ib_ports")
    assert (res["status"], res["action"]) == (core.FAIL, core.ISOLATE)
    assert "mlx5_1:1 DOWN, physical Disabled" in res["summary"]
    assert result.exit_code == 1


def test_class3_ethernet_ports_are_rails_only_when_named(tmp_path):
    result = run("ibstat-roce-only")  # expect.yml names mlx5_1:1 as the one rail
    res = check(result, "ib_ports")
    assert res["status"] == core.PASS and "mlx5_1:1" in res["summary"]
    assert "not rails (not judged): mlx5_0:1 Ethernet ACTIVE" in res["summary"]
    case = tmp_path / "roce"
    shutil.copytree(CASES / "ibstat-roce-only", case)
    (case / "expect.yml").write_text("rails: 2\n")  # no rails named: Ethernet ports are not rails
    res = check(D.diagnose(case), "ib_ports")
    assert res["status"] == core.FAIL and "gpufleet_ib_rails" in res["summary"]


def test_class3_init_port_says_no_subnet_manager():
    res = check(run("ibstat-connectx4-init"), "ib_ports")
    assert res["status"] == core.WARN and "no subnet manager" in res["summary"]


def test_class4_tool_failure_kept_whole_and_its_ports_judged():
    result = run("ibstat-partial-ibpanic")
    res = check(result, "collection")
    assert (res["status"], res["action"]) == (core.WARN, core.MONITOR)
    assert (
        "ibpanic: [1323906] main: stat of IB device 'mlx5_8' failed: No such file or directory"
        in res["summary"]
    )
    assert check(result, "ib_ports")["status"] == core.PASS  # mlx5_7 was printed and is judged


def test_class4_rc_and_stderr_companions(tmp_path):
    case = tmp_path / "ib"
    shutil.copytree(CASES / "ibstat-rail-disabled", case)
    (case / "ibstat.rc").write_text("1\n")
    (case / "ibstat.stderr").write_text("ibwarn: [42] umad_get_port: can't open port\n")
    result = D.diagnose(case)
    res = check(result, "collection")
    assert "status 1" in res["summary"] and "ibwarn: [42] umad_get_port: can't open port" in res["summary"]
    used = {i["file"] for i in result.report["inputs"] if i["status"] == "used"}
    assert {"ibstat.txt", "ibstat.rc", "ibstat.stderr", "expect.yml"} <= used


@pytest.mark.parametrize(
    ("case", "action", "text"),
    [
        ("fallen-off-bus-no-xid", core.ISOLATE, "fallen off bus"),
        ("gsp-heartbeat-timeout", core.REBOOT, "gsp timeout"),
        ("rm-init-adapter-failed", core.REBOOT, "rm init adapter failed x3"),
        ("xid45-caused-by-nvlink", core.RESET_GPU, "XID 45 caused by XID 149 x2"),
    ],
)
def test_class5_kernel_faults_beyond_xid_lines(case, action, text):
    result = run(case)
    res = check(result, "xid")
    assert (res["status"], res["action"]) == (core.FAIL, action)
    assert text in res["summary"]
    assert result.report["hosts"][0]["verdict"] == "unhealthy" and result.exit_code == 1


def test_application_xids_only_degrade():
    result = run("app-xid13-only")
    host = result.report["hosts"][0]
    assert (host["verdict"], host["action"], result.exit_code) == ("degraded", core.MONITOR, 0)


def test_class6_attached_gpus_above_listed():
    res = check(run("a100-mig-attached-4"), "gpu_count")
    assert (res["status"], res["action"], res["expected"]) == (core.FAIL, core.REBOOT, 4)
    assert "4 GPUs are attached but reports 1" in res["summary"]


def test_class7_recovery_action_fabric_and_sram_lifetime():
    result = run("recovery-reset-fabric-constructed")
    assert (check(result, "recovery_action")["status"], check(result, "recovery_action")["action"]) == (
        core.FAIL,
        core.RESET_GPU,
    )
    assert "In Progress" in check(result, "fabric_registration")["summary"]
    assert check(result, "fabric_registration")["action"] == core.REBOOT
    ecc = check(result, "ecc")
    assert ecc["status"] == core.WARN and "SRAM" in ecc["summary"]


def test_text_report_excerpt_is_judged():
    result = run("a100-row-remap-pending")
    res = check(result, "row_remap")
    assert (res["status"], res["action"]) == (core.FAIL, core.RESET_GPU)
    assert check(result, "xid")["action"] == core.RESET_GPU  # the Xid 63 line of the same page


def test_unknown_files_are_listed_and_reports_written(tmp_path, capsys):
    case = tmp_path / "case"
    shutil.copytree(CASES / "t4-passthrough-vm", case)
    (case / "README").write_text("from the customer\n")
    (case / "kernel.log").mkdir()  # a known name that is not a file
    json_out, junit_out = tmp_path / "r.json", tmp_path / "r.xml"
    code = cli.main(["diagnose", "-q", str(case), "--json", str(json_out), "--junit", str(junit_out)])
    table = capsys.readouterr().out
    assert code == 0
    assert "not used (unknown name): README" in table
    assert "unreadable: kernel.log/ (not a regular file)" in table
    report = json.loads(json_out.read_text())
    assert report["tool"] == "gpufleet diagnose" and report["hosts"][0]["host"] == "case"
    statuses = {i["file"]: i["status"] for i in report["inputs"]}
    assert statuses == {"README": "unknown", "kernel.log/": "unreadable", "nvidia-smi-q.xml": "used"}
    suites = ET.parse(junit_out).getroot()
    assert suites.find("testsuite").get("hostname") == "case"


def test_json_to_stdout_and_help_lists_the_file_names(capsys):
    assert cli.main(["diagnose", "-q", str(CASES / "fallen-off-bus-no-xid"), "--json", "-"]) == 1
    assert json.loads(capsys.readouterr().out)["hosts"][0]["verdict"] == "unhealthy"
    with pytest.raises(SystemExit):
        cli.main(["diagnose", "--help"])
    text = capsys.readouterr().out
    for name in recorded.FILES:
        assert name in text


def test_every_registered_check_runs_or_skips_with_a_reason():
    result = run("t4-passthrough-vm")
    names = [c["check"] for c in result.report["hosts"][0]["checks"]]
    from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import registry

    assert names == list(registry.CHECKS)
    for res in result.report["hosts"][0]["checks"]:
        if res["status"] == core.SKIP:
            assert res["summary"]


def test_nccl_tests_with_mpi_rank_prefixes(tmp_path):
    # The recorded 2x8 H100 all_reduce_perf report (tests/fixtures/probes/PROVENANCE.md), each line
    # given the Open MPI --tag-output prefix and, in a second copy, the "[0] " -prepend-rank prefix.
    text = (FIXTURES / "probes" / "all_reduce_perf-h100-2x8-wrong-layout.txt").read_text()
    for prefix in ("[1,0]<stdout>:", "[0] "):
        case = tmp_path / prefix.strip("[]<>: ").replace(",", "-")
        case.mkdir()
        (case / "nccl-tests.txt").write_text("".join(prefix + line for line in text.splitlines(True)))
        result = D.diagnose(case)
        res = check(result, "probe_allreduce")
        assert res["measured"] == pytest.approx(338.82)
        assert res["status"] == core.SKIP  # no SKU known from a recording without nvidia-smi
        assert "338.82" in res["summary"]
        (case / "expect.yml").write_text("sku: H100 SXM\n")
        res = check(D.diagnose(case), "probe_allreduce")
        assert res["status"] in (core.FAIL, core.WARN) and res["expected"] == 460  # azurehpc 8-GPU busbw


def test_recorded_sysfs_counters_are_reported_not_judged(tmp_path):
    # one read is all a recording has: the counters are reported and the summary asks for a second read
    case = tmp_path / "sysfs"
    shutil.copytree(FIXTURES / "infiniband" / "sysfs-procfs", case / "sys-class-infiniband")
    res = check(D.diagnose(case), "ib_ports")
    assert res["status"] == core.PASS
    assert "error counters read once on 4 rail(s), not judged: a second read is needed" in res["summary"]
    assert all(d["counters"]["link_downed"] == 0 and d["counter_deltas"] is None for d in res["details"])
