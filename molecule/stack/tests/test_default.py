"""Both lab nodes after site.yml: every layer installed, recorded, and consistent with the others."""

import json

import pytest


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
    iface = host.check_output("ip -o route show default | awk '{print $5}'").strip()
    conf = host.file("/etc/nccl.conf").content_string
    assert f"NCCL_SOCKET_IFNAME=={iface}\n" in conf
    assert "NCCL_IB_DISABLE=1\n" in conf


def test_rdma_userspace_installed(host, facts):
    for pkg in ("rdma-core", "infiniband-diags", "ibverbs-utils", "perftest"):
        assert host.package(pkg).is_installed, pkg
    assert "unlimited" in host.file("/etc/security/limits.d/90-gpufleet-rdma.conf").content_string
