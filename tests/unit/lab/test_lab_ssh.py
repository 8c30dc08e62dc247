"""The lab's SSH mode: operator key, known_hosts from served host keys, connection variables."""

import shutil
import subprocess

import pytest

from gpufleet.lab import ssh

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF6pXxU0mG6cQ3u0c2n2sJ3I0xQ8v3Dq9x0S3rK1c5xZ root@node1"


def test_known_hosts_line_names_every_address_once_and_drops_the_comment():
    line = ssh.known_hosts_line(["172.30.250.11", "gpufleet-airgap-node1", "172.30.250.11"], HOST_KEY)
    assert line == (
        "172.30.250.11,gpufleet-airgap-node1 ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIF6pXxU0mG6cQ3u0c2n2sJ3I0xQ8v3Dq9x0S3rK1c5xZ\n"
    )


@pytest.mark.parametrize("text", ["", "cat: /etc/ssh/ssh_host_ed25519_key.pub: No such file", "AAAA only"])
def test_anything_but_a_host_key_is_refused(text):
    with pytest.raises(ssh.SshSetupError, match="not an OpenSSH public host key"):
        ssh.known_hosts_line(["node1"], text)


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) is not installed")
def test_operator_key_is_made_once_and_private(tmp_path):
    key = ssh.ensure_key(tmp_path / "ssh")
    assert key.stat().st_mode & 0o077 == 0
    first = key.read_bytes()
    assert ssh.ensure_key(tmp_path / "ssh").read_bytes() == first  # never replaced
    pub = subprocess.run(["ssh-keygen", "-y", "-f", key], capture_output=True, text=True, check=True)
    assert pub.stdout.startswith("ssh-ed25519 ")


def test_openssh_vars_keep_host_key_checking_on(tmp_path):
    v = ssh.inventory_vars(tmp_path)
    assert v["ansible_connection"] == "ansible.builtin.ssh"
    assert v["ansible_user"] == "ops" and v["ansible_become"] is True
    assert f"-o UserKnownHostsFile={tmp_path / 'known_hosts'}" in v["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=yes" in v["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=no" not in v["ansible_ssh_common_args"]
    assert v["ansible_host_key_checking"] is True


def test_paramiko_vars(tmp_path):
    v = ssh.inventory_vars(tmp_path, paramiko=True)
    assert v["ansible_connection"] == "ansible.builtin.paramiko_ssh"
    assert v["ansible_ssh_private_key_file"] == str(tmp_path / "id_ed25519")
    assert v["ansible_host_key_checking"] is True


def test_a_missing_container_is_named_with_what_to_check(tmp_path, monkeypatch):
    monkeypatch.setattr(ssh, "ensure_key", lambda d: _fake_key(d))
    monkeypatch.setattr(
        ssh,
        "_exec",
        lambda c, script, stdin=None: subprocess.CompletedProcess(
            script, 1, "", "Error response from daemon: No such container: nosuch"
        ),
    )
    with pytest.raises(ssh.SshSetupError, match=r"nosuch: could not install .*No such container.*docker ps"):
        ssh.grant(["nosuch"], tmp_path)
    assert not (tmp_path / "known_hosts").exists()  # nothing written when a container fails


def _fake_key(directory):
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / ssh.KEY_NAME
    key.write_text("private")
    (directory / (ssh.KEY_NAME + ".pub")).write_text("ssh-ed25519 AAAA test\n")
    return key
