"""SSH access to lab containers, the way real fleets are reached.

Real fleets are reached over SSH as an unprivileged user with sudo, where become, pipelining,
temporary-file permissions and the environment differ from the docker connection. The lab image
carries sshd and an operator user (``ops``, passwordless sudo); every container makes its own host
keys at first boot. This module gives the operator a key the lab generates and writes a
``known_hosts`` file from the host keys each container's sshd really serves, read over
``docker exec`` (the lab's out-of-band console), so host-key checking stays on.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from gpufleet.errors import GpufleetError
from gpufleet.lab import docker as dk

USER = "ops"
KEY_NAME = "id_ed25519"
KNOWN_HOSTS = "known_hosts"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"


class SshSetupError(GpufleetError):
    pass


def default_dir(lab: str) -> Path:
    """Where a lab's operator key and known_hosts live (outside the repository)."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "gpufleet" / "lab" / lab / "ssh"


def ensure_key(directory: Path) -> Path:
    """The operator's private key in ``directory`` (ed25519, no passphrase: a lab key), made once."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = directory / KEY_NAME
    if not key.is_file():
        proc = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gpufleet-lab-operator", "-f", str(key)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SshSetupError(f"ssh-keygen could not create {key}: {proc.stderr.strip()}")
    return key


def known_hosts_line(names: list[str], host_key: str) -> str:
    """One known_hosts line: the names/addresses a host is reached by, then its key type and key."""
    parts = host_key.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
        raise SshSetupError(f"not an OpenSSH public host key: {host_key[:60]!r}")
    return f"{','.join(dict.fromkeys(names))} {parts[0]} {parts[1]}\n"


def container_addresses(container: str) -> list[str]:
    info = dk.inspect("container", container) or {}
    nets = (info.get("NetworkSettings") or {}).get("Networks") or {}
    return [n["IPAddress"] for n in nets.values() if n.get("IPAddress")]


def _exec(container: str, script: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "exec", "-i", container, "sh", "-c", script],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def _served_host_key(container: str, timeout: float) -> str:
    """The host key sshd serves, once sshd is up (the keys are made at its first start)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        proc = _exec(container, f"systemctl is-active ssh.service >/dev/null && cat {HOST_KEY}")
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
        last = (proc.stderr or proc.stdout).strip()
        time.sleep(0.5)
    raise SshSetupError(
        f"{container}: sshd did not come up within {timeout:.0f} s ({last or 'no host key'}); "
        f"look with 'docker exec {container} systemctl status ssh'. Is the container from an older lab "
        "image without sshd? Run 'gpufleet lab image' to rebuild it."
    )


def grant(containers: list[str], directory: Path, timeout: float = 60.0) -> dict[str, list[str]]:
    """Let the lab operator in to ``containers`` and pin their host keys.

    Installs the operator's public key for ``ops`` in each container, reads the host key its sshd
    serves, and (re)writes ``directory/known_hosts`` atomically with one line per container, naming
    the container and each of its addresses. Returns each container's addresses."""
    key = ensure_key(directory)
    public = key.with_name(KEY_NAME + ".pub").read_text().strip()
    lines, addresses = [], {}
    for container in containers:
        proc = _exec(
            container,
            f"install -d -m 700 -o {USER} -g {USER} ~{USER}/.ssh && "
            f"cat > ~{USER}/.ssh/authorized_keys && "
            f"chown {USER}:{USER} ~{USER}/.ssh/authorized_keys && chmod 600 ~{USER}/.ssh/authorized_keys",
            stdin=public + "\n",
        )
        if proc.returncode != 0:
            said = (proc.stderr or proc.stdout).strip()
            hint = (
                "check the name with 'docker ps'"
                if "No such container" in said or "is not running" in said
                else f"a lab image without the '{USER}' user? run 'gpufleet lab image' to rebuild it"
            )
            raise SshSetupError(
                f"{container}: could not install the operator key for '{USER}': {said} ({hint})"
            )
        host_key = _served_host_key(container, timeout)
        addresses[container] = container_addresses(container)
        lines.append(known_hosts_line([*addresses[container], container], host_key))
    tmp = directory / (KNOWN_HOSTS + ".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(directory / KNOWN_HOSTS)
    return addresses


def inventory_vars(directory: Path, paramiko: bool = False) -> dict:
    """Connection variables for lab hosts reached over SSH as the operator, host keys checked."""
    if paramiko:
        # paramiko reads host keys from ~/.ssh/known_hosts only: run Ansible with HOME such that
        # that file is this lab's known_hosts (the Molecule scenario does).
        return {
            "ansible_connection": "ansible.builtin.paramiko_ssh",
            "ansible_user": USER,
            "ansible_become": True,
            "ansible_ssh_private_key_file": str(directory / KEY_NAME),
            "ansible_host_key_checking": True,
        }
    return {
        "ansible_connection": "ansible.builtin.ssh",
        "ansible_user": USER,
        "ansible_become": True,
        "ansible_ssh_private_key_file": str(directory / KEY_NAME),
        "ansible_ssh_common_args": (
            f"-o UserKnownHostsFile={directory / KNOWN_HOSTS} -o StrictHostKeyChecking=yes "
            "-o IdentitiesOnly=yes"
        ),
        "ansible_host_key_checking": True,
    }
