"""Faults injected into lab nodes at chosen points of a run (``gpufleet lab fault``).

Lab tooling for the fault-injection tests (issue "Survive faults mid-run"): never part of what
gpufleet installs on a fleet. A point is a process that runs on the node at that moment of a
converge (the DKMS build's make, dpkg, dpkg unpacking, pip, apt's download methods), or a state of
the node's files a step is in (a package download under way, pip writing into a venv); the fault
happens as soon as one is seen:

- ``power-loss``: ``docker kill`` (SIGKILL to every process of the node, as a power cut does to
  them; the file system keeps what was written, as a journaled disk does) then ``docker start``;
  returns when systemd runs again.
- ``stop``: ``docker stop`` of a node that serves others (the bastion), started again after
  ``down_s`` seconds, or left stopped when ``down_s`` is 0.

Every wait is bounded: a point that never comes within ``timeout`` seconds is an error, and nothing
is done to the node then.
"""

from __future__ import annotations

import time

from gpufleet._progress import sayer
from gpufleet.lab import docker as dk
from gpufleet.lab.fleet import LabError

# pgrep -f patterns; the [x] trick keeps pgrep (and a shell running it) from matching itself.
POINTS = {
    # the NVIDIA module's build: dkms.conf MAKE[0], "make -jN modules KERNEL_UNAME=<kernel>"
    "dkms": "[m]odules KERNEL_UNAME=",
    "dpkg": "(^|/)[d]pkg ",  # "dpkg ..." or apt's "/usr/bin/dpkg --status-fd ..."
    "pip": "[p]ip[0-9.]* install",  # pip, pip3 or pip3.11 (Ansible's pip module runs the venv's pip3)
    "apt-download": "/usr/lib/apt/methods/[h]ttp",
    # dpkg unpacking archives: apt runs "/usr/bin/dpkg --status-fd N --no-triggers --unpack ..."
    "dpkg-unpack": "[d]pkg .*--unpack",
}
# Points seen in the node's files, each a shell test that succeeds while the step is under way.
FILE_POINTS = {
    # apt is downloading a package: a .deb in its partial directory (the index files go elsewhere)
    "deb-download": "ls /var/cache/apt/archives/partial/ 2>/dev/null | grep -q '[.]deb$'",
    # pip is installing and has written into a venv's site-packages under /opt (gpufleet's venvs)
    # within the last 3 seconds: the wheel is being unpacked, not downloaded or resolved
    "pip-unpack": "pgrep -f '[p]ip[0-9.]* install' >/dev/null && "
    "find /opt -xdev -path '*/site-packages/*' -type f -newerct '3 seconds ago' -print -quit | grep -q .",
    # a model version's engine (llm_serve) is starting or started within the last 3 seconds: during a
    # rollout, the new version loading its weights beside the served one, before the front switches
    "serve-engine-start": "( now=$(awk '{printf \"%.0f\", $1 * 1000000}' /proc/uptime); "
    "for u in $(systemctl list-units --plain --no-legend --state=activating,active "
    "'gpufleet-serve-*.service' | awk '{print $1}'); do "
    't=$(systemctl show -p ActiveEnterTimestampMonotonic --value "$u"); '
    '[ "${t:-0}" = 0 ] && exit 0; [ $((now - t)) -lt 3000000 ] && exit 0; done; exit 1 )',
}

_say = sayer("lab")


def _running(container: str) -> bool:
    info = dk.inspect("container", container)
    return bool(info and (info.get("State") or {}).get("Running"))


def _probe(point: str) -> list[str]:
    """The command that prints something while ``point`` is under way on a node."""
    if point in POINTS:
        return ["pgrep", "-f", POINTS[point]]
    if point in FILE_POINTS:
        return ["bash", "-c", f"{FILE_POINTS[point]} && echo seen"]
    known = ", ".join(sorted([*POINTS, *FILE_POINTS]))
    raise LabError(f"no fault point {point!r}; known: {known}")


def wait_for_point(container: str, point: str, timeout: float, poll: float = 0.5) -> float:
    """Seconds until a process of ``point`` runs in ``container``; LabError when it never does."""
    probe = _probe(point)
    if not _running(container):
        raise LabError(f"container {container!r} is not running; nothing was done")
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        found = dk.docker("exec", container, *probe, check=False).strip()
        if found:
            return time.monotonic() - started
        if not _running(container):
            raise LabError(f"container {container!r} stopped while waiting for {point}; nothing was done")
        time.sleep(poll)
    raise LabError(f"{point} did not run in {container} within {timeout:.0f} s; nothing was done to it")


def wait_booted(container: str, timeout: float = 90, poll: float = 1.0) -> str:
    """Wait (bounded) until systemd in ``container`` has finished starting; return its state
    (``running``, ``degraded``, or the last one seen when it never got there)."""
    started, state = time.monotonic(), "unknown"
    while time.monotonic() - started < timeout:
        state = dk.docker("exec", container, "systemctl", "is-system-running", check=False).strip() or state
        if state in ("running", "degraded"):
            return state
        time.sleep(poll)
    return state


def power_loss(container: str, point: str, timeout: float = 1200, delay: float = 0.0) -> dict:
    """Cut ``container``'s power ``delay`` seconds after ``point`` starts in it, then power it on."""
    waited = wait_for_point(container, point, timeout)
    time.sleep(delay)
    still = bool(dk.docker("exec", container, *_probe(point), check=False).strip())
    dk.docker("kill", container)
    _say(f"power loss: {container} killed {waited + delay:.0f} s into the wait, during {point}")
    dk.docker("start", container)
    state = wait_booted(container)
    _say(f"power on: {container} is up again (systemd: {state})")
    return {
        "fault": "power-loss",
        "container": container,
        "point": point,
        "waited_s": round(waited, 1),
        "point_still_running": still,
        "systemd": state,
    }


def stop(container: str, point: str, watch: str, timeout: float = 1200, down_s: float = 0.0) -> dict:
    """Stop ``container`` (a bastion) as soon as ``point`` runs in ``watch`` (a node fetching from
    it); start it again after ``down_s`` seconds (0: leave it stopped)."""
    waited = wait_for_point(watch, point, timeout)
    dk.docker("stop", "-t", "5", container)
    _say(f"stopped {container} while {watch} was in {point}")
    if down_s:
        time.sleep(down_s)
        dk.docker("start", container)
        wait_booted(container)
        _say(f"started {container} again after {down_s:.0f} s")
    return {
        "fault": "stop",
        "container": container,
        "watch": watch,
        "point": point,
        "waited_s": round(waited, 1),
    }
