"""`pip install .` gives the command and makes gpufleet.cluster visible to Ansible anywhere."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from itest import BIN, REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [BIN / "pip", "wheel", "--quiet", "--no-deps", "-w", tmp / "dist", REPO], check=True, timeout=600
    )
    wheels = list((tmp / "dist").glob("gpufleet-*.whl"))
    assert len(wheels) == 1, wheels
    site = tmp / "site"
    subprocess.run([BIN / "pip", "install", "--quiet", "--no-deps", "--target", site, wheels[0]], check=True)
    # Outside the repository, with no ansible.cfg and no collections path: only sys.path finds it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PYTHONPATH"] = str(site)
    # An empty configured collections path: the only copy Ansible can find is the wheel's.
    (tmp / "no-collections").mkdir()
    env["ANSIBLE_COLLECTIONS_PATH"] = str(tmp / "no-collections")
    env["PATH"] = f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin"
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return {"site": Path(site), "env": env, "cwd": elsewhere}


def test_wheel_carries_the_collection(installed):
    root = installed["site"] / "ansible_collections" / "gpufleet" / "cluster"
    for rel in (
        "galaxy.yml",
        "meta/runtime.yml",
        "plugins/modules/gpu_facts.py",
        "roles/nvidia_driver/tasks/main.yml",
        "playbooks/site.yml",
    ):
        assert (root / rel).is_file(), rel


def test_ansible_doc_finds_module_from_any_directory(installed):
    out = subprocess.run(
        [BIN / "ansible-doc", "gpufleet.cluster.gpu_facts"],
        capture_output=True,
        text=True,
        env=installed["env"],
        cwd=installed["cwd"],
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "GPU" in out.stdout and "nvidia_smi_path" in out.stdout
    assert str(installed["site"]) in out.stdout  # served from the installed wheel, not the checkout


def test_site_playbook_resolves_by_collection_name(installed):
    out = subprocess.run(
        [BIN / "ansible-playbook", "-i", "localhost,", "gpufleet.cluster.site", "--syntax-check"],
        capture_output=True,
        text=True,
        env=installed["env"],
        cwd=installed["cwd"],
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_command_entry_point(installed):
    out = subprocess.run(
        [sys.executable, "-m", "gpufleet.cli", "--version"],
        capture_output=True,
        text=True,
        env=installed["env"],
        cwd=installed["cwd"],
        check=False,
    )
    assert out.returncode == 0 and out.stdout.startswith("gpufleet "), out.stderr
