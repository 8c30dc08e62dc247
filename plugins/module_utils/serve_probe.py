# Copyright: gpufleet developers
# Apache-2.0
"""Is a served model ready? The checks a rollout gates on and ``gpufleet verify`` repeats.

An engine's own health route is not enough (vLLM's ``/health`` stays 200 after a GPU fault; facts.md,
"Serving"), so readiness is, in order:

1. ``health``: the engine's health route answers 200 (engines that have one);
2. ``models``: ``/v1/models`` lists the model by its served name;
3. ``generate``: a one-token completion comes back (with usage);
4. ``golden``: a golden prompt with greedy decoding (temperature 0, a fixed seed) gives the recorded
   answer - the same weights on a sound engine answer the same; another answer means other weights, a
   broken engine or a changed tokenizer.

Each check is ``{"name", "ok", "detail"}``; the first failure ends the round (later checks would only
repeat it). Host code: stdlib only, Python >= 3.8.
"""

from __future__ import annotations

import json
import time
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

SEED = 1234


class NotReady(Exception):
    pass


def _call(base, path, headers, timeout, body=None, context=None):
    data = None if body is None else json.dumps(body).encode()
    req = Request(base.rstrip("/") + path, data=data, method="GET" if body is None else "POST")  # noqa: S310
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urlopen(req, timeout=timeout, context=context) as resp:  # noqa: S310 - an http(s) URL the role gives
            raw = resp.read()
            status = resp.status
    except HTTPError as exc:
        raise NotReady(f"{path}: HTTP {exc.code} {exc.reason}") from None
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotReady(f"{path}: no answer ({reason})") from None
    if status != 200:
        raise NotReady(f"{path}: HTTP {status}")
    if body is None and not raw.strip().startswith((b"{", b"[")):
        return {}
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise NotReady(f"{path}: the answer is not JSON") from None


