# Copyright: gpufleet developers
# Apache-2.0
"""Serving checks: the models the llm_serve role serves on a host are running, ready and answer as
recorded, and its front refuses a request without a key and audits it.

``serving`` is what the host read of itself (module ``serve_facts``, host code
``module_utils/serve_state.py``): each model's recorded state, its current version's readiness on
127.0.0.1 (``module_utils/serve_probe.check``) and the front's answer to a keyless request with the
audit line of that request. A host without a recorded state serves nothing: every serving check
skips saying so, never a pass. Controller code.
"""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.module_utils.serve_state import (  # noqa: F401 (re-exported)
    units,
)
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import serving_engine
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks.core import (
    FAIL,
    MONITOR,
    PASS,
    POLICY,
    REPROVISION,
    SKIP,
    WARN,
    plural,
    result,
)

NOT_SERVING = "no model served on this host"
SERVE_PLAYBOOK = "re-run playbooks/serve.yml"
KEYLESS_STATUS = 401  # the front's answer to a request without a key (roles/llm_serve/files/front.js)
ADDRESS_REFUSED = 403  # nginx's deny (llm_serve_allow), before front.js looks at the key


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
