"""The nvidia_driver role's state on the air-gapped nodes, installed from the bastion's bundle.

What any driver install must leave behind; moved here from the nvidia_driver scenario, which keeps
only what it alone proves (a pinned version held against a newer candidate, Debian's non-free
components added on the host's own mirror)."""

import json

import pytest

testinfra_hosts = ["ansible://gpu_nodes"]
DRIVER_PACKAGES = ["nvidia-kernel-dkms", "nvidia-smi", "libcuda1", "libnvidia-ml1", "firmware-nvidia-gsp"]


@pytest.fixture(scope="module")
def fact(host):
    return json.loads(host.file("/etc/ansible/facts.d/gpufleet_nvidia_driver.fact").content_string)


def test_driver_packages_installed_at_the_recorded_version(host, fact):
    for name in DRIVER_PACKAGES:
        pkg = host.package(name)
        assert pkg.is_installed, name
        assert pkg.version == fact["package_version"], f"{name} is {pkg.version}"


def test_the_version_is_the_one_the_bastion_serves(host, fact):
    policy = host.check_output("apt-cache policy nvidia-kernel-dkms")
    assert f"Installed: {fact['package_version']}" in policy
    assert f"Candidate: {fact['package_version']}" in policy


def test_no_x_server_in_headless_install(host):
    assert not host.package("xserver-xorg-core").is_installed


def test_dkms_built_module_for_installed_headers(host, fact):
    kernels = host.run("ls -d /lib/modules/*/build").stdout.split()
    assert kernels, "no kernel headers installed"
    upstream = fact["package_version"].split("-")[0]
    status = host.check_output("dkms status")
    for build in kernels:
        kernel = build.split("/")[3]
        assert f"nvidia-current/{upstream}, {kernel}, x86_64: installed" in status, status
        ko = host.run(f"ls /lib/modules/{kernel}/updates/dkms/")
        assert "nvidia-current.ko" in ko.stdout, ko.stdout


def test_nouveau_blacklisted(host):
    conf = host.file("/etc/modprobe.d/gpufleet-blacklist-nouveau.conf")
    assert conf.exists
    assert "blacklist nouveau" in conf.content_string
    assert "options nouveau modeset=0" in conf.content_string


def test_persistenced_enabled(host):
    assert host.service("nvidia-persistenced").is_enabled


def test_no_peermem_without_infiniband(host):
    assert not host.file("/etc/modules-load.d/gpufleet-nvidia-peermem.conf").exists


def test_local_fact_reports_container_and_no_reboot(fact):
    assert fact["in_container"] is True
    assert fact["activation"] == "none"
    assert "container" in fact["activation_reason"]
    assert fact["dkms_module"] == "nvidia-current"


def test_no_reboot_attempted(host):
    before = host.file("/var/tmp/molecule-pid1-start").content_string.strip()
    now = host.check_output("ps -o lstart= -p 1").strip()
    assert before == now, f"PID 1 restarted: {before!r} -> {now!r}"
