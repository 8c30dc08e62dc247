"""Software state checks (plugin_utils/checks/software.py) against recorded output.

Inputs and their provenance: ``checks_inputs.py``.
"""

import json

from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core, software
from checks_inputs import (
    HEALTH,
    NVCC_118,
    assert_result,
    ib_active,
    ib_none,
    interfaces,
    nccl_tuning,
    no_gpu,
    t4,
)

# --- driver_package ---------------------------------------------------------------------------

# The Debian 12 lab install (facts.md "This machine kind": nvidia-driver 535.261.03, the package
# version as bookworm ships it); the fact keys are those activate.yml records.
DEBIAN_FACT = {
    "source": "debian",
    "flavor": "proprietary",
    "branch": "535",
    "package_version": "535.261.03-1~deb12u1",
    "dkms_module": "nvidia-current",
    "kernels_built": ["6.1.0-27-amd64"],
    "in_container": True,
    "activation": "none",
}
DEBIAN_PACKAGES = {
    "nvidia-kernel-dkms": "535.261.03-1~deb12u1",
    "nvidia-smi": "535.261.03-1~deb12u1",
    "libcuda1": "535.261.03-1~deb12u1",
    "nvidia-modprobe": "535.161.07-1~deb12u1",
    "dkms": "3.0.10-8+deb12u1",
}


def test_driver_package_as_recorded():
    res = assert_result(
        software.driver_package(DEBIAN_FACT, DEBIAN_PACKAGES, branch="535"), "driver_package", core.PASS
    )
    assert "nvidia-kernel-dkms 535.261.03-1~deb12u1" in res["summary"]


def test_driver_package_role_not_run_or_drifted():
    res = assert_result(software.driver_package(None, DEBIAN_PACKAGES), "driver_package", core.FAIL)
    assert res["action"] == core.REPROVISION and "has not run" in res["summary"]
    # derived from DEBIAN_PACKAGES, edited: upgraded outside gpufleet
    upgraded = {k: ("550.163.01-2" if v.startswith("535.261") else v) for k, v in DEBIAN_PACKAGES.items()}
    res = assert_result(software.driver_package(DEBIAN_FACT, upgraded), "driver_package", core.FAIL)
    assert "535.261.03-1~deb12u1" in res["summary"] and "550.163.01-2" in res["summary"]
    res = assert_result(
        software.driver_package(DEBIAN_FACT, {"dkms": "3.0.10-8"}), "driver_package", core.FAIL
    )
    assert "no NVIDIA driver package" in res["summary"]
    res = assert_result(
        software.driver_package(DEBIAN_FACT, DEBIAN_PACKAGES, version="535.183.01"),
        "driver_package",
        core.FAIL,
    )
    assert "535.183.01 pinned" in res["summary"]


# --- nccl_conf -------------------------------------------------------------------------------


def rendered_conf(ib):
    """What the nccl role writes for this machine's recorded interfaces and ``ib``."""
    plan = nccl_tuning.plan(ib, interfaces())
    return nccl_tuning.nccl_conf_text(plan["settings"]), nccl_tuning.nccl_values(plan["settings"])


def test_nccl_conf_as_the_role_writes_it():
    text, values = rendered_conf(ib_active())
    assert "NCCL_SOCKET_IFNAME==eth0" in text  # the default-route interface recorded here
    fact = {"version": "2.21.5", "conf": "/etc/nccl.conf", "settings": values}
    assert_result(software.nccl_conf(text, fact, ib_active(), interfaces()), "nccl_conf", core.PASS)
    text, values = rendered_conf(ib_none())
    assert_result(
        software.nccl_conf(text, {**fact, "settings": values}, ib_none(), interfaces()),
        "nccl_conf",
        core.PASS,
    )


def test_nccl_conf_absent_missing_and_bad_entries():
    assert_result(software.nccl_conf(None, None, ib_none(), interfaces()), "nccl_conf", core.SKIP)
    res = assert_result(
        software.nccl_conf(None, {"conf": "/etc/nccl.conf"}, ib_none(), interfaces()), "nccl_conf", core.FAIL
    )
    assert res["action"] == core.REPROVISION
    # constructed hand edits: ifb0 is down and mlx5_3 does not exist on this host (recorded facts)
    bad = "# edited by hand\nNCCL_SOCKET_IFNAME==ifb0,eth9\nNCCL_IB_HCA==mlx5_3:1\n"
    res = assert_result(software.nccl_conf(bad, None, ib_active(), interfaces()), "nccl_conf", core.FAIL)
    problems = [d["problem"] for d in res["details"]]
    assert any("ifb0, which is down" in p for p in problems)
    assert any("eth9, which this host does not have" in p for p in problems)
    assert any("mlx5_3:1" in p for p in problems)


def test_nccl_conf_ib_disable_mismatches_warn():
    res = assert_result(
        software.nccl_conf("NCCL_IB_DISABLE=1\n", None, ib_active(), interfaces()), "nccl_conf", core.WARN
    )
    assert "TCP sockets" in res["summary"]
    res = assert_result(
        software.nccl_conf("NCCL_SOCKET_IFNAME=eth\n", None, ib_none(), interfaces()), "nccl_conf", core.WARN
    )
    assert "probes RDMA" in res["summary"]


