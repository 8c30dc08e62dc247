"""Sustained load (burn-in): bf16 matmul on every GPU at once, plus an all-reduce, for a duration.

The burst probes load one GPU at a time for seconds; power and cooling faults appear only when the
whole node runs flat out for minutes (clocks drop, a GPU falls behind). This probe starts one process
per GPU (``torch.multiprocessing`` spawn), joined into one NCCL group through a file store, and for
``--seconds`` every rank repeats windows of back-to-back ``torch.mm`` calls (``--shape``, bf16) timed
with CUDA events, while an all-reduce of ``--allreduce-bytes`` runs beside every window (on NCCL's
own stream). Rank 0 decides when the time is up and tells the others (a broadcast per window), so
every rank stops together and no rank waits on a collective the others left.

A window's throughput is ``2*m*n*k*calls / seconds``. Per GPU: the median of the windows in the second
half of the run (the sustained figure, after clocks and temperatures settled), the first window
(the burst at the start) and the drop between them. The value is the lowest GPU's sustained figure;
the all-reduce is checked for correct sums and its bus bandwidth under load is reported (not judged:
it shares the GPUs with the matmuls). One GPU: the matmul alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

# isort: split
# gpufleet-probe: import-begin (removed by script_text; the concatenated program defines these)
from ansible_collections.gpufleet.cluster.plugins.module_utils.probe_output import bus_bandwidth

from gpufleet.verify.probes._common import (
    ProbeFailed,
    add_common_args,
    emit_result,
    median,
    parse_bytes,
    require_torch_cuda,
    run_probe,
    versions,
)

# gpufleet-probe: import-end

NAME = "sustained"
DESCRIPTION = "bf16 matmul TFLOPS per GPU with every GPU loaded at once, plus an all-reduce (burn-in)."
METRIC = "sustained_bf16_tflops"


def summarize_windows(windows):
    """Per-GPU figures from its windows' TFLOPS, in time order (pure; tested without a GPU).

    ``{"first", "sustained", "min", "drop_pct", "windows"}``: sustained is the median of the second
    half (at least one window); drop_pct how far it lies below the first window.
    """
    values = [float(w) for w in windows if w is not None and w > 0]
    if not values:
        raise ProbeFailed("no window measured")
    settled = values[len(values) // 2 :] or values
    sustained = median(settled)
    first = values[0]
    return {
        "first": first,
        "sustained": sustained,
        "min": min(values),
        "drop_pct": round(100.0 * (first - sustained) / first, 2) if first > 0 else None,
        "windows": len(values),
    }


def _worker(rank, world, store_path, opts, out_dir):
    import datetime

    import torch
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    device = torch.device("cuda", rank)
    if world > 1:
        dist.init_process_group(
            "nccl",
            init_method=f"file://{store_path}",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=opts["nccl_timeout"]),
        )
    try:
        m, n, k = opts["shape"]
        a = torch.randn(m, k, device=device, dtype=torch.bfloat16)
        b = torch.randn(k, n, device=device, dtype=torch.bfloat16)
        c = torch.empty(m, n, device=device, dtype=torch.bfloat16)
        reduce_buf = torch.ones(max(1, opts["allreduce_bytes"] // 4), dtype=torch.float32, device=device)
        for _ in range(5):
            torch.mm(a, b, out=c)
        torch.cuda.synchronize(device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(3):
            torch.mm(a, b, out=c)
        end.record()
        end.synchronize()
        calls = max(1, int(opts["window_ms"] / max(start.elapsed_time(end) / 3.0, 1e-3)))
        flops = 2.0 * m * n * k * calls
        windows, reduce_us, wrong = [], [], 0
        began = time.monotonic()
        stop = torch.zeros(1, dtype=torch.int32, device=device)
        while True:
            work = None
            if world > 1:  # NCCL runs on its own stream: this all-reduce overlaps the window's matmuls
                reduce_buf.fill_(rank + 1)
                issued = time.monotonic()
                work = dist.all_reduce(reduce_buf, async_op=True)
            start.record()
            for _ in range(calls):
                torch.mm(a, b, out=c)
            end.record()
            if work is not None:
                work.wait()
                torch.cuda.synchronize(device)
                reduce_us.append((time.monotonic() - issued) * 1e6)
                wrong += int((reduce_buf != world * (world + 1) / 2).sum().item())
            end.synchronize()
            ms = start.elapsed_time(end)
            windows.append(flops / (ms / 1e3) / 1e12 if ms > 0 else None)
            if rank == 0:  # the deadline is checked inside the loop, decided once for every rank
                stop.fill_(int(time.monotonic() - began >= opts["seconds"]))
            if world > 1:
                dist.broadcast(stop, 0)
            if int(stop.item()):
                break
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w", encoding="utf-8") as handle:
            json.dump({"rank": rank, "windows": windows, "reduce_us": reduce_us, "wrong": wrong}, handle)
    finally:
        if world > 1:
            dist.destroy_process_group()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="sustained", description=DESCRIPTION)
    add_common_args(parser, warmup=5, repeats=1, seconds=600.0)
    parser.add_argument("--shape", default="8192x8192x8192", help="MxNxK of the matmul (default 8192^3)")
    parser.add_argument("--window-ms", type=float, default=1000.0, help="length of one window (default 1000)")
    parser.add_argument("--allreduce-bytes", type=parse_bytes, default=parse_bytes("256M"))
    parser.add_argument("--nccl-timeout", type=int, default=300, help="seconds before NCCL gives up")
    args = parser.parse_args(argv)
    try:
        shape = [int(d) for d in args.shape.lower().split("x")]
    except ValueError:
        shape = []
    if len(shape) != 3 or min(shape) < 1:
        raise ProbeFailed(f"--shape {args.shape!r} is not MxNxK")

    torch = require_torch_cuda(expect_gpus=args.expect_gpus)
    world = torch.cuda.device_count()
    import torch.multiprocessing as mp

    opts = {
        "shape": shape,
        "window_ms": args.window_ms,
        "allreduce_bytes": args.allreduce_bytes,
        "seconds": args.seconds,
        "nccl_timeout": args.nccl_timeout,
    }
    with tempfile.TemporaryDirectory(prefix="gpufleet-sustained-") as tmp:
        mp.spawn(_worker, args=(world, os.path.join(tmp, "store"), opts, tmp), nprocs=world, join=True)
        ranks = []
        for rank in range(world):
            with open(os.path.join(tmp, f"rank{rank}.json"), encoding="utf-8") as handle:
                ranks.append(json.load(handle))
    per_gpu = []
    for data in ranks:
        summary = summarize_windows(data["windows"])
        summary.update(index=data["rank"], name=torch.cuda.get_device_name(data["rank"]))
        per_gpu.append(summary)
    wrong = sum(d["wrong"] for d in ranks)
    if wrong:
        raise ProbeFailed(f"all-reduce under load returned {wrong} wrong element(s) summed over ranks")
    reduce_times = [t for d in ranks for t in d["reduce_us"]]
    busbw = None
    if world > 1 and reduce_times:
        busbw = bus_bandwidth(args.allreduce_bytes / (median(reduce_times) / 1e6) / 1e9, world, "all_reduce")
    return emit_result(
        NAME,
        METRIC,
        "TFLOPS",
        min(g["sustained"] for g in per_gpu),
        burst_min=min(g["first"] for g in per_gpu),
        max_drop_pct=max((g["drop_pct"] or 0.0) for g in per_gpu),
        allreduce_busbw_gbps_under_load=busbw,
        per_gpu=per_gpu,
        params={
            "seconds": args.seconds,
            "shape": shape,
            "window_ms": args.window_ms,
            "allreduce_bytes": args.allreduce_bytes,
            "gpus": world,
            "method": "torch.mm windows on every GPU at once (one process per GPU) with an all-reduce after "
            "each window on a side stream; sustained = median of the second half of the windows; "
            "value = lowest GPU",
        },
        **versions(torch),
    )


if __name__ == "__main__":
    sys.exit(run_probe(NAME, main))
