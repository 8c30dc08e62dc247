"""testinfra reaches FQCN-named SSH hosts natively (OpenSSH), not with one Ansible run per command."""

import configparser

import pytest
from testinfra.utils import ansible_runner

from gpufleet.verify import connection


def _inventory(conn):
    hostvars = {"ansible_host": "10.0.0.5", "ansible_user": "ops", "ansible_become": True}
    if conn is not None:
        hostvars["ansible_connection"] = conn
    return {"_meta": {"hostvars": {"node1": hostvars}}, "all": {"children": ["gpu_nodes"]},
            "gpu_nodes": {"hosts": ["node1"]}}  # fmt: skip


@pytest.mark.parametrize(
    ("given", "native"),
    [
        ("ansible.builtin.ssh", "ssh"),
        ("ansible.legacy.ssh", "ssh"),
        ("ansible.builtin.local", "local"),
        ("ssh", "ssh"),
        ("community.docker.docker", "community.docker.docker"),
        # testinfra's paramiko backend accepts unknown host keys: that one stays with Ansible.
        ("ansible.builtin.paramiko_ssh", "ansible.builtin.paramiko_ssh"),
    ],
)
def test_native_names(given, native):
    inventory = connection.native_names(_inventory(given))
    assert inventory["_meta"]["hostvars"]["node1"]["ansible_connection"] == native


def test_a_host_without_a_connection_is_left_alone():
    inventory = connection.native_names(_inventory(None))
    assert "ansible_connection" not in inventory["_meta"]["hostvars"]["node1"]


def test_testinfra_opens_openssh_for_an_fqcn_ssh_host(monkeypatch):
    """Without the mapping testinfra returns no native host (None: every command through Ansible)."""
    config = configparser.ConfigParser()
    assert ansible_runner.get_ansible_host(config, _inventory("ansible.builtin.ssh"), "node1") is None
    monkeypatch.setattr(
        ansible_runner, "get_ansible_inventory", lambda cfg, f: _inventory("ansible.builtin.ssh")
    )
    monkeypatch.setattr(connection, "_installed", False)
    connection.install()
    inventory = ansible_runner.get_ansible_inventory(config, "hosts.yml")
    host = ansible_runner.get_ansible_host(config, inventory, "node1")
    assert type(host.backend).__name__ == "SshBackend"
    assert host.backend.host.name == "10.0.0.5" and host.backend.host.user == "ops"
