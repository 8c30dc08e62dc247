"""The lab's tiny model, carried in the signed bundle, placed in the node's model store by the
model_store role from the bastion alone: every file what the signed manifest says, the version
current, nothing partial left; a manifest altered after signing is refused and changes nothing."""

import json
import os
from pathlib import Path

import pytest
from testinfra.modules.ansible import AnsibleException

testinfra_hosts = ["ansible://gpu_nodes"]

STORE = "/var/lib/gpufleet/model-store"
MODEL = f"{STORE}/models/tiny-llama"
MANIFESTS = "/var/lib/gpufleet/model-manifests"
BUNDLE = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / ".cache" / "bundles" / "lab"


def signed_manifest():
    return json.loads((BUNDLE / "models" / "tiny-llama" / "1.model.json").read_text())


def test_current_version_holds_exactly_the_signed_files(host):
    assert host.file(f"{MODEL}/current").linked_to == f"{MODEL}/versions/1"
    manifest = signed_manifest()
    assert len(manifest["files"]) == 7 and any(len(e["chunks"]) > 1 for e in manifest["files"])
    listed = {e["path"]: e for e in manifest["files"]}
    on_node = host.check_output(f"cd {MODEL}/current/ && sha256sum -- *").splitlines()
    got = {line.split(None, 1)[1]: line.split(None, 1)[0] for line in on_node}
    assert got == {path: e["sha256"] for path, e in listed.items()}


def test_the_store_keeps_each_file_once_by_its_hash_and_nothing_partial(host):
    objects = host.check_output(f"find {STORE}/objects -type f -printf '%f\\n'").split()
    assert sorted(objects) == sorted({e["sha256"] for e in signed_manifest()["files"]})
    assert host.check_output(f"find {STORE} -name '*.partial*' -o -name '.aria2-staging' | wc -l") == "0"
    assert host.file(f"{MANIFESTS}/tiny-llama-1.model.json.asc").contains("BEGIN PGP SIGNATURE")


def test_an_altered_manifest_is_refused_and_current_stays(host):
    tampered = "/tmp/gpufleet-tampered.model.json"
    host.run_expect([0], f'sed \'s/"size":/"size": /\' {MANIFESTS}/tiny-llama-1.model.json > {tampered}')
    fingerprint = json.loads((BUNDLE / "manifest.json").read_text())["signing_key"]
    with pytest.raises(AnsibleException) as refused:
        host.ansible(
            "gpufleet.cluster.model_fetch",
            f"manifest={tampered} signature={MANIFESTS}/tiny-llama-1.model.json.asc "
            f"keyring=/etc/apt/keyrings/gpufleet-bundle.asc fingerprint={fingerprint} "
            f"sources=http://bastion/lab/models/tiny-llama/1 store={STORE}",
            become=True,
            check=False,
        )
    assert "signature" in refused.value.result["msg"].lower(), refused.value.result
    assert host.file(f"{MODEL}/current").linked_to == f"{MODEL}/versions/1"
