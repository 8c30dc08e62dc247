# Copyright: gpufleet developers
# Apache-2.0
"""NVIDIA CDI specs against the host they describe: stale spec detection, written once.

Controller code (plugin_utils), pure: the ``cdi_spec`` health check (``checks/software.py``) judges
what ``gpufleet.verify.collect`` read with ``COLLECT_COMMAND``.

A Container Device Interface spec (https://github.com/cncf-tags/container-device-interface,
SPEC.md) is a YAML or JSON file in /etc/cdi or /var/run/cdi; NVIDIA's (``kind: nvidia.com/gpu``)
is written by ``nvidia-ctk cdi generate``. It names device nodes (``devices[].containerEdits.
deviceNodes[]`` and the top-level ``containerEdits.deviceNodes``: ``path``, optional ``hostPath``
(CDI 0.5.0+; the host node when it differs from the container's path), ``major``/``minor``/``type``,
all optional but ``path``) and mounts the driver's libraries by version (``libcuda.so.575.64.03``,
``/lib/firmware/nvidia/575.64.03/``, a hook's ``--host-driver-version=575.64.03``). The spec is a
snapshot: after a driver upgrade, a GPU replaced or renumbered, or a MIG change, ``nvidia-smi`` on
the host works while containers get missing nodes or the old libraries (``cuInit`` fails). NVIDIA's
CDI guide says to generate a new spec after changing the device or driver configuration
(``SOURCE_URL``).

What ``compare`` finds, each naming the spec, the node or library and both values:

- ``node_missing``: a node the spec names (its ``hostPath``, else ``path``) is not in /dev;
- ``node_numbers``: the spec records a major/minor that differs from the node's (``stat``; only
  when the spec records them: nvidia-ctk fills them from the node on some versions, and
  ``nvidia-uvm``'s major is assigned by the kernel at load time, so it can change at a reboot);
- ``gpu_not_in_spec``: a ``/dev/nvidia<N>`` GPU node no spec names (a GPU added or renumbered);
- ``library_version``: driver versions in library paths or hooks differ from the loaded driver's.

Nodes outside what collection lists (``/dev/nvidia*``, ``/dev/nvidia-caps/*``, ``/dev/dri/card*``,
``/dev/dri/renderD*``; e.g. WSL's ``/dev/dxg``) are reported as not compared, never as missing.
A spec's age is reported, not judged: DKMS rebuilds the driver's module for every new kernel, so
"older than the driver's files" is true of a valid spec too.
"""

from __future__ import annotations

import json
import re
import time

import yaml

KIND = "nvidia.com/gpu"
SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")
REGENERATE = "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"
SOURCE_URL = "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/cdi-support.html"

MARK = "=== gpufleet-cdi "
# Read by collection in one command: the toolkit's CLI, every spec file with its mtime, the nodes
# with their numbers (stat prints major/minor in hex: %t %T), the loaded driver's version line.
_LISTED = "/dev/nvidia* /dev/nvidia-caps/* /dev/dri/card* /dev/dri/renderD*"
COLLECT_COMMAND = (
    f'if command -v nvidia-ctk >/dev/null 2>&1; then echo "{MARK}toolkit $(command -v nvidia-ctk)"; fi; '
    "for f in " + " ".join(f"{d}/*.yaml {d}/*.json" for d in SPEC_DIRS) + "; do "
    f'[ -f "$f" ] || continue; echo "{MARK}spec $(stat -c %Y "$f") $f"; cat "$f"; echo; done; '
    f"echo '{MARK}dev'; stat -c '%n %t %T %F' {_LISTED} 2>/dev/null; "
    f"echo '{MARK}driver'; cat /proc/driver/nvidia/version 2>/dev/null; true"
)
_COMPARED_PREFIXES = ("/dev/nvidia", "/dev/dri/card", "/dev/dri/renderD")
_GPU_NODE = re.compile(r"/dev/nvidia(\d+)")
_VERSION = r"(\d{3}\.\d+(?:\.\d+)?)"  # the driver's own numbering (550.54.15, 595.84)
_SPEC_VERSIONS = (
    re.compile(r"\.so\." + _VERSION + r"(?=$|::|/)"),  # libcuda.so.575.64.03 (not libnvidia-egl-gbm.so.1.1.2)
    re.compile(r"/firmware/nvidia/" + _VERSION + r"/"),
    re.compile(r"--host-driver-version=" + _VERSION + r"$"),
)
_NVRM = re.compile(r"NVRM version:.*?\s" + _VERSION + r"(?:\s|$)")


