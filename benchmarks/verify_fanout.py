#!/usr/bin/env python3
"""Benchmark: `gpufleet verify --tier quick` on a lab of 1 node and of 4 nodes, in the same run.

Prints both wall times and their ratio. Hosts are verified in parallel (one pytest process each),
so 4 nodes should take well under 4 times as long as 1. The nodes are fresh lab containers; their
verdicts do not matter here, only the time to reach them.

    .venv/bin/python benchmarks/verify_fanout.py [--nodes 4] [--repeats 3] [--keep]

Needs root, docker and the lab image (make lab-image). Uses its own lab, 'bench-verify'.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
LAB = "bench-verify"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def timed_verify(inventory: Path, limit: str | None) -> float:
    cmd = [BIN / "gpufleet", "verify", "-i", inventory, "--tier", "quick", "-q", "--json", "-"]
    if limit:
        cmd += ["--limit", limit]
    started = time.monotonic()
    proc = sh(*cmd, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode not in (0, 1):
        sys.exit(f"gpufleet verify failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inv = Path(tmp) / "hosts.yml"
        sh(BIN / "gpufleet", "lab", "up", "--name", LAB, "--nodes", str(args.nodes), "--inventory", inv)
        try:
            timed_verify(inv, "node1")  # warm-up: ansible's and pytest's first imports
            one = [timed_verify(inv, "node1") for _ in range(args.repeats)]
            many = [timed_verify(inv, None) for _ in range(args.repeats)]
        finally:
            if not args.keep:
                sh(BIN / "gpufleet", "lab", "down", "--name", LAB, "--inventory", inv, check=False)
    t1, tn = statistics.median(one), statistics.median(many)
    print(f"gpufleet verify --tier quick, median of {args.repeats} runs each")
    print(f"  1 node : {t1:6.1f} s  (runs: {', '.join(f'{x:.1f}' for x in one)})")
    print(f"  {args.nodes} nodes: {tn:6.1f} s  (runs: {', '.join(f'{x:.1f}' for x in many)})")
    print(f"  ratio {args.nodes} nodes / 1 node: {tn / t1:.2f}  (serial would be {args.nodes:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
