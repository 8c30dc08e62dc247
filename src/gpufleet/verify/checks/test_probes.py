"""Benchmark probes (tier full): run on the host in its runtime Python, judged per GPU SKU."""

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


def _args(name, hostvars, tier):
    args = []
    if name == "inference":
        args += ["--url", str(hostvars["gpufleet_verify_inference_url"])]
        if hostvar(hostvars, "gpufleet_verify_inference_model"):
            args += ["--model", str(hostvars["gpufleet_verify_inference_model"])]
        if hostvar(hostvars, "gpufleet_verify_inference_api_key_env"):
            args += ["--api-key-env", str(hostvars["gpufleet_verify_inference_api_key_env"])]
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
    python = probing.runtime_python(hostvars, state.get("local_facts"))
    timeout_s = int(hostvar(hostvars, "gpufleet_verify_probe_timeout_s") or meta["timeout_s"])
    retries = int(hostvar(hostvars, "gpufleet_verify_probe_retries"))
    names = {g.get("name") for g in gpus.get("gpus", [])}
    sku = baselines.sku_for(next(iter(names))) if len(names) == 1 else None
    attempts = []
    for _ in range(1 + max(0, retries)):
        attempts.append(probing.run_once(host, probe, python, _args(probe, hostvars, tier), timeout_s))
        res = probing.judge_probe(probe, attempts, sku, baseline_overrides, python)
        if attempts[-1]["status"] == "unavailable" or res["status"] != health.FAIL:
            break
    return done(res)
