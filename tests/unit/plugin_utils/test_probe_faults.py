"""Remedies by cause for failed probes (issue 18, class 7): each cause gets its own action.

The CUDA initialisation text is the recorded-style fixture tests/fixtures/probes/torch-cuda-init-error-802.txt
(PyTorch's wording, see PROVENANCE.md there); the kernel logs are recordings from tests/fixtures/diagnose.
NCCL and CUDA error lines are constructed from NCCL's and CUDA's result strings (CONSTRUCTED).
"""

import pytest
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import probe_faults, xid
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core as health
from conftest import FIXTURES

CUDA_802 = (FIXTURES / "probes" / "torch-cuda-init-error-802.txt").read_text()


def kernel_log(case):
    return (FIXTURES / "diagnose" / case / "kernel.log").read_text()


def test_cuda_init_802_is_the_fabric_not_a_reprovision():
    res = probe_faults.classify(CUDA_802)
    assert res["cause"] == "cuda_init"
    assert res["action"] == health.REBOOT
    assert "802" in res["remedy"] and "nvidia-fabricmanager" in res["remedy"]
    assert "Error 802: system not yet initialized" in res["evidence"]
    assert "pytorch/pytorch#35710" in res["source"]


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("Error 804: forward compatibility was attempted on non supported HW", health.REPROVISION),
        (
            "CUDA initialization: Unexpected error from cudaGetDeviceCount(). Error 999: unknown error",
            health.REBOOT,
        ),
    ],
)
def test_cuda_init_other_codes(text, action):
    text = "CUDA initialization: Unexpected error from cudaGetDeviceCount(). " + text
    res = probe_faults.classify(text)
    assert res["cause"] == "cuda_init" and res["action"] == action


def test_ecc_takes_xid_48s_action_from_the_xid_table():
    res = probe_faults.classify("RuntimeError: CUDA error: uncorrectable ECC error encountered")
    assert res["cause"] == "ecc"
    assert res["action"] == xid.lookup(48)["action"] == health.RESET_GPU


def test_xid_in_the_kernel_log_during_the_probe_wins():
    res = probe_faults.classify(
        "RuntimeError: CUDA error: unspecified launch failure", kernel_log("fallen-off-bus-no-xid")
    )
    assert res["cause"] == "xid" and res["action"] == health.ISOLATE  # as XID 79
    res = probe_faults.classify("boom", kernel_log("a100-row-remap-pending"))
    assert res["cause"] == "xid" and res["action"] == xid.lookup(63)["action"] and res["xids"] == ["63"]


def test_application_xid_during_the_probe_is_not_a_hardware_cause():
    res = probe_faults.classify(
        "RuntimeError: CUDA error: an illegal instruction", kernel_log("app-xid13-only")
    )
    assert res["cause"] == "cuda"  # XID 13 is application class: the CUDA error decides


@pytest.mark.parametrize(
    "line",
    [
        "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, "
        "unhandled system error "
        "(run with NCCL_DEBUG=INFO for details), NCCL version 2.21.5",
        "RuntimeError: NCCL communicator was aborted: remote process exited or there was a network error",
    ],
)
def test_nccl_transport_errors_point_at_the_fabric(line):
    res = probe_faults.classify(line)
    assert res["cause"] == "nccl_transport" and res["action"] == health.REBOOT
    assert "fabric" in res["remedy"] and res["evidence"] == line


def test_nccl_unhandled_cuda_error_reads_the_cuda_error():
    plain = probe_faults.classify("NCCL error: unhandled cuda error (run with NCCL_DEBUG=INFO for details)")
    assert plain["cause"] == "nccl_cuda" and plain["action"] == health.RESET_GPU
    with_ecc = probe_faults.classify(
        "NCCL WARN Cuda failure 'uncorrectable ECC error encountered'\nNCCL error: unhandled cuda error"
    )
    assert with_ecc["cause"] == "ecc"


def test_out_of_memory_is_leftover_processes():
    res = probe_faults.classify("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert res["cause"] == "out_of_memory" and res["action"] == health.MONITOR
    assert "gpu_processes" in res["remedy"]


@pytest.mark.parametrize(
    ("text", "cause", "action"),
    [
        ("ModuleNotFoundError: No module named 'torch'", "software", health.REPROVISION),
        (
            "CUDA error: no kernel image is available for execution on the device",
            "software",
            health.REPROVISION,
        ),
        ("probe exploded: CUDA error 999", "cuda", health.RESET_GPU),
        ("Segmentation fault", "unknown", health.MONITOR),
        ("", "unknown", health.MONITOR),
    ],
)
def test_other_causes(text, cause, action):
    res = probe_faults.classify(text)
    assert (res["cause"], res["action"]) == (cause, action)
