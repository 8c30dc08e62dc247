"""Dense matmul throughput per GPU (bf16 by default), the "maximum achievable matmul FLOPS" way.

Method (after the MAMF finder that stas00/ml-engineering describes): for every shape of a sweep of
large square and non-square ``m x k @ k x n`` matmuls, allocate the operands once on the GPU, warm up,
then take ``--repeats`` samples; each sample times a batch of back-to-back ``torch.mm(a, b, out=c)``
calls between two CUDA events (the batch is sized to last about ``--sample-ms``, so launch overhead
does not count). A sample's throughput is ``2*m*n*k*calls / seconds``; a shape's figure is the
median of its samples; a GPU's figure is its best shape. The probe's value is the lowest GPU's
figure, so one slow GPU shows. ``--thorough`` sweeps many more shapes with longer samples (the best
shape differs per GPU model and library version), for figures within a few percent of the best
PyTorch reaches.
"""

from __future__ import annotations

import argparse
import sys

# gpufleet-probe: import-begin (removed by script_text; the concatenated program defines these)
from gpufleet.verify.probes._common import (
    Deadline,
    ProbeFailed,
    add_common_args,
    cuda_time_ms,
    emit_result,
    gpu_name,
    median,
    require_torch_cuda,
    run_probe,
    select_devices,
    versions,
)

# gpufleet-probe: import-end

NAME = "gemm"
DESCRIPTION = "Dense matmul TFLOPS per GPU (MAMF-style shape sweep)."
METRICS = {"bfloat16": "bf16_tflops", "float16": "fp16_tflops"}

# Default sweep: square and non-square shapes large enough to reach peak on A100/H100-class GPUs.
DEFAULT_SHAPES = "8192x8192x8192,16384x8192x8192,8192x16384x8192,8192x8192x16384,16384x16384x16384"
THOROUGH_DIMS = (2048, 4096, 6144, 8192, 12288, 16384)


def parse_shapes(text):
    """'MxNxK,...' (or a bare 'S' for a square S) -> [(m, n, k), ...]."""
    shapes = []
    for part in str(text).split(","):
        part = part.strip().lower()
        if not part:
            continue
        dims = [int(d) for d in part.split("x")]
        if len(dims) == 1:
            dims = dims * 3
        if len(dims) != 3 or min(dims) < 1:
            raise argparse.ArgumentTypeError(f"shape {part!r} is not MxNxK")
        shapes.append(tuple(dims))
    if not shapes:
        raise argparse.ArgumentTypeError("no shapes given")
    return shapes


def thorough_shapes():
    """The default shapes first, then every m, n, k of THOROUGH_DIMS with m, n >= 4096."""
    shapes = parse_shapes(DEFAULT_SHAPES)
    for m in THOROUGH_DIMS:
        for n in THOROUGH_DIMS:
            for k in THOROUGH_DIMS:
                if m >= 4096 and n >= 4096 and (m, n, k) not in shapes:
                    shapes.append((m, n, k))
    return shapes


def measure_shape(torch, device, dtype, shape, warmup, repeats, sample_ms, deadline=None):
    m, n, k = shape
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    c = torch.empty(m, n, device=device, dtype=dtype)

    def call():
        torch.mm(a, b, out=c)

    for _ in range(max(1, warmup)):
        call()
    torch.cuda.synchronize(device)
    # size the batch so one sample lasts about sample_ms
    once = max(cuda_time_ms(torch, call, 3) / 3.0, 1e-3)
    calls = max(1, int(sample_ms / once))
    flops = 2.0 * m * n * k * calls
    samples = []
    for _ in range(max(1, repeats)):
        if samples and deadline is not None and deadline.expired():  # checked inside the loop too
            break
        ms = cuda_time_ms(torch, call, calls)
        if ms > 0:
            samples.append(flops / (ms / 1e3) / 1e12)
    return samples, calls


def run_device(torch, index, dtype, shapes, args, deadline):
    device = torch.device("cuda", index)
    torch.cuda.set_device(device)
    per_shape = []
    for shape in shapes:
        if per_shape and deadline.expired():
            break
        try:
            samples, calls = measure_shape(
                torch, device, dtype, shape, args.warmup, args.repeats, args.sample_ms, deadline
            )
        except torch.cuda.OutOfMemoryError:
            per_shape.append({"shape": list(shape), "skipped": "out of memory"})
            torch.cuda.empty_cache()
            continue
        if samples:
            per_shape.append(
                {
                    "shape": list(shape),
                    "median": median(samples),
                    "calls_per_sample": calls,
                    "samples": samples,
                }
            )
    torch.cuda.empty_cache()
    measured = [s for s in per_shape if "median" in s]
    if not measured:
        raise ProbeFailed(f"GPU {index}: no shape could be measured ({per_shape})")
    best = max(measured, key=lambda s: s["median"])
    return {
        "index": index,
        "name": gpu_name(torch, index),
        "value": best["median"],
        "best_shape": best["shape"],
        "samples": best["samples"],
        "shapes": [{k: v for k, v in s.items() if k != "samples"} for s in per_shape],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="gemm", description=DESCRIPTION)
    add_common_args(parser, warmup=10, repeats=5)
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="time budget for all GPUs; no new shape starts after a GPU's share "
        "(default 60, or 240 per GPU with --thorough)",
    )
    parser.add_argument("--dtype", choices=sorted(METRICS), default="bfloat16")
    parser.add_argument(
        "--shapes", type=parse_shapes, default=None, help=f"MxNxK,... (default {DEFAULT_SHAPES})"
    )
    parser.add_argument("--devices", default=None, help="comma-separated GPU indices (default: all visible)")
    parser.add_argument(
        "--sample-ms", type=float, default=50.0, help="length of one timed sample (default 50)"
    )
    parser.add_argument(
        "--thorough",
        action="store_true",
        help="sweep many shapes with longer samples (minutes per GPU)",
    )
    args = parser.parse_args(argv)
    if args.thorough:
        if args.shapes is None:
            args.shapes = thorough_shapes()
        args.sample_ms = max(args.sample_ms, 100.0)
        args.repeats = max(args.repeats, 10)
    if args.shapes is None:
        args.shapes = parse_shapes(DEFAULT_SHAPES)

    torch = require_torch_cuda(expect_gpus=args.expect_gpus)
    dtype = getattr(torch, args.dtype)
    devices = select_devices(torch, args.devices)
    if args.seconds is None:
        args.seconds = 240.0 * len(devices) if args.thorough else 60.0
    deadline_per_gpu = args.seconds / len(devices)
    per_gpu = [run_device(torch, i, dtype, args.shapes, args, Deadline(deadline_per_gpu)) for i in devices]
    value = min(g["value"] for g in per_gpu)
    return emit_result(
        NAME,
        METRICS[args.dtype],
        "TFLOPS",
        value,
        per_gpu=per_gpu,
        params={
            "dtype": args.dtype,
            "shapes": [list(s) for s in args.shapes],
            "warmup": args.warmup,
            "repeats": args.repeats,
            "sample_ms": args.sample_ms,
            "seconds": args.seconds,
            "thorough": args.thorough,
            "devices": devices,
            "method": "torch.mm(out=) batches timed with CUDA events; FLOPs = 2*m*n*k; median per shape, "
            "best shape per GPU, value = lowest GPU",
        },
        **versions(torch),
    )


if __name__ == "__main__":
    sys.exit(run_probe(NAME, main))
