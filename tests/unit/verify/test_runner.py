"""The verify runner's pure parts: inventory reading, baseline validation, probe judging, parsing."""

import json

import pytest
import yaml

from gpufleet import cli
from gpufleet.verify import collect, probing, runner


def write_inventory(tmp_path, hosts=("node1", "node2"), **all_vars):
    inv = {"all": {"vars": all_vars, "children": {"gpu_nodes": {"hosts": {h: {} for h in hosts}}}}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


def test_inventory_hosts_reads_hostvars_and_limit(tmp_path):
    inv = write_inventory(tmp_path, gpufleet_expected_gpus=8)
    hosts = runner.inventory_hosts(str(inv))
    assert list(hosts) == ["node1", "node2"]
    assert hosts["node1"]["gpufleet_expected_gpus"] == 8
    assert hosts["node2"]["inventory_hostname"] == "node2"
    assert list(runner.inventory_hosts(str(inv), "node2")) == ["node2"]


def test_inventory_errors_say_what_to_do(tmp_path):
    with pytest.raises(runner.VerifyError, match="does not exist; pass -i"):
        runner.inventory_hosts(str(tmp_path / "nope.yml"))
    inv = write_inventory(tmp_path)
    with pytest.raises(runner.VerifyError, match="no hosts matching --limit ghost"):
        runner.inventory_hosts(str(inv), "ghost")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "H100 SXM:\n  bf16_tflops:\n    expected: fast\n",
            "baselines.H100 SXM.bf16_tflops.expected: must be a positive",
        ),
        ("B300:\n  bf16_tflops: {expected: 1}\n", "baselines.B300: unknown SKU; known: A100 SXM 80GB"),
        ("H200:\n  tflops: {expected: 1}\n", "baselines.H200.tflops: unknown metric"),
        ("H200:\n  bf16_tflops: {warn_ratio: 0.5}\n", "warn_ratio: must be at least fail_ratio"),
        ("- H200\n", "baselines: must be a mapping of SKU name"),
        ("H200: [unclosed\n", "is not valid YAML"),
    ],
)
def test_bad_baselines_file_names_the_field(tmp_path, text, message):
    path = tmp_path / "b.yml"
    path.write_text(text)
    with pytest.raises(runner.VerifyError, match=r"baselines file .*b\.yml") as exc:
        runner.load_baselines_file(str(path))
    assert message in str(exc.value)


def test_baselines_file_may_carry_the_group_vars_key(tmp_path):
    path = tmp_path / "b.yml"
    path.write_text("baselines:\n  H200:\n    bf16_tflops: {expected: 700}\n")
    assert runner.load_baselines_file(str(path)) == {"H200": {"bf16_tflops": {"expected": 700.0}}}


def test_host_overrides_name_the_host_and_file_wins():
    hosts = {"a": {"gpufleet_baselines": {"H200": {"bf16_tflops": {"expected": 700, "warn_ratio": 0.95}}}}}
    merged = runner.host_overrides(hosts, {"H200": {"bf16_tflops": {"expected": 750.0}}})
    assert merged["a"]["H200"]["bf16_tflops"] == {"expected": 750.0, "warn_ratio": 0.95}
    with pytest.raises(runner.VerifyError, match=r"host b: gpufleet_baselines: baselines\.L4: unknown SKU"):
        runner.host_overrides({"b": {"gpufleet_baselines": {"L4": {}}}}, {})


def test_host_entry_verdicts_and_exit_code():
    ok = runner.host_entry({"host": "a", "checks": [{"check": "x", "status": "pass", "action": None}]})
    bad = runner.host_entry(
        {"host": "b", "checks": [{"check": "ecc", "status": "fail", "action": "RESET_GPU"}]}
    )
    gone = runner.host_entry({"host": "c", "reachable": False, "error": "ssh: timeout", "checks": []})
    assert (ok["verdict"], bad["verdict"], bad["action"], gone["verdict"]) == (
        "healthy", "unhealthy", "RESET_GPU", "unreachable",
    )  # fmt: skip
    report = {"summary": runner.summarize([ok, bad, gone])}
    assert report["summary"] == {"healthy": 1, "degraded": 0, "unhealthy": 1, "unreachable": 1}
    assert runner.exit_code(report) == 1
    assert runner.exit_code({"summary": runner.summarize([ok])}) == 0


