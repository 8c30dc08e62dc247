"""The bastion after site.yml: the carried bundle verified, placed and served by nginx installed
from the bundle itself; a tampered bundle is refused and the served copy left as it was."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

testinfra_hosts = ["ansible://bastion"]

REPO = Path(__file__).resolve().parents[3]
PLACED = "/srv/gpufleet/bundles/lab"


def test_bundle_placed_and_verified(host):
    placed = json.loads(host.file(f"{PLACED}/manifest.json").content_string)
    carried = json.loads((REPO / ".cache/bundles/lab/manifest.json").read_text())
    assert placed == carried
    for entry in placed["files"][:5] + placed["files"][-5:]:
        assert host.file(f"{PLACED}/{entry['path']}").sha256sum == entry["sha256"]


def test_nginx_from_the_bundle_serves_it_and_the_key(host):
    assert host.package("nginx").is_installed
    assert "file:/media" not in host.check_output("apt-cache policy nginx")
    assert host.service("nginx").is_running and host.service("nginx").is_enabled
    served = host.check_output(
        "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1/lab/apt/InRelease').read().decode())\""
    )
    assert "BEGIN PGP SIGNED MESSAGE" in served
    key = host.check_output(
        "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1/gpufleet-bundle.asc').read().decode())\""
    )
    assert "BEGIN PGP PUBLIC KEY BLOCK" in key


def test_bastion_role_refuses_a_tampered_bundle(host, tmp_path):
    """A copy of the carried bundle with one .deb altered (same size): the role fails naming the
    file, and the copy nginx serves is untouched."""
    src = REPO / ".cache/bundles/lab"
    bad = REPO / ".cache/bundles/lab-tampered"
    shutil.rmtree(bad, ignore_errors=True)
    subprocess.run(["cp", "-al", src, bad], check=True)  # hard links: no 3 GB copy
    victim = sorted((bad / "apt/pool").glob("nvidia-smi_*.deb"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.unlink()  # break the hard link before writing, so the real bundle stays intact
    victim.write_bytes(bytes(data))
    before = host.file(f"{PLACED}/manifest.json").sha256sum
    playbook = tmp_path / "bastion.yml"
    playbook.write_text("- hosts: bastion\n  become: true\n  roles: [gpufleet.cluster.bundle_server]\n")
    try:
        proc = subprocess.run(
            [Path(sys.executable).with_name("ansible-playbook"), "-i", host.backend.ansible_inventory,
             playbook, "-e", "bundle_server_src=/media/gpufleet-bundles/lab-tampered"],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(bad, ignore_errors=True)
    assert proc.returncode != 0, proc.stdout[-2000:]
    output = proc.stdout + proc.stderr
    assert f"corrupt: apt/pool/{victim.name}" in output, output[-3000:]
    assert "nothing was placed" in output
    assert host.file(f"{PLACED}/manifest.json").sha256sum == before
