#!/usr/bin/env python3
"""Benchmark: model distribution on an air-gapped lab (bastion + N nodes), figures as ratios measured
in the same run.

1. throughput: one node fetches a model of --size MiB from the bastion with the model_fetch module
   (every chunk verified, written into the store) vs curl fetching the same files (no verification),
   each timed on the node (the module's own ``seconds``; the shell's clock around curl), median of
   --repeat rounds: fetch/curl throughput (target >= 0.9);
2. fan-out: models.yml (role model_store, peers on) to 1 node, then to all N nodes from empty stores:
   wall time N/1 (target <= 1.5) and the bytes the bastion sent divided by the model's size (target
   <= 1.5); the same N-node run with peers off (every node from the bastion) as the baseline;
3. resume: a fetch killed (the module's process on the node, SIGKILL) once half the model has been
   sent, then run again to the end: bytes sent twice = what the bastion sent over both runs - the
   model's size (target <= one chunk per file in flight).

Bytes the bastion sent are read from its nginx access log ($body_bytes_sent of the model's files).
The model (shards of random bytes, a config) is made under .cache/bench-models/, carried in a bundle
of its own ('bench': nginx, curl, the model), served by the bastion as the air-gapped lab serves the
lab bundle. This machine has few cores: the nodes share them, so CPU (hashing, copying) and not a
network link limits the lab; the figures say what was measured here. ``--uplink MBIT`` runs the
fan-out a second time with the bastion's egress shaped to MBIT Mbit/s (tc tbf in its network
namespace, removed afterwards): the case the fan-out is for, a bastion whose uplink is the bottleneck
while the nodes' own links are not.

    .venv/bin/python benchmarks/models.py [--nodes 4] [--size 2048] [--uplink 800] [--keep]

Needs root, docker and the lab image. Uses its own lab, 'bench-models', removed afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from controller import BIN, REPO, sh, tail  # benchmarks/controller.py: the same helpers

LAB = "bench-models"
WORK = REPO / ".cache" / "bench-models"
CHUNK = 64 * 1024 * 1024
SHARDS = 8
STORE = "/var/lib/gpufleet/model-store"
MANIFESTS = "/var/lib/gpufleet/model-manifests"
ENV = {
    **os.environ,
    "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
    "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
}


def say(text: str) -> None:
    print(f"[models] {text}", flush=True)


def make_model(size_mib: int) -> Path:
    """SHARDS shards of random bytes summing to size_mib MiB, and a config; kept between runs."""
    model = WORK / f"model-{size_mib}m"
    shard = size_mib * 1024 * 1024 // SHARDS
    names = [f"model-{i + 1:05d}-of-{SHARDS:05d}.safetensors" for i in range(SHARDS)]
    if all((model / n).is_file() and (model / n).stat().st_size == shard for n in names):
        return model
    model.mkdir(parents=True, exist_ok=True)
    for n in names:
        with open(model / n, "wb") as fh:
            for _ in range(shard // (8 * 1024 * 1024)):
                fh.write(os.urandom(8 * 1024 * 1024))
            fh.write(os.urandom(shard % (8 * 1024 * 1024)))
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "bench_size_mib": size_mib}) + "\n")
    return model


def build_bundle(model: Path) -> tuple[Path, str]:
    profile = WORK / "bench.yml"
    profile.write_text(
        json.dumps(
            {
                "schema": 1,
                "name": "bench",
                "target": {"os": "debian-12", "arch": "amd64"},
                "roles": ["bundle_server", "offline_repo", "model_store"],
                "apt": {"packages": ["nginx", "curl"]},
                "models": [{"name": "bench", "version": "1", "path": str(model), "chunk_size": CHUNK}],
            }
        )
    )
    out = WORK / "bundle"
    t0 = time.monotonic()
    sh(BIN / "gpufleet", "bundle", "build", profile, "-o", out, env=ENV)
    fpr = sh(BIN / "gpufleet", "bundle", "key", "--fingerprint", env=ENV).stdout.strip()
    say(f"bundle 'bench' built in {time.monotonic() - t0:.0f} s ({out})")
    return out, fpr


class Lab:
    def __init__(self, nodes: int):
        self.nodes = [f"node{i + 1}" for i in range(nodes)]
        self.inv = WORK / "hosts.yml"

    def container(self, host: str) -> str:
        return f"gpufleet-{LAB}-{host}"

    def up(self, bundle: Path, fpr: str) -> None:
        sh(BIN / "gpufleet", "lab", "up", "--airgap", "--nodes", len(self.nodes), "--bundle", bundle,
           "--fingerprint", fpr, "--name", LAB, "--inventory", self.inv, env=ENV)  # fmt: skip
        # the bastion serves the bundle, the nodes use only it; nginx on every node for the peers
        # only the bundle and its sources: the bench bundle carries no driver, toolkit or NCCL
        skip = {
            f"gpufleet_install_{p}": False for p in ("nvidia_driver", "cuda_toolkit", "nccl", "infiniband")
        }
        self.playbook("playbooks/site.yml", "--tags", "bundle_server,offline_repo", "-e", json.dumps(skip))
        self.playbook("playbooks/models.yml", "-e", '{"model_store_models": [], "model_store_serve": true}')

    def down(self) -> None:
        sh(BIN / "gpufleet", "lab", "down", "--name", LAB, "--inventory", self.inv, check=False, env=ENV)

    def playbook(self, playbook: str, *extra) -> tuple[float, dict]:
        """Run a playbook (JSON callback); (seconds, {host: model_fetch results})."""
        t0 = time.monotonic()
        env = {**ENV, "ANSIBLE_STDOUT_CALLBACK": "json"}
        proc = sh(BIN / "ansible-playbook", "-i", self.inv, REPO / playbook, *extra, env=env)
        took = time.monotonic() - t0
        fetched: dict[str, list] = {}
        for play in json.loads(proc.stdout).get("plays", []):
            for task in play.get("tasks", []):
                if "Fetch the model versions" not in task["task"]["name"]:
                    continue
                for host, res in task["hosts"].items():
                    fetched[host] = [r for r in res.get("results", []) if "bytes" in r]
        return took, fetched

    def adhoc(self, host: str, module: str, args: str, check: bool = True) -> tuple[float, dict]:
        t0 = time.monotonic()
        proc = subprocess.run(
            [BIN / "ansible", "-i", self.inv, host, "-b", "-m", module, "-a", args],
            capture_output=True, text=True, check=False, env={**ENV, "ANSIBLE_STDOUT_CALLBACK": "json"},
        )  # fmt: skip
        took = time.monotonic() - t0
        try:
            hosts = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]
            result = hosts[host] if host in hosts else {
                "failed": any(r.get("failed") for r in hosts.values()),
                "msg": "; ".join(f"{h}: {r.get('msg', '')}" for h, r in hosts.items() if r.get("failed")),
            }  # fmt: skip
        except (ValueError, KeyError, IndexError):
            result = {"failed": True, "msg": tail(proc)}
        if check and (proc.returncode != 0 or result.get("failed")):
            sys.exit(f"ansible {host} -m {module} failed:\n{result.get('msg', '')}")
        return took, result

    def shell(self, host: str, cmd: str) -> str:
        return sh("docker", "exec", self.container(host), "sh", "-c", cmd).stdout

    def shape_bastion(self, mbit: int) -> None:
        """Limit (mbit > 0) or free (0) what the bastion sends: tc tbf on eth0 in its namespace."""
        pid = sh("docker", "inspect", "-f", "{{.State.Pid}}", self.container("bastion")).stdout.strip()
        tc = ["nsenter", "-t", pid, "-n", "tc", "qdisc"]
        sh(*tc, "del", "dev", "eth0", "root", check=False)
        if mbit:
            sh(
                *tc,
                "add",
                "dev",
                "eth0",
                "root",
                "tbf",
                "rate",
                f"{mbit}mbit",
                "burst",
                "1mb",
                "latency",
                "100ms",
            )

    def clear_stores(self) -> None:
        for host in self.nodes:
            self.shell(host, f"rm -rf {STORE}")

    def sent(self) -> int:
        """Bytes the bastion's nginx has sent of the model's files so far (its access log)."""
        log = self.shell("bastion", "cat /var/log/nginx/access.log 2>/dev/null || true")
        total = 0
        for line in log.splitlines():
            parts = line.split('"')
            if len(parts) < 3 or "/models/bench/1/" not in parts[1]:
                continue
            fields = parts[2].split()
            if len(fields) >= 2 and fields[1].isdigit():
                total += int(fields[1])
        return total


def fetch_args(lab: Lab, fpr: str, store: str = STORE) -> str:
    return (
        f"manifest={MANIFESTS}/bench-1.model.json keyring=/etc/apt/keyrings/gpufleet-bundle.asc "
        f"fingerprint={fpr} sources=http://bastion/bench/models/bench/1 store={store}"
    )


def throughput(lab: Lab, fpr: str, files: list[str], size: int, repeat: int) -> dict:
    """model_fetch vs curl on the node, each timed on the node itself (Ansible's transport and start-up,
    about a second per call here, are the same for any module and not the fetch's): curl's time is
    the shell's clock around the curl calls, model_fetch's the module's own ``seconds`` (signature
    check, ranged fetches, every chunk hashed, files placed). ``repeat`` rounds, curl and model_fetch
    alternating, the median of each; the page cache is warm on the bastion for both."""
    host = lab.nodes[0]
    base = "http://bastion/bench/models/bench/1"
    script = " && ".join(
        ["mkdir -p /var/tmp/curl-bench", "cd /var/tmp/curl-bench", "t0=$(date +%s.%N)"]
        + [f"curl -sSf -o {f} {base}/{f}" for f in files]
        + ["sync -f .", "t1=$(date +%s.%N)", "rm -rf /var/tmp/curl-bench", "echo $t0 $t1"]
    )  # fmt: skip
    curl_s, fetch_s = [], []
    for i in range(repeat):
        lab.clear_stores()
        _, res = lab.adhoc(host, "ansible.builtin.shell", script)
        t0, t1 = (float(x) for x in res["stdout"].split())
        curl_s.append(t1 - t0)
        _, result = lab.adhoc(host, "gpufleet.cluster.model_fetch", fetch_args(lab, fpr))
        assert result["bytes"] == size, result
        fetch_s.append(result["seconds"])
        mib = size / 1024 / 1024
        say(f"round {i + 1}/{repeat}: curl {curl_s[-1]:.2f} s ({mib / curl_s[-1]:.0f} MiB/s), "
            f"model_fetch {fetch_s[-1]:.2f} s ({mib / fetch_s[-1]:.0f} MiB/s)")  # fmt: skip
    c, f = statistics.median(curl_s), statistics.median(fetch_s)
    return {
        "curl_s": [round(x, 2) for x in curl_s],
        "fetch_s": [round(x, 2) for x in fetch_s],
        "ratio": round(c / f, 3),
    }


def fanout(lab: Lab, size: int, uplink: int = 0) -> dict:
    figures = {}
    lab.shape_bastion(uplink)
    if uplink:
        say(f"the bastion's egress is shaped to {uplink} Mbit/s")
    for label, limit, extra in (
        ("1 node", lab.nodes[0], '{"model_store_serve": true}'),
        (f"{len(lab.nodes)} nodes, peers", "gpu_nodes", '{"model_store_serve": true}'),
        (
            f"{len(lab.nodes)} nodes, no peers",
            "gpu_nodes",
            '{"model_store_serve": true, "model_store_peers": []}',
        ),
    ):
        lab.clear_stores()
        before = lab.sent()
        took, fetched = lab.playbook("playbooks/models.yml", "--limit", limit, "-e", extra)
        bastion = lab.sent() - before
        figures[label] = {
            "wall_s": round(took, 2),
            "bastion_bytes": bastion,
            "bastion_x": round(bastion / size, 3),
        }
        say(f"{label}: {took:.1f} s, the bastion sent {bastion / size:.2f} x the model")
        for host, results in sorted(fetched.items()):
            for r in results:
                peer = r.get("peer_bytes") or 0
                say(f"  {host}: {r['bytes'] / size:.2f} x the model fetched, {peer / size:.2f} x from peers")
        figures[label]["nodes"] = {h: [r.get("peer_bytes") for r in rs] for h, rs in fetched.items()}
    lab.shape_bastion(0)
    return figures


def resume(lab: Lab, fpr: str, size: int) -> dict:
    host = lab.nodes[0]
    lab.clear_stores()
    before = lab.sent()
    runner = threading.Thread(
        target=lab.adhoc, args=(host, "gpufleet.cluster.model_fetch", fetch_args(lab, fpr), False)
    )
    runner.start()
    deadline = time.monotonic() + 600
    while lab.sent() - before < size // 2 and runner.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    lab.shell(host, "pkill -9 -f '[A]nsiballZ_model_fetch' || true")  # [A]: not this shell itself
    runner.join(120)
    first = lab.sent() - before
    _took, result = lab.adhoc(host, "gpufleet.cluster.model_fetch", fetch_args(lab, fpr))
    total = lab.sent() - before
    again = total - size  # over both runs, every byte beyond one copy was sent twice
    say(
        f"killed after the bastion sent {first / size:.0%}; the second run resumed {result['resumed_bytes']} "
        f"verified bytes and fetched {result['bytes']}; the bastion sent {total / size:.3f} x the model in "
        f"all: {again} bytes ({again / CHUNK:.2f} chunks) twice"
    )
    return {
        "sent_before_kill": first,
        "sent_in_all": total,
        "resumed_bytes": result["resumed_bytes"],
        "sent_again": again,
        "sent_again_chunks": round(again / CHUNK, 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--size", type=int, default=2048, help="model size in MiB (default 2048)")
    ap.add_argument(
        "--uplink", type=int, default=0, help="also run the fan-out with the bastion at MBIT Mbit/s"
    )
    ap.add_argument(
        "--only", choices=("throughput", "fanout", "resume"), action="append", help="run only these"
    )
    ap.add_argument("--repeat", type=int, default=3, help="throughput rounds, median reported (default 3)")
    ap.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    model = make_model(args.size)
    files = sorted(p.name for p in model.iterdir())
    size = sum((model / f).stat().st_size for f in files)
    bundle, fpr = build_bundle(model)
    lab = Lab(args.nodes)
    try:
        lab.up(bundle, fpr)
        lab.adhoc("gpu_nodes", "ansible.builtin.file", f"path={MANIFESTS} state=directory mode=0755")
        for suffix in ("", ".asc"):
            lab.adhoc("gpu_nodes", "ansible.builtin.get_url",
                      f"url=http://bastion/bench/models/bench/1.model.json{suffix} "
                      f"dest={MANIFESTS}/bench-1.model.json{suffix} mode=0644")  # fmt: skip
        report = {"size_bytes": size, "nodes": args.nodes, "chunk_bytes": CHUNK}
        only = set(args.only or ("throughput", "fanout", "resume"))
        if "throughput" in only:
            report["throughput"] = throughput(lab, fpr, files, size, args.repeat)
        if "fanout" in only:
            report["fanout"] = fanout(lab, size)
            if args.uplink:
                report["fanout_uplink"] = {"mbit": args.uplink, **fanout(lab, size, args.uplink)}
        if "resume" in only:
            report["resume"] = resume(lab, fpr, size)
    finally:
        if not args.keep:
            lab.down()
    mib = size / 1024 / 1024
    print()
    print(f"model: {mib:.0f} MiB in {SHARDS} shards, {CHUNK // 1024 // 1024} MiB chunks; {args.nodes} nodes")
    rows = []
    if "throughput" in report:
        rows.append(("throughput  model_fetch/curl", report["throughput"]["ratio"], "target >= 0.9"))
    for key, how in (("fanout", "unshaped"), ("fanout_uplink", f"bastion at {args.uplink} Mbit/s")):
        if key not in report:
            continue
        one = report[key]["1 node"]
        many = report[key][f"{args.nodes} nodes, peers"]
        plain = report[key][f"{args.nodes} nodes, no peers"]
        rows += [
            (
                f"fan-out     wall {args.nodes} nodes / 1 node, {how}",
                many["wall_s"] / one["wall_s"],
                "target <= 1.5",
            ),
            ("            bastion bytes / model size", many["bastion_x"], "target <= 1.5"),
            (
                "            same, peers off (baseline)",
                plain["bastion_x"],
                f"wall {plain['wall_s'] / one['wall_s']:.2f} x 1 node",
            ),
        ]
    if "resume" in report:
        rows.append(
            (
                "resume      bytes sent again, in chunks",
                report["resume"]["sent_again_chunks"],
                "target <= chunks in flight: 4 workers",
            )
        )
    for label, value, note in rows:
        print(f"{label:<58}{value:6.2f}   ({note})")
    (WORK / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"details: {WORK / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
