# Copyright: gpufleet developers
# Apache-2.0
"""Serving checks: the models the llm_serve role serves on a host are running, ready and answer as
recorded - on 127.0.0.1 and through the front with the node's probe key -, the front refuses a
request without a key, audits both, and each model's tokens/s through the front is reported.

``serving`` is what the host read of itself (module ``serve_facts``, host code
``module_utils/serve_state.py``): each model's recorded state, its current version's readiness on
127.0.0.1 and through the front (``module_utils/serve_probe.check``), the front's answers to a
keyless request and to one with the probe key, with the audit line of each, and a timed greedy
completion per model. The probe key itself never leaves the host. A host without a recorded state
serves nothing: every serving check skips saying so, never a pass. Controller code.
"""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.module_utils.serve_state import (  # noqa: F401 (re-exported)
    units,
)
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import baselines, serving_engine
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks.core import (
    FAIL,
    MONITOR,
    PASS,
    POLICY,
    REPROVISION,
    SKIP,
    WARN,
    gpu_list,
    plural,
    result,
)
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.serving_front import PROBE_KEY_NAME

NOT_SERVING = "no model served on this host"
SERVE_PLAYBOOK = "re-run playbooks/serve.yml"
KEYLESS_STATUS = 401  # the front's answer to a request without a key (roles/llm_serve/files/front.js)
ADDRESS_REFUSED = 403  # nginx's deny (llm_serve_allow), before front.js looks at the key
PROBE_KEY_FILE = "/etc/gpufleet/front/probe.key"  # the role's (roles/llm_serve/vars/main.yml)
TOKENS_UNIT = baselines.INFERENCE_UNIT


def _preamble(check, serving, error):
    """The result for a host whose serving could not be read, or that serves nothing; else None."""
    if error or not isinstance(serving, dict):
        return result(
            check,
            FAIL,
            f"serving state could not be read: {error or 'no data'}",
            source=POLICY,
            action=MONITOR,
        )
    if not serving.get("configured"):
        where = serving.get("state_dir") or "/var/lib/gpufleet/serve"
        return result(check, SKIP, f"{NOT_SERVING} (no {where}/*.json)")
    return None


def _models(serving):
    return sorted((serving.get("models") or {}).items())


def _no_version(name, model):
    """Why ``model``'s state names no version to check, or None."""
    if model.get("error"):
        return f"{name}: state unreadable: {model['error']}"
    if model.get("current") is None:
        return f"{name}: no current version in {model.get('state_file')}"
    if model.get("port") is None:
        return f"{name}: no port recorded for version {model['current']} in {model.get('state_file')}"
    return None


def serving_units(serving, states, error=None):
    """Each served model's current version runs (its unit ``gpufleet-serve-NAME-VERSION.service``)
    and so does the front (``gpufleet-front.service``), per ``systemctl is-active`` (``states``)."""
    check = "serving_units"
    skip = _preamble(check, serving, error)
    if skip:
        return skip
    states = states or {}
    problems, wanted = [], []
    for name, model in _models(serving):
        if model.get("error") or model.get("current") is None:
            problems.append(_no_version(name, model))
            continue
        try:
            wanted.append(serving_engine.unit_name(name, model["current"]))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    wanted.append(serving_engine.FRONT_UNIT)
    measured = {unit: states.get(unit) or "unknown" for unit in wanted}
    problems += [
        f"{unit} is {state} (systemctl is-active)" for unit, state in measured.items() if state != "active"
    ]
    common = {"measured": measured, "expected": "active", "source": POLICY}
    if problems:
        return result(
            check,
            FAIL,
            "; ".join(problems) + f"; journalctl -u UNIT says why; {SERVE_PLAYBOOK}",
            action=REPROVISION,
            details=[{"unit": u, "state": s} for u, s in measured.items()],
            **common,
        )
    return result(check, PASS, f"{plural(len(wanted), 'unit')} active: {', '.join(wanted)}", **common)


