#!/usr/bin/env python3
"""Benchmark: controller CPU seconds per host for an idempotent site.yml and for verify --tier quick.

Issue 17's scaling figures: a 2-core controller spends CPU on every host it manages (Ansible's
workers, templating, SSH clients, testinfra), so its CPU seconds per host set how many hosts one
controller can serve. This script measures them on the lab, 1 node and N nodes in the same run:

- nodes start from the converged airgap node that `make test` commits (gpufleet-lab-node:current),
  reached over SSH as the operator 'ops' with pinned host keys, as a real fleet is;
- a warm-up `gpufleet apply site.yml` (online: the nodes go back to their own package sources) is
  not measured; then `gpufleet apply site.yml` on node1 and on all N nodes, each measured as the
  CPU time (user + system) of the whole process tree the controller ran (RUSAGE_CHILDREN), with the
  changed count (an idempotent run changes 0);
- `gpufleet apply site.yml --fast` once on all N nodes (records each host's receipt; not measured),
  then on node1 and on all N nodes, measured the same way: the idempotent run that trusts receipts;
- `gpufleet verify --tier quick` on node1 and on all N nodes, measured the same way.

Prints CPU seconds per host for each, the ratio against the 1-node run of the same command (per-host
cost at N over per-host cost at 1: below 1 means fixed costs amortised) and against the issue's
targets (apply <= 4, verify <= 0.5 CPU-s per host).

    .venv/bin/python benchmarks/controller.py [--nodes 4] [--image IMAGE] [--keep]

Needs root, docker, the lab image and the layer image (make test leaves both). Uses its own lab,
'bench-ctl', and removes it afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
LAB = "bench-ctl"
TARGETS = {"apply": 4.0, "apply --fast": 4.0, "verify": 0.5}

# The airgap scenario's node settings (molecule/airgap/molecule.yml), online: the nodes use their own
# package sources again, so no bastion is needed.
GROUP_VARS = {
    "gpufleet_offline": False,
    "nvidia_driver_source": "debian",
    "nvidia_driver_branch": "535",
    "nvidia_driver_version": "535.261.03",
    "nccl_extra": {"NCCL_DEBUG": "WARN"},
    "infiniband_stack": "inbox",
    "infiniband_ipoib_require_device": False,
}


def tail(proc: subprocess.CompletedProcess) -> str:
    return f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def sh(*args, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False, env=env)
    if check and proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{tail(proc)}")
    return proc


class CpuMeter:
    """CPU seconds of a command and everything it starts, daemonized children included.

    Ansible's SSH connection multiplexing (ControlPersist) leaves master ssh processes that detach
    from the process tree and do the encryption for every later task; RUSAGE_CHILDREN would miss
    them. So each command runs in a cgroup of its own (cpuacct on cgroup v1, cpu.stat on v2) and
    what is left in it afterwards (those masters) is stopped, so the next command starts cold.
    Without a writable cgroup hierarchy it falls back to RUSAGE_CHILDREN and says so.
    """

    def __init__(self, name: str):
        v1, v2 = Path("/sys/fs/cgroup/cpuacct"), Path("/sys/fs/cgroup")
        self.v1 = v1.is_dir()
        self.dir = (v1 if self.v1 else v2) / name
        try:
            self.dir.mkdir(exist_ok=True)
            self.method = "cgroup"
        except OSError:
            self.method = "rusage (daemonized ssh masters not counted)"

    def _usage(self) -> float:
        if self.method != "cgroup":
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            return usage.ru_utime + usage.ru_stime
        if self.v1:
            return int((self.dir / "cpuacct.usage").read_text()) / 1e9
        stat = dict(line.split() for line in (self.dir / "cpu.stat").read_text().splitlines())
        return int(stat["usage_usec"]) / 1e6

    def _join(self) -> None:
        if self.method == "cgroup":
            (self.dir / "cgroup.procs").write_text(str(os.getpid()))

    def _stop_leftovers(self) -> None:
        if self.method != "cgroup":
            return
        for _ in range(50):
            pids = [int(p) for p in (self.dir / "cgroup.procs").read_text().split()]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            time.sleep(0.1)

    def run(self, args: list[str], env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
        before, wall = self._usage(), time.monotonic()
        proc = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            preexec_fn=self._join,  # runs in the child: it joins the cgroup before exec
        )
        cpu, wall = self._usage() - before, time.monotonic() - wall
        self._stop_leftovers()
        return cpu, wall, proc

    def close(self) -> None:
        if self.method == "cgroup":
            self._stop_leftovers()
            with contextlib.suppress(OSError):
                self.dir.rmdir()


METER: CpuMeter | None = None


def measured(
    *args, env: dict, ok: tuple[int, ...] = (0,)
) -> tuple[float, float, subprocess.CompletedProcess]:
    """CPU seconds of the command's whole process tree, wall seconds, the process."""
    cpu, wall, proc = METER.run(list(args), env)
    if proc.returncode not in ok:
        sys.exit(f"{' '.join(map(str, args))} exited {proc.returncode}:\n{tail(proc)}")
    return cpu, wall, proc


