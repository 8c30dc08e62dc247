"""Host <-> device copy bandwidth per GPU (GB/s), pinned host memory, both directions.

Each sample times ``--copies`` back-to-back non-blocking copies of a ``--size`` byte pinned host
buffer to the GPU (h2d) or back (d2h) between two CUDA events on the copy stream; GB/s is
bytes / 10^9 per second. GPUs are measured one at a time, so they do not share the host's memory
bandwidth or PCIe switch. As nvbandwidth does, the process is bound to the GPU's NUMA node before its
pinned buffer is allocated (``--numa-nodes index:node,...``, which gpufleet reads from sysfs; CPU
affinity to the node's CPUs from ``/sys/devices/system/node/node<N>/cpulist``, and the buffer is
first touched from there, so its pages are local): a GPU on the far socket would otherwise read low
through the socket link. The probe's value is the lowest GPU's host-to-device median; the
device-to-host figures are reported beside it (``d2h_min``, per GPU) and judged by gpufleet too.
"""

from __future__ import annotations

import argparse
import os
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


def parse_numa_nodes(text):
    """'0:0,1:0,4:1' -> {0: 0, 1: 0, 4: 1} (GPU index -> NUMA node)."""
    nodes = {}
    for part in str(text or "").split(","):
        part = part.strip()
        if not part:
            continue
        gpu, sep, node = part.partition(":")
        if not sep or not gpu.strip().isdigit() or not node.strip().isdigit():
            raise argparse.ArgumentTypeError(f"--numa-nodes wants index:node pairs, got {part!r}")
        nodes[int(gpu)] = int(node)
    return nodes


def parse_cpulist(text):
    """The kernel's cpulist format ('0-3,8,10-11') -> a set of CPU numbers."""
    cpus = set()
    for part in str(text or "").strip().split(","):
        part = part.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        cpus.update(range(int(low), int(high) + 1) if sep else [int(low)])
    return cpus


def bind_to_node(node, sysfs="/sys/devices/system/node"):
    """Pin this process to the CPUs of NUMA ``node``; returns those CPUs, or None when it cannot."""
    if node is None or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        with open(f"{sysfs}/node{int(node)}/cpulist", encoding="ascii") as handle:
            cpus = parse_cpulist(handle.read())
        if not cpus:
            return None
        os.sched_setaffinity(0, cpus)
    except (OSError, ValueError):
        return None
    return cpus


def run_device(torch, index, args, deadline):
    node = args.numa_nodes.get(index)
    bound = bind_to_node(node) is not None
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
        "numa_node": node,
        "numa_bound": bound,
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
    parser.add_argument(
        "--numa-nodes",
        type=parse_numa_nodes,
        default={},
        help="GPU index:NUMA node pairs; each GPU is measured bound to its node (default: unbound)",
    )
    args = parser.parse_args(argv)

    torch = require_torch_cuda(expect_gpus=args.expect_gpus)
    devices = select_devices(torch, args.devices)
    original = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    per_gpu = []
    try:
        for index in devices:
            per_gpu.append(run_device(torch, index, args, Deadline(args.seconds / len(devices))))
            torch.cuda.empty_cache()  # the buffers died with run_device's frame
    finally:
        if original:
            os.sched_setaffinity(0, original)
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
            "numa_bound": all(g["numa_bound"] for g in per_gpu),
            "method": "non-blocking copies from/to pinned host memory allocated on the GPU's NUMA node, "
            "CUDA events on the copy stream, one GPU at a time; GB = 10^9 bytes; value = lowest GPU's h2d "
            "median, d2h_min beside it",
        },
        **versions(torch),
    )


if __name__ == "__main__":
    sys.exit(run_probe(NAME, main))
