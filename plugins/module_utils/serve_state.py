# Copyright: gpufleet developers
# Apache-2.0
"""What ``gpufleet verify`` reads of a host's serving, on the host (module ``serve_facts``).

The llm_serve role records, per model, ``/var/lib/gpufleet/serve/NAME.json`` (``current``,
``previous``, ``ports``) and the golden answer each version gave when it was first ready,
``NAME/VERSION.golden.json`` (``prompt``, ``max_tokens``, ``answer``). From those this reads:

- each model's state and its current version's recorded golden answer;
- whether that version is ready on 127.0.0.1:PORT (``serve_probe.check``: ``/v1/models``, one token,
  the golden prompt against the recorded answer);
- the front, as its nginx.conf says (``listen``, ``ssl``, the ``access_log`` with the
  ``gpufleet_audit`` format): a request without a key, its status and ``X-Request-Id``, and the audit
  log's line with that ``request_id``;
- the same request with the node's probe key (``probe.key`` beside nginx.conf, which the role makes
  root-only and registers as ``gpufleet-probe``) as a bearer token, and its audit line; then each
  version's readiness through the front with that key, and optionally a timed greedy completion
  (``serve_probe.tokens_per_s``). The key is read here and sent only to the front's own address: it
  is never returned (only whether an audit line holds it).

It judges nothing (``plugin_utils/checks/serving.py`` does). No state file: nothing is asked of
any engine or front. Host code: stdlib only, Python >= 3.8.
"""

from __future__ import annotations

import glob
import json
import os
import re
import ssl
import time
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from ansible_collections.gpufleet.cluster.plugins.module_utils.serve_probe import check as ready_check
from ansible_collections.gpufleet.cluster.plugins.module_utils.serve_probe import tokens_per_s

STATE_DIR = "/var/lib/gpufleet/serve"
FRONT_CONF = "/etc/gpufleet/front/nginx.conf"
# The node's probe key (the llm_serve role makes it, root-only, beside nginx.conf): what gpufleet
# verify's requests through the front authenticate with. It never leaves the host.
PROBE_KEY_FILE = "probe.key"
# The route a keyless request asks for: cheap, and the front refuses it before any engine is asked.
REFUSAL_PATH = "/v1/models"
# nginx writes a request's log line after its answer: the line may lag the answer a little.
AUDIT_WAIT_S = 3.0
AUDIT_FORMAT = "gpufleet_audit"

# A model name or version as the llm_serve role and the serving engine plans accept it (the unit
# names below are built from both).
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# The front's unit (the role's __llm_serve_front_unit; a test holds them equal).
FRONT_UNIT = "gpufleet-front.service"

_LISTEN = re.compile(r"^\s*listen\s+([^;#]+);", re.M)
_ACCESS_LOG = re.compile(r"^\s*access_log\s+(\S+)\s+" + AUDIT_FORMAT + r"\b", re.M)
_WILDCARD = ("*", "0.0.0.0", "[::]", "::")  # noqa: S104 (read from a listen line, not bound)


def unit_name(name, version):
    """The systemd unit serving ``version`` of model ``name``."""
    for what, value in (("model name", name), ("version", version)):
        if not NAME.match(str(value)):
            raise ValueError(f"{what} {value!r}: letters, digits, '.', '_' and '-' only")
    return f"gpufleet-serve-{name}-{version}.service"


def units(serving):
    """The systemd units that must be active where ``serving`` (what ``collect`` returns) has models:
    each model's current version's (``unit_name``) and the front's. Names that are not valid are
    left out (the ``serving_units`` check reports them)."""
    if not isinstance(serving, dict) or not serving.get("configured"):
        return []
    out = []
    for name, model in sorted((serving.get("models") or {}).items()):
        if model.get("current") is None:
            continue
        try:
            out.append(unit_name(name, model["current"]))
        except ValueError:
            continue
    return [*out, FRONT_UNIT]