# --- container_runtime -----------------------------------------------------------------------


def test_container_runtime_recorded_runc_only():
    text = (HEALTH / "docker-info-runc-only.json").read_text()
    res = assert_result(software.container_runtime(t4(), text), "container_runtime", core.FAIL)
    assert res["action"] == core.REPROVISION and "runc" in res["summary"]
    res = assert_result(software.container_runtime(no_gpu(), text), "container_runtime", core.SKIP)
    assert "docker 20.10.24+dfsg1 answers" in res["summary"]
    assert_result(software.container_runtime(t4(), None), "container_runtime", core.SKIP)


def test_container_runtime_nvidia_and_daemon_down():
    info = json.loads((HEALTH / "docker-info-runc-only.json").read_text())
    # derived from docker-info-runc-only.json, edited: nvidia-container-toolkit's runtime registered
    info["Runtimes"]["nvidia"] = {"path": "nvidia-container-runtime"}
    assert_result(software.container_runtime(t4(), json.dumps(info)), "container_runtime", core.PASS)
    down = (HEALTH / "docker-info-no-daemon.json").read_text() + (
        HEALTH / "docker-info-no-daemon.stderr.txt"
    ).read_text()
    res = assert_result(software.container_runtime(t4(), down), "container_runtime", core.FAIL)
    assert "Cannot connect to the Docker daemon" in res["summary"]
    assert_result(software.container_runtime(no_gpu(), down), "container_runtime", core.FAIL)


# --- services --------------------------------------------------------------------------------


def test_services():
    assert_result(software.services({}, []), "services", core.SKIP)
    assert_result(software.services({"nginx": "active"}, ["nginx"]), "services", core.PASS)
    res = assert_result(
        software.services({"nginx": "failed"}, ["nginx", "prometheus-node-exporter"]), "services", core.FAIL
    )
    assert "nginx failed" in res["summary"] and "prometheus-node-exporter not found" in res["summary"]


# --- cuda_toolkit ----------------------------------------------------------------------------

CUDA_FACT = {
    "source": "debian",
    "versions": ["11.8"],
    "default": "11.8",
    "homes": {"11.8": "/usr/local/cuda-11.8"},
}


def test_cuda_toolkit():
    assert_result(software.cuda_toolkit(None, NVCC_118, "/usr/local/cuda-11.8"), "cuda_toolkit", core.SKIP)
    res = assert_result(
        software.cuda_toolkit(CUDA_FACT, NVCC_118, "/usr/local/cuda-11.8"), "cuda_toolkit", core.PASS
    )
    assert "11.8.89" in res["summary"]
    res = assert_result(
        software.cuda_toolkit(CUDA_FACT, NVCC_118, "/usr/local/cuda-12.4"), "cuda_toolkit", core.FAIL
    )
    assert res["action"] == core.REPROVISION
    fact_124 = {**CUDA_FACT, "default": "12.4", "homes": {"12.4": "/usr/local/cuda-12.4"}}
    res = assert_result(
        software.cuda_toolkit(fact_124, NVCC_118, "/usr/local/cuda-12.4"), "cuda_toolkit", core.FAIL
    )
    assert "nvcc reports CUDA 11.8.89, 12.4 expected" in res["summary"]
    assert_result(software.cuda_toolkit(CUDA_FACT, "", "/usr/local/cuda-11.8"), "cuda_toolkit", core.FAIL)


# --- nccl_library ----------------------------------------------------------------------------

NCCL_FACT = {
    "source": "pip",
    "version": "2.21.5",
    "library": "/opt/gpufleet/nccl/lib/libnccl.so.2",
    "venv": "/opt/gpufleet/nccl",
}


def test_nccl_library():
    assert_result(software.nccl_library(None, 22105), "nccl_library", core.SKIP)
    assert_result(software.nccl_library(NCCL_FACT, 22105), "nccl_library", core.PASS)
    res = assert_result(software.nccl_library(NCCL_FACT, 21903), "nccl_library", core.FAIL)
    assert "NCCL 2.19.3" in res["summary"]
    res = assert_result(
        software.nccl_library(NCCL_FACT, None, error="OSError: libnccl.so.2: cannot open"),
        "nccl_library",
        core.FAIL,
    )
    assert res["action"] == core.REPROVISION


def test_nccl_version_text():
    assert software.nccl_version_text(22105) == "2.21.5"
    assert software.nccl_version_text(2708) == "2.7.8"
    assert software.nccl_version_text("x") is None


def test_nccl_version_snippet_is_python(tmp_path):
    compile(software.NCCL_VERSION_SNIPPET, "snippet", "exec")
    assert (
        "ncclGetVersion" in software.NCCL_VERSION_SNIPPET and "sys.argv[1]" in software.NCCL_VERSION_SNIPPET
    )
