# Copyright: gpufleet developers
# Apache-2.0
"""The GPU stack's receipt: what a full, successful ``site.yml`` run left on a host.

``gpufleet apply --fast`` (``gpufleet_fast_path: true``) trusts a host whose receipt still holds and
skips preflight and the GPU-stack roles there, which is most of an idempotent run's controller cost
(each Ansible task costs the controller about 0.05-0.2 CPU-seconds per host). A receipt holds when
nothing the roles manage has changed since it was written:

- the settings the run was given and the collection's content (``inputs``, a digest the controller
  computes, compared as is);
- every package dpkg (or rpm) knows, with version and state: an install, removal, upgrade or hold;
- every file and directory under the paths the roles write to (type, mode, owner, size, mtime, link
  target): an edited, replaced, removed or added config file, keyring, toolkit link or venv file;
- the enabled and active state of the units the roles manage;
- the NVIDIA/RDMA kernel modules loaded, the kernel and the boot (a reboot invalidates the receipt,
  so the roles' load-or-reboot decisions are made again).

Anything else is not looked at: drift outside these is repaired by a run without ``--fast``. Python
bytecode caches are ignored (running a venv's Python writes them).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess

RECEIPT = "/var/lib/gpufleet/stack-receipt.json"
FORMAT = 1

# Where the roles write (their defaults; paths a user can move are passed in as ``paths`` too).
PATHS = (
    "/etc/apt",
    "/etc/yum.repos.d",
    "/etc/dnf/dnf.conf",
    "/etc/gpufleet-offline",
    "/etc/pki/rpm-gpg",
    "/etc/ansible/facts.d",
    "/etc/modprobe.d",
    "/etc/modules-load.d",
    "/etc/ld.so.conf.d",
    "/etc/profile.d",
    "/etc/security/limits.d",
    "/etc/docker",
    "/etc/containerd",
    "/etc/cdi",
    "/etc/nvidia-container-runtime",
    "/etc/nccl.conf",
    "/etc/pip.conf",
    "/etc/netplan",
    "/etc/network/interfaces.d",
    "/etc/NetworkManager/system-connections",
    "/etc/systemd/system",
    "/opt/gpufleet",
    "/usr/local/cuda*",
    "/var/lib/dkms",
    "/var/lib/gpufleet/cuda-hello",
    "/lib/modules/*/updates",
)
UNITS = (
    "nvidia-persistenced.service",
    "nvidia-fabricmanager.service",
    "nvidia-dcgm.service",
    "docker.service",
    "containerd.service",
    "openibd.service",
    "rdma-load-modules@infiniband.service",
)
MODULE_PREFIXES = ("nvidia", "nouveau", "ib_", "rdma", "mlx", "ipoib")
IGNORED = ("__pycache__",)
# A venv with PyTorch has tens of thousands of files; past this many entries under one path the
# receipt is refused rather than made slow (the full run still happens).
MAX_ENTRIES = 200_000


def _expand(paths):
    import glob

    out = []
    for path in paths:
        matches = sorted(glob.glob(path)) if any(c in path for c in "*?[") else [path]
        out.extend(m for m in matches if m not in out)
    return out


def _entry(path, st):
    kind = stat.S_IFMT(st.st_mode)
    line = f"{path} {kind:o} {stat.S_IMODE(st.st_mode):o} {st.st_uid}:{st.st_gid}"
    if stat.S_ISLNK(st.st_mode):
        return f"{line} -> {os.readlink(path)}"
    if stat.S_ISDIR(st.st_mode):
        return line
    return f"{line} {st.st_size} {st.st_mtime_ns}"


def tree(path, limit=None):
    """Sorted entry lines of ``path`` and everything under it (links not followed); [] when absent.
    More than ``limit`` (MAX_ENTRIES) entries: ValueError."""
    limit = MAX_ENTRIES if limit is None else limit
    try:
        st = os.lstat(path)
    except OSError:
        return []
    lines = [_entry(path, st)]
    if not stat.S_ISDIR(st.st_mode):
        return lines
    for root, dirs, files in os.walk(path, onerror=lambda _e: None):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED)
        for name in sorted(dirs) + sorted(f for f in files if not f.endswith(".pyc")):
            full = os.path.join(root, name)
            try:
                lines.append(_entry(full, os.lstat(full)))
            except OSError:
                continue
        if len(lines) > limit:
            raise ValueError(f"{path} has more than {limit} entries")
    return lines


def _digest(lines):
    return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def _run(argv):
    try:
        env = dict(os.environ, LC_ALL="C")
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    except OSError:
        return None
    return proc.stdout if proc.returncode == 0 else None


def packages():
    """{package: "version state"} from dpkg (APT hosts) or rpm; {} where neither answers."""
    out = _run(["dpkg-query", "-W", "-f", "${binary:Package} ${Version} ${db:Status-Abbrev}\n"])
    if out is None:
        out = _run(["rpm", "-qa", "--qf", "%{NAME}.%{ARCH} %{EPOCH}:%{VERSION}-%{RELEASE} ii\n"])
    found = {}
    for line in (out or "").splitlines():
        name, _, rest = line.partition(" ")
        if name:
            found[name] = rest.strip()
    return found


def units(names=UNITS):
    """{unit: "UnitFileState/ActiveState"} for the units systemd knows; {} without systemctl."""
    props = ["Id", "LoadState", "UnitFileState", "ActiveState"]
    out = _run(["systemctl", "show", "--property=" + ",".join(props), *names])
    found = {}
    for block in (out or "").strip().split("\n\n"):
        fields = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        if fields.get("Id") and fields.get("LoadState") == "loaded":
            found[fields["Id"]] = f"{fields.get('UnitFileState', '')}/{fields.get('ActiveState', '')}"
    return found


def kernel_modules(text):
    """Names of the loaded NVIDIA/RDMA kernel modules in /proc/modules ``text``, sorted."""
    names = (line.split(" ", 1)[0] for line in text.splitlines() if line.strip())
    return sorted(n for n in names if n.startswith(MODULE_PREFIXES))


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def fingerprint(extra_paths=(), base=None):
    """The state a receipt records and a check compares (see the module docstring); ``base``: the
    roles' own paths (PATHS)."""
    paths = _expand([*(PATHS if base is None else base), *(p for p in extra_paths if p)])
    return {
        "paths": {p: _digest(tree(p)) for p in paths if os.path.lexists(p)},
        "packages": packages(),
        "units": units(),
        "kernel_modules": kernel_modules(_read("/proc/modules")),
        "kernel": os.uname().release,
        "boot_id": _read("/proc/sys/kernel/random/boot_id"),
    }


