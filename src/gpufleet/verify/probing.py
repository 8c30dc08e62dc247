"""Run a benchmark probe on a host and judge it against the right baseline.

The probe program (``gpufleet.verify.probes``) is written to a temporary file on the host and run
with the probe runtime's Python under ``timeout``; its one JSON line is interpreted by
``probes.interpret``. What this module decides:

- **where it runs** (``probe_runtime``): the Python with PyTorch and the nccl-tests binary come from
  what the roles recorded (``/etc/ansible/facts.d/gpufleet_nccl.fact``: ``venv``, ``torch``,
  ``nccl_tests``), or from ``gpufleet_verify_python``; never from a guessed path. A GPU host without
  what a probe needs is "not verified" with the reason and how to provision it (``unverified``);
- **how long** (``probes.timeout_for``): from the requested budget plus start-up, never a fixed
  number a healthy run could exceed;
- **against what** (``judge_probe``): the SKU's row, for all-reduce the row of the GPU count and
  interconnect (``allreduce_config``), for inference the site's row for the model and GPU; no row is
  "measured, not judged" (a skip with the figure), never a pass;
- **why it failed** (``plugin_utils/probe_faults.py``): the cause and its action, with the kernel log
  written during the run, instead of one action for every crash.

A result below its baseline is measured again (``retries``) and the best attempt kept.
"""

from __future__ import annotations

import base64
import shlex

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import baselines, probe_faults
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core as health

from gpufleet.verify import probes

NCCL_FACT = "gpufleet_nccl"
FACT_FILE = "/etc/ansible/facts.d/gpufleet_nccl.fact"
TORCH_REMEDY = (
    "provision PyTorch in the probe runtime with the nccl role (nccl_probe_torch: true; "
    "nccl_probe_torch_version empty lets the compatibility matrix choose for the driver; offline, the "
    "bundle's wheelhouse must hold it), or set gpufleet_verify_python to a Python with PyTorch and CUDA"
)
NCCL_TESTS_REMEDY = (
    "or build nccl-tests with the nccl role (nccl_tests: true, nccl_tests_url, nccl_tests_sha256)"
)


def probe_runtime(hostvars: dict, local_facts: dict | None) -> dict:
    """What the probes run with, from ``gpufleet_verify_python`` or the nccl role's recorded fact.

    ``{"python", "torch", "nccl_tests", "source"}``: ``python`` None when nothing is recorded;
    ``torch`` the recorded PyTorch version, ``""`` when the role recorded that there is none, None
    when unknown (``gpufleet_verify_python``, or a fact written before the role recorded it: the
    probe itself then says); ``nccl_tests`` the recorded ``all_reduce_perf`` path or None.
    """
    nccl = (local_facts or {}).get(NCCL_FACT) or {}
    nccl_tests = str(nccl.get("nccl_tests") or "") or None
    if hostvars.get("gpufleet_verify_python"):
        python = str(hostvars["gpufleet_verify_python"])
        return {"python": python, "torch": None, "nccl_tests": nccl_tests, "source": "gpufleet_verify_python"}
    if nccl.get("venv"):
        torch = nccl.get("torch")
        return {
            "python": f"{nccl['venv']}/bin/python",
            "torch": None if torch is None else str(torch),
            "nccl_tests": nccl_tests,
            "source": f"{FACT_FILE} (venv)",
        }
    return {"python": None, "torch": None, "nccl_tests": nccl_tests, "source": FACT_FILE}


def missing_runtime(name: str, runtime: dict) -> str | None:
    """Why probe ``name`` cannot run with ``runtime`` (and how to provision it), or None when it can."""
    meta = probes.PROBES[name]
    if name == "allreduce" and runtime["nccl_tests"]:
        return None  # nccl-tests mode needs only the standard library
    if not meta.get("needs_torch"):
        return None
    extra = f" {NCCL_TESTS_REMEDY}" if name == "allreduce" else ""
    if runtime["python"] is None:
        return (
            f"no probe runtime recorded on this host ({FACT_FILE} names no Python venv; the nccl role "
            f"records one with nccl_source pip or nccl_probe_torch: true); {TORCH_REMEDY}{extra}"
        )
    if runtime["torch"] == "":
        python = runtime["python"]
        return f"the probe runtime {python} has no PyTorch (recorded in {FACT_FILE}); {TORCH_REMEDY}{extra}"
    return None


def python_for(name: str, runtime: dict) -> str:
    """The interpreter to run probe ``name`` with (stdlib-only modes fall back to the host's python3)."""
    return runtime["python"] or "python3"


