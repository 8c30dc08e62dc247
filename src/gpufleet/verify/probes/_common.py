"""Helpers shared by every probe program (stdlib only).

A probe is not imported on the GPU host: ``script_text(name)`` concatenates this file, the probe's
own file (and, for ``allreduce``, ``module_utils/probe_output.py``) into one program that the host's
runtime Python runs from a temporary file. So nothing here may import from gpufleet, and the probe
files use these names as globals (their ``gpufleet-probe: import`` block, which makes them
importable in the repository, is removed by the concatenation).

The contract of a probe program:

- it prints exactly one JSON object on stdout, as its last line (libraries may print before it);
- exit 0: ``{"probe", "ok": true, "metric", "unit", "value": <finite number>, ...}``;
- exit 3: ``{"probe", "ok": false, "unavailable": true, "reason"}`` -- it could not measure here
  (no PyTorch, no CUDA device, too few GPUs), which is not a fault of the host's hardware;
- exit 1: ``{"probe", "ok": false, "error"}`` -- it tried and failed; a traceback goes to stderr.

It never exits 0 without a number: ``emit_result`` turns a missing or non-finite value into exit 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
import warnings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNAVAILABLE = 3


class Unavailable(Exception):
    """The probe cannot measure on this host (exit 3); its message is the reason."""


class ProbeFailed(Exception):
    """The probe ran and failed (exit 1); its message is the reason."""


def median(values):
    """The median of a non-empty sequence of numbers."""
    ordered = sorted(float(v) for v in values)
    if not ordered:
        raise ValueError("median of no values")
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2.0


def finite(value):
    """True for a real, finite number (bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _clean(obj):
    """JSON-safe copy: non-finite floats become None (strict JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def emit(obj):
    """Print one JSON object as one line on stdout."""
    sys.stdout.write(json.dumps(_clean(obj), sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def emit_unavailable(name, reason):
    emit({"probe": name, "ok": False, "unavailable": True, "reason": str(reason)})
    return EXIT_UNAVAILABLE


def emit_failed(name, error, **extra):
    emit({"probe": name, "ok": False, "error": str(error), **extra})
    return EXIT_FAILED


def emit_result(name, metric, unit, value, **extra):
    """Print the result; exit code 0 only for a finite number, else 1."""
    if not finite(value):
        return emit_failed(name, f"no finite {metric} measured (got {value!r})", metric=metric, **extra)
    emit({"probe": name, "ok": True, "metric": metric, "unit": unit, "value": float(value), **extra})
    return EXIT_OK


def run_probe(name, main, argv=None):
    """Run ``main(argv)``; map Unavailable / ProbeFailed / any crash to the contract's exit codes."""
    try:
        return int(main(argv))
    except Unavailable as exc:
        return emit_unavailable(name, exc)
    except ProbeFailed as exc:
        return emit_failed(name, exc)
    except SystemExit as exc:  # argparse: bad arguments (2); --help (0) prints no result
        if exc.code not in (0, None):
            emit_failed(name, f"bad arguments (exit {exc.code})")
        raise
    except BaseException as exc:  # a crash: traceback to stderr, one JSON line to stdout
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        return emit_failed(name, f"{type(exc).__name__}: {exc}")


def _cuda_init_error(torch, caught):
    """The text of CUDA's initialisation error: PyTorch's warning, else what ``torch.cuda.init()`` raises.

    PyTorch turns a failed ``cudaGetDeviceCount()`` into a UserWarning ("CUDA initialization:
    Unexpected error from cudaGetDeviceCount() ... Error 802: system not yet initialized") and then
    reports zero devices; ``torch.cuda.init()`` raises the RuntimeError with the same error.
    """
    texts = [str(w.message) for w in caught if "CUDA" in str(w.message)]
    try:
        torch.cuda.init()
    except Exception as exc:  # the RuntimeError PyTorch raises for the CUDA error
        texts.append(f"{type(exc).__name__}: {exc}")
    return " | ".join(dict.fromkeys(t.strip() for t in texts if t.strip()))


def require_torch_cuda(name=None, expect_gpus=None):
    """Import torch and check that CUDA can use the GPUs the driver lists; raise otherwise.

    No torch (or a broken one) is Unavailable: the probe cannot measure here. With ``expect_gpus``
    (the GPUs ``nvidia-smi`` lists, passed by gpufleet as ``--expect-gpus``) fewer CUDA devices is a
    failure of the host, ProbeFailed with CUDA's own error text ("CUDA usable: CUDA initialised 0 of
    the 8 GPU(s) nvidia-smi lists: ... Error 802: system not yet initialized"): a GPU the driver
    sees but CUDA cannot start is broken for every workload. Without ``expect_gpus`` no CUDA device
    is Unavailable, as before. With ``name`` the JSON line is printed and the process exits here (for
    scripts that do not run inside ``run_probe``); without it, the exception is raised.
    """
    try:
        try:
            import torch
        except Exception as exc:  # ImportError, or a broken install raising anything else
            raise Unavailable(f"torch not importable: {type(exc).__name__}: {exc}") from None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            available = torch.cuda.is_available()
            count = torch.cuda.device_count() if available else 0
        if expect_gpus and count < expect_gpus:
            error = _cuda_init_error(torch, caught) or "no CUDA error reported"
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            note = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
            raise ProbeFailed(
                f"CUDA usable: CUDA initialised {count} of the {expect_gpus} GPU(s) nvidia-smi lists{note}: "
                + error
            )
        if count < 1:
            error = _cuda_init_error(torch, caught)
            raise Unavailable("no CUDA device visible to torch" + (f": {error}" if error else ""))
    except (Unavailable, ProbeFailed) as exc:
        if name is None:
            raise
        if isinstance(exc, ProbeFailed):
            sys.exit(emit_failed(name, exc))
        sys.exit(emit_unavailable(name, exc))
    return torch


def add_common_args(parser, warmup, repeats, seconds=None):
    parser.add_argument(
        "--expect-gpus",
        type=int,
        default=None,
        help="GPUs nvidia-smi lists; fewer CUDA devices fails with CUDA's error (default: not compared)",
    )
    parser.add_argument("--warmup", type=int, default=warmup, help=f"warm-up iterations (default {warmup})")
    parser.add_argument("--repeats", type=int, default=repeats, help=f"timed samples (default {repeats})")
    if seconds is not None:
        parser.add_argument(
            "--seconds",
            type=float,
            default=seconds,
            help=f"time budget; the sweep stops starting new work after it (default {seconds:g})",
        )
    return parser


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def parse_bytes(text):
    """'8', '64K', '256M', '2G' (binary multiples, as nccl-tests reads -b/-e) -> int bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    raw = str(text).strip().upper()
    if raw.endswith("B"):
        raw = raw[:-1]
    if raw and raw[-1] in units:
        return int(float(raw[:-1]) * units[raw[-1]])
    return int(raw)


def select_devices(torch, devices):
    """GPU indices to run on: ``--devices 0,2`` or all visible; Unavailable if none."""
    count = torch.cuda.device_count()
    if not devices:
        return list(range(count))
    wanted = []
    for part in str(devices).split(","):
        part = part.strip()
        if not part:
            continue
        index = int(part)
        if index < 0 or index >= count:
            raise Unavailable(f"device {index} requested but torch sees {count} device(s)")
        wanted.append(index)
    if not wanted:
        raise Unavailable("no devices selected")
    return wanted


def gpu_name(torch, index):
    try:
        return torch.cuda.get_device_name(index)
    except Exception:
        return None


def cuda_time_ms(torch, fn, iters, stream=None):
    """Milliseconds for ``iters`` back-to-back calls of ``fn`` between two CUDA events."""
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    stream = stream or torch.cuda.current_stream()
    start.record(stream)
    for _ in range(iters):
        fn()
    end.record(stream)
    end.synchronize()
    return start.elapsed_time(end)


class Deadline:
    """A wall-clock budget: ``expired()`` once ``seconds`` have passed (never with None)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.start = time.monotonic()

    def elapsed(self):
        return time.monotonic() - self.start

    def expired(self):
        return self.seconds is not None and self.elapsed() >= self.seconds


def versions(torch):
    return {"torch": getattr(torch, "__version__", None), "cuda": getattr(torch.version, "cuda", None)}


def env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
