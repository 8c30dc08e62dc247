"""Run a benchmark probe on a host and judge it against the per-SKU baseline.

The probe program (``gpufleet.verify.probes``) is written to a temporary file on the host and run
with the host's runtime Python under ``timeout``; its one JSON line is interpreted by
``probes.interpret``. A result that fails its baseline is measured again (``retries``) and the best
attempt is kept, to absorb noise; a probe that crashes or times out is "probe failed" with its
stderr tail — never a pass.
"""

from __future__ import annotations

import base64
import shlex

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import baselines
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core as health

from gpufleet.verify import probes

UNAVAILABLE_NOTE = "install PyTorch with CUDA in the runtime Python, or set gpufleet_verify_python"


def runtime_python(hostvars: dict, local_facts: dict) -> str:
    if hostvars.get("gpufleet_verify_python"):
        return str(hostvars["gpufleet_verify_python"])
    nccl = (local_facts or {}).get("gpufleet_nccl") or {}
    if nccl.get("venv"):
        return f"{nccl['venv']}/bin/python"
    return "python3"


def command(name: str, python: str, args: list[str], timeout_s: int) -> str:
    """A shell command that writes the probe program to a temp file, runs it, removes it."""
    program = base64.b64encode(probes.script_text(name).encode()).decode()
    argv = " ".join(shlex.quote(a) for a in args)
    return (
        "f=$(mktemp /tmp/gpufleet-probe-XXXXXX.py) && trap 'rm -f \"$f\"' EXIT && "
        f'echo {program} | base64 -d > "$f" && '
        f'LC_ALL=C timeout -k 10 {int(timeout_s)} {shlex.quote(python)} "$f" {argv}'
    )


def run_once(host, name: str, python: str, args: list[str], timeout_s: int) -> dict:
    out = host.run(command(name, python, args, timeout_s))
    return probes.interpret(
        name, out.rc, out.stdout, out.stderr, timed_out=out.rc in (124, 137), timeout_s=timeout_s
    )


def judge_probe(name: str, attempts: list[dict], sku: str | None, overrides: dict, python: str) -> dict:
    """One health result from a probe's attempts (best value kept)."""
    meta = probes.PROBES[name]
    check = f"probe_{name}"
    last = attempts[-1]
    ok = [a for a in attempts if a["status"] == "ok"]
    details = [{k: a.get(k) for k in ("status", "value", "reason")} for a in attempts]
    if not ok:
        if last["status"] == "unavailable":
            return health.result(
                check,
                health.WARN,
                f"not measured: {last['reason']} ({python}); {UNAVAILABLE_NOTE}",
                action=health.REPROVISION,
                details=details,
            )
        timed_out = "timed out" in (last.get("reason") or "")
        return health.result(
            check,
            health.FAIL,
            f"probe failed: {last['reason']}",
            action=health.RESET_GPU if timed_out else health.REPROVISION,
            details=[*details, {"stderr_tail": last.get("stderr_tail", "")}],
        )
    best = max(ok, key=lambda a: a["value"])
    metric = meta["metric"]
    if metric not in baselines.METRICS:
        return health.result(
            check,
            health.PASS,
            f"measured {best['value']:g} {meta['unit']} (no baseline for {metric})",
            measured=best["value"],
            unit=meta["unit"],
            details=details,
        )
    suffix = f" (best of {len(attempts)} runs)" if len(attempts) > 1 else ""
    return judged_result(
        check, sku, metric, best["value"], overrides, unit=meta["unit"], suffix=suffix,
        fail_action=health.RESET_GPU, details=[*details, {"data": best.get("data")}],
    )  # fmt: skip


def judged_result(check, sku, metric, value, overrides, *, unit, fail_action, details, prefix="", suffix=""):
    """A measurement judged against its per-SKU baseline as a health result (probes and ib_write_bw).

    pass/warn/fail as ``baselines.judge`` says (``fail_action`` on fail, MONITOR on warn); no
    baseline for the SKU is a skip that still reports the measured value — never a pass.
    """
    judged = baselines.judge(sku, metric, value, overrides)
    status = judged["status"]
    summary = judged["reason"]
    if status == health.SKIP:
        summary = f"measured {value:g} {unit}, not judged: {judged['reason']}"
    return health.result(
        check,
        status,
        f"{prefix}{summary}{suffix}",
        measured=value,
        expected=judged["expected"],
        unit=judged["unit"] or unit,
        source=judged["source"],
        action=fail_action if status == health.FAIL else health.MONITOR,
        details=details,
    )