def _named(keys, limit=3):
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def differences(recorded, current):
    """What changed between two fingerprints, one phrase each, in a stable order; [] when none."""
    found = []
    if recorded.get("boot_id") != current.get("boot_id"):
        found.append("the host rebooted since")
    if recorded.get("kernel") != current.get("kernel"):
        found.append(f"kernel {recorded.get('kernel')} -> {current.get('kernel')}")
    old, new = recorded.get("paths", {}), current.get("paths", {})
    changed = [p for p in new if p in old and old[p] != new[p]]
    if changed:
        found.append(f"changed under {_named(changed)}")
    if set(old) - set(new):
        found.append(f"gone: {_named(set(old) - set(new))}")
    if set(new) - set(old):
        found.append(f"new: {_named(set(new) - set(old))}")
    old, new = recorded.get("packages", {}), current.get("packages", {})
    pkgs = {p for p in set(old) | set(new) if old.get(p) != new.get(p)}
    if pkgs:
        found.append(f"packages changed: {_named(pkgs)}")
    old, new = recorded.get("units", {}), current.get("units", {})
    for unit in sorted(set(old) | set(new)):
        if old.get(unit) != new.get(unit):
            found.append(f"{unit} {old.get(unit, 'unknown')} -> {new.get(unit, 'unknown')}")
    if recorded.get("kernel_modules") != current.get("kernel_modules"):
        found.append("loaded NVIDIA/RDMA kernel modules changed")
    return found


def check(receipt_text, inputs, extra_paths=()):
    """(converged, reasons) for a receipt file's text (None: no receipt) against this host now."""
    if receipt_text is None:
        return False, ["no receipt (no full run with --fast has finished here yet)"]
    try:
        recorded = json.loads(receipt_text)
    except ValueError:
        return False, ["the receipt is unreadable"]
    if not isinstance(recorded, dict) or recorded.get("format") != FORMAT:
        return False, ["the receipt is of another format"]
    if recorded.get("inputs") != inputs:
        return False, ["the settings or the collection changed since the receipt"]
    if sorted(recorded.get("extra_paths", [])) != sorted(p for p in extra_paths if p):
        return False, ["the managed paths changed since the receipt"]
    reasons = differences(recorded.get("fingerprint", {}), fingerprint(extra_paths))
    return not reasons, reasons


def render(inputs, extra_paths=(), when=""):
    """The receipt's text for this host now."""
    return json.dumps(
        {
            "format": FORMAT,
            "written": when,
            "inputs": inputs,
            "extra_paths": sorted(p for p in extra_paths if p),
            "fingerprint": fingerprint(extra_paths),
        },
        sort_keys=True,
        indent=1,
    )
