# Copyright: gpufleet developers
# Apache-2.0
"""Where each model version of the model_store role comes from: its signed manifest's URL and the
sources of its files, checked before a byte is fetched.

Offline, a model defaults to the bundle the bastion serves (``gpufleet bundle build`` puts a model
version at ``models/NAME/VERSION.model.json`` and ``models/NAME/VERSION/``); otherwise each entry
names its own ``manifest_url`` and ``sources``. ``extra_sources`` (mirrors, peers) are tried after.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

# the model manifest's own rule for names and versions (module_utils/model_manifest.py)
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_manifest import _NAME

KEYS = {"name", "version", "manifest_url", "sources", "activate", "extra_sources"}
SOURCE = re.compile(r"^(https?|s3)://[^\s]+$")
MANIFEST_URL = re.compile(r"^(https?|file)://[^\s]+\.model\.json$")


def _fill(template: str, name: str, version: str) -> str:
    return template.replace("{name}", name).replace("{version}", version)


def model_sources(models, bundle_url="", extra_sources=(), activate=True):
    """``[{name, version, manifest_url, sources, activate}]`` for the role's ``model_store_models``.

    Raises AnsibleFilterError naming every bad entry and what to write instead."""
    if not isinstance(models, list):
        raise AnsibleFilterError("model_store_models must be a list of {name, version}")
    problems, out, seen = [], [], set()
    base = (bundle_url or "").rstrip("/")
    for i, m in enumerate(models):
        where = f"model_store_models[{i}]"
        if not isinstance(m, dict):
            problems.append(f"{where}: must be a mapping with name and version")
            continue
        extra = sorted(set(m) - KEYS)
        if extra:
            problems.append(f"{where}: unknown keys {', '.join(extra)} (known: {', '.join(sorted(KEYS))})")
        name = m.get("name")
        version = m.get("version")
        version = (
            str(version) if isinstance(version, (int, float)) and not isinstance(version, bool) else version
        )
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            problems.append(f"{where}.name: {name!r} must be letters, digits and '._+-'")
            continue
        if not isinstance(version, str) or not _NAME.fullmatch(version):
            problems.append(f"{where} ({name}).version: {version!r} must be letters, digits and '._+-'")
            continue
        if (name, version) in seen:
            problems.append(f"{where}: {name} {version} is listed twice")
            continue
        seen.add((name, version))
        manifest_url = m.get("manifest_url") or (f"{base}/models/{name}/{version}.model.json" if base else "")
        sources = list(m.get("sources") or ([f"{base}/models/{name}/{version}"] if base else []))
        sources += [_fill(s, name, version) for s in (m.get("extra_sources") or [])]
        sources += [_fill(s, name, version) for s in (extra_sources or [])]
        if not manifest_url:
            problems.append(
                f"{where} ({name} {version}): give manifest_url (the signed .model.json) when the fleet "
                "is not offline (gpufleet_offline), or run offline from a bundle that carries the model"
            )
            continue
        if not MANIFEST_URL.match(manifest_url):
            problems.append(
                f"{where} ({name} {version}): manifest_url {manifest_url!r} must be an http(s):// "
                "or file:// URL of a .model.json file"
            )
        if not sources:
            problems.append(
                f"{where} ({name} {version}): give sources (base URLs or s3:// prefixes of its files)"
            )
        for s in sources:
            if not isinstance(s, str) or not SOURCE.match(s):
                problems.append(
                    f"{where} ({name} {version}): source {s!r} must be an http://, https:// or s3:// URL"
                )
        out.append(
            {
                "name": name,
                "version": version,
                "manifest_url": manifest_url,
                "sources": sources,
                "activate": bool(m.get("activate", activate)),
            }
        )
    if problems:
        raise AnsibleFilterError(
            "model_store_models is not valid; nothing was fetched:\n  - " + "\n  - ".join(problems)
        )
    return out


def model_peers(hosts, me, addresses, port):
    """Base URLs of the peer stores of host ``me``: every other host of ``hosts``, at its address
    (``addresses``, in the same order; an empty one means the host's name) and ``port``, starting
    with the host after ``me`` so that the nodes of a fleet do not all ask the same peer first."""
    hosts, addresses = list(hosts), list(addresses)
    if len(addresses) != len(hosts):
        raise AnsibleFilterError("model_peers: one address per host is needed (empty for the host's name)")
    if me not in hosts:
        raise AnsibleFilterError(f"model_peers: {me!r} is not one of the hosts")
    k = hosts.index(me)
    order = list(range(k + 1, len(hosts))) + list(range(k))
    out = []
    for i in order:
        address = str(addresses[i] or hosts[i])
        if ":" in address and not address.startswith("["):
            address = f"[{address}]"  # an IPv6 address in a URL
        out.append(f"http://{address}:{int(port)}")
    return out
