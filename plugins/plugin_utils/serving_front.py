# Copyright: gpufleet developers
# Apache-2.0
"""The serving front's API keys, as the llm_serve role takes them (``llm_serve_keys``): what is wrong
with them, and the list written to the host — names, sha256 digests, models and scopes, never a key;
and the front's routes (``front_routes``): which engine, or weighted pair of engines, serves a model.

A key is given either as ``sha256`` (the hex digest of the key; the key itself stays with its owner)
or as ``key`` (plaintext, e.g. from Ansible Vault), hashed here, on the controller. No message names
a key's value: a key is named by its ``name``, or by its position when it has none."""

from __future__ import annotations

import hashlib
import re

SCOPES = ("inference", "metrics")
FIELDS = frozenset({"name", "sha256", "key", "models", "scopes", "rate"})
# Key names go into the audit log and into nginx maps; model names into nginx maps (quoted).
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
# The node's own key (the role makes it on the host, root-only, and adds its digest under this name):
# gpufleet verify asks the front with it. Reserved: no user key may take the name.
PROBE_KEY_NAME = "gpufleet-probe"
PROBE_KEY_SCOPES = ("inference",)


def _label(key, index):
    name = key.get("name") if isinstance(key, dict) else None
    return (
        f"llm_serve_keys[{index}] ({name})" if isinstance(name, str) and name else f"llm_serve_keys[{index}]"
    )


def _digest(key):
    if key.get("sha256") is not None:
        return str(key["sha256"]).lower()
    return hashlib.sha256(str(key["key"]).encode("utf-8")).hexdigest()


