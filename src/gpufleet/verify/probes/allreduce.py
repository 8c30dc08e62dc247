"""NCCL all-reduce bus bandwidth over all local GPUs (GB/s).

Default mode, PyTorch: one process per GPU (``torch.multiprocessing`` spawn), joined into an NCCL
process group through a file store in a temporary directory (no network port). For each size of
the sweep (``--min-bytes`` to ``--max-bytes`` by ``--factor``; float32 elements, as nccl-tests
uses) it warms up, then takes ``--repeats`` samples of ``--iters`` back-to-back in-place
``all_reduce`` calls between CUDA events; a sample's time per call is the slowest rank's. Bandwidths
follow nccl-tests: algbw = bytes / time, busbw = algbw x 2(n-1)/n (``bus_bandwidth`` in
module_utils/probe_output.py, which this program carries). A size's figure is the median sample.

Mode ``--nccl-tests PATH``: runs nccl-tests' ``all_reduce_perf -b 8 -e 8G -f 2 -g N`` and reads its
report with ``parse_nccl_tests`` (module_utils/probe_output.py). A run with wrong elements fails.

Either way the value is the bus bandwidth at the LARGEST size (for nccl-tests, the better of its
out-of-place and in-place figures): that is where the fabric reaches its plateau, which is what a
per-SKU threshold is about. nccl-tests' own "# Avg bus bandwidth" is the mean over every size of the
sweep, small latency-bound ones included; it is reported beside the value (``avg_busbw_gbps``) but
not judged. Fewer than 2 GPUs: unavailable (exit 3).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

# isort: split
# gpufleet-probe: import-begin (removed by script_text; the concatenated program defines these)
from ansible_collections.gpufleet.cluster.plugins.module_utils.probe_output import (
    bus_bandwidth,
    parse_nccl_tests,
)

from gpufleet.verify.probes._common import (
    ProbeFailed,
    Unavailable,
    add_common_args,
    emit_result,
    median,
    parse_bytes,
    require_torch_cuda,
    run_probe,
    versions,
)

# gpufleet-probe: import-end

NAME = "allreduce"
DESCRIPTION = "NCCL all-reduce bus bandwidth over all local GPUs (GB/s)."
METRIC = "allreduce_busbw_gbps"
REPORTED = (
    "busbw at the largest size (nccl-tests mode: the better of out-of-place and in-place); "
    "avg_busbw_gbps is nccl-tests' mean over all sizes, not judged"
)


def size_sweep(min_bytes, max_bytes, factor):
    if min_bytes < 4 or max_bytes < min_bytes or factor < 2:
        raise ProbeFailed(f"bad size sweep: {min_bytes}..{max_bytes} x{factor}")
    sizes = []
    size = min_bytes
    while size < max_bytes:
        sizes.append(size)
        size *= factor
    sizes.append(max_bytes)
    return [s - s % 4 for s in sizes]


def _worker(rank, world, store_path, sizes, opts, out_path):
    import datetime

    import torch
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dist.init_process_group(
        "nccl",
        init_method=f"file://{store_path}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=opts["timeout_s"]),
    )
    try:
        import time

        device = torch.device("cuda", rank)
        results = []
        began = time.monotonic()
        stop = torch.zeros(1, dtype=torch.int32, device=device)

        def out_of_time():
            # rank 0 decides for every rank (a broadcast), so no rank waits on a collective the others left
            if rank == 0:
                stop.fill_(int(time.monotonic() - began >= opts["seconds"]))
            dist.broadcast(stop, 0)
            return bool(int(stop.item()))

        for size in sizes:
            if results and out_of_time():
                break
            tensor = torch.ones(size // 4, dtype=torch.float32, device=device)
            for _ in range(max(1, opts["warmup"])):
                dist.all_reduce(tensor)
            torch.cuda.synchronize(device)
            times_us = []
            for _ in range(max(1, opts["repeats"])):
                if times_us and out_of_time():
                    break
                dist.barrier()
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(opts["iters"]):
                    dist.all_reduce(tensor)
                end.record()
                end.synchronize()
                slowest = torch.tensor([start.elapsed_time(end) * 1e3 / opts["iters"]], device=device)
                dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
                times_us.append(float(slowest.item()))
            # correctness: every rank contributes rank+1; the sum is n(n+1)/2 everywhere
            tensor.fill_(rank + 1)
            dist.all_reduce(tensor)
            expected = world * (world + 1) / 2
            wrong_count = (tensor != expected).sum().reshape(1)
            dist.all_reduce(wrong_count)
            wrong = int(wrong_count.item())
            del tensor
            torch.cuda.empty_cache()
            busbws = [bus_bandwidth(size / (t / 1e6) / 1e9, world, "all_reduce") for t in times_us]
            time_us = median(times_us)
            algbw = size / (time_us / 1e6) / 1e9
            results.append(
                {
                    "size_bytes": size,
                    "time_us": time_us,
                    "algbw_gbps": algbw,
                    "busbw_gbps": bus_bandwidth(algbw, world, "all_reduce"),
                    "wrong": wrong,
                    "samples_busbw_gbps": busbws,
                }
            )
        if rank == 0:
            nccl = None
            try:
                nccl = ".".join(str(p) for p in torch.cuda.nccl.version())
            except Exception:
                nccl = None
            with open(out_path, "w", encoding="utf-8") as handle:
                json.dump({"sizes": results, "nccl": nccl}, handle)
    finally:
        dist.destroy_process_group()


def run_torch(args):
    torch = require_torch_cuda(expect_gpus=args.expect_gpus)
    world = torch.cuda.device_count()
    if world < 2:
        raise Unavailable(f"all-reduce needs at least 2 GPUs; torch sees {world}")
    sizes = size_sweep(args.min_bytes, args.max_bytes, args.factor)
    import torch.multiprocessing as mp

    opts = {
        "warmup": args.warmup,
        "repeats": args.repeats,
        "iters": args.iters,
        "timeout_s": args.nccl_timeout,
        "seconds": args.seconds,
    }
    with tempfile.TemporaryDirectory(prefix="gpufleet-allreduce-") as tmp:
        store = os.path.join(tmp, "store")
        out = os.path.join(tmp, "result.json")
        mp.spawn(_worker, args=(world, store, sizes, opts, out), nprocs=world, join=True)
        with open(out, encoding="utf-8") as handle:
            data = json.load(handle)
    results = data["sizes"]
    wrong = sum(r["wrong"] for r in results)
    if wrong:
        raise ProbeFailed(f"all-reduce returned {wrong} wrong element(s) summed over ranks")
    largest = max(results, key=lambda r: r["size_bytes"])
    return emit_result(
        NAME,
        METRIC,
        "GB/s",
        largest["busbw_gbps"],
        nranks=world,
        sizes=results,
        params={
            "mode": "torch.distributed",
            "min_bytes": args.min_bytes,
            "max_bytes": args.max_bytes,
            "factor": args.factor,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "iters": args.iters,
            "seconds": args.seconds,
            "dtype": "float32",
            "reported": REPORTED,
            "busbw": "algbw * 2(n-1)/n",
        },
        nccl=data.get("nccl"),
        **versions(torch),
    )


def _gpu_count():
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    except Exception as exc:  # no torch, or a broken one: fall back to nvidia-smi
        sys.stderr.write(f"torch unusable for counting GPUs: {exc}\n")
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        if out.returncode == 0:
            return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    return None


def run_nccl_tests(args):
    binary = args.nccl_tests
    if os.path.isdir(binary):
        binary = os.path.join(binary, "all_reduce_perf")
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise Unavailable(f"nccl-tests binary not found or not executable: {binary}")
    gpus = args.gpus or args.expect_gpus or _gpu_count()
    if gpus is None:
        raise Unavailable("cannot count GPUs (no torch with CUDA, no nvidia-smi); pass --gpus")
    if gpus < 2:
        raise Unavailable(f"all-reduce needs at least 2 GPUs; found {gpus}")
    argv = [binary, "-b", "8", "-e", args.nccl_tests_max, "-f", "2", "-g", str(gpus)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.nccl_timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ProbeFailed(f"{' '.join(argv)} ran past {args.nccl_timeout} s") from exc
    sys.stderr.write(proc.stderr[-4000:])
    parsed = parse_nccl_tests(proc.stdout)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-1500:]
        raise ProbeFailed(f"all_reduce_perf exited {proc.returncode}: {tail}")
    if not parsed["rows"]:
        raise ProbeFailed(f"no result rows in all_reduce_perf output: {proc.stdout[-1500:]}")
    if parsed["wrong_total"] or parsed["out_of_bounds"]:
        raise ProbeFailed(
            f"all_reduce_perf found wrong results: #wrong total {parsed['wrong_total']}, "
            f"out of bounds {parsed['out_of_bounds']}"
        )
    largest = parsed["largest"]
    return emit_result(
        NAME,
        METRIC,
        "GB/s",
        parsed["largest_busbw_gbps"],
        nranks=parsed["ranks"] or gpus,
        avg_busbw_gbps=parsed["avg_busbw_gbps"],
        max_busbw_gbps=parsed["max_busbw_gbps"],
        largest=largest,
        sizes=[
            {
                "size_bytes": r["size"],
                "busbw_gbps": r["out_of_place"]["busbw_gbps"],
                "in_place_busbw_gbps": (r["in_place"] or {}).get("busbw_gbps"),
            }
            for r in parsed["rows"]
        ],
        params={"mode": "nccl-tests", "argv": argv, "layout": parsed["layout"], "reported": REPORTED},
    )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="allreduce", description=DESCRIPTION)
    add_common_args(parser, warmup=5, repeats=5, seconds=120.0)
    parser.add_argument(
        "--iters", type=int, default=20, help="all-reduce calls per timed sample (default 20)"
    )
    parser.add_argument("--min-bytes", type=parse_bytes, default=parse_bytes("8M"))
    parser.add_argument("--max-bytes", type=parse_bytes, default=parse_bytes("2G"))
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--nccl-timeout", type=int, default=300, help="seconds before NCCL gives up")
    parser.add_argument(
        "--nccl-tests", metavar="PATH", default=None, help="run nccl-tests all_reduce_perf instead"
    )
    parser.add_argument("--nccl-tests-max", default="8G", help="-e for all_reduce_perf (default 8G)")
    parser.add_argument(
        "--gpus", type=int, default=None, help="-g for all_reduce_perf (default: GPUs visible)"
    )
    args = parser.parse_args(argv)
    if args.nccl_tests:
        return run_nccl_tests(args)
    return run_torch(args)


if __name__ == "__main__":
    sys.exit(run_probe(NAME, main))