def completion(base, model, prompt, max_tokens, headers=None, timeout=30, context=None):
    """Greedy completion of ``prompt``: (text, usage)."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "seed": SEED}
    out = _call(base, "/v1/completions", headers, timeout, body, context)
    try:
        text = out["choices"][0]["text"]
    except (KeyError, IndexError, TypeError):
        raise NotReady("/v1/completions: the answer has no choices[0].text") from None
    return text, out.get("usage") or {}


def check(
    base, model, health_path=None, golden=None, headers=None, timeout=30, context=None, list_models=True
):
    """One round of the checks (module docstring); a list of ``{"name", "ok", "detail"}``.

    ``golden``: ``{"prompt", "max_tokens", "expect"}``; ``expect`` None records instead of comparing
    (the answer is in the check's ``answer``). ``headers`` go with every request (an API key, when
    ``base`` is the front); ``context``: the SSL context of an https ``base``. ``list_models`` False
    leaves out the ``models`` check: through the front, a request without a model (``GET /v1/models``)
    goes to the first model's engine, which lists only its own model.
    """
    checks = []

    def run(name, fn):
        try:
            detail, extra = fn()
        except NotReady as exc:
            checks.append({"name": name, "ok": False, "detail": str(exc)})
            return False
        checks.append({"name": name, "ok": True, "detail": detail, **extra})
        return True

    def health():
        _call(base, health_path, headers, timeout, context=context)
        return f"{health_path}: 200", {}

    def models():
        out = _call(base, "/v1/models", headers, timeout, context=context)
        ids = [m.get("id") for m in (out.get("data") or []) if isinstance(m, dict)]
        if model not in ids:
            raise NotReady(f"/v1/models lists {ids or 'no model'}, not {model!r}")
        return f"/v1/models lists {model}", {}

    def generate():
        text, usage = completion(base, model, "Hello", 1, headers, timeout, context)
        tokens = usage.get("completion_tokens")
        if tokens is not None and tokens < 1:
            raise NotReady("/v1/completions: no token was generated")
        return f"one token generated ({text!r})", {}

    def golden_answer():
        prompt = golden["prompt"]
        max_tokens = int(golden.get("max_tokens") or 8)
        text, _usage = completion(base, model, prompt, max_tokens, headers, timeout, context)
        expect = golden.get("expect")
        if expect is None:
            return f"answer recorded: {text!r}", {"answer": text}
        if text != expect:
            raise NotReady(f"golden prompt {prompt!r}: answered {text!r}, the recorded answer is {expect!r}")
        return f"golden prompt answered as recorded ({text!r})", {"answer": text}

    steps = [("models", models), ("generate", generate)] if list_models else [("generate", generate)]
    if health_path:
        steps.insert(0, ("health", health))
    if golden is not None:
        steps.append(("golden", golden_answer))
    for name, fn in steps:
        if not run(name, fn):
            break
    return checks


# A prompt a model does not answer in a few tokens (greedy decoding may still stop at EOS early: the
# figure counts the tokens the engine says it generated, not the tokens asked for).
TOKENS_PROMPT = "Write a detailed history of the printing press, chapter by chapter."


def tokens_per_s(base, model, max_tokens, headers=None, timeout=30, context=None, clock=time.monotonic):
    """One greedy completion of up to ``max_tokens`` tokens, timed: ``{"max_tokens", "tokens",
    "wall_s", "tokens_per_s", "error"}``; ``tokens`` is the answer's ``usage.completion_tokens``,
    ``wall_s`` the request's wall time (sent to answer read, so it includes the prompt's prefill).
    A figure, not a verdict: the controller compares it with a baseline when the site has one."""
    out = {"max_tokens": max_tokens, "tokens": None, "wall_s": None, "tokens_per_s": None, "error": None}
    started = clock()
    try:
        _text, usage = completion(base, model, TOKENS_PROMPT, max_tokens, headers, timeout, context)
    except NotReady as exc:
        out["error"] = str(exc)
        return out
    wall = clock() - started
    tokens = usage.get("completion_tokens")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        out["error"] = f"/v1/completions: usage.completion_tokens is {tokens!r}, not a count of tokens"
        return out
    out.update(
        tokens=tokens, wall_s=round(wall, 4), tokens_per_s=round(tokens / wall, 3) if wall > 0 else None
    )
    if out["tokens_per_s"] is None:
        out["error"] = "the request took no measurable time"
    return out


# systemd ActiveState values of a unit that runs, or is on its way to (Restart= brings it back).
RUNNING_STATES = ("active", "activating", "reloading")


def unit_stopped(unit, active_state):
    """Why ``unit`` does not run, from its systemd ActiveState; None while it runs or is restarting."""
    if active_state in RUNNING_STATES:
        return None
    return (
        f"{unit} is {active_state}, not running: it was stopped or never started again (a host restarted "
        f"during the rollout starts only the served version at boot); journalctl -u {unit} says more"
    )


def wait_ready(base, model, wait, interval=2.0, clock=time.monotonic, sleep=time.sleep, alive=None, **kw):
    """Repeat ``check`` until every check passes or ``wait`` seconds are up.

    Returns ``(ready, checks of the last round, seconds waited, rounds)``. A golden answer that differs
    from the recorded one is final: waiting longer does not change the weights. So is an engine that no
    longer runs: ``alive``, when given, is called before each round and returns None while the engine
    runs (or is being restarted) or why it does not (its unit stopped: the host restarted during a
    rollout, someone stopped it); waiting longer would not start it.
    """
    start = clock()
    rounds = 0
    while True:
        rounds += 1
        dead = alive() if alive is not None else None
        if dead:
            return False, [{"name": "running", "ok": False, "detail": dead}], clock() - start, rounds
        checks = check(base, model, **kw)
        if all(c["ok"] for c in checks):
            return True, checks, clock() - start, rounds
        if checks[-1]["name"] == "golden" or clock() - start + interval > wait:
            return False, checks, clock() - start, rounds
        sleep(interval)