class SpecError(ValueError):
    """A spec file that cannot be read as a CDI spec; the message names the file and what is wrong."""


def parse_collected(text):
    """``COLLECT_COMMAND`` output -> {"toolkit": path or None, "specs": [{"path", "mtime", "text"}],
    "dev": text, "driver": text}."""
    out = {"toolkit": None, "specs": [], "dev": "", "driver": ""}
    section, lines = None, []

    def flush():
        body = "\n".join(lines)
        if section is None:
            return
        if section[0] == "spec":
            out["specs"].append({"path": section[2], "mtime": section[1], "text": body})
        elif section[0] in ("dev", "driver"):
            out[section[0]] = body

    for line in (text or "").splitlines():
        if line.startswith(MARK):
            flush()
            kind, _, rest = line[len(MARK) :].partition(" ")
            lines = []
            if kind == "toolkit":
                out["toolkit"], section = rest.strip() or None, None
            elif kind == "spec":
                mtime, _, path = rest.partition(" ")
                section = ("spec", int(mtime) if mtime.isdigit() else None, path.strip())
            else:
                section = (kind,)
        else:
            lines.append(line)
    flush()
    return out


def parse_dev(text):
    """``stat -c '%n %t %T %F'`` lines -> {path: {"major", "minor", "type"}} for character and
    block devices (%t/%T are hex); directories such as /dev/nvidia-caps are left out."""
    nodes = {}
    for line in (text or "").splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) < 4 or "special file" not in parts[3]:
            continue
        try:
            major, minor = int(parts[1], 16), int(parts[2], 16)
        except ValueError:
            continue
        nodes[parts[0]] = {
            "major": major,
            "minor": minor,
            "type": "b" if parts[3].startswith("block") else "c",
        }
    return nodes


def driver_version(proc_text):
    """The loaded driver's version from /proc/driver/nvidia/version (proprietary and open module
    lines), or None."""
    match = _NVRM.search(proc_text or "")
    return match.group(1) if match else None


def load(text, path="spec"):
    """A spec file's text -> its mapping (JSON when it starts with '{', else YAML). Raises SpecError."""
    is_json = (text or "").lstrip().startswith("{")
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text or "")
    except (ValueError, yaml.YAMLError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise SpecError(f"{path} is not valid {'JSON' if is_json else 'YAML'}: {first}") from exc
    if not isinstance(data, dict):
        raise SpecError(
            f"{path}: the top level is {type(data).__name__}, not a mapping with cdiVersion, kind and devices"
        )
    if not isinstance(data.get("kind"), str) or not data["kind"]:
        # nvidia-ctk writes the keys in alphabetical order, kind last: a file cut off mid-write has none
        raise SpecError(
            f"{path} has no kind, which every CDI spec has: an incomplete file (cut off mid-write?)"
        )
    return data


def _number(value, path, what):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path}: {what} is {value!r}, an integer expected")
    return value


def read(data, path, mtime=None):
    """A loaded spec -> {"path", "kind", "cdi_version", "mtime", "devices", "nodes", "versions"}.

    ``nodes``: [{"host_path", "path", "major", "minor", "type", "devices": [names]}], one per host
    node (the top-level edits appear as device "(all containers)"); ``versions``: {driver version:
    [paths or hook arguments naming it]}. Raises SpecError for a shape the CDI spec does not allow.
    """
    nodes, versions, names = {}, {}, []

    def edits(value, device):
        where = f"device {device!r}" if device != "(all containers)" else "the top-level containerEdits"
        if value is None:
            return
        if not isinstance(value, dict):
            raise SpecError(f"{path}: containerEdits of {where} is {type(value).__name__}, not a mapping")
        for node in value.get("deviceNodes") or ():
            if not isinstance(node, dict) or not isinstance(node.get("path"), str) or not node["path"]:
                raise SpecError(f"{path}: a deviceNode of {where} has no path: {node!r}")
            host = node.get("hostPath") or node["path"]
            entry = nodes.setdefault(
                host,
                {
                    "host_path": host,
                    "path": node["path"],
                    "major": _number(node.get("major"), path, f"the major of {host}"),
                    "minor": _number(node.get("minor"), path, f"the minor of {host}"),
                    "type": node.get("type"),
                    "devices": [],
                },
            )
            if device not in entry["devices"]:
                entry["devices"].append(device)
        strings = [m.get(k) for m in value.get("mounts") or () if isinstance(m, dict) for k in ("hostPath",)]
        strings += [a for h in value.get("hooks") or () if isinstance(h, dict) for a in h.get("args") or ()]
        for text in strings:
            for part in str(text or "").split("::"):
                for pattern in _SPEC_VERSIONS:
                    for found in pattern.findall(part):
                        versions.setdefault(found, []).append(part)

    edits(data.get("containerEdits"), "(all containers)")
    devices = data.get("devices")
    if devices is not None and not isinstance(devices, list):
        raise SpecError(f"{path}: devices is {type(devices).__name__}, a list expected")
    for device in devices or ():
        if not isinstance(device, dict):
            raise SpecError(
                f"{path}: a device is {device!r}, a mapping with name and containerEdits expected"
            )
        names.append(str(device.get("name")))
        edits(device.get("containerEdits"), str(device.get("name")))
    return {
        "path": path,
        "kind": data.get("kind"),
        "cdi_version": data.get("cdiVersion"),
        "mtime": mtime,
        "devices": names,
        "nodes": list(nodes.values()),
        "versions": versions,
    }