def allreduce_interconnect(gpus: dict, nccl_settings: dict | None = None) -> str:
    """``nvls`` on an NVSwitch system with all 8 GPUs and NVLS not disabled, else ``ring``.

    NVLink SHARP needs the NVSwitch fabric and takes part only when NCCL_NVLS_ENABLE is not 0
    (NCCL environment documentation); boards without NVSwitch (NVLink bridges, PCIe) reduce in rings.
    """
    count = len(health.gpu_list(gpus))
    disabled = str((nccl_settings or {}).get("NCCL_NVLS_ENABLE", "")).strip() == "0"
    switches = int((gpus or {}).get("nvswitch_count") or 0)
    return baselines.NVLS if switches > 0 and count == 8 and not disabled else baselines.RING


def mig_gpus(gpus: dict) -> list[str]:
    """Labels of the GPUs with MIG mode on: per-GPU baselines do not apply to MIG slices."""
    return [health.label(g) for g in health.gpu_list(gpus) if ((g.get("mig_mode") or {}).get("current"))]


def numa_map(gpus: dict) -> str:
    """``index:node,...`` for the h2d probe (the NUMA node sysfs gives each GPU's PCI function)."""
    pairs = []
    for gpu in health.gpu_list(gpus):
        node = gpu.get("numa_node")
        if isinstance(gpu.get("index"), int) and isinstance(node, int) and node >= 0:
            pairs.append(f"{gpu['index']}:{node}")
    return ",".join(pairs)


def command(name: str, python: str, args: list[str], timeout_s: int) -> str:
    """A shell command that writes the probe program to a temp file, runs it, removes it.

    CUDA_DEVICE_ORDER=PCI_BUS_ID makes CUDA number the GPUs as nvidia-smi does (CUDA's default
    order is fastest first), so per-GPU results and NUMA nodes refer to the same GPU.
    """
    program = base64.b64encode(probes.script_text(name).encode()).decode()
    argv = " ".join(shlex.quote(a) for a in args)
    return (
        "f=$(mktemp /tmp/gpufleet-probe-XXXXXX.py) && trap 'rm -f \"$f\"' EXIT && "
        f'echo {program} | base64 -d > "$f" && '
        f"LC_ALL=C CUDA_DEVICE_ORDER=PCI_BUS_ID timeout -k 10 {int(timeout_s)} "
        f'{shlex.quote(python)} "$f" {argv}'
    )


def kernel_log_since(host, epoch: str) -> str | None:
    """The kernel log written since ``epoch`` (the host's clock), or None when it cannot be read."""
    if not epoch.isdigit():
        return None
    out = host.run(f"journalctl -k -o short-iso --no-pager --since @{epoch}")
    return out.stdout if out.rc == 0 else None


def run_once(host, name: str, python: str, args: list[str], timeout_s: int) -> dict:
    started = host.run("date +%s")
    epoch = (started.stdout or "").strip() if started.rc == 0 else ""
    out = host.run(command(name, python, args, timeout_s))
    result = probes.interpret(
        name, out.rc, out.stdout, out.stderr, timed_out=out.rc in (124, 137), timeout_s=timeout_s
    )
    if result["status"] == "failed":
        result["kernel_log"] = kernel_log_since(host, epoch)
    return result


def unverified(check: str, reason: str, action: str = health.REPROVISION, details=None) -> dict:
    """The GPUs are there but were not measured: never a pass, never a fault."""
    return health.result(
        check, health.UNVERIFIED_STATUS, f"not verified: {reason}", action=action, details=details
    )


def _failure(check: str, attempt: dict, details: list) -> dict:
    """A failed attempt as a health result whose action follows its cause (probe_faults)."""
    data = attempt.get("data") or {}
    text = "\n".join(
        str(t) for t in (attempt.get("reason"), data.get("error"), attempt.get("stderr_tail")) if t
    )
    timed_out = "timed out" in (attempt.get("reason") or "")
    cause = probe_faults.classify(text, attempt.get("kernel_log"))
    if timed_out and cause["cause"] in ("unknown", "software"):
        cause = {
            "cause": "timeout",
            "action": health.RESET_GPU,
            "remedy": "the probe ran past its budget plus start-up margin: a GPU stopped making progress; "
            "reset it and verify again",
            "source": "gpufleet",
            "evidence": attempt.get("reason"),
        }
    extra = [{"stderr_tail": attempt.get("stderr_tail", "")}, {"cause": cause}]
    if cause["cause"] == "out_of_memory":  # the GPUs were not measured: their memory was taken
        return unverified(
            check, f"{attempt['reason']}; {cause['remedy']}", cause["action"], [*details, *extra]
        )
    return health.result(
        check,
        health.FAIL,
        f"probe failed: {attempt['reason']} (cause: {cause['cause']}: {cause['remedy']})",
        action=cause["action"],
        source=cause["source"],
        details=[*details, *extra],
    )


