#!/usr/bin/env python3
"""Benchmark: offline bundle build time, size overhead, and verify throughput against sha256sum.

    .venv/bin/python benchmarks/bundle.py [--profile bundles/lab.yml] [--out DIR] [--repeats 3]

1. Build the profile into a fresh directory (cold: everything downloaded) and time it; then
   rebuild in place (warm: nothing fetched again) and time that.
2. Bundle size on disk versus the plain sum of its artifacts (.deb, .whl, image tars, files):
   the overhead of the signed indexes, keys and manifest.
3. `gpufleet bundle verify` throughput (signature + sha256 of every file) versus `sha256sum` over
   the same files, in the same run, both with a warm page cache; best of --repeats each.

Needs root, docker and the lab image (make lab-image). Uses a throw-away signing key.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ARTIFACT_KINDS = ("apt", "wheel", "image", "file")


def timed(args: list, env: dict) -> float:
    t0 = time.monotonic()
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(
            f"{' '.join(map(str, args))} failed ({proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="bundles/lab.yml")
    ap.add_argument("--out", help="bundle directory (default: a temporary one, removed afterwards)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gpufleet-bench-bundle-"))
    out = Path(args.out) if args.out else work / "bundle"
    env = {**os.environ, "GPUFLEET_SIGNING_HOME": str(work / "signing")}
    try:
        # bundles/lab.yml carries the lab engine's wheel and the lab's tiny model: made first (each a
        # no-op when already there)
        subprocess.run([BIN / "gpufleet", "lab", "bundle-inputs"], check=True)
        cold = timed([BIN / "gpufleet", "bundle", "build", args.profile, "-o", out], env)
        warm = timed([BIN / "gpufleet", "bundle", "build", args.profile, "-o", out], env)
        fpr = subprocess.run(
            [BIN / "gpufleet", "bundle", "key", "--fingerprint"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.strip()
        manifest = json.loads((out / "manifest.json").read_text())
        files = manifest["files"]
        on_disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        artifacts = sum(e["size"] for e in files if e["kind"] in ARTIFACT_KINDS)
        total = sum(e["size"] for e in files)

        verify_runs, sha_runs = [], []
        paths = [str(out / e["path"]) for e in files]
        for _ in range(args.repeats):
            verify_runs.append(timed([BIN / "gpufleet", "bundle", "verify", out, "--fingerprint", fpr], env))
            t0 = time.monotonic()
            subprocess.run(["sha256sum", "--", *paths], capture_output=True, check=True)
            sha_runs.append(time.monotonic() - t0)
        v, s = min(verify_runs), min(sha_runs)
        mb = total / 1e6
        print(f"profile {args.profile}: {len(files)} files, {total / 1e9:.2f} GB")
        print(f"build (cold, everything fetched): {cold:7.1f} s")
        print(f"build (warm, rebuilt in place):   {warm:7.1f} s   ({warm / cold:.2f} of cold)")
        print(
            f"size: bundle {on_disk / 1e9:.3f} GB on disk vs artifacts {artifacts / 1e9:.3f} GB "
            f"-> overhead {on_disk - artifacts:,} bytes ({(on_disk / artifacts - 1) * 100:.3f} %)"
        )
        print(
            f"verify:    {v:6.2f} s  {mb / v:7.0f} MB/s  "
            "(gpufleet bundle verify: signature + sha256 of every file)"
        )
        print(f"sha256sum: {s:6.2f} s  {mb / s:7.0f} MB/s  (same files, same run)")
        print(
            f"verify / sha256sum throughput ratio: {s / v:.2f}  "
            f"(best of {args.repeats} each, warm page cache)"
        )
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(work / "signing"), "--kill", "gpg-agent"], capture_output=True
        )
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
