"""Real state after playbooks/models.yml on one lab node whose model comes from an s3:// source: a
local S3-compatible server (moto's, started by prepare on 127.0.0.1:9000), credentials and endpoint
from the role's model_store_s3_* variables, the manifest signed by the scenario's own key.

The files in the store are compared with the ones prepare made on the controller; the S3 server's
request log shows they came from it in ranged GETs; the secret key is nowhere on the node.
"""

import hashlib
import json
import os
import re

import pytest

STORE = "/var/lib/gpufleet/model-store"
WORK = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ""), "model-s3")
SECRET = "molecule-s3-secret-7d1e"  # molecule.yml's model_store_s3_secret_key
CHUNK = 1048576  # prepare's --chunk-size

testinfra_hosts = ["ansible://gpu_nodes"]


def made_on_the_controller():
    """{relative path: sha256} of the model prepare made."""
    root = os.path.join(WORK, "model")
    out = {}
    for name in os.listdir(root):
        with open(os.path.join(root, name), "rb") as handle:
            out[name] = hashlib.sha256(handle.read()).hexdigest()
    return out


def test_the_version_from_s3_is_active_and_byte_for_byte_the_model(host):
    current = host.file(f"{STORE}/models/tiny/current")
    assert current.is_symlink and current.linked_to == f"{STORE}/models/tiny/versions/1"
    want = made_on_the_controller()
    assert len(want) == 3
    for name, digest in want.items():
        placed = host.file(f"{STORE}/models/tiny/current/{name}")
        assert placed.exists, name
        assert placed.sha256sum == digest, f"{name} differs from the model prepare uploaded"


def test_every_byte_came_from_the_s3_server_in_ranged_gets(host):
    log = re.sub(r"\x1b\[[0-9;]*m", "", host.check_output("journalctl -u gpufleet-test-s3 --no-pager -o cat"))
    gets = re.findall(r'"GET /models/tiny/1/(model-0000[12]-of-00002\.safetensors) HTTP/1\.1" 206', log)
    manifest = json.loads(host.file(f"{STORE}/models/tiny/current/.gpufleet-model.json").content_string)
    chunks = {e["path"]: len(e["chunks"]) for e in manifest["files"] if e["path"].endswith(".safetensors")}
    assert chunks == {"model-00001-of-00002.safetensors": 4, "model-00002-of-00002.safetensors": 2}
    for path, count in chunks.items():
        assert gets.count(path) == count, f"{path}: {gets.count(path)} ranged GETs, {count} chunks"


@pytest.mark.parametrize("where", ["/var/lib/gpufleet", "/var/log", "/etc", "/root", "/tmp", "/var/tmp"])
def test_the_secret_key_is_written_nowhere(host, where):
    found = host.run(f"grep -rlsF -- {SECRET} {where}")
    assert found.rc == 1 and found.stdout == "", f"the S3 secret key is in {found.stdout}"


def test_the_secret_key_is_not_in_the_journal(host):
    """Ansible logs each module's arguments to the journal; no_log options must be masked there."""
    journal = host.check_output("journalctl --no-pager -o cat")
    fetches = [line for line in journal.splitlines() if "Invoked with" in line and "s3_endpoint_url=" in line]
    assert fetches, "model_fetch's invocation was logged (what this test reads)"
    assert all("s3_secret_key=NOT_LOGGING_PARAMETER" in line for line in fetches)
    assert SECRET not in journal