def apply(inv: Path, runs: Path, env: dict, limit: str | None, fast: bool = False) -> dict:
    args = [BIN / "gpufleet", "apply", "playbooks/site.yml", "-i", inv, "--runs-dir", runs, "--plain"]
    if fast:
        args.append("--fast")
    if limit:
        args += ["--limit", limit]
    before = set(runs.iterdir()) if runs.exists() else set()
    cpu, wall, _ = measured(*args, env=env)
    (run_dir,) = set(runs.iterdir()) - before
    summary = json.loads((run_dir / "summary.json").read_text())
    hosts = summary["hosts"]
    changed = sum(h["counts"].get("changed", 0) for h in hosts.values())
    return {"cpu": cpu, "wall": wall, "hosts": len(hosts), "changed": changed}


def verify(inv: Path, env: dict, limit: str | None) -> dict:
    args = [BIN / "gpufleet", "verify", "-i", inv, "--tier", "quick", "-q", "--json", "-"]
    if limit:
        args += ["--limit", limit]
    # Exit 1 is a verdict (no GPU in a container: unhealthy gpu checks), not a failed measurement.
    cpu, wall, proc = measured(*args, env=env, ok=(0, 1))
    report = json.loads(proc.stdout)
    return {"cpu": cpu, "wall": wall, "hosts": len(report["hosts"]), "changed": None}


def line(name: str, one: dict, many: dict) -> str:
    per1, perN = one["cpu"] / one["hosts"], many["cpu"] / many["hosts"]
    target = TARGETS[name]
    changed = "" if one["changed"] is None else f"  changed {one['changed']}/{many['changed']}"
    # Each host past the first: what a larger fleet adds per host once the run's fixed cost (Ansible's
    # start, the inventory, the play) is paid.
    more = many["hosts"] - one["hosts"]
    added = (many["cpu"] - one["cpu"]) / more if more > 0 else perN
    return (
        f"{name:12s} 1 host: {one['cpu']:6.1f} CPU-s ({per1:5.2f}/host, {one['wall']:5.1f} s wall)   "
        f"{many['hosts']} hosts: {many['cpu']:6.1f} CPU-s ({perN:5.2f}/host, {many['wall']:5.1f} s wall)   "
        f"ratio per-host {many['hosts']}/1: {perN / per1:.2f}   "
        f"vs target {target}: {perN / target:.2f}   each added host: {added:.2f} CPU-s "
        f"(vs target: {added / target:.2f}){changed}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--image", default="gpufleet-lab-node:current", help="the converged node image")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--only", choices=("apply", "verify"), help="measure one command only")
    args = parser.parse_args()
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    os.chdir(REPO)
    global METER
    METER = CpuMeter(f"gpufleet-bench-ctl-{os.getpid()}")
    print(f"measuring with {METER.method}")
    with tempfile.TemporaryDirectory() as tmp:
        # --keep keeps the inventory with the lab (reports/ is not committed), so the lab can be used
        inv_dir = (REPO / "reports" / LAB / "inventory") if args.keep else Path(tmp) / "inventory"
        (inv_dir / "group_vars").mkdir(parents=True, exist_ok=True)
        inv = inv_dir / "hosts.yml"
        (inv_dir / "group_vars" / "gpu_nodes.json").write_text(json.dumps(GROUP_VARS))
        runs = Path(tmp) / "runs"
        up = [BIN / "gpufleet", "lab", "up", "--name", LAB, "--nodes", args.nodes, "--ssh"]
        sh(*up, "--node-image", args.image, "--inventory", inv, env=env)
        try:
            results = {}
            if args.only != "verify":
                print(
                    f"warm-up: gpufleet apply site.yml on {args.nodes} nodes from {args.image} (not measured)"
                )
                warm = apply(inv_dir, runs, env, None)
                print(f"  {warm['wall']:.0f} s, changed {warm['changed']}")
                results["apply"] = (apply(inv_dir, runs, env, "node1"), apply(inv_dir, runs, env, None))
                # --fast: a full run records each host's receipt (not measured), then idempotent
                # runs that trust it.
                print("gpufleet apply --fast once, recording the receipts (not measured)")
                apply(inv_dir, runs, env, None, fast=True)
                results["apply --fast"] = (
                    apply(inv_dir, runs, env, "node1", fast=True),
                    apply(inv_dir, runs, env, None, fast=True),
                )
            if args.only != "apply":
                results["verify"] = (verify(inv_dir, env, "node1"), verify(inv_dir, env, None))
        finally:
            if not args.keep:
                sh(BIN / "gpufleet", "lab", "down", "--name", LAB, "--inventory", inv, check=False, env=env)
            METER.close()
    if args.keep:
        print(f"lab {LAB} kept; its inventory: {inv} ('gpufleet lab down --name {LAB} --inventory {inv}')")
    print(
        "controller CPU seconds per host (user+system of every process the command ran), "
        f"{os.cpu_count()} cores"
    )
    for name, (one, many) in results.items():
        print(line(name, one, many))
    if args.json:
        Path(args.json).write_text(
            json.dumps({k: {"one": a, "many": b} for k, (a, b) in results.items()}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
