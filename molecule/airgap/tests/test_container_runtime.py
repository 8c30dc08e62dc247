"""Docker from the signed bundle on the air-gapped node: the site's own daemon.json kept (its keys,
their order, its 4-space indent) while the keys gpufleet owns were added, a backup of the site's
file written, and the daemon restarted onto the merged configuration (no container was running)."""

import json
import os
from pathlib import Path

testinfra_hosts = ["ansible://gpu_nodes"]

SITE_KEYS = ["storage-driver", "iptables", "ip6tables", "bridge", "log-opts"]
FACT = "/etc/ansible/facts.d/gpufleet_container_runtime.fact"
BUNDLE = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / ".cache" / "bundles" / "lab"


def test_docker_runs_enabled_from_the_bundle(host):
    docker = host.service("docker")
    assert docker.is_running and docker.is_enabled
    policy = host.check_output("apt-cache policy docker.io")
    assert "Installed: (none)" not in policy and "http://bastion/lab" in policy


def test_site_keys_order_and_indent_kept_and_gpufleet_keys_added(host):
    text = host.file("/etc/docker/daemon.json").content_string
    data = json.loads(text)
    assert list(data)[: len(SITE_KEYS)] == SITE_KEYS, "the site's keys keep their place"
    assert data["log-opts"] == {"max-size": "10m"} and data["iptables"] is False
    assert data["live-restore"] is True
    assert data["default-ulimits"] == {"memlock": {"Name": "memlock", "Hard": -1, "Soft": -1}}
    assert '\n    "storage-driver": "vfs",\n' in text, "the file's own 4-space indent"
    assert "runtimes" not in data, "no toolkit in Debian: no nvidia runtime registered"


def test_the_sites_file_was_backed_up_before_the_change(host):
    backups = host.check_output("ls /etc/docker/ | grep -c 'daemon.json.*gpufleet-bak' || true")
    assert int(backups) == 1, "one backup: the first run changed the file, the second did not"
    name = host.check_output("ls /etc/docker/ | grep 'gpufleet-bak'")
    old = json.loads(host.file(f"/etc/docker/{name}").content_string)
    assert list(old) == SITE_KEYS


def test_the_running_daemon_uses_the_merged_configuration(host):
    assert host.check_output("docker info --format '{{.LiveRestoreEnabled}}'") == "true"
    assert host.check_output("docker info --format '{{.Driver}}'") == "vfs"


def test_the_bundles_image_is_loaded_with_the_id_the_signed_manifest_records(host):
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    (entry,) = [e for e in manifest["files"] if e["kind"] == "image"]
    loaded = host.check_output("docker image inspect --format '{{.Id}}' gpufleet-lab-tiny:1")
    assert loaded == entry["image_id"]


def test_the_role_recorded_the_keys_it_owns_and_no_pending_restart(host):
    fact = json.loads(host.file(FACT).content_string)
    assert fact["daemon_json_keys"] == ["default-ulimits", "live-restore"]
    assert fact["restart_pending"] is False and fact["nvidia_toolkit"] is False and fact["engine"] == "docker"
