"""gpufleet.cluster.bundle_verify on real signed bundles in tmp directories.

Same pattern as test_gpu_facts.py (exit_json/fail_json raise, arguments from ansible-core 2.19's
``patch_module_args``), but nothing is faked below the module: a real gpg key signs the manifest
and the real gpgv checks it, because the signature check is what the module is for.
"""

import hashlib
import json
import os
import shutil
import subprocess

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.module_utils import bundle as b
from ansible_collections.gpufleet.cluster.plugins.modules import bundle_verify
from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401

GPG = shutil.which("gpg")
DEB = "apt/pool/main/h/hello/hello_2.10-3_amd64.deb"
PAYLOAD = {
    DEB: b"!<arch>\n" + bytes(range(256)) * 4,
    "apt/dists/bookworm/InRelease": b"Origin: gpufleet\n",
    "files/models/tiny/config.json": b'{"hidden_size": 64}\n',
}


# --- a real key and real bundles ----------------------------------------------------------------


def gpg(home, *args):
    return subprocess.run(
        [GPG, "--homedir", str(home), "--batch", *args],
        check=True,
        capture_output=True,
        env={**os.environ, "LC_ALL": "C"},
    ).stdout


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    if not GPG or not shutil.which("gpgv"):
        pytest.skip("gpg and gpgv are needed to build and verify real signed bundles (apt-get install gnupg)")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    uid = "gpufleet bundle <bundle@example.invalid>"
    gpg(home, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
    colons = gpg(home, "--with-colons", "--list-keys", uid).decode()
    fpr = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))
    yield {"home": home, "fpr": fpr, "binary": gpg(home, "--export", fpr)}
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)


def build(root, key, payload=PAYLOAD, name="lab"):
    files = {**payload, b.KEYRING: key["binary"]}
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    manifest = {
        "schema": 1,
        "name": name,
        "signing_key": key["fpr"],
        "base": None,
        "files": [
            {"path": p, "size": len(files[p]), "sha256": hashlib.sha256(files[p]).hexdigest(), "kind": "file"}
            for p in sorted(files)
        ],
    }
    (root / b.MANIFEST).write_text(json.dumps(manifest, indent=2))
    gpg(key["home"], "--yes", "--local-user", key["fpr"], "--detach-sign", "--armor", "-o",
        str(root / b.SIGNATURE), str(root / b.MANIFEST))  # fmt: skip
    return root


@pytest.fixture
def src(tmp_path, key):
    return build(tmp_path / "media" / "bundle", key)


def run(**args):
    with patch_module_args(args), pytest.raises((AnsibleExitJson, AnsibleFailJson)) as exc:
        bundle_verify.main()
    return exc.value.args[0]


def tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- verification only --------------------------------------------------------------------------


def test_good_bundle_verifies_and_changes_nothing(src, key):
    before = tree(src)
    result = run(path=str(src), fingerprint=key["fpr"])
    assert result["changed"] is False
    assert result.get("failed") is None
    assert result["name"] == "lab"
    assert result["fingerprint"] == key["fpr"]
    assert result["files"] == len(PAYLOAD) + 1
    assert result["bytes"] == sum(len(d) for d in PAYLOAD.values()) + len(key["binary"])
    assert result["placed"] is None
    assert result["replaced_tampered"] is False
    assert tree(src) == before


def test_tampered_bundle_fails_naming_every_problem(src, key, tmp_path):
    data = bytearray((src / DEB).read_bytes())
    data[10] ^= 0xFF
    (src / DEB).write_bytes(bytes(data))
    (src / "apt/evil.deb").write_bytes(b"evil")
    dest = tmp_path / "srv" / "bundle"
    result = run(path=str(src), fingerprint=key["fpr"], dest=str(dest))
    assert result["failed"] is True
    assert result["msg"].startswith(f"bundle {src} failed verification: ")
    assert f"corrupt: {DEB} (sha256 " in result["msg"]
    assert "extra: apt/evil.deb (4 bytes, not listed in manifest.json)" in result["msg"]
    assert result["msg"].endswith("; nothing was placed")
    assert [line.split(" (")[0] for line in result["problems"]] == ["extra: apt/evil.deb", f"corrupt: {DEB}"]
    assert not dest.exists()
    assert not (tmp_path / "srv" / "bundle.gpufleet-partial").exists()


def test_wrong_pin_fails_on_the_signature(src, key):
    other = "0" * 40
    result = run(path=str(src), fingerprint=other)
    assert result["failed"] is True
    assert f"signature: the bundle's key {key['fpr']} is not the pinned key {other}" in result["msg"]
    assert "files were not checked" in result["msg"]


def test_malformed_pin_fails_before_anything(src):
    result = run(path=str(src), fingerprint="deadbeef")
    assert result["failed"] is True
    assert result["msg"].startswith("fingerprint: 'deadbeef' is not an OpenPGP key fingerprint")


def test_explicit_keyring(src, key, tmp_path):
    keyring = tmp_path / "pinned.asc"
    keyring.write_text(gpg(key["home"], "--export", "--armor", key["fpr"]).decode())
    assert run(path=str(src), fingerprint=key["fpr"], keyring=str(keyring))["changed"] is False

    (src / b.KEYRING).write_bytes(b"not a key")
    result = run(path=str(src), fingerprint=key["fpr"], keyring=str(keyring))
    # The signature is checked with the given key; the bundle's own key file is still a listed
    # file whose content no longer matches.
    assert result["failed"] is True
    assert "signature:" not in result["msg"]
    assert f"truncated: {b.KEYRING} (9 of {len(key['binary'])} bytes)" in result["msg"]

    without = run(path=str(src), fingerprint=key["fpr"])
    assert "signature: the keyring" in without["msg"]
    assert "is not a usable OpenPGP public key" in without["msg"]


