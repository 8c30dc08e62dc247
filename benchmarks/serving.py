#!/usr/bin/env python3
"""Benchmark: what the serving front costs, measured against the engine itself in the same run.

A real engine - llama.cpp's OpenAI server (the lab's engine: the wheel `gpufleet lab engine-wheel`
builds, in a venv of its own under .cache/bench-serving) serving the lab's tiny model on this machine's
CPU - and the llm_serve role's real front (nginx with njs, configured by the role's own tasks into a
temporary directory: tests/unit/serving/front_harness.py) in front of it. Requests alternate between
the engine directly and the front (with an API key), so both see the same machine:

1. latency of a one-token completion: p50 and p99, front / direct (target <= 1.05, or + 2 ms);
2. time to the first streamed token (SSE): p50, front - direct (target: within 5 ms);
3. the lab's tokens/s through the front (a figure, not a target).

    .venv/bin/python benchmarks/serving.py [--requests 200] [--streams 50]

Needs nginx and libnginx-mod-http-js (scripts/host-deps.sh), the lab model (gpufleet lab
bundle-inputs) and the package index for the engine's dependencies on the first run.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "unit" / "serving"))
from front_harness import free_port, run_role, start_nginx  # noqa: E402

from gpufleet.lab import engine_wheel, inputs, tiny_model  # noqa: E402

WORK = REPO / ".cache" / "bench-serving"
KEY = "bench-serving-key-0000"


def say(text: str) -> None:
    print(f"[serving] {text}", flush=True)


def engine_venv() -> Path:
    venv = WORK / "venv"
    py = venv / "bin" / "python"
    if not py.exists():
        wheel = engine_wheel.ensure(REPO / engine_wheel.DEFAULT_DEST)["path"]
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        say("installing the engine (the lab wheel, its server extra from the index)")
        subprocess.run([str(py), "-m", "pip", "install", "-q", f"{wheel}[server]"], check=True)
    return py


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the engine exited: {(WORK / 'engine.log').read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/models")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"the engine did not answer on {port}")


class Client:
    """Requests to the engine or the front, each on a new connection (both sides pay the same connect)."""

    def __init__(self, port: int, key: str | None = None):
        self.port = port
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"

    def complete(self, body: dict) -> tuple[float, float, int]:
        """(seconds to the whole answer, seconds to the first streamed event, completion tokens)."""
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("POST", "/v1/completions", json.dumps(body), {**self.headers, "Connection": "close"})
        resp = conn.getresponse()
        if resp.status != 200:
            sys.exit(f"HTTP {resp.status}: {resp.read()[:300]!r}")
        first, tokens = None, 0
        if body.get("stream"):
            while True:
                line = resp.readline()
                if not line:
                    break
                if line.startswith(b"data: ") and first is None:
                    first = time.perf_counter() - t0
                if line.startswith(b"data: {"):
                    event = json.loads(line[6:])
                    tokens += sum(1 for c in event.get("choices") or [] if c.get("text"))
        else:
            tokens = json.loads(resp.read())["usage"]["completion_tokens"]
        took = time.perf_counter() - t0
        conn.close()
        return took, first or 0.0, tokens


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200, help="one-token completions per side (default 200)")
    ap.add_argument("--streams", type=int, default=50, help="streamed completions per side (default 50)")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    inputs.prepare(REPO, say=say)
    py = engine_venv()
    model = REPO / ".cache" / "models" / "tiny-llama" / tiny_model.GGUF_FILE
    eport, fport = free_port(), free_port()
    engine = subprocess.Popen(
        [str(py), "-m", "llama_cpp.server", "--model", str(model), "--model_alias", tiny_model.NAME,
         "--host", "127.0.0.1", "--port", str(eport), "--n_ctx", "512", "--n_threads", "1"],
        stdout=(WORK / "engine.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    front = None
    try:
        wait_port(eport, engine)
        tmp = Path(tempfile.mkdtemp(prefix="gpufleet-bench-serving-"))
        keys = [{"name": "bench", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "models": ["*"],
                 "scopes": ["inference"]}]  # fmt: skip
        role = run_role(tmp, {"llm_serve_keys": keys, "llm_serve_front_port": fport, "llm_serve_rate": 0,
                              "llm_serve_upstream": f"http://127.0.0.1:{eport}"})  # fmt: skip
        if role.returncode != 0:
            sys.exit(f"the role failed:\n{role.stdout[-3000:]}")
        front = start_nginx(tmp, fport)
        direct, proxied = Client(eport), Client(fport, KEY)
        one = {"model": tiny_model.NAME, "prompt": "The fleet is", "max_tokens": 1, "temperature": 0}
        for client in (direct, proxied):  # warm both paths (connections, the engine's first call)
            for _ in range(5):
                client.complete(one)
        lat = {"direct": [], "front": []}
        for _ in range(args.requests):
            for name, client in (("direct", direct), ("front", proxied)):
                lat[name].append(client.complete(one)[0])
        stream = {**one, "max_tokens": 16, "stream": True}
        ttft = {"direct": [], "front": []}
        tokens, stream_s = 0, 0.0
        for _ in range(args.streams):
            for name, client in (("direct", direct), ("front", proxied)):
                total, first, n = client.complete(stream)
                ttft[name].append(first)
                if name == "front":
                    tokens, stream_s = tokens + n, stream_s + total
        audit = (tmp / "log" / "front-audit.log").read_text().splitlines()
    finally:
        if front is not None:
            front.terminate()
            front.wait(timeout=10)
        engine.terminate()
        try:
            engine.wait(timeout=10)
        except subprocess.TimeoutExpired:
            engine.kill()
    p50 = {k: statistics.median(v) * 1000 for k, v in lat.items()}
    p99 = {k: pct(v, 99) * 1000 for k, v in lat.items()}
    t50 = {k: statistics.median(v) * 1000 for k, v in ttft.items()}
    say(f"{args.requests} one-token completions per side, {args.streams} streams of 16 tokens; "
        f"audit lines written: {len(audit)}")  # fmt: skip
    print()
    print(f"{'latency p50 front / direct':<44}{p50['front'] / p50['direct']:7.3f}   "
          f"({p50['front']:.2f} ms vs {p50['direct']:.2f} ms, + {p50['front'] - p50['direct']:.2f} ms; "
          "target <= 1.05 or + 2 ms)")  # fmt: skip
    print(f"{'latency p99 front / direct':<44}{p99['front'] / p99['direct']:7.3f}   "
          f"({p99['front']:.2f} ms vs {p99['direct']:.2f} ms, + {p99['front'] - p99['direct']:.2f} ms; "
          "target <= 1.05 or + 2 ms)")  # fmt: skip
    print(f"{'first streamed token p50, front - direct':<44}{t50['front'] - t50['direct']:7.2f}   "
          f"ms ({t50['front']:.2f} ms vs {t50['direct']:.2f} ms; target within 5 ms)")  # fmt: skip
    print(f"{'tokens/s through the front (lab CPU, 1 thread)':<44}{tokens / stream_s:7.1f}   (a figure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