def serving_ready(serving, error=None):
    """Each model's current version is ready on 127.0.0.1:PORT and gives its recorded golden answer.

    Not ready (no answer, the model not listed, no token, another golden answer) fails REPROVISION
    with the check that failed (a golden answer differs: both answers). Ready, but no golden answer
    recorded for the version (or its file unreadable): warn MONITOR - readiness without the check that
    catches other weights or a broken engine.
    """
    check = "serving_ready"
    skip = _preamble(check, serving, error)
    if skip:
        return skip
    failing, warning, passing, details = [], [], [], []
    for name, model in _models(serving):
        why = _no_version(name, model)
        label = f"{name} {model.get('current')}"
        checks = model.get("ready")
        details.append(
            {"model": name, "version": model.get("current"), "port": model.get("port"), "checks": checks}
        )
        if why:
            failing.append(why)
            continue
        bad = [c for c in checks or () if not c.get("ok")]
        if not checks or bad:
            first = bad[0] if bad else {"name": "ready", "detail": "no readiness check ran"}
            failing.append(
                f"{label} on 127.0.0.1:{model['port']} is not ready: {first['name']}: {first['detail']} "
                f"(journalctl -u {serving_engine.unit_name(name, model['current'])})"
            )
        elif model.get("golden_error"):
            warning.append(f"{label}: recorded golden answer unreadable: {model['golden_error']}")
        elif model.get("golden") is None:
            warning.append(
                f"{label}: no golden answer recorded ({model.get('golden_file')}): ready, but its answers "
                "were not compared"
            )
        else:
            passing.append(label)
    common = {"source": POLICY, "details": details}
    if failing:
        return result(
            check, FAIL, "; ".join(failing + warning) + f"; {SERVE_PLAYBOOK}", action=REPROVISION, **common
        )
    if warning:
        return result(
            check, WARN, "; ".join(warning) + f"; {SERVE_PLAYBOOK} records it", action=MONITOR, **common
        )
    return result(
        check, PASS, f"ready and answering as recorded: {', '.join(passing)}", measured=len(passing), **common
    )


def serving_front_auth(serving, error=None):
    """The front refuses a request without a key with 401, and audits it: the audit log has a line with
    the answer's ``X-Request-Id`` as ``request_id``, status 401 and no key name.

    Answered without a key (any status below 400), no answer, no request id or no audit line: fail
    REPROVISION. 403 is nginx refusing the address (``llm_serve_allow`` leaves 127.0.0.1 out) before the
    key is looked at: a skip saying so, since the key check was not exercised.
    """
    check = "serving_front_auth"
    skip = _preamble(check, serving, error)
    if skip:
        return skip
    front = serving.get("front") or {}
    refusal = front.get("refusal") or {}
    status, request_id, line = refusal.get("status"), refusal.get("request_id"), refusal.get("audit")
    url = refusal.get("url") or front.get("url")
    common = {"measured": status, "expected": KEYLESS_STATUS, "source": POLICY, "details": [{"front": front}]}

    def fail(summary):
        return result(check, FAIL, f"{summary}; {SERVE_PLAYBOOK}", action=REPROVISION, **common)

    if front.get("error"):
        return fail(f"the front's configuration: {front['error']}")
    if status is None:
        return fail(f"the front did not answer: {refusal.get('error') or 'no request was sent'}")
    if status < 400:
        return fail(
            f"the front answered GET {url} without an API key with HTTP {status}: it must refuse it (401)"
        )
    if status == ADDRESS_REFUSED:
        return result(
            check,
            SKIP,
            f"the front refuses 127.0.0.1 by address (HTTP 403, llm_serve_allow): the key check cannot be "
            f"exercised from the host ({url})",
        )
    if status != KEYLESS_STATUS:
        return fail(f"the front answered GET {url} without an API key with HTTP {status}, not 401")
    if not request_id:
        return fail(f"the front's 401 from {url} carries no X-Request-Id header")
    log = refusal.get("audit_log") or front.get("audit_log")
    if not log:
        return fail(f"{front.get('conf')} names no access_log in the gpufleet_audit format")
    if line is None:
        why = f" ({refusal['error']})" if refusal.get("error") else ""
        return fail(f"no audit line with request_id {request_id} in {log}{why}")
    if line.get("status") != KEYLESS_STATUS or line.get("key") != "-":
        return fail(
            f"the audit line of request {request_id} in {log} says status {line.get('status')}, key "
            f"{line.get('key')!r}; expected 401 and no key ('-')"
        )
    return result(
        check,
        PASS,
        f"GET {url} without a key refused with 401; audited in {log} (request_id {request_id})",
        **common,
    )


