# Copyright: gpufleet developers
# Apache-2.0
"""Every health check, declared once: name, tier, kind, title, the inputs it needs, its function.

This is the only table of checks. ``gpufleet verify`` parametrizes its pytest run from ``CHECKS``
and hands each check the inputs its ``needs`` name (``gpufleet.verify.wiring``), so a check
registered here is always collected and run, and a check whose needs the wiring cannot provide
fails the wiring test instead of being dropped.

A need names where a value comes from, never how it is read:

- ``state(key)``: an entry of the host state ``gpufleet.verify.collect`` gathered;
- ``hostvar(name)``: an inventory variable, with ``gpufleet verify``'s default when unset;
- ``local_fact(name)``: the ``/etc/ansible/facts.d/<name>.fact`` a role wrote (None when absent);
- ``error(key)``: what collection recorded when reading ``key`` failed (None when it did not);
- ``BASELINE_OVERRIDES``: the run's validated per-SKU baseline overrides.

``COLLECT_OPTIONS`` declares, per tier, how collection reads what the checks need where a tier asks
for more than one look (two reads of the InfiniBand error counters from tier full).

``convert`` turns the raw value into the argument the check takes (a hostvar string into a number).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import nccl_tuning
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import (
    fabric,
    gpu,
    gpu_memory,
    gpu_platform,
    host,
    ib_counters,
    kernel_log,
    policy,
    serving,
    software,
)

TIERS = ("quick", "full", "burnin")
KINDS = ("gpu", "software", "fabric")

STATE = "state"
HOSTVAR = "hostvar"
LOCAL_FACT = "local_fact"
ERROR = "error"
BASELINES = "baselines"
SOURCES = (STATE, HOSTVAR, LOCAL_FACT, ERROR, BASELINES)


@dataclass(frozen=True)
class Need:
    """One input of a check: where it comes from (``source``, ``key``) and how it is converted.

    ``optional``: the check can judge without it (None), as ``gpufleet diagnose`` does when a
    recording lacks it (a kernel log sent without an nvidia-smi report).
    """

    source: str
    key: str | None = None
    convert: Callable | None = None
    optional: bool = False


def state(key, convert=None, optional=False):
    return Need(STATE, key, convert, optional)


def hostvar(name, convert=None):
    return Need(HOSTVAR, name, convert)


def local_fact(name):
    return Need(LOCAL_FACT, name)


def error(key):
    return Need(ERROR, key)


BASELINE_OVERRIDES = Need(BASELINES)


@dataclass(frozen=True)
class Check:
    """A registered check: ``func(**{arg: value of need})`` returns one ``core.result``."""

    name: str
    tier: str
    kind: str
    title: str
    func: Callable
    needs: Mapping[str, Need] = field(default_factory=dict)


def _listed(value):
    return list(value or [])


def _register(*checks):
    table = OrderedDict()
    for check in checks:
        if check.name in table:
            raise ValueError(f"health check {check.name!r} registered twice")
        if check.tier not in TIERS or check.kind not in KINDS:
            raise ValueError(
                f"health check {check.name!r}: unknown tier {check.tier!r} or kind {check.kind!r}"
            )
        table[check.name] = check
    return table


# tier -> keyword arguments of gpufleet.verify.collect.collect (the wiring test holds them to it).
# ib_counter_interval: seconds between the two reads of the InfiniBand error counters that
# ib_ports judges by rate of change (ib_facts counter_interval); quick stays one read.
COLLECT_OPTIONS = {
    "quick": {"ib_counter_interval": 0},
    "full": {"ib_counter_interval": ib_counters.FULL_TIER_INTERVAL_S},
    "burnin": {"ib_counter_interval": ib_counters.FULL_TIER_INTERVAL_S},
}

GPUS = {"gpus": state("gpus")}
# The site's policy (plugin_utils/checks/policy.py), validated; None gives the defaults.
POLICY = {"policy": hostvar("gpufleet_verify_policy", policy.validate)}
GPUS_POLICY = {**GPUS, **POLICY}
DRIVER_PIN = {
    "branch": hostvar("nvidia_driver_branch"),
    "version": hostvar("nvidia_driver_version"),
}

CHECKS = _register(
    Check(
        "gpu_count",
        "quick",
        "gpu",
        "GPU count",
        gpu.gpu_count,
        {"gpus": state("gpus"), "expected": hostvar("gpufleet_expected_gpus")},
    ),
    Check(
        "driver_loaded",
        "quick",
        "gpu",
        "NVIDIA driver loaded and pinned",
        gpu.driver_loaded,
        {**GPUS, **DRIVER_PIN},
    ),
    Check(
        "driver_package",
        "quick",
        "software",
        "NVIDIA driver package",
        software.driver_package,
        {"driver_fact": local_fact("gpufleet_nvidia_driver"), "packages": state("packages"), **DRIVER_PIN},
    ),
    Check("persistence_mode", "quick", "gpu", "Persistence mode", gpu.persistence_mode, GPUS_POLICY),
    Check("ecc", "quick", "gpu", "ECC mode and error counts", gpu_memory.ecc, GPUS_POLICY),
    Check("row_remap", "quick", "gpu", "Row remapping", gpu_memory.row_remap, GPUS),
    Check("retired_pages", "quick", "gpu", "Retired pages", gpu_memory.retired_pages, GPUS),
    Check(
        "xid",
        "quick",
        "gpu",
        "XID errors in the kernel log",
        kernel_log.xid_on_host,
        {
            "gpus": state("gpus", optional=True),
            "kernel_log": state("kernel_log"),
            "error": error("kernel_log"),
            "window_hours": hostvar("gpufleet_verify_xid_window_hours"),
        },
    ),
    Check("throttle", "quick", "gpu", "Clock throttle reasons", gpu_platform.throttle, GPUS_POLICY),
    Check("pcie_link", "quick", "gpu", "PCIe link width and generation", gpu_platform.pcie_link, GPUS_POLICY),
    Check("recovery_action", "quick", "gpu", "Driver's GPU recovery action", gpu.recovery_action, GPUS),
    Check(
        "nvlink",
        "quick",
        "fabric",
        "NVLink active links",
        fabric.nvlink,
        {"gpus": state("gpus"), "nvlink_text": state("nvlink"), "overrides": BASELINE_OVERRIDES},
    ),
    Check(
        "fabric_registration",
        "quick",
        "fabric",
        "NVLink fabric registration per GPU",
        fabric.fabric_registration,
        GPUS,
    ),
    Check(
        "fabric_manager",
        "quick",
        "fabric",
        "Fabric Manager (NVSwitch)",
        fabric.fabric_manager,
        {"gpus": state("gpus"), "services": state("services")},
    ),
    Check(
        "peermem",
        "quick",
        "fabric",
        "GPUDirect RDMA (nvidia-peermem)",
        fabric.peermem,
        {"gpus": state("gpus"), "ib": state("ib"), "lsmod_text": state("lsmod")},
    ),
    Check(
        "ib_ports",
        "quick",
        "fabric",
        "InfiniBand/RoCE ports",
        fabric.ib_ports,
        {
            "ib": state("ib"),
            "expected_ports": hostvar("gpufleet_expected_ib_ports"),
            "expected_rate_gbps": hostvar("gpufleet_expected_ib_rate_gbps"),
            "rail_ports": hostvar("gpufleet_ib_rails", _listed),
        },
    ),
    Check(
        "nccl_conf",
        "quick",
        "software",
        "NCCL configuration",
        software.nccl_conf,
        {
            "conf_text": state("nccl_conf"),
            "nccl_fact": local_fact("gpufleet_nccl"),
            "ib": state("ib"),
            "interfaces": state("network", nccl_tuning.interfaces_from_facts),
        },
    ),
    Check(
        "container_runtime",
        "quick",
        "software",
        "Container GPU runtime",
        software.container_runtime,
        {"gpus": state("gpus"), "docker_info_json": state("docker_info")},
    ),
    Check(
        "cdi_spec",
        "quick",
        "software",
        "CDI spec matches /dev and the driver",
        software.cdi_spec,
        {"gpus": state("gpus"), "cdi_text": state("cdi"), "error": error("cdi")},
    ),
    Check(
        "services",
        "quick",
        "software",
        "Required services",
        software.services,
        {"states": state("services"), "required": hostvar("gpufleet_verify_services", _listed)},
    ),
    Check(
        "collection",
        "quick",
        "software",
        "Host state collected",
        host.collection,
        {"errors": state("errors")},
    ),
    Check(
        "disk_headroom",
        "quick",
        "software",
        "Free disk",
        host.disk_headroom,
        {
            "df_text": state("df"),
            "min_free_mib": hostvar("gpufleet_verify_min_free_mib", int),
            "min_free_pct": hostvar("gpufleet_verify_min_free_pct", float),
        },
    ),
    Check(
        "memory_headroom",
        "quick",
        "software",
        "Available memory",
        host.memory_headroom,
        {
            "meminfo_text": state("meminfo"),
            "min_available_pct": hostvar("gpufleet_verify_min_mem_available_pct", float),
        },
    ),
    Check(
        "gpu_processes",
        "quick",
        "gpu",
        "Leftover GPU processes",
        gpu.gpu_processes,
        {"gpus": state("gpus"), "query_text": state("gpu_processes")},
    ),
    Check(
        "cuda_toolkit",
        "quick",
        "software",
        "CUDA toolkit default",
        software.cuda_toolkit,
        {
            "cuda_fact": local_fact("gpufleet_cuda_toolkit"),
            "nvcc_text": state("nvcc"),
            "cuda_link": state("cuda_link"),
        },
    ),
    # Serving (role llm_serve): the host's own look at what it serves (module serve_facts: one
    # round of readiness per model on 127.0.0.1 and one through the front with the node's probe key,
    # a one-token completion and the golden prompt each, and one short timed greedy completion per
    # model (gpufleet_verify_serving_tokens); seconds on a GPU).
    Check(
        "serving_units",
        "quick",
        "software",
        "Served models' units and the front running",
        serving.serving_units,
        {"serving": state("serving"), "states": state("services"), "error": error("serving")},
    ),
    Check(
        "serving_ready",
        "quick",
        "software",
        "Served models ready, answering as recorded",
        serving.serving_ready,
        {"serving": state("serving"), "error": error("serving")},
    ),
    Check(
        "serving_front_auth",
        "quick",
        "software",
        "Front refuses a keyless request and audits it",
        serving.serving_front_auth,
        {"serving": state("serving"), "error": error("serving")},
    ),
    Check(
        "serving_front_ready",
        "quick",
        "software",
        "Served models ready through the front with the probe key, audited",
        serving.serving_front_ready,
        {"serving": state("serving"), "error": error("serving")},
    ),
    Check(
        "serving_tokens",
        "quick",
        "software",
        "Served models' tokens/s through the front",
        serving.serving_tokens,
        {
            "serving": state("serving"),
            "gpus": state("gpus", optional=True),
            "inference_baselines": hostvar("gpufleet_inference_baselines"),
            "error": error("serving"),
        },
    ),
    # Loads the NCCL library in a Python process on the host: seconds, not milliseconds.
    Check(
        "nccl_library",
        "quick",
        "software",
        "NCCL library version",
        software.nccl_library,
        {
            "nccl_fact": local_fact("gpufleet_nccl"),
            "loaded_version": state("nccl_loaded"),
            "error": state("nccl_error"),
        },
    ),
)
