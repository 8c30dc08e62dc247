"""Real signed bundles for the bundle tests: keys made by gpg itself, bundles laid out exactly as
``gpufleet bundle build`` lays one out (shared by test_bundle.py and test_bundle_format.py)."""

import hashlib
import json
import os
import shutil
import subprocess

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import bundle as b

GPG = shutil.which("gpg")
GPGV = shutil.which("gpgv")
PAYLOAD = {
    "apt/pool/main/h/hello/hello_2.10-3_amd64.deb": b"!<arch>\n" + bytes(range(256)) * 8,
    "apt/dists/bookworm/InRelease": b"Origin: gpufleet\nSuite: bookworm\n",
    "wheels/pyyaml-6.0.1-cp311-cp311-linux_x86_64.whl": b"PK\x03\x04" + b"\x00" * 300,
    "files/models/tiny/config.json": b'{"hidden_size": 64}\n',
}
KINDS = {"apt": "apt", "wheels": "wheel", "files": "file", "keys": "key", "images": "image"}


# --- keys -------------------------------------------------------------------------------------


def gpg(home, *args, **kwargs):
    return subprocess.run(
        [GPG, "--homedir", str(home), "--batch", *args],
        check=True,
        capture_output=True,
        env={**os.environ, "LC_ALL": "C"},
        **kwargs,
    ).stdout


class Key:
    def __init__(self, home, uid, algo):
        gpg(home, "--passphrase", "", "--quick-gen-key", uid, algo, "sign", "never")
        colons = gpg(home, "--with-colons", "--list-keys", uid).decode()
        # What gpg itself says the fingerprint is: the first fpr line, the primary key's.
        self.fpr = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))
        self.home = home
        self.binary = gpg(home, "--export", self.fpr)
        self.armored = gpg(home, "--export", "--armor", self.fpr).decode()

    def sign(self, path):
        gpg(
            self.home,
            "--yes",
            "--local-user",
            self.fpr,
            "--detach-sign",
            "--armor",
            "-o",
            str(path) + ".asc",
            str(path),
        )


def signing_keys(tmp_path_factory):
    """Generator behind each test module's session ``keys`` fixture: three keys made by gpg itself."""
    if not GPG or not GPGV:
        pytest.skip("gpg and gpgv are needed to build and verify real signed bundles (apt-get install gnupg)")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    made = {
        "bundle": Key(home, "gpufleet bundle <bundle@example.invalid>", "ed25519"),
        "other": Key(home, "someone else <other@example.invalid>", "ed25519"),
        "rsa": Key(home, "rsa key <rsa@example.invalid>", "rsa2048"),
    }
    yield made
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)


# --- bundles ------------------------------------------------------------------------------------


def entry(path, data):
    return {
        "path": path,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "kind": KINDS.get(path.split("/")[0], "file"),
        "origin": "test",
        "purpose": "test",
    }


def build(root, key, payload=None, *, omit=(), base=None, signer=None, sign=True, **fields):
    """Lay out a signed bundle in ``root``; files in ``omit`` are listed but not written (update
    bundles). Returns the manifest."""
    payload = dict(PAYLOAD if payload is None else payload)
    payload[b.KEYRING] = (signer or key).binary
    payload[b.ARMORED_KEY] = (signer or key).armored.encode()
    for path, data in payload.items():
        if path in omit:
            continue
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    manifest = {
        "schema": 1,
        "name": "lab",
        "created": "2026-11-21T00:00:00Z",
        "target": {"os": "debian-12", "arch": "amd64", "python": "3.11"},
        "signing_key": key.fpr,
        "roles": ["nvidia_driver"],
        "profile": {},
        "base": base,
        "files": [entry(path, payload[path]) for path in sorted(payload)],
    }
    manifest.update(fields)
    write_manifest(root, manifest)
    if sign:
        (signer or key).sign(root / b.MANIFEST)
    return manifest


def write_manifest(root, manifest):
    root.mkdir(parents=True, exist_ok=True)
    (root / b.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def good_bundle(tmp_path, keys):
    root = tmp_path / "bundle"
    build(root, keys["bundle"])
    return root


def verify(root, keys, **kwargs):
    return b.verify_bundle(str(root), keys["bundle"].fpr, **kwargs)


DEB = "apt/pool/main/h/hello/hello_2.10-3_amd64.deb"


# A minimal valid manifest entry, for manifests that are never signed.
GOOD = {"path": "files/a", "size": 1, "sha256": "a" * 64}


def manifest_with(*entries, **fields):
    return {"schema": 1, "name": "t", "files": list(entries), **fields}
