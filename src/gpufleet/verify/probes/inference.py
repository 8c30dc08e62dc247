"""Completion throughput of an OpenAI-compatible endpoint (tokens/s), stdlib only.

POSTs ``/v1/completions`` requests (``--concurrency`` at once, one round per sample) after
``--warmup`` warm-up requests. A round's throughput is the sum of the responses'
``usage.completion_tokens`` divided by the round's wall time (first request sent to last response
read); the value is the median over ``--repeats`` rounds. The API key, if any, is read from the
environment variable named by ``--api-key-env`` and sent as a Bearer token; it is never printed.
An unreachable endpoint, an HTTP error or a response without ``usage.completion_tokens`` is a
failure (exit 1), not "unavailable": the endpoint was configured, so it should answer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

# gpufleet-probe: import-begin (removed by script_text; the concatenated program defines these)
from gpufleet.verify.probes._common import ProbeFailed, emit_result, finite, median, positive_int, run_probe

# gpufleet-probe: import-end

NAME = "inference"
DESCRIPTION = "Completion tokens/s of an OpenAI-compatible endpoint."
METRIC = "inference_tokens_per_s"
DEFAULT_PROMPT = "Write a detailed history of the printing press, chapter by chapter."


def endpoint(url, path):
    """``http://h:8000`` or ``http://h:8000/v1`` or the full path -> the URL of ``path``."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ProbeFailed(f"--url must be an http(s) URL, got {url!r}")
    base = parsed.path.rstrip("/")
    for suffix in ("/v1/completions", "/v1/chat/completions", "/v1/models", "/v1"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    netloc = parsed.netloc.rsplit("@", 1)[-1]  # never carry (or print) credentials in the URL
    return urllib.parse.urlunsplit((parsed.scheme, netloc, base + path, "", ""))


def _request(url, headers, body, timeout):
    data = None if body is None else json.dumps(body).encode()
    method = "GET" if body is None else "POST"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) checked above
            payload = resp.read()
    except urllib.error.HTTPError as exc:
        snippet = exc.read()[:300].decode("utf-8", "replace")
        raise ProbeFailed(f"HTTP {exc.code} from {url}: {snippet}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ProbeFailed(f"endpoint unreachable: {url}: {reason}") from None
    try:
        return json.loads(payload)
    except ValueError:
        raise ProbeFailed(f"response from {url} is not JSON: {payload[:200]!r}") from None


def completion_tokens(response):
    usage = response.get("usage") if isinstance(response, dict) else None
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if not finite(tokens) or tokens < 0:
        raise ProbeFailed(f"response has no usage.completion_tokens: {str(response)[:300]}")
    return int(tokens)


def run_round(url, headers, body, concurrency, timeout):
    """Send ``concurrency`` requests at once; (total completion tokens, wall seconds)."""
    results = [None] * concurrency

    def one(slot):
        try:
            results[slot] = completion_tokens(_request(url, headers, body, timeout))
        except BaseException as exc:
            results[slot] = exc

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return sum(results), wall


def main(argv=None):
    parser = argparse.ArgumentParser(prog="inference", description=DESCRIPTION)
    parser.add_argument("--url", required=True, help="base URL of the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", default=None, help="model name (default: the first of /v1/models)")
    parser.add_argument(
        "--api-key-env", default=None, help="name of the environment variable holding the API key"
    )
    parser.add_argument("--max-tokens", type=positive_int, default=256)
    parser.add_argument("--concurrency", type=positive_int, default=8)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--warmup", type=int, default=1, help="warm-up requests (default 1)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed rounds (default 3)")
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="no new round starts after this (default 60)"
    )
    parser.add_argument(
        "--request-timeout", type=float, default=120.0, help="seconds per request (default 120)"
    )
    parser.add_argument(
        "--ignore-eos", action="store_true", help="ask the server to ignore EOS (vLLM extension)"
    )
    args = parser.parse_args(argv)

    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise ProbeFailed(f"environment variable {args.api_key_env} (--api-key-env) is not set")
        headers["Authorization"] = f"Bearer {key}"
    model = args.model
    if not model:
        listed = _request(endpoint(args.url, "/v1/models"), headers, None, args.request_timeout)
        models = [m.get("id") for m in listed.get("data", []) if isinstance(m, dict) and m.get("id")]
        if not models:
            raise ProbeFailed("no --model given and /v1/models lists none")
        model = models[0]
    url = endpoint(args.url, "/v1/completions")
    body = {"model": model, "prompt": args.prompt, "max_tokens": args.max_tokens, "temperature": 0}
    if args.ignore_eos:
        body["ignore_eos"] = True

    # One budget for warm-up and rounds: the deadline is checked before every request (a warm-up that
    # spends it stops early; one round is still measured), and a request may not wait longer than what
    # is left (at least 1 s), so the run ends within --seconds plus one round's --request-timeout,
    # which is what gpufleet's time limit allows for.
    started = time.monotonic()

    def left():
        return args.seconds - (time.monotonic() - started)

    def timeout():
        return max(1.0, min(args.request_timeout, left()))

    warmed = 0
    for _ in range(max(0, args.warmup)):
        if left() <= 0:
            break
        completion_tokens(_request(url, headers, body, timeout()))
        warmed += 1
    rounds = []
    while len(rounds) < args.repeats:
        if left() <= 0 and rounds:  # at least one round is measured, even after a slow warm-up
            break
        tokens, wall = run_round(url, headers, body, args.concurrency, timeout())
        rounds.append(
            {"completion_tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall if wall > 0 else None}
        )
    samples = [r["tokens_per_s"] for r in rounds if finite(r["tokens_per_s"])]
    if not samples or not any(r["completion_tokens"] for r in rounds):
        raise ProbeFailed(f"no completion tokens measured: {rounds}")
    return emit_result(
        NAME,
        METRIC,
        "tokens/s",
        median(samples),
        samples=samples,
        rounds=rounds,
        params={
            "url": url,
            "model": model,
            "max_tokens": args.max_tokens,
            "concurrency": args.concurrency,
            "warmup": warmed,
            "repeats": args.repeats,
            "seconds": args.seconds,
            "authenticated": "Authorization" in headers,
            "method": "sum of usage.completion_tokens / wall time of a round of concurrent requests; median",
        },
    )


if __name__ == "__main__":
    sys.exit(run_probe(NAME, main))
