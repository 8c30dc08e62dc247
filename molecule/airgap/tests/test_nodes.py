"""The air-gapped lab node after site.yml: no route out, every layer installed from the bastion's
bundle alone, recorded, and consistent with the others."""

import json
import re

import pytest

testinfra_hosts = ["ansible://gpu_nodes"]


def test_the_node_really_cannot_reach_the_registries(host):
    """A connection to the Debian mirror the image was built from fails: docker's internal network
    keeps a gateway address but forwards nothing out."""
    sources = host.file("/etc/apt/sources.list.d/debian.sources").content_string  # the user's file, untouched
    mirror = re.search(r"URIs: https?://([^/\s]+)", sources).group(1)
    probe = host.run(
        "timeout 10 python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], 80), 5)' %s", mirror
    )
    assert probe.rc != 0, f"{mirror} is reachable from an air-gapped node"
    assert "unreachable" in probe.stderr or "Errno" in probe.stderr or probe.rc == 124, probe.stderr


def test_apt_uses_only_the_bastion_and_checks_its_signature(host):
    conf = host.file("/etc/apt/apt.conf.d/00gpufleet-offline").content_string
    assert 'Dir::Etc::SourceParts "/etc/apt/gpufleet-offline/sources.list.d"' in conf
    line = host.file("/etc/apt/gpufleet-offline/sources.list").content_string
    assert "signed-by=/etc/apt/keyrings/gpufleet-bundle.asc" in line and "trusted=yes" not in line
    listed = host.check_output("apt-get indextargets --format '$(SITE)' | sort -u").split()
    assert listed == ["http://bastion/lab/apt"], listed
    policy = host.check_output("apt-cache policy nvidia-kernel-dkms")
    assert "http://bastion/lab/apt ./ Packages" in policy, policy
    pip = host.file("/etc/pip.conf").content_string
    assert "no-index = true" in pip and "find-links = http://bastion/lab/wheels/" in pip


def fact(host, name):
    return json.loads(host.file(f"/etc/ansible/facts.d/gpufleet_{name}.fact").content_string)


@pytest.fixture(scope="module")
def facts(host):
    return {n: fact(host, n) for n in ("nvidia_driver", "cuda_toolkit", "nccl", "infiniband")}


def test_driver_built_by_dkms_for_the_lab_kernel(host, facts):
    drv = facts["nvidia_driver"]
    assert drv["source"] == "debian" and drv["branch"] == "535"
    assert drv["kernels_built"], "DKMS built the module for no kernel"
    assert "installed" in host.check_output("dkms status")
    assert drv["in_container"] is True and drv["activation"] != "reboot"


def test_cuda_toolkit_matches_the_driver_branch_and_is_the_default(host, facts):
    cuda = facts["cuda_toolkit"]
    assert cuda["default"] == "11.8"  # Debian 12's toolkit; branch 535 supports up to CUDA 12.2
    assert host.file("/usr/local/cuda").linked_to == "/usr/local/cuda-11.8"
    assert "release 11.8" in host.check_output("bash -lc 'nvcc --version'")
    assert cuda["hello"]["11.8"]["status"] == "no_gpu"


def test_toolkit_libcuda_comes_from_the_pinned_driver(host, facts):
    # nvidia-cuda-toolkit pulls libcuda1; the driver role's APT pin must keep it on the driver's build.
    libcuda = host.package("libcuda1").version
    assert libcuda == facts["nvidia_driver"]["package_version"]


def test_nccl_built_for_the_toolkit_cuda_and_loadable(host, facts):
    nccl = facts["nccl"]
    assert nccl["cuda"] == facts["cuda_toolkit"]["default"]
    assert nccl["packages"] == ["nvidia-nccl-cu11==2.21.5"]
    code = (
        "import ctypes; v = ctypes.c_int(); "
        f"ctypes.CDLL('{nccl['library']}').ncclGetVersion(ctypes.byref(v)); print(v.value)"
    )
    assert host.check_output(f'/opt/gpufleet/venv/bin/python -c "{code}"').strip() == "22105"


def test_cudnn_and_nccl_share_one_runtime(host, facts):
    out = host.check_output("/opt/gpufleet/venv/bin/pip list --format=freeze")
    assert "nvidia-nccl-cu11==2.21.5" in out
    assert facts["cuda_toolkit"]["cudnn"]["packages"][0] in out


