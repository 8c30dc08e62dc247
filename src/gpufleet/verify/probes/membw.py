"""Device memory bandwidth per GPU (TB/s): a large device-to-device copy timed with CUDA events.

Each sample times ``--copies`` back-to-back ``dst.copy_(src)`` of a ``--size`` byte buffer. A copy
reads the buffer once and writes it once, and both count: bytes moved = 2 x size per copy (the
convention of the figures in the per-SKU baselines; a read-only count would be half). A GPU's figure
is the median of its samples; the probe's value is the lowest GPU's figure.
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
    parse_bytes,
    require_torch_cuda,
    run_probe,
    select_devices,
    versions,
)

# gpufleet-probe: import-end

NAME = "membw"
DESCRIPTION = "Device memory bandwidth per GPU (TB/s, read+write counted)."
METRIC = "mem_bw_tbps"


def run_device(torch, index, size, args, deadline):
    device = torch.device("cuda", index)
    torch.cuda.set_device(device)
    free, _total = torch.cuda.mem_get_info(device)
    # two buffers; leave room for the allocator and other tenants
    size = min(size, int(free * 0.4))
    size -= size % 4096
    if size < (64 << 20):
        raise ProbeFailed(f"GPU {index}: only {free} bytes free, too little for a bandwidth test")
    src = torch.empty(size, dtype=torch.uint8, device=device)
    src.fill_(1)
    dst = torch.empty_like(src)

    def copy():
        dst.copy_(src)

    for _ in range(max(1, args.warmup)):
        copy()
    torch.cuda.synchronize(device)
    samples = []
    for _ in range(max(1, args.repeats)):
        if samples and deadline.expired():
            break
        ms = cuda_time_ms(torch, copy, args.copies)
        if ms > 0:
            samples.append(2.0 * size * args.copies / (ms / 1e3) / 1e12)
    if not samples:
        raise ProbeFailed(f"GPU {index}: no sample measured")
    return {
        "index": index,
        "name": gpu_name(torch, index),
        "value": median(samples),
        "size_bytes": size,
        "samples": samples,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="membw", description=DESCRIPTION)
    add_common_args(parser, warmup=5, repeats=10, seconds=60.0)
    parser.add_argument(
        "--size", type=parse_bytes, default=parse_bytes("4G"), help="buffer size (default 4G)"
    )
    parser.add_argument("--copies", type=int, default=20, help="copies per timed sample (default 20)")
    parser.add_argument("--devices", default=None, help="comma-separated GPU indices (default: all visible)")
    args = parser.parse_args(argv)

    torch = require_torch_cuda(expect_gpus=args.expect_gpus)
    devices = select_devices(torch, args.devices)
    per_gpu = []
    for index in devices:
        per_gpu.append(run_device(torch, index, args.size, args, Deadline(args.seconds / len(devices))))
        torch.cuda.empty_cache()  # the buffers died with run_device's frame
    return emit_result(
        NAME,
        METRIC,
        "TB/s",
        min(g["value"] for g in per_gpu),
        per_gpu=per_gpu,
        params={
            "size_bytes": args.size,
            "copies": args.copies,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "seconds": args.seconds,
            "devices": devices,
            "bytes_counted": "read + write: 2 x buffer size per copy",
            "method": "dst.copy_(src) on one GPU, CUDA events; median per GPU, value = lowest GPU",
        },
        **versions(torch),
    )


if __name__ == "__main__":
    sys.exit(run_probe(NAME, main))
