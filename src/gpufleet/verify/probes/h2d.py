"""Host <-> device copy bandwidth per GPU (GB/s), pinned host memory, both directions.

Each sample times ``--copies`` back-to-back non-blocking copies of a ``--size`` byte pinned host
buffer to the GPU (h2d) or back (d2h) between two CUDA events on the copy stream; GB/s is
bytes / 10^9 per second. GPUs are measured one at a time, so they do not share the host's memory
bandwidth or PCIe switch. The probe's value is the lowest GPU's host-to-device median; the
device-to-host figures are reported beside it (``d2h_min``, per GPU).
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

NAME = "h2d"
DESCRIPTION = "Pinned host<->device copy bandwidth per GPU (GB/s)."
METRIC = "h2d_gbps"


def _direction(torch, dst, src, args, deadline, size):
    def copy():
        dst.copy_(src, non_blocking=True)

    for _ in range(max(1, args.warmup)):
        copy()
    torch.cuda.synchronize()
    samples = []
    for _ in range(max(1, args.repeats)):
        if samples and deadline.expired():
            break
        ms = cuda_time_ms(torch, copy, args.copies)
        if ms > 0:
            samples.append(size * args.copies / (ms / 1e3) / 1e9)
    return samples


def run_device(torch, index, args, deadline):
    device = torch.device("cuda", index)
    torch.cuda.set_device(device)
    size = args.size - args.size % 4096
    host = torch.empty(size, dtype=torch.uint8, pin_memory=True)
    host.fill_(1)
    dev = torch.empty(size, dtype=torch.uint8, device=device)
    stream = torch.cuda.Stream(device)
    with torch.cuda.stream(stream):
        h2d = _direction(torch, dev, host, args, deadline, size)
        d2h = _direction(torch, host, dev, args, deadline, size)
    if not h2d or not d2h:
        raise ProbeFailed(f"GPU {index}: no sample measured")
    return {
        "index": index,
        "name": gpu_name(torch, index),
        "value": median(h2d),
        "h2d": median(h2d),
        "d2h": median(d2h),
        "samples": h2d,
        "d2h_samples": d2h,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="h2d", description=DESCRIPTION)
    add_common_args(parser, warmup=3, repeats=10, seconds=60.0)
    parser.add_argument(
        "--size", type=parse_bytes, default=parse_bytes("1G"), help="buffer size (default 1G)"
    )
    parser.add_argument("--copies", type=int, default=5, help="copies per timed sample (default 5)")
    parser.add_argument("--devices", default=None, help="comma-separated GPU indices (default: all visible)")
    args = parser.parse_args(argv)

    torch = require_torch_cuda(expect_gpus=args.expect_gpus)
    devices = select_devices(torch, args.devices)
    per_gpu = []
    for index in devices:
        per_gpu.append(run_device(torch, index, args, Deadline(args.seconds / len(devices))))
        torch.cuda.empty_cache()  # the buffers died with run_device's frame
    return emit_result(
        NAME,
        METRIC,
        "GB/s",
        min(g["h2d"] for g in per_gpu),
        d2h_min=min(g["d2h"] for g in per_gpu),
        per_gpu=per_gpu,
        params={
            "size_bytes": args.size,
            "copies": args.copies,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "seconds": args.seconds,
            "devices": devices,
            "pinned": True,
            "method": "non-blocking copies from/to pinned host memory, CUDA events on the copy stream, "
            "one GPU at a time; GB = 10^9 bytes; value = lowest GPU's h2d median",
        },
        **versions(torch),
    )


if __name__ == "__main__":
    sys.exit(run_probe(NAME, main))
