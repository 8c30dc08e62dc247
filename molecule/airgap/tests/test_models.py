"""The lab's tiny model, carried in the signed bundle, placed in the node's model store by the
model_store role from the bastion alone: every file what the signed manifest says, the version
current, nothing partial left; a manifest altered after signing is refused and changes nothing."""

import json
import os
import shlex
from pathlib import Path

from testinfra.modules.ansible import AnsibleException

testinfra_hosts = ["ansible://gpu_nodes"]

STORE = "/var/lib/gpufleet/model-store"
MODEL = f"{STORE}/models/tiny-llama"
MANIFESTS = "/var/lib/gpufleet/model-manifests"
BUNDLE = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / ".cache" / "bundles" / "lab"


def signed_manifest(version="1"):
    return json.loads((BUNDLE / "models" / "tiny-llama" / f"{version}.model.json").read_text())


def test_current_version_holds_exactly_the_signed_files(host):
    assert host.file(f"{MODEL}/current").linked_to == f"{MODEL}/versions/1"
    manifest = signed_manifest()
    assert len(manifest["files"]) == 8 and any(len(e["chunks"]) > 1 for e in manifest["files"])
    listed = {e["path"]: e for e in manifest["files"]}
    on_node = host.check_output(f"cd {MODEL}/current/ && sha256sum -- *").splitlines()
    got = {line.split(None, 1)[1]: line.split(None, 1)[0] for line in on_node}
    assert got == {path: e["sha256"] for path, e in listed.items()}


def test_the_store_keeps_each_file_once_by_its_hash_and_nothing_partial(host):
    # versions 1 and 2 (placed beside it for the serving rollout) share their config and tokenizer
    objects = host.check_output(f"find {STORE}/objects -type f -printf '%f\\n'").split()
    wanted = {e["sha256"] for v in ("1", "2") for e in signed_manifest(v)["files"]}
    assert sorted(objects) == sorted(wanted) and len(wanted) < 16
    assert host.check_output(f"find {STORE} -name '*.partial*' -o -name '.aria2-staging' | wc -l") == "0"
    assert host.file(f"{MANIFESTS}/tiny-llama-1.model.json.asc").contains("BEGIN PGP SIGNATURE")


def test_an_altered_manifest_is_refused_and_current_stays(host):
    tampered = "/tmp/gpufleet-tampered.model.json"
    host.run_expect([0], f'sed \'s/"size":/"size": /\' {MANIFESTS}/tiny-llama-1.model.json > {tampered}')
    fingerprint = json.loads((BUNDLE / "manifest.json").read_text())["signing_key"]
    # testinfra raises AnsibleException only when the result says "failed", which the result file of
    # a failed module no longer holds with ansible-core 2.19+: judged on the result itself instead.
    try:
        result = host.ansible(
            "gpufleet.cluster.model_fetch",
            f"manifest={tampered} signature={MANIFESTS}/tiny-llama-1.model.json.asc "
            f"keyring=/etc/apt/keyrings/gpufleet-bundle.asc fingerprint={fingerprint} "
            f"sources=http://bastion/lab/models/tiny-llama/1 store={STORE}",
            become=True,
            check=False,
        )
    except AnsibleException as exc:
        result = exc.result
    assert "altered after signing" in result.get("msg", ""), result
    assert "current" not in result and not result.get("changed"), "a refused manifest places nothing"
    assert host.file(f"{MODEL}/current").linked_to == f"{MODEL}/versions/1"


def test_the_tools_runtime_reads_every_weight_of_the_current_version(host):
    """python_runtime's env (wheels hash-pinned from the bundle) loads the model the store placed."""
    script = (
        "import json, sys\n"
        "from safetensors import safe_open\n"
        f"root = '{MODEL}/current/'\n"
        "index = json.load(open(root + 'model.safetensors.index.json'))\n"
        "n, dtypes = 0, set()\n"
        "for shard in sorted(set(index['weight_map'].values())):\n"
        "    with safe_open(root + shard, 'np') as f:\n"
        "        for k in f.keys():\n"
        "            t = f.get_tensor(k); n += t.size; dtypes.add(str(t.dtype))\n"
        "print(json.dumps({'params': n, 'dtypes': sorted(dtypes), 'tensors': len(index['weight_map'])}))\n"
    )
    out = host.check_output(f"/opt/gpufleet/envs/tools/bin/python -c {shlex.quote(script)}")
    got = json.loads(out)
    config = json.loads(host.file(f"{MODEL}/current/config.json").content_string)
    h, inter, vocab, layers = (
        config[k] for k in ("hidden_size", "intermediate_size", "vocab_size", "num_hidden_layers")
    )
    kv = config["num_key_value_heads"] * config["head_dim"]
    q = config["num_attention_heads"] * config["head_dim"]
    per_layer = 2 * h + q * h + 2 * kv * h + h * q + 3 * inter * h
    assert got == {
        "params": 2 * vocab * h + h + layers * per_layer,
        "dtypes": ["float16"],
        "tensors": 2 + 1 + 9 * layers,
    }
