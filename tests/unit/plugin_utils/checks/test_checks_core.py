"""Every GPU check on a GPU-less host, and the table of checks.

Inputs and their provenance: ``checks_inputs.py``.
"""

import pytest
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import (
    core,
    fabric,
    gpu,
    gpu_memory,
    gpu_platform,
    registry,
    software,
)
from checks_inputs import HEALTH, assert_result, ib_active, no_gpu

# --- every GPU check on a GPU-less host -----------------------------------------------------------

GPU_CHECKS = {
    "driver_loaded": lambda g: gpu.driver_loaded(g, branch="535"),
    "persistence_mode": gpu.persistence_mode,
    "ecc": gpu_memory.ecc,
    "row_remap": gpu_memory.row_remap,
    "retired_pages": gpu_memory.retired_pages,
    "throttle": gpu_platform.throttle,
    "pcie_link": gpu_platform.pcie_link,
    "nvlink": lambda g: fabric.nvlink(g, (HEALTH / "nvlink-s-a100-sxm4-80gb.txt").read_text()),
    "fabric_manager": lambda g: fabric.fabric_manager(g, {"nvidia-fabricmanager": "active"}),
    "peermem": lambda g: fabric.peermem(g, ib_active(), ""),
    "gpu_processes": lambda g: gpu.gpu_processes(g, ""),
    "container_runtime": lambda g: software.container_runtime(
        g, (HEALTH / "docker-info-runc-only.json").read_text()
    ),
}


@pytest.mark.parametrize("name", sorted(GPU_CHECKS))
@pytest.mark.parametrize("in_container", [False, True])
def test_gpu_checks_skip_without_gpu(name, in_container):
    res = assert_result(GPU_CHECKS[name](no_gpu(in_container)), name, core.SKIP)
    assert res["summary"].startswith("no GPU present")
    assert ("(container: no GPU here)" in res["summary"]) is in_container


def test_no_gpu_host_never_passes_a_gpu_check():
    host = no_gpu(in_container=True)
    results = [fn(host) for fn in GPU_CHECKS.values()] + [gpu.gpu_count(host)]
    assert all(r["status"] != core.PASS for r in results)
    assert gpu.gpu_count(host)["status"] == core.FAIL  # no expectation set: a question, never a pass


def test_checks_table_lists_every_check_once():
    assert len(registry.CHECKS) == 31
    for name, meta in registry.CHECKS.items():
        assert callable(meta.func), name
        assert meta.name == name
        assert meta.tier in ("quick", "full", "burnin")
        assert meta.kind in ("gpu", "software", "fabric")
        assert meta.title