def _first_bad(checks):
    bad = [c for c in checks or () if not c.get("ok")]
    if bad:
        return bad[0]
    return None if checks else {"name": "ready", "detail": "no readiness check ran"}


def serving_front_ready(serving, error=None):
    """Through the front, with the node's probe key (``gpufleet-probe``): ``GET /v1/models`` answers
    200 and its audit line names the key ``gpufleet-probe`` (never the key itself), and each model's
    current version generates a token and gives its recorded golden answer.

    No probe key file (or unreadable), the key refused (401: its digest is not in the keys file),
    another status, a model not ready through the front, no audit line or a wrong one: fail
    REPROVISION - re-running the role makes the key and registers it. 403 to both the keyless and the
    keyed request is nginx refusing 127.0.0.1 by address (``llm_serve_allow``): a skip saying so.
    """
    check = "serving_front_ready"
    skip = _preamble(check, serving, error)
    if skip:
        return skip
    front = serving.get("front") or {}
    key_file = front.get("probe_key") or PROBE_KEY_FILE
    probe = front.get("probe") or {}
    status, request_id, line = probe.get("status"), probe.get("request_id"), probe.get("audit")
    url = probe.get("url") or front.get("url")
    details = [
        {"model": n, "version": m.get("current"), "checks": m.get("front_ready")} for n, m in _models(serving)
    ]
    common = {"measured": status, "expected": 200, "source": POLICY, "details": [{"front": front}, *details]}

    def fail(summary, action=REPROVISION):
        return result(check, FAIL, f"{summary}; {SERVE_PLAYBOOK}", action=action, **common)

    if front.get("error"):
        return fail(f"the front's configuration: {front['error']}")
    if front.get("probe_key_error"):
        return fail(
            f"no probe key to ask the front with: {front['probe_key_error']} (the llm_serve role makes "
            f"{key_file}, root-only, and registers it as {PROBE_KEY_NAME}; serve_facts reads it as root)"
        )
    if status is None:
        return fail(f"the front did not answer the probe key: {probe.get('error') or 'no request was sent'}")
    if status == KEYLESS_STATUS:
        return fail(
            f"the front refused the probe key of {key_file} with 401: the keys file has no digest of it "
            f"(as {PROBE_KEY_NAME}), so the front was not reached with a key"
        )
    if status == ADDRESS_REFUSED and (front.get("refusal") or {}).get("status") == ADDRESS_REFUSED:
        return result(
            check,
            SKIP,
            f"the front refuses 127.0.0.1 by address (HTTP 403, llm_serve_allow): it cannot be asked "
            f"with the probe key from the host ({url})",
        )
    if status != 200:
        return fail(f"the front answered GET {url} with the probe key ({PROBE_KEY_NAME}) with HTTP {status}")
    problems, passing = [], []
    for name, model in _models(serving):
        why = _no_version(name, model)
        if why:
            problems.append(why)
            continue
        label = f"{name} {model['current']}"
        first = _first_bad(model.get("front_ready"))
        if first:
            problems.append(
                f"{label} is not ready through the front ({front.get('url')}, key {PROBE_KEY_NAME}): "
                f"{first['name']}: {first['detail']}"
            )
        else:
            passing.append(label)
    log = probe.get("audit_log") or front.get("audit_log")
    if not request_id:
        problems.append(f"the front's answer to the probe key from {url} carries no X-Request-Id header")
    elif not log:
        problems.append(f"{front.get('conf')} names no access_log in the gpufleet_audit format")
    elif line is None:
        why = f" ({probe['error']})" if probe.get("error") else ""
        problems.append(f"no audit line with request_id {request_id} (the probe key's request) in {log}{why}")
    elif probe.get("audit_has_key"):
        problems.append(f"the audit line of request {request_id} in {log} holds the probe key itself")
    elif line.get("key") != PROBE_KEY_NAME or line.get("status") != 200:
        problems.append(
            f"the audit line of request {request_id} in {log} says key {line.get('key')!r}, status "
            f"{line.get('status')}; expected {PROBE_KEY_NAME!r} and 200"
        )
    if problems:
        return fail("; ".join(problems))
    return result(
        check,
        PASS,
        f"ready through the front at {front.get('url')} with the probe key: {', '.join(passing)}; "
        f"audited as {PROBE_KEY_NAME} in {log} (request_id {request_id})",
        **common,
    )


