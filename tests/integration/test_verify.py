"""gpufleet verify against the real lab: an unprovisioned node, an unreachable host, the reports.

The itest node is a fresh Debian 12 container (no driver: the other integration tests leave it
untouched), so its truthful verdict is "unhealthy, REPROVISION": the driver role never ran there.
Its GPU checks are skips saying "no GPU present" — never passes. "ghost" names a container that
does not exist: reported unreachable with docker's error while node1 is still verified.

The probe failure cases point gpu_facts at a PCI tree holding one H100 (a test double, as in
test_stack_preflight.py) so the probes run, and point the runtime Python at test-double scripts
that crash or hang.
"""

import json
import xml.etree.ElementTree as ET

import pytest
import yaml
from itest import docker_exec, gpufleet, run

PCI_DOUBLE = "/tmp/test-double-pci-verify"
CRASH = "/usr/local/bin/test-double-python-crash"
HANG = "/usr/local/bin/test-double-python-hang"


def inventory(lab, tmp_path, **node_vars):
    inv = {
        "all": {
            "vars": {
                "ansible_connection": "community.docker.docker",
                "ansible_python_interpreter": "/usr/bin/python3",
                "gpufleet_expected_gpus": 0,
            },
            "children": {
                "gpu_nodes": {
                    "hosts": {
                        "node1": {"ansible_host": lab["container"], **node_vars},
                        "ghost": {"ansible_host": "gpufleet-itest-ghost-does-not-exist"},
                    }
                }
            },
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


def by_host(report):
    return {h["host"]: h for h in report["hosts"]}


def checks(host):
    return {c["check"]: c for c in host["checks"]}


def test_unprovisioned_node_and_unreachable_host(lab, tmp_path):
    inv = inventory(lab, tmp_path)
    out = tmp_path / "out"
    # A relative inventory path, as in the README (make demo passes inventories/lab/hosts.yml).
    proc = gpufleet(
        "verify", "-i", inv.name, "--json", out / "r.json", "--junit", out / "r.xml",
        "--prometheus", out / "textfile" / "gpufleet_verify.prom", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads((out / "r.json").read_text())
    hosts = by_host(report)
    assert report["summary"] == {"healthy": 0, "degraded": 0, "unhealthy": 1, "unreachable": 1}

    ghost = hosts["ghost"]
    assert ghost["verdict"] == "unreachable"
    assert "gpufleet-itest-ghost-does-not-exist" in ghost["error"]

    node = hosts["node1"]
    assert node["verdict"] == "unhealthy"
    assert node["action"] == "REPROVISION"
    c = checks(node)
    assert c["driver_package"]["status"] == "fail"
    assert "nvidia_driver" in c["driver_package"]["summary"]
    assert c["gpu_count"]["status"] == "pass"  # 0 expected (lab), 0 present
    for name in ("driver_loaded", "ecc", "persistence_mode", "xid", "throttle", "pcie_link", "row_remap"):
        assert c[name]["status"] == "skip", c[name]
        assert c[name]["summary"].startswith("no GPU present"), c[name]
    assert c["disk_headroom"]["status"] == "pass"
    assert c["memory_headroom"]["status"] == "pass"
    assert c["nccl_conf"]["status"] == "skip"
    assert not [
        x
        for x in node["checks"]
        if x["kind"] == "gpu" and x["status"] == "pass" and x["check"] != "gpu_count"
    ]

    # The table names the failing check, the error of the unreachable host, and the verdict counts.
    assert "driver_package" in proc.stdout and "unreachable" in proc.stdout
    assert "gpufleet-itest-ghost-does-not-exist" in proc.stdout
    assert "[2/2]" in proc.stderr  # progress lines

    # JUnit parses and agrees with the JSON report.
    suites = ET.parse(out / "r.xml").getroot()
    assert suites.tag == "testsuites"
    failures = [tc.get("name") for tc in suites.iter("testcase") if tc.find("failure") is not None]
    assert "driver_package" in failures
    errors = [tc for tc in suites.iter("testcase") if tc.find("error") is not None]
    assert len(errors) == 1 and "ghost" in errors[0].get("classname")

    # The textfile passes Debian's promtool.
    prom = out / "textfile" / "gpufleet_verify.prom"
    check = run(["sh", "-c", f"promtool check metrics < {prom}"], timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    text = prom.read_text()
    assert 'gpufleet_verify_host_verdict{host="ghost",verdict="unreachable"} 1' in text


def test_bad_baseline_file_is_refused_before_any_host_is_touched(lab, tmp_path):
    inv = inventory(lab, tmp_path)
    bad = tmp_path / "baselines.yml"
    bad.write_text("H100 SXM:\n  bf16_tflops:\n    expected: fast\n")
    proc = gpufleet("verify", "-i", inv, "--baselines", bad)
    assert proc.returncode == 2
    assert "baselines.H100 SXM.bf16_tflops.expected: must be a positive number" in proc.stderr
    bad.write_text("B300:\n  bf16_tflops:\n    expected: 2000\n")
    proc = gpufleet("verify", "-i", inv, "--baselines", bad)
    assert proc.returncode == 2
    assert "baselines.B300: unknown SKU" in proc.stderr
    assert "verifying" not in proc.stderr


@pytest.fixture
def h100_and_broken_runtime(lab):
    c = lab["container"]
    dev = f"{PCI_DOUBLE}/0000:17:00.0"
    docker_exec(
        c, "sh", "-c",
        f"mkdir -p {dev} && echo 0x10de > {dev}/vendor && echo 0x2330 > {dev}/device"
        f" && echo 0x030200 > {dev}/class"
        f" && printf '#!/bin/sh\\necho probe exploded: CUDA error 999 >&2\\nexit 1\\n' > {CRASH}"
        f" && printf '#!/bin/sh\\necho still warming up >&2\\nexec sleep 600\\n' > {HANG}"
        f" && chmod +x {CRASH} {HANG}",
    )  # fmt: skip
    yield
    docker_exec(c, "rm", "-rf", PCI_DOUBLE, CRASH, HANG)


@pytest.mark.parametrize(
    ("python", "expect"),
    [(CRASH, "probe exploded: CUDA error 999"), (HANG, "timed out after 5 s")],
    ids=["crash", "timeout"],
)
def test_probe_crash_or_timeout_is_probe_failed(lab, tmp_path, h100_and_broken_runtime, python, expect):
    inv = inventory(
        lab,
        tmp_path,
        gpufleet_sysfs_pci_root=PCI_DOUBLE,
        gpufleet_expected_gpus=1,
        gpufleet_verify_python=python,
        gpufleet_verify_probe_timeout_s=5,
        gpufleet_verify_probe_retries=0,
    )
    proc = gpufleet("verify", "-i", inv, "--limit", "node1", "--tier", "full", "--json", "-", "-q")
    assert proc.returncode == 1, proc.stderr
    node = by_host(json.loads(proc.stdout))["node1"]
    gemm = checks(node)["probe_gemm"]
    assert gemm["status"] == "fail"
    assert gemm["summary"].startswith("probe failed")
    tail = json.dumps(gemm["details"])
    assert expect in gemm["summary"] + tail
    if python == CRASH:
        assert "probe exploded" in tail  # the stderr tail
