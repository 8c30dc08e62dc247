"""Inventory variables ``gpufleet verify`` reads, with their defaults (documented in docs/verify.md)."""

from __future__ import annotations

TIERS = ("quick", "full", "burnin")
DEFAULT_TIER = "quick"
DEFAULT_JOBS = 8  # hosts verified at once

# hostvar -> default. Every one may be set per host or group in the inventory's group_vars.
HOSTVAR_DEFAULTS = {
    "gpufleet_expected_gpus": None,  # GPUs this host must have; 0 for hosts without GPUs
    "nvidia_driver_branch": None,  # the pin the driver role installed (checked against the loaded driver)
    "nvidia_driver_version": None,
    "gpufleet_expected_ib_ports": None,  # ACTIVE InfiniBand/RoCE ports this host must have
    "gpufleet_expected_ib_rate_gbps": None,  # their rate, e.g. 400 for NDR
    "gpufleet_ib_rails": [],  # ports (mlx5_0:1) or devices that are rails; default: InfiniBand link layer
    "gpufleet_verify_policy": None,  # the site's policy, see plugins/plugin_utils/checks/policy.py
    "gpufleet_verify_services": [],  # systemd units that must be active
    "gpufleet_verify_xid_window_hours": 24,
    "gpufleet_verify_min_free_mib": 10240,
    "gpufleet_verify_min_free_pct": 5,
    "gpufleet_verify_min_mem_available_pct": 10,
    "gpufleet_verify_python": None,  # Python with PyTorch for probes; default: the one the nccl role recorded
    "gpufleet_verify_inference_url": None,  # OpenAI-compatible endpoint for the inference probe
    "gpufleet_verify_inference_model": None,
    "gpufleet_verify_inference_api_key_env": None,  # name of an environment variable on the host
    "gpufleet_verify_probe_timeout_s": None,  # a hard limit per probe; default: budget + start-up margin
    "gpufleet_verify_burnin_seconds": 600,  # the sustained all-GPU load of tier burnin
    "gpufleet_inference_baselines": None,  # tokens/s per model and GPU SKU, see baselines.py
    "gpufleet_verify_serving_tokens": 32,  # tokens timed per served model through the front; 0: none
    "gpufleet_verify_probe_retries": 1,  # re-runs of a probe that fails its baseline, best result kept
    "gpufleet_baselines": None,  # per-SKU overrides, see plugins/plugin_utils/baselines.py
    "gpufleet_slurm_node": None,  # node name for the Slurm drain hook (default: inventory name)
    "gpufleet_k8s_node": None,  # node name for the Kubernetes drain hook (default: inventory name)
}


def tier_includes(selected: str, tier: str) -> bool:
    """quick < full < burnin: a run of ``selected`` includes every check of a lower or equal tier."""
    return TIERS.index(tier) <= TIERS.index(selected)


def hostvar(hostvars: dict, name: str):
    value = hostvars.get(name)
    return HOSTVAR_DEFAULTS.get(name) if value is None else value