def _key_problems(key, index):
    label = _label(key, index)
    if not isinstance(key, dict):
        return [f"{label} must be a mapping with name, sha256 (or key), models and scopes"]
    problems = []
    unknown = sorted(str(f) for f in set(key) - FIELDS)
    if unknown:
        problems.append(f"{label} has unknown fields {unknown}: a key takes {sorted(FIELDS)}")
    name = key.get("name")
    if name is None or name == "":
        problems.append(f"{label} has no name: every key needs one (the audit log names the key by it)")
    elif not isinstance(name, str) or not NAME.match(name):
        problems.append(
            f"{label}: name must be 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit)"
        )
    elif name == PROBE_KEY_NAME:
        problems.append(
            f"{label}: the name {PROBE_KEY_NAME!r} is reserved for the node's own probe key (gpufleet "
            "verify asks the front with it); give this key another name"
        )
    has_sha, has_key = key.get("sha256") is not None, key.get("key") is not None
    if has_sha == has_key:
        problems.append(
            f"{label} needs exactly one of sha256 (the hex digest of the key: printf %s KEY | sha256sum) "
            "or key (the key itself, e.g. from Ansible Vault; it is hashed on the controller)"
        )
    elif has_sha and not (isinstance(key["sha256"], str) and SHA256.match(key["sha256"])):
        problems.append(
            f"{label}: sha256 is not a sha256 hex digest (64 hex digits): printf %s KEY | sha256sum"
        )
    elif has_key and (
        not isinstance(key["key"], str) or not key["key"].strip() or key["key"] != key["key"].strip()
    ):
        problems.append(f"{label}: key must be a non-empty string without leading or trailing blanks")
    scopes = key.get("scopes")
    if not isinstance(scopes, list) or not scopes:
        problems.append(f"{label}: scopes must be a non-empty list of {list(SCOPES)}")
    else:
        bad = [s for s in scopes if s not in SCOPES]
        if bad:
            problems.append(f"{label}: unknown scopes {bad}; a scope is one of {list(SCOPES)}")
    models = key.get("models")
    if not isinstance(models, list) or not models:
        problems.append(f'{label}: models must be a non-empty list of model names, or ["*"] for every model')
    else:
        bad = [m for m in models if not (isinstance(m, str) and (m == "*" or MODEL.match(m)))]
        if bad:
            problems.append(f"{label}: models {bad} are not model names (letters, digits and ._:/@+-) or '*'")
    rate = key.get("rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 1):
        problems.append(f"{label}: rate must be a whole number of requests per second, 1 or more")
    return problems


def front_key_problems(keys):
    """Every problem with ``llm_serve_keys``, each naming the key by name or position; empty when
    the keys can be written. No message holds a key or a digest."""
    if not isinstance(keys, list) or not keys:
        return [
            "llm_serve_keys is empty: the front refuses every request and its service will not start "
            "without a key; add at least one {name, sha256 (or key), models, scopes}"
        ]
    problems = []
    for index, key in enumerate(keys):
        problems += _key_problems(key, index)
    if problems:
        return problems
    names = [k["name"] for k in keys]
    dup_names = sorted({n for n in names if names.count(n) > 1})
    if dup_names:
        problems.append(f"llm_serve_keys: names used by more than one key: {dup_names}")
    digests = [_digest(k) for k in keys]
    same = sorted({names[i] for i, d in enumerate(digests) if digests.count(d) > 1})
    if same:
        problems.append(f"llm_serve_keys: keys {same} are the same key: give each its own")
    return problems


def front_keys(keys, probe_sha256=None, probe_rate=None):
    """The keys as the host gets them: ``name``, ``sha256`` (lower-case hex), ``models``, ``scopes``
    and ``rate`` (None when the key has none). Only for keys ``front_key_problems`` accepted.

    ``probe_sha256``: the digest of the node's probe key (read on the host); it is added last as
    ``PROBE_KEY_NAME``, for every model, the inference scope only, at ``probe_rate`` requests per
    second (None: the site's default rate)."""
    probe = []
    if probe_sha256:
        if not (isinstance(probe_sha256, str) and SHA256.match(probe_sha256)):
            raise ValueError("probe_sha256 is not a sha256 hex digest (64 hex digits)")
        if probe_rate is not None and (isinstance(probe_rate, bool) or not isinstance(probe_rate, int)):
            raise ValueError(f"probe_rate must be a whole number of requests per second, got {probe_rate!r}")
        probe = [
            {
                "name": PROBE_KEY_NAME,
                "sha256": probe_sha256.lower(),
                "models": ["*"],
                "scopes": list(PROBE_KEY_SCOPES),
                "rate": probe_rate or None,
            }
        ]
    return [
        {
            "name": k["name"],
            "sha256": _digest(k),
            "models": list(k["models"]),
            "scopes": list(k["scopes"]),
            "rate": k.get("rate"),
        }
        for k in keys
    ] + probe


def _server(url):
    """``host:port`` of an engine URL (``http://host:port/``), as nginx's upstream ``server`` and its
    ``$upstream_addr`` write it."""
    return re.sub(r"/$", "", re.sub(r"^http://", "", str(url)))


def front_routes(routes):
    """What routes.conf holds for ``routes`` (each ``{model, url, version?, split?}``, ``split``:
    ``{url, version?, percent}``: that share of the model's requests to that engine, the rest to
    ``url``; serving_engine.front_route makes them): ``{"upstreams": [{name, server, model}],
    "splits": [{variable, percent, split, rest, model}], "models": [{model, target}], "default",
    "versions": [{server, version}]}``.

    A route's ``target`` is its upstream, or with a split between 1 and 99 percent the variable of an
    nginx ``split_clients`` keyed on ``$request_id`` (0 and 100 percent need no choice: one upstream
    takes all). ``default``, for requests without a model or with an unlisted one, is the first
    route's ``url`` (never split: /v1/models and /metrics answer from one engine). ``versions``: each
    engine's version by its address, for the audit line's ``version`` (from ``$upstream_addr``, the
    engine that answered)."""
    out = {"upstreams": [], "splits": [], "models": [], "default": "", "versions": []}
    seen = set()

    def version_of(server, version):
        if version not in (None, "") and server not in seen:
            seen.add(server)
            out["versions"].append({"server": server, "version": str(version)})

    for index, route in enumerate(routes, start=1):
        model, name = route["model"], f"gpufleet_engine_{index}"
        server = _server(route["url"])
        out["upstreams"].append({"name": name, "server": server, "model": model})
        version_of(server, route.get("version"))
        target, split = name, route.get("split")
        if split:
            percent = int(split["percent"])
            split_name, split_server = f"{name}_split", _server(split["url"])
            out["upstreams"].append({"name": split_name, "server": split_server, "model": model})
            version_of(split_server, split.get("version"))
            if percent >= 100:
                target = split_name
            elif percent > 0:
                target = f"$gpufleet_split_{index}"
                out["splits"].append(
                    {
                        "variable": target,
                        "percent": percent,
                        "split": split_name,
                        "rest": name,
                        "model": model,
                    }
                )
        if index == 1:
            out["default"] = name
        if model != "*":
            out["models"].append({"model": model, "target": target})
    return out
