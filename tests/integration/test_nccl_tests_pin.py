"""nccl-tests only builds from a tarball whose sha256 matches nccl_tests_sha256.

Runs on its own lab node (the nccl role installs NCCL before it fetches nccl-tests, and the other
integration tests need an untouched node)."""

import hashlib

import pytest
from itest import REPO, docker_exec, gpufleet, run

PLAYBOOK = REPO / "tests" / "integration" / "playbooks" / "nccl.yml"
NAME = "itest-nccl"
CONTAINER = f"gpufleet-{NAME}-node1"


@pytest.fixture(scope="module")
def nccl_lab(tmp_path_factory):
    inv = tmp_path_factory.mktemp("nccl-lab") / "hosts.yml"
    gpufleet("lab", "up", "--name", NAME, "--nodes", "1", "--inventory", inv, check=True)
    yield inv
    gpufleet("lab", "down", "--name", NAME, "--inventory", inv, check=True)


def play(inv, *extra):
    return run(["ansible-playbook", "-i", inv, PLAYBOOK, "-e", "nccl_cuda=11.8", *extra])


def test_nccl_tests_without_a_pin_is_refused_in_preflight(nccl_lab):
    out = play(nccl_lab, "-e", "nccl_tests=true", "-e", "nccl_tests_url=file:///tmp/nccl-tests.tar.gz")
    assert out.returncode != 0
    assert "nccl_tests needs nccl_tests_url" in out.stdout and "nccl_tests_sha256" in out.stdout
    assert "nothing was changed" in out.stdout
    assert docker_exec(CONTAINER, "test", "-e", "/opt/gpufleet", check=False).returncode == 1


def test_tarball_with_another_sha256_is_refused_before_unpacking(nccl_lab):
    # A real tarball on the node, and a pin that is not its sha256 (as after tampering in transit).
    docker_exec(
        CONTAINER,
        "sh",
        "-c",
        "mkdir -p /tmp/src/nccl-tests && echo 'all:' > /tmp/src/nccl-tests/Makefile "
        "&& tar -C /tmp/src -czf /tmp/nccl-tests.tar.gz nccl-tests",
    )
    wrong = hashlib.sha256(b"not the tarball").hexdigest()
    out = play(
        nccl_lab,
        "-e",
        "nccl_tests=true",
        "-e",
        "nccl_tests_url=file:///tmp/nccl-tests.tar.gz",
        "-e",
        f"nccl_tests_sha256={wrong}",
    )
    assert out.returncode != 0
    assert "Fetch the nccl-tests source" in out.stdout
    assert "did not match" in out.stdout or "checksum" in out.stdout.lower()
    assert (
        docker_exec(CONTAINER, "test", "-e", "/opt/gpufleet/nccl-tests/Makefile", check=False).returncode == 1
    )
