"""gpufleet lab fault: the point is awaited (bounded), then the fault is injected; a point that never
comes does nothing to the node. docker is replaced; the real injection runs in `make faults`
(power loss during the driver's DKMS build, the controller killed while dpkg runs)."""

import pytest

from gpufleet.lab import faults
from gpufleet.lab.fleet import LabError


class Docker:
    def __init__(self, monkeypatch, seen_after=2, running=True):
        self.calls = []
        self.polls = 0
        self.seen_after = seen_after
        self.running = running
        monkeypatch.setattr(faults.dk, "docker", self.docker)
        monkeypatch.setattr(
            faults.dk, "inspect", lambda kind, name: {"State": {"Running": self.running}} if name else None
        )
        monkeypatch.setattr(faults.time, "sleep", lambda s: None)

    def docker(self, *args, check=True, **kw):
        self.calls.append(args)
        if args[0] == "exec" and ("pgrep" in args or args[2:4] == ("bash", "-c")):
            self.polls += 1
            return "4242\n" if self.polls > self.seen_after else ""
        if args[0] == "exec" and "is-system-running" in args:
            return "running\n"
        return ""

    def actions(self):
        return [c[:2] for c in self.calls if c[0] in {"kill", "start", "stop"}]


def test_power_loss_waits_for_the_dkms_build_then_kills_and_starts(monkeypatch):
    d = Docker(monkeypatch)
    result = faults.power_loss("node1", "dkms", timeout=60)
    pgrep = next(c for c in d.calls if "pgrep" in c)
    assert pgrep[-1] == "[m]odules KERNEL_UNAME=", "the DKMS make, and never pgrep itself"
    assert d.actions() == [("kill", "node1"), ("start", "node1")]
    assert result["fault"] == "power-loss" and result["point_still_running"] is True
    assert result["systemd"] == "running"


def test_a_point_that_never_comes_does_nothing(monkeypatch):
    d = Docker(monkeypatch, seen_after=10**9)
    clock = iter(range(0, 10**6, 10))
    monkeypatch.setattr(faults.time, "monotonic", lambda: next(clock))
    with pytest.raises(LabError, match="dkms did not run in node1 within 30 s; nothing was done"):
        faults.power_loss("node1", "dkms", timeout=30)
    assert d.actions() == []


def test_a_stopped_node_and_an_unknown_point_are_refused(monkeypatch):
    d = Docker(monkeypatch, running=False)
    with pytest.raises(LabError, match="is not running; nothing was done"):
        faults.power_loss("node1", "dkms")
    with pytest.raises(
        LabError,
        match="no fault point 'reboot'; known: apt-download, deb-download, dkms, dpkg, dpkg-unpack, pip, "
        "pip-unpack",
    ):
        faults.power_loss("node1", "reboot")
    assert d.actions() == []


def test_stop_watches_the_node_and_stops_the_bastion(monkeypatch):
    d = Docker(monkeypatch)
    result = faults.stop("bastion", "apt-download", watch="node1", down_s=20)
    assert [c[1] for c in d.calls if "pgrep" in c] == ["node1"] * 3
    assert d.actions() == [("stop", "-t"), ("start", "bastion")]
    assert result["watch"] == "node1"


def test_a_file_point_is_a_shell_test_on_the_node(monkeypatch):
    """deb-download / pip-unpack are states of the node's files, not a process name: the probe is a
    shell test run in the node, and it must print only when the test succeeds."""
    d = Docker(monkeypatch, seen_after=1)
    result = faults.power_loss("node1", "deb-download", timeout=60)
    probes = [c for c in d.calls if c[2:4] == ("bash", "-c")]
    assert len(probes) == 3, "two polls until seen, one more for point_still_running"
    script = probes[0][4]
    assert "/var/cache/apt/archives/partial/" in script and script.endswith("&& echo seen")
    assert d.actions() == [("kill", "node1"), ("start", "node1")]
    assert result["point"] == "deb-download"


def test_the_pip_unpack_point_needs_pip_running_and_fresh_files():
    script = faults.FILE_POINTS["pip-unpack"]
    assert script.startswith("pgrep -f '[p]ip[0-9.]* install' >/dev/null && ")
    assert "-newerct '3 seconds ago'" in script and "site-packages" in script


def test_the_pip_points_match_the_pip_ansible_runs():
    """Ansible's pip module runs the venv's pip3: a pattern for "pip install" alone never saw it
    (found on the lab: the point never came while the cuDNN wheel installed)."""
    import re

    ran = ("/opt/gpufleet/venv/bin/pip3 install -r req.txt", "pip install x", "/usr/bin/pip3.11 install y")
    for cmd in ran:
        assert re.search(faults.POINTS["pip"], cmd), cmd
    assert not re.search(faults.POINTS["pip"], "pgrep -f [p]ip[0-9.]* install")


def _serve_engine_point(tmp_path, units: dict[str, float | None]) -> bool:
    """The serve-engine-start point's script against ``fake_systemctl``, a test double listing
    ``units`` (name -> seconds since it became active; None: still activating)."""
    import os
    import stat
    import subprocess

    lines = [
        "#!/bin/sh",
        'if [ "$1" = list-units ]; then',
        *(f"  echo '{u} loaded active running engine'" for u in units),
        "  exit 0",
        "fi",
        'unit="$5"',
        'case "$unit" in',
    ]
    for unit, age in units.items():
        value = "echo 0" if age is None else f"awk '{{printf \"%.0f\", ($1 - {age}) * 1000000}}' /proc/uptime"
        lines.append(f"  {unit}) {value} ;;")
    lines += ["esac"]
    fake = tmp_path / "systemctl"
    fake.write_text("\n".join(lines) + "\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    probe = faults._probe("serve-engine-start")
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    out = subprocess.run(probe, capture_output=True, text=True, env=env, check=False, timeout=30)
    return out.stdout.strip() == "seen"


def test_the_serve_engine_start_point_sees_an_engine_that_just_started(tmp_path):
    assert _serve_engine_point(tmp_path, {"gpufleet-serve-m-1.service": 600, "gpufleet-serve-m-2.service": 1})
    assert _serve_engine_point(tmp_path, {"gpufleet-serve-m-2.service": None}), "activating"


def test_the_serve_engine_start_point_ignores_engines_that_run_for_a_while(tmp_path):
    assert not _serve_engine_point(tmp_path, {"gpufleet-serve-m-1.service": 600})
    assert not _serve_engine_point(tmp_path, {})
