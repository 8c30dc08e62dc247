"""Host health checks: each test judges collected state with one ``module_utils/health.py`` function.

One concern per check; the tier and kind come from ``health.CHECKS``. The ``state`` fixture reads
the host once (``gpufleet.verify.collect``); the probes (``test_probes.py``) run on the host.
"""

from __future__ import annotations

import time

import pytest

from gpufleet import _collection

_collection.ensure_importable()

from ansible_collections.gpufleet.cluster.plugins.module_utils import health, nccl_tuning  # noqa: E402

from gpufleet.verify.settings import hostvar  # noqa: E402


def _facts(state, name):
    return (state.get("local_facts") or {}).get(name)


def _xid(state, v, _o):
    skip = health.no_gpu("xid", state["gpus"])
    if skip:
        return skip
    if state.get("kernel_log") is None:
        err = state["errors"].get("kernel_log", "no output")
        return health.result(
            "xid",
            health.FAIL,
            f"kernel log not readable (journalctl -k and dmesg failed: {err})",
            action=health.MONITOR,
        )
    return health.xid(state["kernel_log"], window_hours=hostvar(v, "gpufleet_verify_xid_window_hours"))


CALLS = {
    "gpu_count": lambda s, v, o: health.gpu_count(s["gpus"], expected=hostvar(v, "gpufleet_expected_gpus")),
    "driver_loaded": lambda s, v, o: health.driver_loaded(
        s["gpus"], branch=hostvar(v, "nvidia_driver_branch"), version=hostvar(v, "nvidia_driver_version")
    ),
    "driver_package": lambda s, v, o: health.driver_package(
        _facts(s, "gpufleet_nvidia_driver"),
        s["packages"],
        branch=hostvar(v, "nvidia_driver_branch"),
        version=hostvar(v, "nvidia_driver_version"),
    ),
    "persistence_mode": lambda s, v, o: health.persistence_mode(s["gpus"]),
    "ecc": lambda s, v, o: health.ecc(s["gpus"]),
    "row_remap": lambda s, v, o: health.row_remap(s["gpus"]),
    "retired_pages": lambda s, v, o: health.retired_pages(s["gpus"]),
    "xid": _xid,
    "throttle": lambda s, v, o: health.throttle(s["gpus"]),
    "pcie_link": lambda s, v, o: health.pcie_link(s["gpus"]),
    "nvlink": lambda s, v, o: health.nvlink(s["gpus"], s["nvlink"], overrides=o),
    "fabric_manager": lambda s, v, o: health.fabric_manager(s["gpus"], s["services"]),
    "peermem": lambda s, v, o: health.peermem(s["gpus"], s["ib"], s["lsmod"]),
    "ib_ports": lambda s, v, o: health.ib_ports(
        s["ib"],
        expected_ports=hostvar(v, "gpufleet_expected_ib_ports"),
        expected_rate_gbps=hostvar(v, "gpufleet_expected_ib_rate_gbps"),
    ),
    "nccl_conf": lambda s, v, o: health.nccl_conf(
        s["nccl_conf"], _facts(s, "gpufleet_nccl"), s["ib"], nccl_tuning.interfaces_from_facts(s["network"])
    ),
    "container_runtime": lambda s, v, o: health.container_runtime(s["gpus"], s["docker_info"]),
    "services": lambda s, v, o: health.services(
        s["services"], list(hostvar(v, "gpufleet_verify_services") or [])
    ),
    "disk_headroom": lambda s, v, o: health.disk_headroom(
        s["df"],
        min_free_mib=int(hostvar(v, "gpufleet_verify_min_free_mib")),
        min_free_pct=float(hostvar(v, "gpufleet_verify_min_free_pct")),
    ),
    "memory_headroom": lambda s, v, o: health.memory_headroom(
        s["meminfo"], min_available_pct=float(hostvar(v, "gpufleet_verify_min_mem_available_pct"))
    ),
    "gpu_processes": lambda s, v, o: health.gpu_processes(s["gpus"], s["gpu_processes"]),
    "cuda_toolkit": lambda s, v, o: health.cuda_toolkit(
        _facts(s, "gpufleet_cuda_toolkit"), s["nvcc"], s["cuda_link"]
    ),
    "nccl_library": lambda s, v, o: health.nccl_library(
        _facts(s, "gpufleet_nccl"), s["nccl_loaded"], error=s["nccl_error"]
    ),
}

_PARAMS = [
    pytest.param(name, id=name, marks=pytest.mark.gpufleet_tier(meta["tier"]))
    for name, meta in health.CHECKS.items()
    if name in CALLS
]


@pytest.mark.parametrize("check", _PARAMS)
def test_check(check, state, hostvars, baseline_overrides, record):
    meta = health.CHECKS[check]
    started = time.monotonic()
    gpus = state.get("gpus")
    if gpus is None and meta["kind"] == "gpu":
        res = health.result(
            check,
            health.FAIL,
            f"GPU facts unavailable: {state['errors'].get('gpus', 'no data')}",
            action=health.MONITOR,
        )
    else:
        state = dict(state, gpus=gpus or {"gpu_count": 0, "gpus": []})
        res = CALLS[check](state, hostvars, baseline_overrides)
    record(res, title=meta["title"], tier=meta["tier"], kind=meta["kind"], started=started)