def judge_probe(
    name: str,
    attempts: list[dict],
    sku: str | None,
    overrides: dict,
    python: str,
    *,
    config: dict | None = None,
    model: str | None = None,
    inference_baselines: dict | None = None,
) -> dict:
    """One health result from a probe's attempts (best value kept).

    ``config`` (all-reduce): the GPU count and interconnect whose baseline applies; ``model`` and
    ``inference_baselines`` (inference): the site's tokens/s row for the model on this SKU.
    """
    meta = probes.PROBES[name]
    check = f"probe_{name}"
    last = attempts[-1]
    ok = [a for a in attempts if a["status"] == "ok"]
    details = [{k: a.get(k) for k in ("status", "value", "reason")} for a in attempts]
    if not ok:
        if last["status"] == "unavailable":
            extra = f" {NCCL_TESTS_REMEDY}" if name == "allreduce" else ""
            return unverified(check, f"{last['reason']} ({python}); {TORCH_REMEDY}{extra}", details=details)
        return _failure(check, last, details)
    best = max(ok, key=lambda a: a["value"])
    suffix = f" (best of {len(attempts)} runs)" if len(attempts) > 1 else ""
    data = best.get("data") or {}
    if name == "inference":
        model = model or (data.get("params") or {}).get("model")
        judged = baselines.judge_inference(model, sku, best["value"], inference_baselines)
        return _from_judged(check, judged, best["value"], meta["unit"], health.MONITOR, details, data, suffix)
    if name == "h2d":
        return _judge_h2d(check, sku, best, overrides, details, suffix)
    fail_action = health.RESET_GPU
    prefix = f"{baselines.config_label(config)}: " if config else ""
    return judged_result(
        check, sku, meta["metric"], best["value"], overrides, unit=meta["unit"], suffix=suffix,
        fail_action=fail_action, details=[*details, {"data": data}], prefix=prefix, config=config,
    )  # fmt: skip


def _judge_h2d(check, sku, best, overrides, details, suffix):
    """Both directions judged against the host<->GPU figure; the worse one decides."""
    data = best.get("data") or {}
    h2d = best["value"]
    d2h = data.get("d2h_min")
    first = baselines.judge(sku, "h2d_gbps", h2d, overrides)
    second = baselines.judge(sku, "h2d_gbps", d2h, overrides)
    order = [health.FAIL, health.WARN, health.PASS, health.SKIP]
    worst = min((first, second), key=lambda j: order.index(j["status"]))
    status = worst["status"]
    unit = first["unit"] or "GB/s"
    numa = (
        "bound to each GPU's NUMA node" if (data.get("params") or {}).get("numa_bound") else "NUMA not bound"
    )
    d2h_text = f"{d2h:g}" if isinstance(d2h, (int, float)) else "not measured"
    if status == health.SKIP:
        summary = f"measured h2d {h2d:g} / d2h {d2h_text} {unit}, not judged: {first['reason']}"
    else:
        summary = f"host->device: {first['reason']}; device->host: {second['reason']}"
    return health.result(
        check,
        status,
        f"{summary} ({numa}){suffix}",
        measured=min(v for v in (h2d, d2h) if isinstance(v, (int, float))),
        expected=first["expected"],
        unit=unit,
        source=first["source"],
        action=health.RESET_GPU if status == health.FAIL else health.MONITOR,
        details=[*details, {"h2d": h2d, "d2h": d2h}, {"data": data}],
    )


def _from_judged(check, judged, value, unit, fail_action, details, data, suffix=""):
    return _judged_to_result(check, judged, value, unit, fail_action, [*details, {"data": data}], "", suffix)


def _judged_to_result(check, judged, value, unit, fail_action, details, prefix, suffix):
    """``baselines.judge``'s answer as a health result: a skip still reports the measured value."""
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


def judged_result(
    check, sku, metric, value, overrides, *, unit, fail_action, details, prefix="", suffix="", config=None
):
    """A measurement judged against its per-SKU baseline as a health result (probes and ib_write_bw).

    pass/warn/fail as ``baselines.judge`` says (``fail_action`` on fail, MONITOR on warn); no
    baseline for the SKU (or the all-reduce ``config``) is a skip that still reports the measured
    value — never a pass.
    """
    judged = baselines.judge(sku, metric, value, overrides, config=config)
    return _judged_to_result(check, judged, value, unit, fail_action, details, prefix, suffix)
