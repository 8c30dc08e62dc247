"""How testinfra reaches a host: natively where it can, with Ansible only where it must.

testinfra's ``ansible://`` backend opens its own connection (OpenSSH, ``docker exec``, local) when
the host's ``ansible_connection`` is a name it knows, and otherwise runs a whole Ansible command for
every single command a check sends. It knows only short names (``ssh``, ``local``, ``docker``,
``community.docker.docker`` ...), so an inventory written in FQCN style (``ansible.builtin.ssh``,
as ansible-lint's production profile asks) fell back to Ansible per command: measured on the lab
(benchmarks/controller.py), ``gpufleet verify --tier quick`` then cost about 16 controller CPU
seconds per host.

``native_names`` maps the FQCN names of connections testinfra implements itself to its short names,
in the inventory testinfra reads (ansible-inventory's JSON); the inventory file is not changed, and
what testinfra runs through Ansible (modules such as gpu_facts) still reads the file. The OpenSSH
backend passes ``ansible_ssh_common_args`` (UserKnownHostsFile, StrictHostKeyChecking) to ssh, so
host keys are checked as Ansible checks them. ``paramiko_ssh`` is deliberately not mapped: testinfra's
paramiko backend accepts unknown host keys with a warning, Ansible's does not.
"""

from __future__ import annotations

from typing import Any

# FQCN -> the name testinfra's ansible backend handles natively (testinfra/utils/ansible_runner.py).
NATIVE = {
    "ansible.builtin.ssh": "ssh",
    "ansible.legacy.ssh": "ssh",
    "ansible.builtin.local": "local",
    "ansible.legacy.local": "local",
}

_installed = False


def native_names(inventory: dict[str, Any]) -> dict[str, Any]:
    """``inventory`` (ansible-inventory --list JSON) with FQCN connection names testinfra implements
    itself replaced by its short names; changed in place and returned."""
    for hostvars in inventory.get("_meta", {}).get("hostvars", {}).values():
        name = hostvars.get("ansible_connection")
        if name in NATIVE:
            hostvars["ansible_connection"] = NATIVE[name]
    return inventory


def install() -> None:
    """Make testinfra read inventories through ``native_names`` (once per process)."""
    global _installed
    if _installed:
        return
    from testinfra.utils import ansible_runner

    read = ansible_runner.get_ansible_inventory

    def get_ansible_inventory(config, inventory_file):
        return native_names(read(config, inventory_file))

    ansible_runner.get_ansible_inventory = get_ansible_inventory
    _installed = True
