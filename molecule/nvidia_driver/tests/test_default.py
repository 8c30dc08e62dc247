"""Real state after an air-gapped lab node (Debian 12) went online: offline_repo and nvidia_driver
converged with gpufleet_offline false.

The node is the lab layer image 'node': the air-gapped whole-stack scenario installed the pinned
driver from the lab bundle earlier in this run (its DKMS build), proved
idempotence and committed the node. What only this scenario proves: the pinned version (older than
the online candidate) held by the APT pin against Debian's newer build, Debian's non-free components
added on the host's own mirror, and the bundle no longer selected as the only source. What every
driver install must leave behind (headless, nouveau, persistenced, no peermem, no reboot) is asserted
on the air-gapped stack (molecule/airgap/tests/test_nvidia_driver.py).

Before the converge, prepare.yml cut the node's power 5 s into the driver's DKMS build: the converge
recovered it (the DKMS build this scenario runs), and the last test checks what that left."""

import json
import re

PINNED = "535.261.03-1"
PINNED_PACKAGES = ["nvidia-kernel-dkms", "nvidia-smi", "libcuda1", "libnvidia-ml1", "firmware-nvidia-gsp"]


def test_pinned_driver_packages_installed(host):
    for name in PINNED_PACKAGES:
        pkg = host.package(name)
        assert pkg.is_installed, name
        assert pkg.version == PINNED, f"{name} is {pkg.version}, expected {PINNED}"


def test_apt_pin_holds_version_against_newer_candidate(host):
    pref = host.file("/etc/apt/preferences.d/gpufleet-nvidia-driver.pref")
    assert pref.exists
    assert f"Pin: version {PINNED}" in pref.content_string
    # A newer 535 build is published (security archive); the pin must keep apt from moving to it.
    policy = host.check_output("apt-cache policy nvidia-kernel-dkms")
    table = policy.split("Version table:", 1)[1].splitlines()
    # Version lines are "     VERSION PRIORITY" (" *** " marks the installed one); source lines follow.
    versions = [m[1] for m in (re.match(r"^\s*(?:\*\*\*)?\s+(\S+) (-?\d+)$", line) for line in table) if m]
    newer = [v for v in versions if host.run(f"dpkg --compare-versions {v} gt {PINNED}").rc == 0]
    assert newer, f"no version newer than {PINNED} is published, so the pin is not exercised: {policy}"
    assert f"Candidate: {PINNED}" in policy, policy
    sim = host.run("apt-get -s -o Debug::NoLocking=1 dist-upgrade")
    assert sim.rc == 0, sim.stderr
    moving = [line for line in sim.stdout.splitlines() if line.startswith("Inst ") and "nvidia" in line]
    assert moving == [], moving


def test_dkms_built_module_for_installed_headers(host):
    kernels = host.run("ls -d /lib/modules/*/build").stdout.split()
    assert kernels, "no kernel headers installed"
    status = host.check_output("dkms status")
    for build in kernels:
        kernel = build.split("/")[3]
        assert f"nvidia-current/535.261.03, {kernel}, x86_64: installed" in status, status
        ko = host.run(f"ls /lib/modules/{kernel}/updates/dkms/")
        assert "nvidia-current.ko" in ko.stdout, ko.stdout


def test_non_free_components_added_on_same_mirror(host):
    src = host.file("/etc/apt/sources.list.d/gpufleet-nvidia-driver.sources")
    assert src.exists
    assert "Components: contrib non-free non-free-firmware" in src.content_string
    own = host.file("/etc/apt/sources.list.d/debian.sources").content_string
    uri = next(line.split()[1] for line in own.splitlines() if line.startswith("URIs:"))
    assert f"URIs: {uri}" in src.content_string


def test_bundle_no_longer_the_only_apt_source(host):
    assert not host.file("/etc/apt/apt.conf.d/00gpufleet-offline").exists
    assert not host.file("/etc/ansible/facts.d/gpufleet_offline.fact").exists
    # apt reads the host's own mirror again: the online candidate is Debian's, not the bundle's.
    policy = host.check_output("apt-cache policy nvidia-kernel-dkms")
    own = host.file("/etc/apt/sources.list.d/debian.sources").content_string
    uri = next(line.split()[1] for line in own.splitlines() if line.startswith("URIs:"))
    assert uri.rstrip("/") in policy, policy
    assert "http://bastion" not in policy, policy


def test_local_fact_records_the_pinned_version(host):
    fact = json.loads(host.file("/etc/ansible/facts.d/gpufleet_nvidia_driver.fact").content_string)
    assert fact["in_container"] is True
    assert fact["activation"] == "none"
    assert "container" in fact["activation_reason"]
    assert fact["package_version"] == PINNED
    assert fact["dkms_module"] == "nvidia-current"


def test_no_reboot_attempted(host):
    before = host.file("/var/tmp/molecule-pid1-start").content_string.strip()
    now = host.check_output("ps -o lstart= -p 1").strip()
    assert before == now, f"PID 1 restarted: {before!r} -> {now!r}"


def test_power_loss_during_dkms_was_recovered_without_a_manual_step(host):
    """prepare.yml cut the power 5 s into the driver's DKMS build; the converge finished it."""
    assert host.run("dpkg --audit").stdout == ""
    half = host.run("dpkg-query -W -f '${db:Status-Abbrev} ${binary:Package}\\n' | grep '^.[HUFWt]'")
    assert half.stdout == "", half.stdout
    assert ": added" not in host.check_output("dkms status")
    lines = host.file("/var/lib/gpufleet/recovery.jsonl").content_string.splitlines()
    dpkg = [e for e in map(json.loads, lines) for r in e["repaired"] if r["what"] == "dpkg"]
    assert dpkg, lines
    # what the power loss left: the DKMS package half configured (a clean converge repairs nothing)
    found = {
        (p["package"], p["state"])
        for e in dpkg
        for r in e["repaired"]
        if r["what"] == "dpkg"
        for p in r["packages"]
    }
    assert ("nvidia-kernel-dkms", "half-configured") in found, dpkg
