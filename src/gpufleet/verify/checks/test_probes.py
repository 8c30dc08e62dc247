"""Benchmark probes (tier full; sustained in burnin): run on the host with its recorded probe runtime."""

from __future__ import annotations

import time

import pytest
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import baselines
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core as health

from gpufleet.verify import probes, probing
from gpufleet.verify.settings import hostvar

_PARAMS = [
    pytest.param(name, id=name, marks=pytest.mark.gpufleet_tier(meta.get("tier", "full")))
    for name, meta in probes.PROBES.items()
]


def probe_args(name, hostvars, tier, *, gpus, seconds, runtime, numa=""):
    """The probe's command line: what gpufleet knows about the host, the budget, the tier's extras."""
    args = []
    if name == "inference":
        args += ["--url", str(hostvars["gpufleet_verify_inference_url"])]
        if hostvar(hostvars, "gpufleet_verify_inference_model"):
            args += ["--model", str(hostvars["gpufleet_verify_inference_model"])]
        if hostvar(hostvars, "gpufleet_verify_inference_api_key_env"):
            args += ["--api-key-env", str(hostvars["gpufleet_verify_inference_api_key_env"])]
    else:
        args += ["--expect-gpus", str(gpus)]
    if name == "allreduce" and runtime.get("nccl_tests"):
        args += ["--nccl-tests", runtime["nccl_tests"], "--gpus", str(gpus)]
    elif name in ("h2d",) and numa:
        args += ["--numa-nodes", numa]
    if not (name == "allreduce" and runtime.get("nccl_tests")):
        args += ["--seconds", f"{seconds:g}"]
    if tier == "burnin":
        args += probes.BURNIN_ARGS.get(name, [])
    return args


@pytest.mark.parametrize("probe", _PARAMS)
def test_probe(probe, host, state, hostvars, baseline_overrides, record, request):
    meta = probes.PROBES[probe]
    check = f"probe_{probe}"
    tier = request.config.getoption("--gpufleet-tier")
    started = time.monotonic()
    gpus = state.get("gpus") or {}

    def done(res):
        record(
            res,
            title=meta.get("description", probe),
            tier=meta.get("tier", "full"),
            kind="probe",
            started=started,
        )

    skip = health.no_gpu(check, gpus) if meta.get("needs_gpu", True) else None
    if skip:
        return done(skip)
    if probe == "inference" and not hostvars.get("gpufleet_verify_inference_url"):
        return done(
            health.result(check, health.SKIP, "no endpoint configured (gpufleet_verify_inference_url)")
        )
    mig = probing.mig_gpus(gpus) if meta.get("needs_gpu", True) else []
    if mig:
        return done(
            health.result(
                check,
                health.SKIP,
                f"MIG mode on {', '.join(mig)}: per-GPU baselines do not apply to MIG slices; "
                "disable MIG to benchmark whole GPUs",
            )
        )
    listed = health.gpu_list(gpus)
    count = len(listed) or int(gpus.get("gpu_count") or 0)
    if probe == "allreduce" and count < 2:
        return done(
            health.result(check, health.SKIP, f"all-reduce needs at least 2 GPUs; this host has {count}")
        )
    local_facts = state.get("local_facts") or {}
    runtime = probing.probe_runtime(hostvars, local_facts)
    missing = probing.missing_runtime(probe, runtime)
    if missing:
        return done(probing.unverified(check, missing))
    python = probing.python_for(probe, runtime)
    limit = hostvar(hostvars, "gpufleet_verify_probe_timeout_s")
    seconds = probes.seconds_for(probe, tier, hostvar(hostvars, "gpufleet_verify_burnin_seconds"))
    nccl_tests = probe == "allreduce" and bool(runtime.get("nccl_tests"))
    seconds, timeout_s = probes.timeout_for(
        probe, seconds, count, None if limit is None else float(limit), nccl_tests=nccl_tests
    )
    args = probe_args(
        probe, hostvars, tier, gpus=count, seconds=seconds, runtime=runtime, numa=probing.numa_map(gpus)
    )
    retries = int(hostvar(hostvars, "gpufleet_verify_probe_retries"))
    names = {g.get("name") for g in listed}
    sku = baselines.sku_for(next(iter(names))) if len(names) == 1 else None
    config = None
    if probe == "allreduce" and count >= 2:
        nccl_settings = (local_facts.get("gpufleet_nccl") or {}).get("settings")
        config = baselines.allreduce_config(count, probing.allreduce_interconnect(gpus, nccl_settings))
    judge = {
        "config": config,
        "model": hostvar(hostvars, "gpufleet_verify_inference_model"),
        "inference_baselines": hostvar(hostvars, "gpufleet_inference_baselines"),
    }
    attempts = []
    for _ in range(1 + max(0, retries)):
        attempts.append(probing.run_once(host, probe, python, args, timeout_s))
        res = probing.judge_probe(probe, attempts, sku, baseline_overrides, python, **judge)
        if attempts[-1]["status"] == "unavailable" or res["status"] != health.FAIL:
            break
    return done(res)