def gpu_nodes(dev):
    """The /dev/nvidia<N> GPU nodes of ``dev`` (``parse_dev``), in GPU order."""
    return sorted((p for p in dev if _GPU_NODE.fullmatch(p)), key=lambda p: int(p[len("/dev/nvidia") :]))


def compare(specs, dev, loaded_version):
    """Findings of ``specs`` (``read`` results) against ``dev`` (``parse_dev``) and the loaded
    driver's version (None: libraries not compared). Returns {"findings": [...], "compared": n,
    "numbered": n, "not_compared": [paths], "gpu_nodes": [paths]}; each finding has "problem",
    "spec", "subject", "measured", "expected" and "text"."""
    findings, not_compared, compared, numbered = [], [], 0, 0
    named = set()
    for spec in specs:
        for node in spec["nodes"]:
            host = node["host_path"]
            named.add(host)
            if not host.startswith(_COMPARED_PREFIXES):
                not_compared.append(host)
                continue
            compared += 1
            where = f"{spec['path']} ({', '.join(node['devices'])})"
            real = dev.get(host)
            if real is None:
                findings.append(
                    {
                        "problem": "node_missing",
                        "spec": spec["path"],
                        "subject": host,
                        "measured": "absent",
                        "expected": "present",
                        "text": f"{host} named by {where} does not exist",
                    }
                )
                continue
            if node["major"] is None and node["minor"] is None:
                continue
            numbered += 1
            want = ":".join("*" if n is None else str(n) for n in (node["major"], node["minor"]))
            have = f"{real['major']}:{real['minor']}"
            if (node["major"] is not None and node["major"] != real["major"]) or (
                node["minor"] is not None and node["minor"] != real["minor"]
            ):
                findings.append(
                    {
                        "problem": "node_numbers",
                        "spec": spec["path"],
                        "subject": host,
                        "measured": have,
                        "expected": want,
                        "text": f"{host} is {have} in /dev, {where} says {want}",
                    }
                )
    for node in gpu_nodes(dev):
        if node not in named:
            findings.append(
                {
                    "problem": "gpu_not_in_spec",
                    "spec": ", ".join(s["path"] for s in specs),
                    "subject": node,
                    "measured": "present",
                    "expected": "in a spec",
                    "text": f"GPU node {node} is in /dev but in no spec",
                }
            )
    if loaded_version:
        for spec in specs:
            stale = {v: where for v, where in spec["versions"].items() if v != loaded_version}
            for version, where in sorted(stale.items()):
                findings.append(
                    {
                        "problem": "library_version",
                        "spec": spec["path"],
                        "subject": "driver libraries",
                        "measured": loaded_version,
                        "expected": version,
                        "text": f"{spec['path']} mounts driver {version} ({where[0]}"
                        + (f" and {len(where) - 1} more" if len(where) > 1 else "")
                        + f"), the loaded driver is {loaded_version}",
                    }
                )
    return {
        "findings": findings,
        "compared": compared,
        "numbered": numbered,
        "not_compared": sorted(set(not_compared)),
        "gpu_nodes": gpu_nodes(dev),
    }


def stamp(mtime):
    """A spec's mtime (epoch seconds) as 'YYYY-MM-DD HH:MM UTC', or None."""
    return None if mtime is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(mtime))