def _sku(gpus):
    names = {g.get("name") for g in gpu_list(gpus)}
    return baselines.sku_for(next(iter(names))) if len(names) == 1 else None


def serving_tokens(serving, gpus=None, inference_baselines=None, error=None):
    """Each served model's tokens/s through the front with the probe key: one greedy completion,
    ``usage.completion_tokens`` / the request's wall time (``serve_probe.tokens_per_s``).

    A figure: judged only against the site's row for the model on this host's GPU SKU
    (``gpufleet_inference_baselines``, ``baselines.judge_inference``); without one it is reported,
    not judged - a skip carrying the figure, never a pass (always so without GPUs). A version not
    ready through the front is not measured (``serving_front_ready`` fails and says why). A
    measurement that went wrong on a ready version fails MONITOR.
    """
    check = "serving_tokens"
    skip = _preamble(check, serving, error)
    if skip:
        return skip
    sku = _sku(gpus)
    order = (FAIL, WARN, PASS, SKIP)
    measured, problems, notes, judged, details = {}, [], [], [], []
    for name, model in _models(serving):
        label = f"{name} {model.get('current')}"
        tokens = model.get("tokens")
        details.append({"model": name, "version": model.get("current"), "tokens": tokens})
        if tokens is None:
            notes.append(f"{label} not measured (not ready through the front: serving_front_ready says why)")
            continue
        value = tokens.get("tokens_per_s")
        if tokens.get("error") or not isinstance(value, (int, float)):
            problems.append(f"{label}: tokens/s not measured through the front: {tokens.get('error')}")
            continue
        measured[label] = value
        verdict = baselines.judge_inference(name, sku, value, inference_baselines)
        judged.append(verdict["status"])
        figure = (
            f"{label}: {value:g} {TOKENS_UNIT} ({tokens.get('tokens')} tokens in {tokens.get('wall_s')} s)"
        )
        notes.append(figure if verdict["status"] == SKIP else f"{figure}: {verdict['reason']}")
        details[-1]["judged"] = verdict
    value = next(iter(measured.values())) if len(measured) == 1 else (measured or None)
    common = {"measured": value, "unit": TOKENS_UNIT, "details": details}
    if problems:
        return result(check, FAIL, "; ".join(problems + notes), action=MONITOR, source=POLICY, **common)
    status = min(judged, key=order.index) if judged else SKIP
    if status == SKIP:
        why = (
            f"not judged: no tokens/s baseline for these models on {sku or 'an unknown GPU SKU'} "
            "(gpufleet_inference_baselines)"
            if measured
            else "nothing measured"
        )
        return result(check, SKIP, f"{'; '.join(notes)}; {why}", **common)
    sources = sorted({d["judged"]["source"] for d in details if d.get("judged", {}).get("source")})
    return result(
        check, status, "; ".join(notes), action=MONITOR, source=", ".join(sources) or None, **common
    )