def _read_json(path):
    """(data, None) or (None, why not)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle), None
    except OSError as exc:
        return None, f"{path}: {exc.strerror or exc}"
    except ValueError as exc:
        return None, f"{path}: not JSON ({exc})"


def read_states(state_dir=STATE_DIR):
    """{name: {"state_file", "current", "previous", "ports", "port", "error", "golden_file",
    "golden", "golden_error"}} for each ``NAME.json`` in ``state_dir``; empty when there is none."""
    models = {}
    for path in sorted(glob.glob(os.path.join(state_dir, "*.json"))):
        name = os.path.basename(path)[: -len(".json")]
        data, error = _read_json(path)
        if data is not None and not isinstance(data, dict):
            data, error = None, f"{path}: not a mapping of current, previous and ports"
        data = data or {}
        ports = data.get("ports") if isinstance(data.get("ports"), dict) else {}
        current = data.get("current")
        current = None if current is None else str(current)
        port = ports.get(current) if current is not None else None
        entry = {
            "state_file": path,
            "current": current,
            "previous": data.get("previous"),
            "ports": ports,
            "port": int(port) if isinstance(port, int) or str(port).isdigit() else None,
            "error": error,
            "golden_file": None,
            "golden": None,
            "golden_error": None,
        }
        if current is not None and not error:
            golden_file = os.path.join(state_dir, name, current + ".golden.json")
            entry["golden_file"] = golden_file
            if os.path.exists(golden_file):
                golden, golden_error = _read_json(golden_file)
                if golden is not None and not (
                    isinstance(golden, dict) and isinstance(golden.get("prompt"), str) and "answer" in golden
                ):
                    golden, golden_error = None, f"{golden_file}: not a mapping of prompt, max_tokens, answer"
                entry["golden"], entry["golden_error"] = golden, golden_error
        models[name] = entry
    return models


def front_settings(conf_text):
    """The front's address and audit log from its nginx.conf: {"url", "tls", "audit_log"}; a key is
    None where the file does not say."""
    listen = _LISTEN.search(conf_text or "")
    audit = _ACCESS_LOG.search(conf_text or "")
    out = {"url": None, "tls": False, "audit_log": audit.group(1) if audit else None}
    if not listen:
        return out
    words = listen.group(1).split()
    address, tls = words[0], "ssl" in words[1:]
    host, _sep, port = address.rpartition(":")
    if not port.isdigit():
        return out
    if not host or host in _WILDCARD:
        host = "127.0.0.1"
    out["url"] = f"{'https' if tls else 'http'}://{host}:{port}"
    out["tls"] = tls
    return out


def _audit_line(path, offset, request_id):
    """The JSON line of ``path`` after ``offset`` whose request_id is ``request_id``, or None."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() < offset:  # rotated meanwhile: the line is in the new file
            offset = 0
        handle.seek(offset)
        for raw in handle.read().splitlines():
            try:
                line = json.loads(raw.decode("utf-8", "replace"))
            except ValueError:
                continue
            if isinstance(line, dict) and line.get("request_id") == request_id:
                return line
    return None


def _tls_context(url):
    """The SSL context for the front at ``url`` (None for http).

    The front's certificate names the host's public name, not the address of its listen line, so it
    is not checked: the request goes to the address the host's own nginx.conf names, from the host
    itself (the probe key never leaves the host, and is useless anywhere but this front).
    """
    if not url.startswith("https:"):
        return None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def read_probe_key(path):
    """(the node's probe key, None) or (None, why not). The key is never put into an error."""
    try:
        with open(path, encoding="ascii") as handle:
            key = handle.read().strip()
    except OSError as exc:
        return None, f"{path}: {exc.strerror or exc}"
    except ValueError:
        return None, f"{path}: not an ASCII key"
    if not key or any(c.isspace() for c in key):
        return None, f"{path}: empty or not one word"
    return key, None


def front_request(
    url, audit_log, key=None, timeout=10, wait=AUDIT_WAIT_S, clock=time.monotonic, sleep=time.sleep
):
    """``GET /v1/models`` from the front, with ``key`` as a bearer token or without a key:
    {"url", "status", "request_id", "audit", "audit_log", "error"} and, with a key, "audit_has_key"
    (whether the audit line holds the key's text; never the key itself). ``audit`` is the audit line
    with the answer's request id (None when not found)."""
    target = url.rstrip("/") + REFUSAL_PATH
    out = {"url": target, "status": None, "request_id": None, "audit": None, "audit_log": audit_log}
    out["error"] = None
    try:
        offset = os.path.getsize(audit_log) if audit_log else 0
    except OSError:
        offset = 0  # not written yet: the request's line will be the first
    request = Request(target, method="GET")  # noqa: S310 - the front's http(s) address
    if key is not None:
        request.add_header("Authorization", "Bearer " + key)
    try:
        with urlopen(request, timeout=timeout, context=_tls_context(url)) as resp:  # noqa: S310
            out["status"], headers = resp.status, resp.headers
    except HTTPError as exc:
        out["status"], headers = exc.code, exc.headers
    except (URLError, OSError) as exc:
        out["error"] = f"no answer from {target} ({getattr(exc, 'reason', exc)})"
        return out
    out["request_id"] = (headers or {}).get("X-Request-Id")
    if not out["request_id"] or not audit_log:
        return out
    deadline = clock() + wait
    while True:
        try:
            out["audit"] = _audit_line(audit_log, offset, out["request_id"])
            out["error"] = None
        except OSError as exc:
            out["error"] = f"{audit_log}: {exc.strerror or exc}"
        if out["audit"] is not None or clock() >= deadline:
            break
        sleep(0.1)
    if key is not None:
        out["audit_has_key"] = out["audit"] is not None and key in json.dumps(out["audit"])
    return out


