"""The model manifest: chunk hashing, canonical bytes, refusals, and the signature check it shares
with bundles (real keys made by gpg, checked by the real gpgv)."""

import copy
import hashlib
import json

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_manifest as mm
from bundle_testkit import signing_keys
from model_testkit import CHUNK, make_files, manifest_for


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    yield from signing_keys(tmp_path_factory)


def test_hash_file_gives_the_whole_and_every_chunk(tmp_path):
    data = bytes(range(256)) * 10  # 2560 bytes: chunks of 1024, 1024, 512
    path = tmp_path / "f"
    path.write_bytes(data)
    seen = []
    size, digest, chunks = mm.hash_file(str(path), CHUNK, seen.append)
    assert size == 2560 and digest == hashlib.sha256(data).hexdigest()
    assert chunks == [hashlib.sha256(data[i : i + CHUNK]).hexdigest() for i in (0, 1024, 2048)]
    assert sum(seen) == 2560
    assert mm.chunk_count(2560, CHUNK) == 3 and mm.chunk_range(2, 2560, CHUNK) == (2048, 512)


def test_an_empty_file_has_no_chunks(tmp_path):
    (tmp_path / "e").write_bytes(b"")
    assert mm.hash_file(str(tmp_path / "e"), CHUNK) == (0, hashlib.sha256(b"").hexdigest(), [])


def test_exact_multiple_of_the_chunk_size(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 2048)
    assert len(mm.hash_file(str(tmp_path / "f"), CHUNK)[2]) == 2


def test_round_trip_is_canonical():
    manifest = manifest_for(make_files())
    raw = mm.dumps(manifest)
    assert mm.loads(raw) == manifest
    assert mm.dumps(mm.loads(raw)) == raw
    shuffled = json.dumps(dict(reversed(list(manifest.items()))), indent=4).encode()
    assert mm.dumps(mm.loads(shuffled)) == raw, "the same manifest always serializes to the same bytes"
    assert raw.endswith(b"\n") and b" " not in raw.split(b'"files"')[0]
    assert [e["path"] for e in manifest["files"]] == sorted(make_files())


def broken(change):
    manifest = copy.deepcopy(manifest_for(make_files()))
    change(manifest)
    return manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["files"][0].update(path="../../etc/passwd"), "climbs out"),
        (lambda m: m["files"][0].update(path="/etc/passwd"), "absolute"),
        (lambda m: m["files"][0].update(path="a//b"), "not normalized"),
        (lambda m: m["files"][0].update(path="a/./b"), "not normalized"),
        (lambda m: m["files"][0].update(path="a\\b"), "backslash"),
        (lambda m: m["files"][1].update(path=m["files"][0]["path"]), "listed twice"),
        (
            lambda m: m["files"].append(dict(m["files"][0], path=m["files"][0]["path"] + "/x")),
            "as the directory",
        ),
        (lambda m: m["files"][0]["chunks"].append("0" * 64), "chunks of 1024 make"),
        (lambda m: m["files"][0].update(sha256="XYZ"), "sha256 must be"),
        (lambda m: m["files"][0].update(size=-1), "size must be"),
        (lambda m: m.update(name="../evil"), "model name"),
        (lambda m: m.update(version=".hidden"), "model version"),
        (lambda m: m.update(chunk_size=10), "chunk_size"),
        (lambda m: m.update(format_version=2), "newer gpufleet"),
        (lambda m: m.update(format="something"), "not a gpufleet model manifest"),
        (lambda m: m.update(files=[]), "no 'files'"),
    ],
)
def test_bad_manifests_are_refused_with_a_clear_message(change, message):
    with pytest.raises(mm.ModelError, match=message):
        mm.loads(mm.dumps(broken(change)), "m.json")


def test_not_json_is_refused():
    with pytest.raises(mm.ModelError, match="not valid JSON"):
        mm.loads(b"{", "m.json")


def write_signed(tmp_path, key, signer=None, alter=None):
    manifest = manifest_for(make_files(), signing_key=key.fpr)
    path = tmp_path / "tiny-1.model.json"
    path.write_bytes(mm.dumps(manifest))
    (signer or key).sign(path)
    if alter:
        path.write_bytes(alter(path.read_bytes()))
    keyring = tmp_path / "key.gpg"
    keyring.write_bytes(key.binary)
    return path, keyring


def test_a_manifest_signed_by_the_pinned_key_is_trusted(tmp_path, keys):
    path, keyring = write_signed(tmp_path, keys["bundle"])
    manifest, raw = mm.verify_signed(str(path), keys["bundle"].fpr, str(keyring))
    assert manifest["name"] == "tiny" and raw == path.read_bytes()


def test_a_manifest_signed_by_another_key_is_refused(tmp_path, keys):
    path, keyring = write_signed(tmp_path, keys["bundle"], signer=keys["other"])
    with pytest.raises(mm.ModelError, match=r"not trusted.*signed by another key"):
        mm.verify_signed(str(path), keys["bundle"].fpr, str(keyring))


def test_a_keyring_that_is_not_the_pinned_key_is_refused(tmp_path, keys):
    path, keyring = write_signed(tmp_path, keys["bundle"])
    with pytest.raises(mm.ModelError, match="not the pinned key"):
        mm.verify_signed(str(path), keys["other"].fpr, str(keyring))


def test_an_altered_manifest_is_refused(tmp_path, keys):
    path, keyring = write_signed(
        tmp_path, keys["bundle"], alter=lambda raw: raw.replace(b'"tiny"', b'"tinY"')
    )
    with pytest.raises(mm.ModelError, match="BADSIG"):
        mm.verify_signed(str(path), keys["bundle"].fpr, str(keyring))


def test_an_unsigned_manifest_is_refused(tmp_path, keys):
    path, keyring = write_signed(tmp_path, keys["bundle"])
    (tmp_path / "tiny-1.model.json.asc").unlink()
    with pytest.raises(mm.ModelError, match="unsigned"):
        mm.verify_signed(str(path), keys["bundle"].fpr, str(keyring))


def test_signing_key_field_must_be_the_pinned_key(tmp_path, keys):
    manifest = manifest_for(make_files(), signing_key=keys["other"].fpr)
    path = tmp_path / "m.json"
    path.write_bytes(mm.dumps(manifest))
    keys["bundle"].sign(path)
    (tmp_path / "key.gpg").write_bytes(keys["bundle"].binary)
    with pytest.raises(mm.ModelError, match="names signing_key"):
        mm.verify_signed(str(path), keys["bundle"].fpr, str(tmp_path / "key.gpg"))