def test_nccl_conf_uses_this_nodes_own_interface(host):
    # No default route on the internal network: the role falls back to the first Ethernet with IPv4.
    iface = host.check_output("ip -o -4 addr show scope global | awk '{print $2}' | head -1").strip()
    conf = host.file("/etc/nccl.conf").content_string
    assert f"NCCL_SOCKET_IFNAME=={iface}\n" in conf
    assert "NCCL_IB_DISABLE=1\n" in conf


def test_rdma_userspace_installed(host, facts):
    for pkg in ("rdma-core", "infiniband-diags", "ibverbs-utils", "perftest"):
        assert host.package(pkg).is_installed, pkg
    assert "unlimited" in host.file("/etc/security/limits.d/90-gpufleet-rdma.conf").content_string


def _inventory(host, tmp_path):
    """An inventory holding just this node, reached the way the lab reaches its containers."""
    import yaml

    name = host.backend.host
    inv = {
        "all": {
            "vars": {
                "ansible_connection": "community.docker.docker",
                "ansible_python_interpreter": "/usr/bin/python3",
                "gpufleet_expected_gpus": 0,
                "nvidia_driver_branch": "535",
            },
            "children": {"gpu_nodes": {"hosts": {"node": {"ansible_host": name}}}},
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


@pytest.mark.usefixtures("serving_lock")  # verify reads what test_serving.py changes
def test_gpufleet_verify_finds_the_provisioned_node_healthy(host, tmp_path):
    """The software checks pass on the real installed state; the GPU checks say there is no GPU."""
    import subprocess
    import sys
    from pathlib import Path

    gpufleet = Path(sys.executable).with_name("gpufleet")
    proc = subprocess.run(
        [gpufleet, "verify", "-i", _inventory(host, tmp_path), "--json", "-", "-q"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    node = json.loads(proc.stdout)["hosts"][0]
    assert node["verdict"] == "healthy", node
    checks = {c["check"]: c for c in node["checks"]}
    for name in ("driver_package", "cuda_toolkit", "nccl_library", "nccl_conf", "disk_headroom"):
        assert checks[name]["status"] == "pass", checks[name]
    assert "2.21.5" in checks["nccl_library"]["summary"]
    # the node serves the tiny model (site.yml -> serve.yml): its unit, readiness with the recorded
    # golden answer, and the front's 401 to a keyless request found in the audit log
    for name in ("serving_units", "serving_ready", "serving_front_auth", "serving_front_ready"):
        assert checks[name]["status"] == "pass", checks[name]
    # through the front with the node's probe key, audited by its name; tokens/s a figure on CPU
    assert "audited as gpufleet-probe" in checks["serving_front_ready"]["summary"]
    tokens = checks["serving_tokens"]
    assert tokens["status"] == "skip" and tokens["measured"] > 0 and "not judged" in tokens["summary"], tokens
    assert "gpufleet-serve-tiny-llama-1.service" in checks["serving_units"]["summary"]
    for name in ("driver_loaded", "ecc", "xid", "persistence_mode"):
        assert checks[name]["status"] == "skip" and checks[name]["summary"].startswith("no GPU present")


@pytest.mark.usefixtures("serving_lock")  # verify reads what test_serving.py changes
def test_verify_playbook_wraps_the_same_run(host, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    playbook = Path(__file__).resolve().parents[3] / "playbooks" / "verify.yml"
    reports = tmp_path / "reports"
    proc = subprocess.run(
        [Path(sys.executable).with_name("ansible-playbook"), "-i", _inventory(host, tmp_path), playbook,
         "-e", f"gpufleet_verify_report_dir={reports}"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "healthy" in proc.stdout
    report = json.loads((reports / "verify.json").read_text())
    assert report["summary"]["healthy"] == 1
    assert (reports / "verify.junit.xml").is_file() and (reports / "gpufleet_verify.prom").is_file()


def test_these_checks_reach_the_node_as_the_operator_over_openssh(host):
    """testinfra runs these commands over its own OpenSSH backend (the inventory's short connection
    name, molecule.yml), as 'ops' with sudo and the pinned known_hosts. Any other connection name
    makes it start a whole Ansible run per command: minutes of the 2-core test budget."""
    inner = host.backend.ansible_runner.get_host(host.backend.host)  # what runs host.run()
    assert inner is not None and inner.backend.get_connection_type() == "ssh", inner
    assert host.check_output("id -un") == "root"
    assert host.check_output("echo $SUDO_USER") == "ops", "logged in as the operator, then sudo"