def attempt(status, value=None, reason="", tail=""):
    return {"status": status, "value": value, "reason": reason, "stderr_tail": tail, "data": {"value": value}}


def test_probe_crash_is_probe_failed_with_stderr_tail():
    crash = attempt("failed", reason="probe failed (exit 1)", tail="RuntimeError: CUDA error")
    res = probing.judge_probe("gemm", [crash], "H100 SXM", {}, "/opt/gpufleet/venv/bin/python")
    assert res["status"] == "fail" and res["summary"].startswith("probe failed")
    assert "RuntimeError: CUDA error" in json.dumps(res["details"])
    # a CUDA error is the GPU's, not a reason to re-run site.yml (issue 18, class 7)
    assert res["action"] == "RESET_GPU" and "cause: cuda" in res["summary"]


def test_probe_timeout_suggests_gpu_reset():
    res = probing.judge_probe(
        "gemm", [attempt("failed", reason="probe timed out after 5 s (exit 124)")], None, {}, "p"
    )
    assert res["status"] == "fail" and res["action"] == "RESET_GPU"


def test_probe_that_cannot_run_is_unverified_not_a_warning_nor_a_pass():
    res = probing.judge_probe(
        "gemm", [attempt("unavailable", reason="torch not importable")], "H200", {}, "py"
    )
    assert res["status"] == "unverified" and "not verified: torch not importable" in res["summary"]
    assert "gpufleet_verify_python" in res["summary"]  # how to provision it


def test_probe_judged_against_baseline_best_of_attempts():
    res = probing.judge_probe("gemm", [attempt("ok", 600.0), attempt("ok", 780.0)], "H200", {}, "py")
    assert res["status"] == "pass" and res["measured"] == 780.0 and res["expected"] == 788
    assert "best of 2 runs" in res["summary"] and res["source"].startswith("ref: ")
    low = probing.judge_probe("gemm", [attempt("ok", 500.0)], "H200", {}, "py")
    assert low["status"] == "fail" and low["expected"] == 788 and low["action"] == "RESET_GPU"
    unknown = probing.judge_probe("gemm", [attempt("ok", 500.0)], None, {}, "py")
    assert unknown["status"] == "skip" and "not judged" in unknown["summary"]


def test_probe_command_runs_a_temp_copy_under_timeout():
    cmd = probing.command("gemm", "/opt/gpufleet/venv/bin/python", ["--repeats", "3"], 240)
    assert "timeout -k 10 240 /opt/gpufleet/venv/bin/python" in cmd and "base64 -d" in cmd
    assert "rm -f" in cmd and cmd.endswith("--repeats 3")


def test_collect_parsers():
    facts = collect.parse_local_facts(
        '=== /etc/ansible/facts.d/gpufleet_nccl.fact\n{"version": "2.21.5"}\n'
        "=== /etc/ansible/facts.d/gpufleet_cuda_toolkit.fact\nnot json\n"
    )
    assert facts["gpufleet_nccl"] == {"version": "2.21.5"}
    assert "not JSON" in facts["gpufleet_cuda_toolkit"]["_error"]
    pkgs = collect.parse_packages("ii \tnvidia-driver\t535.261.03-1\nrc \tnvidia-old\t1\n")
    assert pkgs == {"nvidia-driver": "535.261.03-1"}
    assert collect.parse_service_states(["a", "b"], "active\ninactive\n") == {"a": "active", "b": "inactive"}


def test_burnin_needs_drain(tmp_path, capsys):
    inv = write_inventory(tmp_path)
    assert cli.main(["verify", "-i", str(inv), "--tier", "burnin"]) == 2
    assert "drain the hosts first (--drain slurm|kubernetes)" in capsys.readouterr().err


def test_a_bad_site_policy_stops_the_run_before_any_host():
    from gpufleet.verify import runner as R

    R.check_policies({"n1": {"gpufleet_verify_policy": {"ecc_required": False}}, "n2": {}})
    with pytest.raises(R.VerifyError, match=r"n2: gpufleet_verify_policy: unknown setting\(s\) ecc"):
        R.check_policies({"n1": {}, "n2": {"gpufleet_verify_policy": {"ecc": True}}})
