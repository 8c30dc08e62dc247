"""Benchmark probes: standalone programs sent to a GPU host, and the reading of what they print.

A probe runs on the host with the host's runtime Python (which may have PyTorch) under coreutils
``timeout``. ``script_text(name)`` is the program to send: ``_common.py`` + (for ``allreduce``) the
collection's ``plugins/module_utils/probe_output.py`` + the probe's file, concatenated into one
file with one ``from __future__`` line and without the probe's ``gpufleet-probe: import`` block,
so it needs nothing from gpufleet on the host. ``interpret`` turns its exit code and output into a
typed result; only exit 0 with a finite number is ``ok``.

Each probe prints one JSON object, its last line on stdout:

- ok (exit 0): ``{"probe", "ok": true, "metric", "unit", "value", "params", ...}`` plus per probe
  ``per_gpu`` (gemm, membw, h2d: ``index``, ``name``, ``value``, ``samples``...), ``sizes``
  (allreduce), ``rounds`` (inference), ``torch``/``cuda`` versions where torch was used;
- unavailable (exit 3): ``{"probe", "ok": false, "unavailable": true, "reason"}``;
- failed (exit 1): ``{"probe", "ok": false, "error"}``, traceback on stderr.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent

# ``seconds``: the measuring budget of tier full (the probe's ``--seconds``, checked inside its loops);
# ``burnin_seconds`` the same in tier burnin. The time limit is never a fixed number: ``timeout_for``
# derives it from the budget, the GPU count and a start-up margin, so a healthy run cannot time out.
# ``needs_torch``: the probe measures with PyTorch (allreduce can use nccl-tests instead).
PROBES = {
    "gemm": {
        "metric": "bf16_tflops",
        "unit": "TFLOPS",
        "tier": "full",
        "seconds": 60,
        "burnin_seconds": 200,
        "script": "gemm.py",
        "needs_gpu": True,
        "needs_torch": True,
        "description": "bf16 dense matmul TFLOPS per GPU (best of a shape sweep, lowest GPU)",
    },
    "membw": {
        "metric": "mem_bw_tbps",
        "unit": "TB/s",
        "tier": "full",
        "seconds": 60,
        "burnin_seconds": 150,
        "script": "membw.py",
        "needs_gpu": True,
        "needs_torch": True,
        "description": "device memory bandwidth per GPU, device-to-device copy, read+write counted",
    },
    "h2d": {
        "metric": "h2d_gbps",
        "unit": "GB/s",
        "tier": "full",
        "seconds": 60,
        "burnin_seconds": 150,
        "script": "h2d.py",
        "needs_gpu": True,
        "needs_torch": True,
        "description": "pinned host<->device copy bandwidth per GPU, both directions, on the GPU's NUMA node",
    },
    "allreduce": {
        "metric": "allreduce_busbw_gbps",
        "unit": "GB/s",
        "tier": "full",
        "seconds": 120,
        "burnin_seconds": 240,
        "script": "allreduce.py",
        "needs_gpu": True,
        "needs_torch": True,
        "description": "NCCL all-reduce bus bandwidth over all local GPUs, at the largest size",
    },
    "inference": {
        "metric": "inference_tokens_per_s",
        "unit": "tokens/s",
        "tier": "full",
        "seconds": 60,
        "burnin_seconds": 240,
        "script": "inference.py",
        "needs_gpu": False,
        "needs_torch": False,
        "description": "completion tokens/s of the OpenAI-compatible endpoint",
    },
    "sustained": {
        "metric": "sustained_bf16_tflops",
        "unit": "TFLOPS",
        "tier": "burnin",
        "seconds": None,  # burn-in only
        "burnin_seconds": 600,  # gpufleet_verify_burnin_seconds
        "script": "sustained.py",
        "needs_gpu": True,
        "needs_torch": True,
        "description": "bf16 matmul on every GPU at once plus an all-reduce, for the burn-in duration",
    },
}

# Start-up outside the measuring budget: interpreter, ``import torch``, a CUDA context per GPU,
# NCCL communicators (tens of seconds on 8 GPUs), allocations and warm-up before the clock starts.
STARTUP_MARGIN_S = 90
PER_GPU_MARGIN_S = 15
INFERENCE_REQUEST_TIMEOUT_S = 120  # one request can still be in flight when the budget ends
NCCL_TESTS_SECONDS = 300  # all_reduce_perf -b 8 -e 8G runs to its end; no budget of its own

# Extra arguments for the burn-in tier: longer sweeps, more samples (the budget comes from
# ``burnin_seconds`` and is passed as --seconds by ``args_for``).
BURNIN_ARGS = {
    "gemm": ["--thorough"],
    "membw": ["--repeats", "50"],
    "h2d": ["--repeats", "50"],
    "allreduce": ["--repeats", "20", "--max-bytes", "8G"],
    "inference": ["--repeats", "10"],
}


def seconds_for(name: str, tier: str, burnin_seconds: float | None = None) -> float:
    """The measuring budget of probe ``name`` in ``tier`` (burn-in: ``burnin_seconds`` for sustained)."""
    meta = PROBES[name]
    if tier == "burnin":
        if name == "sustained" and burnin_seconds:
            return float(burnin_seconds)
        return float(meta["burnin_seconds"])
    if meta["seconds"] is None:
        raise ValueError(f"probe {name!r} runs in tier burnin only")
    return float(meta["seconds"])


def margin_for(name: str, gpus: int, nccl_tests: bool = False) -> float:
    """Seconds a run needs beyond its budget: start-up, per-GPU set-up, a request in flight."""
    margin = STARTUP_MARGIN_S + PER_GPU_MARGIN_S * max(1, int(gpus or 1))
    if name == "inference":
        margin += INFERENCE_REQUEST_TIMEOUT_S
    if nccl_tests:
        margin += NCCL_TESTS_SECONDS
    return float(margin)


def timeout_for(name: str, seconds: float, gpus: int, limit: float | None = None, nccl_tests: bool = False):
    """``(budget, timeout)``: the probe's ``--seconds`` and the time limit it runs under.

    Without ``limit`` the timeout is the budget plus ``margin_for``: a healthy run ends in its budget
    plus start-up, so it cannot time out. With ``limit`` (``gpufleet_verify_probe_timeout_s``) the limit
    is kept and the budget shrinks to fit inside it (at least 1 s).
    """
    margin = margin_for(name, gpus, nccl_tests)
    if limit is None:
        return float(seconds), int(seconds + margin)
    return max(1.0, min(float(seconds), float(limit) - margin)), int(limit)


# Extra sources a probe program carries (module_utils files, stdlib-only and self-contained).
_EXTRA_SOURCES = {"allreduce": ["versions", "probe_output"], "sustained": ["versions", "probe_output"]}

EXIT_UNAVAILABLE = 3
TIMEOUT_CODES = (124, 137)
STDERR_TAIL = 2000

_IMPORT_BLOCK = re.compile(
    r"^# gpufleet-probe: import-begin.*?^# gpufleet-probe: import-end[^\n]*\n", re.M | re.S
)
_FUTURE = re.compile(r"^from __future__ import [^\n]*\n", re.M)


def _module_utils_source(name: str) -> str:
    import importlib

    module = importlib.import_module(f"ansible_collections.gpufleet.cluster.plugins.module_utils.{name}")
    return Path(module.__file__).read_text(encoding="utf-8")


def _strip(source: str) -> str:
    return _FUTURE.sub("", _IMPORT_BLOCK.sub("", source))


def script_text(name: str) -> str:
    """The standalone program for probe ``name`` (KeyError for an unknown probe)."""
    meta = PROBES[name]
    parts = [("_common.py", (HERE / "_common.py").read_text(encoding="utf-8"))]
    for extra in _EXTRA_SOURCES.get(name, []):
        parts.append((f"plugins/module_utils/{extra}.py", _module_utils_source(extra)))
    parts.append((meta["script"], (HERE / meta["script"]).read_text(encoding="utf-8")))
    out = [
        f"# gpufleet probe {name!r}: generated by gpufleet.verify.probes.script_text from "
        + ", ".join(p for p, _ in parts)
        + "\n",
        "from __future__ import annotations\n",
    ]
    for path, source in parts:
        out.append(f"\n# ---- {path} ----\n")
        out.append(_strip(source))
    return "".join(out)


def _tail(text: str | bytes | None, limit: int = STDERR_TAIL) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text[-limit:]


def _last_json(stdout: str | bytes | None) -> dict | None:
    """The last line of stdout that is a JSON object naming a probe (libraries may print before it)."""
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", "replace")
    for line in reversed((stdout or "").splitlines()):
        line = line.strip()
        if not (line.startswith("{") and line.endswith("}")):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "probe" in data:
            return data
    return None


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def interpret(name, rc, stdout, stderr, timed_out=False, timeout_s=None) -> dict:
    """A probe run as ``{"status", "value", "metric", "unit", "reason", "stderr_tail", "data"}``.

    ``status`` is ``ok`` only for exit 0 with a JSON line whose ``ok`` is true and whose ``value`` is
    a finite number; ``unavailable`` for exit 3 with an ``unavailable`` JSON line; anything else is
    ``failed`` (a timeout, a crash, no or broken JSON, a missing or non-finite value).
    """
    meta = PROBES.get(name, {})
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", "replace")
    data = _last_json(stdout)
    result = {
        "status": "failed",
        "value": None,
        "metric": (data or {}).get("metric") or meta.get("metric"),
        "unit": (data or {}).get("unit") or meta.get("unit"),
        "reason": "",
        "stderr_tail": _tail(stderr),
        "data": data,
    }
    if timed_out or rc in TIMEOUT_CODES:
        limit = f"{timeout_s} s" if timeout_s is not None else "its time limit"
        result["reason"] = f"probe timed out after {limit} (exit {rc})"
        return result
    if rc == EXIT_UNAVAILABLE and data is not None and data.get("unavailable"):
        result["status"] = "unavailable"
        result["reason"] = str(data.get("reason") or "unavailable (no reason given)")
        return result
    if rc == 0 and data is not None and data.get("ok") is True and _finite(data.get("value")):
        result["status"] = "ok"
        result["value"] = float(data["value"])
        return result
    reason = f"probe failed (exit {rc})"
    if data is None:
        reason += (
            ": no JSON result on stdout" if not (stdout or "").strip() else ": no valid JSON result on stdout"
        )
    elif data.get("error"):
        reason += f": {data['error']}"
    elif data.get("ok") is True:
        reason += f": no finite value in its result (value={data.get('value')!r})"
    elif data.get("reason"):
        reason += f": {data['reason']}"
    result["reason"] = reason
    return result
