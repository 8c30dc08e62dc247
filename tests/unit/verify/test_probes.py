"""Benchmark probes: the standalone programs (run for real here) and ``interpret``.

This machine has no GPU and no PyTorch, so the GPU probes are run to prove that the concatenated
programs are valid Python that report "unavailable" (exit 3) honestly. ``inference`` runs against a
test double of an OpenAI-compatible server (``FakeCompletionServer``, http.server in a thread), and
``allreduce --nccl-tests`` against a test double of the ``all_reduce_perf`` binary that prints a
recorded report (tests/fixtures/probes).
"""

import importlib.util
import json
import math
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import FIXTURES

from gpufleet.verify import probes
from gpufleet.verify.probes import _common, allreduce, gemm, inference

HAS_TORCH = importlib.util.find_spec("torch") is not None
GPU_PROBES = [name for name, meta in probes.PROBES.items() if meta["needs_gpu"]]


def run_program(name, *args, tmp_path, env=None, via_c=False, timeout=60):
    text = probes.script_text(name)
    if via_c:
        argv = [sys.executable, "-c", text, *args]
    else:
        path = tmp_path / f"probe-{name}.py"
        path.write_text(text)
        argv = [sys.executable, str(path), *args]
    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full_env.update(env or {})
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=tmp_path)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    data = json.loads(lines[-1]) if lines else None
    return proc, data


# ---- the programs -------------------------------------------------------------------------------


def test_registry_shape():
    keys = {"metric", "unit", "tier", "seconds", "burnin_seconds", "script", "needs_gpu", "needs_torch"}
    for name, meta in probes.PROBES.items():
        assert set(meta) >= {*keys, "description"}
        assert meta["tier"] == ("burnin" if name == "sustained" else "full")
        assert (probes.HERE / meta["script"]).is_file()
    assert set(probes.BURNIN_ARGS) <= set(probes.PROBES)
    assert (
        probes.PROBES["inference"]["needs_gpu"] is False
        and probes.PROBES["inference"]["needs_torch"] is False
    )


@pytest.mark.parametrize("name", sorted(probes.PROBES))
def test_script_text_is_one_standalone_program(name):
    text = probes.script_text(name)
    compile(text, f"<probe {name}>", "exec")
    assert text.count("from __future__ import") == 1
    assert "gpufleet-probe: import-begin" not in text
    assert not re.search(r"^\s*(from|import)\s+(gpufleet|ansible_collections)\b", text, re.M)
    assert text.count("def emit_result(") == 1
    assert text.rstrip().endswith("sys.exit(run_probe(NAME, main))")


def test_allreduce_carries_the_module_utils_parser_not_a_copy():
    text = probes.script_text("allreduce")
    assert text.count("def parse_nccl_tests(") == 1
    assert text.count("def bus_bandwidth(") == 1
    assert "# ---- plugins/module_utils/probe_output.py ----" in text
    own = (probes.HERE / "allreduce.py").read_text()
    assert "def parse_nccl_tests(" not in own and "def bus_bandwidth(" not in own
    assert "def parse_nccl_tests(" not in probes.script_text("gemm")


def test_unknown_probe():
    with pytest.raises(KeyError):
        probes.script_text("nope")


