"""Bad inputs to nvidia_driver fail in preflight, before any change, with a clear message."""

import pytest
from itest import REPO, docker_exec, run

PLAYBOOK = REPO / "tests" / "integration" / "playbooks" / "driver.yml"


def play(lab, *extra):
    return run(["ansible-playbook", "-i", lab["inventory"], PLAYBOOK, *extra])


def assert_untouched(lab):
    c = lab["container"]
    assert (
        docker_exec(
            c, "test", "-e", "/etc/apt/sources.list.d/gpufleet-nvidia-driver.sources", check=False
        ).returncode
        == 1
    )
    assert (
        docker_exec(
            c, "test", "-e", "/etc/apt/preferences.d/gpufleet-nvidia-driver.pref", check=False
        ).returncode
        == 1
    )
    assert (
        docker_exec(
            c, "test", "-e", "/etc/modprobe.d/gpufleet-blacklist-nouveau.conf", check=False
        ).returncode
        == 1
    )
    pkgs = docker_exec(c, "dpkg-query", "-W", "-f", "${Package}\n", check=False).stdout.split()
    assert not [p for p in pkgs if "nvidia" in p or p.startswith("linux-headers")]


def test_unknown_source_is_an_argument_spec_error(lab):
    out = play(lab, "-e", "nvidia_driver_source=bogus")
    assert out.returncode != 0
    assert "nvidia_driver_source" in out.stdout and "must be one of" in out.stdout
    assert_untouched(lab)


def test_unknown_flavor_is_an_argument_spec_error(lab):
    out = play(lab, "-e", "nvidia_driver_flavor=closed")
    assert out.returncode != 0
    assert "nvidia_driver_flavor" in out.stdout and "must be one of" in out.stdout
    assert_untouched(lab)


def test_pinned_version_the_source_lacks_lists_what_it_has(lab):
    out = play(lab, "-e", "nvidia_driver_version=535.1.1")
    assert out.returncode != 0
    assert "nvidia_driver_version '535.1.1' is not available from the configured source" in out.stdout
    assert "nvidia-kernel-dkms has 535." in out.stdout  # names the versions the archive really has
    assert "nothing was changed" in out.stdout
    assert_untouched(lab)


def test_every_input_problem_is_reported_at_once(lab):
    out = play(lab, "-e", "nvidia_driver_branch=5x5", "-e", "nvidia_driver_version=999.1")
    assert out.returncode != 0
    assert "nvidia_driver_branch '5x5' is not a driver branch" in out.stdout
    assert "nvidia_driver_version '999.1' is not a driver version" not in out.stdout  # 999.1 is well formed
    assert_untouched(lab)


@pytest.fixture
def debian11(lab):
    c = lab["container"]
    docker_exec(c, "cp", "-a", "/etc/os-release", "/etc/os-release.itest")
    docker_exec(c, "cp", "-a", "/etc/debian_version", "/etc/debian_version.itest")
    docker_exec(
        c,
        "sh",
        "-c",
        'sed -i \'s/VERSION_ID="12"/VERSION_ID="11"/; s/bookworm/bullseye/g; '
        "s/(bookworm)/(bullseye)/; s/ 12 / 11 /' /usr/lib/os-release && echo 11.9 > /etc/debian_version",
    )
    yield
    docker_exec(
        c, "sh", "-c", "cp -a /etc/debian_version.itest /etc/debian_version; rm -f /etc/debian_version.itest"
    )
    docker_exec(c, "sh", "-c", "rm -f /etc/os-release.itest")
    docker_exec(
        c,
        "sh",
        "-c",
        'sed -i \'s/VERSION_ID="11"/VERSION_ID="12"/; s/bullseye/bookworm/g; s/ 11 / 12 /\' '
        "/usr/lib/os-release",
    )


def test_unsupported_os_version_fails_naming_supported_list(lab, debian11):
    out = play(lab)
    assert out.returncode != 0
    assert "unsupported OS Debian 11" in out.stdout
    assert "nvidia_driver supports Debian 12; Ubuntu 22.04, 24.04" in out.stdout
    assert_untouched(lab)
