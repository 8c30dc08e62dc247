"""Helpers of the fault suite: a lab node from the layer image, converges, the recap they print."""

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CASES = SimpleNamespace(gpufleet=[str(BIN / "gpufleet")])
PLAYBOOK = REPO / "tests" / "faults" / "converge.yml"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
CASE_TIMEOUT = 1500  # no case may hang the suite: every command is bounded


def run(args, check=False, env=None, timeout=CASE_TIMEOUT, input_text=None):
    full_env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    full_env.update(env or {})
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        input=input_text,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def sh(container, script, check=True):
    return run(["docker", "exec", container, "bash", "-c", script], check=check)


@contextlib.contextmanager
def node_up(name):
    """A systemd container from the lab layer image (a node the airgap converge provisioned)."""
    run(["docker", "rm", "-f", name])
    run(
        [
            "docker", "run", "-d", "--name", name, "--hostname", "node1",
            "--cap-add", "SYS_ADMIN", "--cgroupns", "host", "--security-opt", "seccomp=unconfined",
            "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
            "--stop-signal", "SIGRTMIN+3", "--label", "io.gpufleet.faults=1",
            "gpufleet-lab-node:current", "/lib/systemd/systemd",
        ],
        check=True,
    )  # fmt: skip
    try:
        sh(name, "timeout 90 systemctl is-system-running --wait || true")
        yield name
    finally:
        run(["docker", "rm", "-f", name])


def inventory(tmp_path, container):
    path = tmp_path / "hosts.yml"
    path.write_text(
        "all:\n  children:\n    gpu_nodes:\n      hosts:\n"
        f"        {container}:\n          ansible_connection: community.docker.docker\n"
        "      vars:\n        gpufleet_offline: false\n        nvidia_driver_source: debian\n"
        '        nvidia_driver_branch: "535"\n        nvidia_driver_version: "535.261.03"\n'
    )
    return path


def converge(inv, *extra, env=None):
    """Run the fault suite's converge (back online, then the driver role); returns
    (proc, {host: {"ok", "changed", "unreachable", "failed"}}, seconds)."""
    started = time.monotonic()
    proc = run(["ansible-playbook", "-i", inv, PLAYBOOK, *extra], env=env)
    return proc, recap_of(proc), round(time.monotonic() - started)


def recap_of(proc):
    """{host: {"ok", "changed", "unreachable", "failed"}} from a run's PLAY RECAP."""
    return {
        m.group(1): dict(
            zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()[1:]), strict=True)
        )
        for m in RECAP.finditer(proc.stdout)
    }


def outcome(proc, recap):
    """One word for the table: converged (changed=N) / failed (the first fatal line)."""
    if proc.returncode == 0:
        return "ok, changed=" + ",".join(str(r["changed"]) for r in recap.values())
    lines = proc.stdout.splitlines()
    at = next((i for i, line in enumerate(lines) if "FAILED!" in line or "UNREACHABLE" in line), None)
    if at is None:
        return f"failed (rc {proc.returncode})"
    fatal = lines[at].strip()
    if fatal.endswith("=>"):  # the YAML callback puts the result on the lines after
        after = [ln.strip() for ln in lines[at + 1 : at + 40]]
        i = next((k for k, ln in enumerate(after) if ln.startswith("msg:")), None)
        msg = after[i] if i is not None else ""
        if msg in ("msg: |-", "msg: |", "msg: >-") and i + 1 < len(after):  # a block: its first line
            msg = after[i + 1]
        fatal = f"{fatal} {msg[msg.find('E: ') :] if 'E: ' in msg else msg}"
    return f"failed (rc {proc.returncode}): {fatal[:110]}"
