"""Integration tests run real commands against a real lab (docker + systemd containers).

They need root, docker and the lab image (``make integration`` provides them). The lab used
here is named ``itest`` so it never touches the user's ``lab``.
"""

import shutil

import pytest
from itest import LAB, gpufleet, run


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    if shutil.which("docker") is None or run(["docker", "info"]).returncode != 0:
        pytest.fail("integration tests need a running docker daemon: run 'make host-deps' (as root)")
    inv = tmp_path_factory.mktemp("lab") / "hosts.yml"
    gpufleet("lab", "up", "--name", LAB, "--nodes", "1", "--inventory", inv, check=True)
    yield {"inventory": inv, "container": f"gpufleet-{LAB}-node1", "name": LAB}
    gpufleet("lab", "down", "--name", LAB, "--inventory", inv, check=True)