@pytest.mark.skipif(HAS_TORCH, reason="torch is importable here; the no-torch path cannot be shown")
@pytest.mark.parametrize("name", GPU_PROBES)
def test_gpu_probe_without_torch_is_unavailable(name, tmp_path):
    proc, data = run_program(name, tmp_path=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert data == {
        "probe": name,
        "ok": False,
        "unavailable": True,
        "reason": data["reason"],
    }
    assert data["reason"].startswith("torch not importable: ModuleNotFoundError")
    result = probes.interpret(name, proc.returncode, proc.stdout, proc.stderr)
    assert result["status"] == "unavailable"
    assert result["value"] is None
    assert result["reason"].startswith("torch not importable")


@pytest.mark.skipif(HAS_TORCH, reason="torch is importable here")
def test_program_runs_as_python_c(tmp_path):
    proc, data = run_program("gemm", "--dtype", "float16", tmp_path=tmp_path, via_c=True)
    assert proc.returncode == 3
    assert data["unavailable"] is True


def test_bad_arguments_fail_with_json(tmp_path):
    proc, data = run_program("gemm", "--shapes", "1x2", tmp_path=tmp_path)
    assert proc.returncode == 2
    assert data["ok"] is False and "bad arguments" in data["error"]
    assert probes.interpret("gemm", proc.returncode, proc.stdout, proc.stderr)["status"] == "failed"


# ---- allreduce --nccl-tests against a test double of all_reduce_perf -----------------------------


def fake_all_reduce_perf(tmp_path, report, rc=0):
    """A test double of nccl-tests' binary: records its argv, prints a recorded report."""
    script = tmp_path / "all_reduce_perf"
    script.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/argv"\ncat "{report}"\nexit {rc}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_allreduce_nccl_tests_mode_parses_the_recorded_report(tmp_path):
    binary = fake_all_reduce_perf(tmp_path, FIXTURES / "probes" / "all_reduce_perf-h100-2x8-wrong-layout.txt")
    proc, data = run_program("allreduce", "--nccl-tests", str(binary), "--gpus", "8", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "argv").read_text().split() == ["-b", "8", "-e", "8G", "-f", "2", "-g", "8"]
    assert data["ok"] is True
    assert data["metric"] == "allreduce_busbw_gbps" and data["unit"] == "GB/s"
    assert data["value"] == 338.82  # largest size, better of out-of-place / in-place
    assert data["avg_busbw_gbps"] == pytest.approx(70.742)
    assert data["nranks"] == 16
    assert data["params"]["mode"] == "nccl-tests"
    result = probes.interpret("allreduce", proc.returncode, proc.stdout, proc.stderr)
    assert result["status"] == "ok" and result["value"] == 338.82


def test_allreduce_nccl_tests_mode_fails_on_wrong_results(tmp_path):
    recorded = (FIXTURES / "probes" / "all_reduce_perf-h100-2x8-wrong-layout.txt").read_text()
    broken = tmp_path / "broken.txt"
    broken.write_text(recorded.replace("# Out of bounds values : 0 OK", "# Out of bounds values : 3 FAILED"))
    binary = fake_all_reduce_perf(tmp_path, broken)
    proc, data = run_program("allreduce", "--nccl-tests", str(binary), "--gpus", "8", tmp_path=tmp_path)
    assert proc.returncode == 1
    assert data["ok"] is False and "wrong results" in data["error"]


def test_allreduce_nccl_tests_mode_fails_on_binary_exit(tmp_path):
    binary = fake_all_reduce_perf(
        tmp_path, FIXTURES / "probes" / "all_reduce_perf-h100-2x8-wrong-layout.txt", rc=2
    )
    proc, data = run_program("allreduce", "--nccl-tests", str(binary), "--gpus", "8", tmp_path=tmp_path)
    assert proc.returncode == 1
    assert "exited 2" in data["error"]


def test_allreduce_one_gpu_is_unavailable(tmp_path):
    binary = fake_all_reduce_perf(tmp_path, FIXTURES / "probes" / "all_reduce_perf-h100-2x8-wrong-layout.txt")
    proc, data = run_program("allreduce", "--nccl-tests", str(binary), "--gpus", "1", tmp_path=tmp_path)
    assert proc.returncode == 3
    assert data["unavailable"] is True and "at least 2 GPUs" in data["reason"]


def test_allreduce_missing_binary_is_unavailable(tmp_path):
    proc, data = run_program(
        "allreduce", "--nccl-tests", str(tmp_path / "nope"), "--gpus", "8", tmp_path=tmp_path
    )
    assert proc.returncode == 3
    assert "not found" in data["reason"]


# ---- inference against a test double of an OpenAI-compatible server ------------------------------

COMPLETION_TOKENS = 64
DELAY_S = 0.05


class FakeCompletionServer:
    """Test double: /v1/models and /v1/completions answering a canned OpenAI-style completion."""

    def __init__(self, status=200, body=None):
        self.requests = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, payload):
                raw = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                double.requests.append(("GET", self.path, dict(self.headers), None))
                self._send(200, {"object": "list", "data": [{"id": "tiny-double", "object": "model"}]})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                req = json.loads(self.rfile.read(length))
                double.requests.append(("POST", self.path, dict(self.headers), req))
                time.sleep(DELAY_S)
                payload = body if body is not None else {
                    "id": "cmpl-test-double",
                    "object": "text_completion",
                    "model": req.get("model"),
                    "choices": [{"index": 0, "text": " lorem" * 8, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 12, "completion_tokens": COMPLETION_TOKENS, "total_tokens": 76},  # noqa: E501
                }  # fmt: skip
                self._send(status, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_inference_tokens_per_second(tmp_path):
    with FakeCompletionServer() as server:
        proc, data = run_program(
            "inference",
            "--url", server.url, "--model", "tiny", "--concurrency", "4", "--repeats", "3", "--warmup", "1",
            "--max-tokens", "64", "--api-key-env", "TEST_DOUBLE_KEY",
            tmp_path=tmp_path, env={"TEST_DOUBLE_KEY": "s3cret-test-key"},
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert data["ok"] is True
    assert data["metric"] == "inference_tokens_per_s" and data["unit"] == "tokens/s"
    # warm-up + 3 rounds of 4 concurrent requests, all authenticated, all to /v1/completions
    posts = [r for r in server.requests if r[0] == "POST"]
    assert len(posts) == 1 + 3 * 4
    assert {r[1] for r in posts} == {"/v1/completions"}
    assert all(r[2].get("Authorization") == "Bearer s3cret-test-key" for r in posts)
    assert posts[0][3] == {
        "model": "tiny",
        "prompt": inference.DEFAULT_PROMPT,
        "max_tokens": 64,
        "temperature": 0,
    }
    assert "s3cret" not in proc.stdout + proc.stderr
    # the arithmetic: per round, tokens = 4 x 64 over the round's wall time; value = median
    assert len(data["rounds"]) == 3
    for rnd in data["rounds"]:
        assert rnd["completion_tokens"] == 4 * COMPLETION_TOKENS
        assert rnd["wall_s"] >= DELAY_S
        assert rnd["tokens_per_s"] == pytest.approx(rnd["completion_tokens"] / rnd["wall_s"])
    assert data["value"] == pytest.approx(sorted(r["tokens_per_s"] for r in data["rounds"])[1])
    assert data["value"] <= 4 * COMPLETION_TOKENS / DELAY_S
    assert data["params"]["authenticated"] is True
    result = probes.interpret("inference", proc.returncode, proc.stdout, proc.stderr)
    assert result["status"] == "ok" and result["value"] == data["value"]


def test_inference_warmup_and_rounds_stay_inside_the_budget(tmp_path):
    """Issue 18 class 7: warm-up counts against --seconds; once it is spent, one round is measured and
    no further request starts (the run ends within the budget plus one round)."""
    with FakeCompletionServer() as server:
        proc, data = run_program(
            "inference", "--url", server.url, "--model", "tiny", "--concurrency", "2", "--repeats", "5",
            "--warmup", "3", "--seconds", "0.01", tmp_path=tmp_path,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    posts = [r for r in server.requests if r[0] == "POST"]
    assert data["params"]["warmup"] == 1  # the budget ended after the first warm-up request
    assert len(data["rounds"]) == 1 and len(posts) == 1 + 2


def test_inference_model_from_v1_models(tmp_path):
    with FakeCompletionServer() as server:
        proc, data = run_program(
            "inference",
            "--url",
            server.url + "/v1",
            "--concurrency",
            "1",
            "--repeats",
            "1",
            tmp_path=tmp_path,
        )
    assert proc.returncode == 0, proc.stderr
    assert data["params"]["model"] == "tiny-double"
    assert server.requests[0][:2] == ("GET", "/v1/models")


def test_inference_closed_port_fails(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc, data = run_program(
        "inference", "--url", f"http://127.0.0.1:{port}", "--model", "m", tmp_path=tmp_path
    )
    assert proc.returncode == 1
    assert data["ok"] is False and "unreachable" in data["error"]
    assert "unavailable" not in data
    result = probes.interpret("inference", proc.returncode, proc.stdout, proc.stderr)
    assert result["status"] == "failed"
    assert result["reason"].startswith("probe failed (exit 1): endpoint unreachable")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, {"error": "boom"}, "HTTP 500"),
        (200, {"choices": [{"text": "x"}]}, "no usage.completion_tokens"),
        (200, {"usage": {"completion_tokens": "many"}}, "no usage.completion_tokens"),
    ],
)
def test_inference_bad_answers_fail(tmp_path, status, body, expected):
    with FakeCompletionServer(status=status, body=body) as server:
        proc, data = run_program(
            "inference", "--url", server.url, "--model", "m", "--warmup", "0", tmp_path=tmp_path
        )
    assert proc.returncode == 1
    assert expected in data["error"]


def test_inference_missing_key_variable_fails(tmp_path):
    proc, data = run_program(
        "inference", "--url", "http://127.0.0.1:9", "--api-key-env", "GPUFLEET_NO_SUCH_VAR", tmp_path=tmp_path
    )
    assert proc.returncode == 1
    assert "GPUFLEET_NO_SUCH_VAR" in data["error"]


# ---- interpret --------------------------------------------------------------------------------

OK_LINE = json.dumps({"probe": "gemm", "ok": True, "metric": "bf16_tflops", "unit": "TFLOPS", "value": 791.5})


def test_interpret_ok_with_library_noise_before_the_json():
    stdout = "host:1:1 [0] NCCL INFO Bootstrap : Using eth0\n" + OK_LINE + "\n"
    result = probes.interpret("gemm", 0, stdout, "warning: something\n")
    assert result["status"] == "ok"
    assert result["value"] == 791.5
    assert result["metric"] == "bf16_tflops" and result["unit"] == "TFLOPS"
    assert result["data"]["value"] == 791.5
    assert result["stderr_tail"] == "warning: something\n"


def test_interpret_crash():
    stderr = (
        "Traceback (most recent call last):\n"
        '  File "x", line 1\n'
        "RuntimeError: CUDA error: an illegal memory access\n"
    )
    result = probes.interpret("gemm", 1, "", stderr)
    assert result["status"] == "failed"
    assert result["value"] is None
    assert result["reason"].startswith("probe failed (exit 1)")
    assert "illegal memory access" in result["stderr_tail"]
    assert result["metric"] == "bf16_tflops"


def test_interpret_crash_with_error_json():
    stdout = json.dumps({"probe": "gemm", "ok": False, "error": "RuntimeError: CUDA error: ECC"}) + "\n"
    result = probes.interpret("gemm", 1, stdout, "Traceback ...\n")
    assert result["status"] == "failed"
    assert result["reason"] == "probe failed (exit 1): RuntimeError: CUDA error: ECC"


@pytest.mark.parametrize(("rc", "timed_out"), [(124, False), (137, False), (-9, True)])
def test_interpret_timeout(rc, timed_out):
    result = probes.interpret(
        "allreduce", rc, "", "x" * 5000 + "NCCL hang", timed_out=timed_out, timeout_s=300
    )
    assert result["status"] == "failed"
    assert result["reason"].startswith("probe timed out after 300 s")
    assert len(result["stderr_tail"]) == probes.STDERR_TAIL
    assert result["stderr_tail"].endswith("NCCL hang")


def test_interpret_timeout_even_with_a_result_line():
    result = probes.interpret("gemm", 124, OK_LINE, "", timeout_s=240)
    assert result["status"] == "failed" and result["value"] is None


def test_interpret_unavailable():
    stdout = json.dumps(
        {"probe": "h2d", "ok": False, "unavailable": True, "reason": "no CUDA device visible to torch"}
    )
    result = probes.interpret("h2d", 3, stdout, "")
    assert result["status"] == "unavailable"
    assert result["reason"] == "no CUDA device visible to torch"
    assert result["value"] is None


def test_interpret_exit_3_without_json_is_a_failure():
    result = probes.interpret("h2d", 3, "", "")
    assert result["status"] == "failed"
    assert result["reason"] == "probe failed (exit 3): no JSON result on stdout"


@pytest.mark.parametrize(
    "stdout",
    [
        "garbage\n",
        "{not json}\n",
        '{"ok": true, "value": 3.0}\n',  # no "probe" key: not a probe result
        "[1, 2, 3]\n",
    ],
)
def test_interpret_garbage_stdout(stdout):
    result = probes.interpret("membw", 0, stdout, "")
    assert result["status"] == "failed"
    assert result["reason"] == "probe failed (exit 0): no valid JSON result on stdout"


@pytest.mark.parametrize(
    "value",
    [None, "NaN", "Infinity", "-Infinity", '"791"', "true"],
)
def test_interpret_ok_without_a_finite_number(value):
    stdout = '{"probe": "gemm", "ok": true, "metric": "bf16_tflops", "unit": "TFLOPS"'
    stdout += "}" if value is None else f', "value": {value}}}'
    result = probes.interpret("gemm", 0, stdout, "")
    assert result["status"] == "failed"
    assert result["value"] is None
    assert result["reason"].startswith("probe failed (exit 0): no finite value")


def test_interpret_ok_false_with_exit_0():
    stdout = json.dumps({"probe": "gemm", "ok": False, "error": "nothing measured"})
    result = probes.interpret("gemm", 0, stdout, "")
    assert result["status"] == "failed"


def test_interpret_bytes():
    result = probes.interpret("gemm", 0, OK_LINE.encode(), b"\xff tail")
    assert result["status"] == "ok"
    assert result["stderr_tail"].endswith("tail")


# ---- helpers ------------------------------------------------------------------------------------


def test_common_helpers():
    assert _common.median([3, 1, 2]) == 2
    assert _common.median([4, 1, 2, 3]) == 2.5
    with pytest.raises(ValueError):
        _common.median([])
    assert _common.parse_bytes("8") == 8
    assert _common.parse_bytes("256M") == 256 << 20
    assert _common.parse_bytes("2G") == 2 << 30
    assert _common.parse_bytes("8GB") == 8 << 30
    assert not _common.finite(math.nan) and not _common.finite(True) and _common.finite(1)


def test_emit_result_never_succeeds_without_a_number(capsys):
    assert _common.emit_result("gemm", "bf16_tflops", "TFLOPS", math.nan) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and "no finite bf16_tflops" in data["error"]
    assert _common.emit_result("gemm", "bf16_tflops", "TFLOPS", 1.5, extra=[math.inf]) == 0
    line = capsys.readouterr().out
    assert json.loads(line)["extra"] == [None]  # strict JSON: no Infinity on the wire


def test_gemm_shapes():
    assert gemm.parse_shapes("8192, 4096x8192x2048") == [(8192, 8192, 8192), (4096, 8192, 2048)]
    shapes = gemm.thorough_shapes()
    assert shapes[: len(gemm.parse_shapes(gemm.DEFAULT_SHAPES))] == gemm.parse_shapes(gemm.DEFAULT_SHAPES)
    assert len(shapes) == len(set(shapes)) > 50


def test_allreduce_size_sweep():
    assert allreduce.size_sweep(8 << 20, 2 << 30, 4) == [
        8 << 20, 32 << 20, 128 << 20, 512 << 20, 2 << 30,
    ]  # fmt: skip


def test_inference_endpoint():
    assert inference.endpoint("http://h:8000", "/v1/completions") == "http://h:8000/v1/completions"
    assert inference.endpoint("http://h:8000/v1/", "/v1/completions") == "http://h:8000/v1/completions"
    assert inference.endpoint("https://u:p@h/x/v1/completions", "/v1/models") == "https://h/x/v1/models"


@pytest.mark.parametrize("tier", ["full", "burnin"])
@pytest.mark.parametrize("gpus", [1, 4, 8])
def test_timeouts_derive_from_the_requested_budget(tier, gpus):
    """Issue 18 class 6: a healthy run ends within budget + start-up, so it cannot time out."""
    for name in probes.PROBES:
        if tier == "full" and probes.PROBES[name]["seconds"] is None:
            continue
        seconds = probes.seconds_for(name, tier, 1800)
        budget, timeout = probes.timeout_for(name, seconds, gpus)
        assert budget == seconds
        assert timeout >= seconds + probes.STARTUP_MARGIN_S + probes.PER_GPU_MARGIN_S * gpus
    assert probes.seconds_for("sustained", "burnin", 1800) == 1800.0  # the requested duration
    budget, timeout = probes.timeout_for("sustained", 1800.0, 8)
    assert timeout - budget >= probes.STARTUP_MARGIN_S


def test_an_explicit_limit_shrinks_the_budget_to_fit():
    budget, timeout = probes.timeout_for("gemm", 200.0, 8, limit=300)
    assert timeout == 300 and budget == 300 - probes.margin_for("gemm", 8)
    assert probes.timeout_for("gemm", 60.0, 1, limit=5) == (1.0, 5)  # never below 1 s
    with pytest.raises(ValueError, match="burnin only"):
        probes.seconds_for("sustained", "full")
