"""A thin wrapper over the ``docker`` command line (no SDK needed at run time)."""

from __future__ import annotations

import json
import shutil
import subprocess

from gpufleet.errors import GpufleetError

INSTALL_HINT = (
    "install it with 'apt-get install docker.io' (Debian/Ubuntu) and start the daemon with "
    "'systemctl start docker' (or 'dockerd &' where there is no systemd); "
    "'make host-deps' in the gpufleet checkout does both"
)


class DockerError(GpufleetError):
    pass


def docker(*args: str, check: bool = True, capture: bool = True, input: bytes | None = None):
    """Run ``docker ARGS``; return stdout as text. Raise DockerError with stderr on failure."""
    exe = shutil.which("docker")
    if exe is None:
        raise DockerError(f"docker is not installed: {INSTALL_HINT}")
    proc = subprocess.run(
        [exe, *args],
        input=input,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE,
        check=False,
    )
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise DockerError(f"'docker {' '.join(args[:3])}' failed: {err}")
    return proc.stdout.decode(errors="replace") if capture and proc.stdout is not None else ""


def require_daemon() -> str:
    """Return the server version, or raise with how to install/start docker."""
    exe = shutil.which("docker")
    if exe is None:
        raise DockerError(f"docker is not installed: {INSTALL_HINT}")
    proc = subprocess.run(
        [exe, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        detail_line = detail[-1] if detail else "no answer"
        raise DockerError(f"the docker daemon is not reachable ({detail_line}): {INSTALL_HINT}")
    return proc.stdout.strip()


def inspect(kind: str, name: str) -> dict | None:
    out = subprocess.run(
        [shutil.which("docker") or "docker", kind, "inspect", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        return None
    data = json.loads(out.stdout or "[]")
    return data[0] if data else None


def containers(label: str) -> list[dict]:
    """Containers (running or not) carrying ``label`` (``key=value``), inspected."""
    ids = docker("ps", "-aq", "--filter", f"label={label}").split()
    if not ids:
        return []
    return json.loads(docker("inspect", *ids))