# --- placing a verified copy --------------------------------------------------------------------


def test_places_a_verified_copy_then_is_idempotent(src, key, tmp_path):
    dest = tmp_path / "srv" / "gpufleet" / "bundle"
    first = run(path=str(src), fingerprint=key["fpr"], dest=str(dest), _ansible_diff=True)
    assert first["changed"] is True
    assert first["placed"] == str(dest)
    assert first["replaced_tampered"] is False
    assert tree(dest) == tree(src)
    assert (dest / DEB).stat().st_mode & 0o777 == 0o644
    assert (dest / "apt").stat().st_mode & 0o777 == 0o755
    assert not (tmp_path / "srv/gpufleet/bundle.gpufleet-partial").exists()
    assert first["diff"]["before"] == ""
    assert f"{DEB} {hashlib.sha256(PAYLOAD[DEB]).hexdigest()}\n" in first["diff"]["after"]

    second = run(path=str(src), fingerprint=key["fpr"], dest=str(dest))
    assert second["changed"] is False
    assert second["placed"] == str(dest)
    assert second["replaced_tampered"] is False


def test_replaces_a_tampered_placed_copy(src, key, tmp_path):
    dest = tmp_path / "bundle"
    run(path=str(src), fingerprint=key["fpr"], dest=str(dest))
    (dest / DEB).write_bytes(b"x" * len(PAYLOAD[DEB]))
    (dest / "planted").write_text("extra")

    result = run(path=str(src), fingerprint=key["fpr"], dest=str(dest))
    assert result["changed"] is True
    assert result["replaced_tampered"] is True
    assert [line.split(":")[0] for line in result["dest_problems"]] == ["corrupt", "extra"]
    assert tree(dest) == tree(src)
    assert not (tmp_path / "bundle.gpufleet-old").exists()
    assert run(path=str(src), fingerprint=key["fpr"], dest=str(dest))["changed"] is False


def test_replaces_an_older_bundle_that_still_verifies(src, key, tmp_path):
    dest = build(tmp_path / "bundle", key, payload={DEB: b"old deb"}, name="older")
    result = run(path=str(src), fingerprint=key["fpr"], dest=str(dest))
    assert result["changed"] is True
    assert result["replaced_tampered"] is False
    assert tree(dest) == tree(src)


def test_leftover_partial_copy_is_discarded(src, key, tmp_path):
    dest = tmp_path / "bundle"
    partial = tmp_path / "bundle.gpufleet-partial"
    partial.mkdir()
    (partial / "half-copied.deb").write_bytes(b"half")
    assert run(path=str(src), fingerprint=key["fpr"], dest=str(dest))["changed"] is True
    assert tree(dest) == tree(src)
    assert not partial.exists()


def test_check_mode_verifies_and_copies_nothing(src, key, tmp_path):
    dest = tmp_path / "bundle"
    result = run(path=str(src), fingerprint=key["fpr"], dest=str(dest), _ansible_check_mode=True)
    assert result["changed"] is True
    assert not dest.exists()
    assert not (tmp_path / "bundle.gpufleet-partial").exists()

    run(path=str(src), fingerprint=key["fpr"], dest=str(dest))
    (dest / DEB).write_bytes(b"tampered")
    placed = tree(dest)
    result = run(path=str(src), fingerprint=key["fpr"], dest=str(dest), _ansible_check_mode=True)
    assert result["changed"] is True
    assert result["replaced_tampered"] is True
    assert tree(dest) == placed  # reported, not repaired

    (dest / DEB).write_bytes(PAYLOAD[DEB])
    assert (
        run(path=str(src), fingerprint=key["fpr"], dest=str(dest), _ansible_check_mode=True)["changed"]
        is False
    )


def test_refuses_to_replace_what_is_not_a_placed_bundle(src, key, tmp_path):
    dest = tmp_path / "srv"
    dest.mkdir()
    (dest / "important.txt").write_text("someone's data")
    result = run(path=str(src), fingerprint=key["fpr"], dest=str(dest))
    assert result["failed"] is True
    assert "not a placed gpufleet bundle; refusing to replace it" in result["msg"]
    assert (dest / "important.txt").read_text() == "someone's data"

    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = run(path=str(src), fingerprint=key["fpr"], dest=str(a_file))
    assert result["failed"] is True
    assert "is not a directory" in result["msg"]


def test_empty_dest_directory_is_filled(src, key, tmp_path):
    dest = tmp_path / "bundle"
    dest.mkdir()
    result = run(path=str(src), fingerprint=key["fpr"], dest=str(dest))
    assert result["changed"] is True
    assert result["replaced_tampered"] is False
    assert tree(dest) == tree(src)


def test_dest_inside_the_bundle_is_refused(src, key):
    result = run(path=str(src), fingerprint=key["fpr"], dest=str(src / "copy"))
    assert result["failed"] is True
    assert "is inside the bundle" in result["msg"]
    assert not (src / "copy").exists()