def front_refusal(url, audit_log, timeout=10, wait=AUDIT_WAIT_S, clock=time.monotonic, sleep=time.sleep):
    """A request to the front without a key (``front_request``); only the refusal is looked at."""
    return front_request(url, audit_log, None, timeout, wait, clock, sleep)


def _golden(model):
    """The recorded golden answer as ``serve_probe.check`` takes it, or None."""
    golden = model["golden"]
    if golden is None:
        return None
    return {"prompt": golden["prompt"], "max_tokens": golden.get("max_tokens"), "expect": golden["answer"]}


def collect(state_dir=STATE_DIR, front_conf=FRONT_CONF, timeout=30, probe_key=None, measure_tokens=0):
    """Everything the serving checks judge: {"state_dir", "configured", "models", "front"}.

    Per model, for its current version (absent when the state names no current version or port):
    ``ready``, ``serve_probe.check``'s list on 127.0.0.1:PORT; ``front_ready``, the same through the
    front with the node's probe key (one token and the golden prompt, each naming the model; absent
    without the key or the front's address); ``tokens``, ``serve_probe.tokens_per_s`` through the
    front when ``measure_tokens`` is above 0 and the version is ready there.

    ``front``: None without models, else the front's settings, ``conf``, ``error`` (no nginx.conf, no
    listen line), ``refusal`` (a request without a key), ``probe_key`` (the key file's path: ``probe_key``,
    else ``probe.key`` beside ``front_conf``), ``probe_key_error`` and ``probe`` (``GET /v1/models``
    with the key, its audit line).
    """
    models = read_states(state_dir)
    out = {"state_dir": state_dir, "configured": bool(models), "models": models, "front": None}
    if not models:
        return out
    serving = {
        n: m for n, m in models.items() if not (m["error"] or m["current"] is None or m["port"] is None)
    }
    for name, model in serving.items():
        model["ready"] = ready_check(
            f"http://127.0.0.1:{model['port']}", name, golden=_golden(model), timeout=timeout
        )
    key_path = probe_key or os.path.join(os.path.dirname(front_conf), PROBE_KEY_FILE)
    front = {
        "conf": front_conf,
        "error": None,
        "refusal": None,
        "probe_key": key_path,
        "probe_key_error": None,
    }
    front["probe"] = None
    out["front"] = front
    try:
        with open(front_conf, encoding="utf-8") as handle:
            front.update(front_settings(handle.read()))
    except OSError as exc:
        front["error"] = f"{front_conf}: {exc.strerror or exc}"
    if not front["error"] and not front.get("url"):
        front["error"] = f"{front_conf}: no 'listen PORT;' line"
    if front["error"]:
        return out
    front["refusal"] = front_refusal(front["url"], front["audit_log"], timeout=min(timeout, 10))
    key, front["probe_key_error"] = read_probe_key(key_path)
    if key is None:
        return out
    front["probe"] = front_request(front["url"], front["audit_log"], key, timeout=min(timeout, 10))
    headers, context = {"Authorization": "Bearer " + key}, _tls_context(front["url"])
    for name, model in serving.items():
        model["front_ready"] = ready_check(
            front["url"], name, golden=_golden(model), headers=headers, timeout=timeout, context=context,
            list_models=False,
        )  # fmt: skip
        if measure_tokens > 0 and all(c["ok"] for c in model["front_ready"]):
            model["tokens"] = tokens_per_s(front["url"], name, measure_tokens, headers, timeout, context)
    return out
