# Copyright: gpufleet developers
# Apache-2.0
"""Parse APT source definitions (one-line ``sources.list`` and deb822 ``.sources``).

Controller code (plugin_utils): runs in filters and the CLI, never on managed hosts. Used by the lab image
builder (to reuse the build host's Debian mirror) and by the ``gpufleet.cluster.debian_mirror`` filter (to add
components such as ``non-free`` on the same mirror a host already uses).
"""

from __future__ import annotations

import re

_OPTIONS = re.compile(r"^\[[^\]]*\]\s*")


def parse_one_line(text):
    """Return a list of entries from a one-line-style ``sources.list``."""
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 1)
        if parts[0] not in ("deb", "deb-src") or len(parts) < 2:
            continue
        rest = _OPTIONS.sub("", parts[1].strip())
        fields = rest.split()
        if len(fields) < 2:
            continue
        entries.append({"type": parts[0], "uri": fields[0], "suites": [fields[1]], "components": fields[2:]})
    return entries


def parse_deb822(text):
    """Return a list of entries from a deb822-style ``.sources`` file."""
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        key = None
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for typ in fields.get("types", "").split():
            for uri in fields.get("uris", "").split():
                entries.append(
                    {
                        "type": typ,
                        "uri": uri,
                        "suites": fields.get("suites", "").split(),
                        "components": fields.get("components", "").split(),
                    }
                )
    return entries


def debian_mirror(files, suite):
    """Pick the URI that serves ``suite`` (e.g. ``bookworm``) with the ``main`` component.

    ``files`` maps file name to content; ``.sources`` files are read as deb822, others as
    one-line lists. Security and updates suites are not considered. Returns None when no
    source carries the suite.
    """
    for name in sorted(files, key=lambda n: (not n.endswith("sources.list"), n)):
        text = files[name]
        entries = parse_deb822(text) if name.endswith(".sources") else parse_one_line(text)
        for entry in entries:
            if entry["type"] == "deb" and suite in entry["suites"] and "main" in entry["components"]:
                return entry["uri"].rstrip("/")
    return None
