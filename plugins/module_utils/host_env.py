# Copyright: gpufleet developers
# Apache-2.0
"""What kind of host a module runs on: facts about the environment itself, not about its hardware.

Host code: stdlib only, Python >= 3.8 (Ansible ships it to hosts).
"""

from __future__ import annotations

import os


def detect_container(root="/"):
    """Return ``(in_container, evidence)`` for the host whose file system is at ``root``.

    Evidence, first match wins: ``/.dockerenv`` (Docker), ``/run/.containerenv`` (Podman),
    ``/run/systemd/container`` (written by systemd when it runs as a container's init), or a
    ``container=`` variable in PID 1's environment (``/proc/1/environ``; systemd-nspawn, LXC,
    Podman). ``evidence`` is the path (and value) that decided, None when nothing did.
    """
    for marker in (".dockerenv", "run/.containerenv"):
        path = os.path.join(root, marker)
        if os.path.exists(path):
            return True, "/" + marker
    try:
        with open(os.path.join(root, "run/systemd/container"), encoding="utf-8") as handle:
            kind = handle.read().strip()
        if kind:
            return True, f"/run/systemd/container={kind}"
    except OSError:
        pass
    try:
        with open(os.path.join(root, "proc/1/environ"), "rb") as handle:
            environ = handle.read()
    except OSError:
        environ = b""
    for entry in environ.split(b"\0"):
        if entry.startswith(b"container="):
            return True, "/proc/1/environ " + entry.decode("utf-8", "replace")
    return False, None
