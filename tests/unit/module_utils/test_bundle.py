"""module_utils.bundle against real signed bundles: real gpg keys, real gpgv, real files on disk.

A session-scoped GNUPGHOME holds three keys made by gpg itself: the bundle key, another ed25519
key (a stranger who re-signs a bundle), and an RSA key (longer key packets). Every bundle is built
in a tmp directory exactly as ``gpufleet bundle build`` lays one out, then altered the way a
damaged medium or an attacker would.
"""

import hashlib
import json
import os
import shutil

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import bundle as b
from bundle_testkit import (
    DEB,
    GOOD,
    PAYLOAD,
    build,
    good_bundle,
    manifest_with,
    signing_keys,
    verify,
    write_manifest,
)


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    yield from signing_keys(tmp_path_factory)


@pytest.fixture
def bundle(tmp_path, keys):
    return good_bundle(tmp_path, keys)


# --- a good bundle ------------------------------------------------------------------------------


def test_good_bundle_passes(bundle, keys):
    seen = []
    report = verify(bundle, keys, progress=seen.append)
    assert report["ok"] is True
    assert report["signature_problem"] is None
    assert report["manifest_problem"] is None
    assert report["problems"] == []
    assert report["files_checked"] is True
    assert report["fingerprint"] == keys["bundle"].fpr
    assert report["name"] == "lab"
    assert report["files"] == len(PAYLOAD) + 2  # the payload and the two key files
    listed = sum(len(d) for d in PAYLOAD.values()) + len(keys["bundle"].binary) + len(keys["bundle"].armored)
    assert report["bytes"] == listed
    assert sum(seen) == listed  # every byte was hashed, and reported to the progress callback
    assert b.format_problems(report) == []


def test_pin_may_be_written_with_spaces_and_lower_case(bundle, keys):
    fpr = keys["bundle"].fpr
    spaced = "0x" + " ".join(fpr[i : i + 4] for i in range(0, 40, 4)).lower()
    assert b.verify_bundle(str(bundle), spaced)["ok"] is True


def test_armored_keyring_given_explicitly_is_used(bundle, keys, tmp_path):
    keyring = tmp_path / "pinned.asc"
    keyring.write_text(keys["bundle"].armored)
    (bundle / b.KEYRING).write_bytes(b"junk")  # proves the explicit keyring, not the bundle's, is read
    sig = b.check_signature(str(bundle), keys["bundle"].fpr, keyring=str(keyring))
    assert sig == {"ok": True, "fingerprint": keys["bundle"].fpr, "problem": None}


# --- damaged files ------------------------------------------------------------------------------


def test_one_flipped_byte_is_corrupt(bundle, keys):
    path = bundle / DEB
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    report = verify(bundle, keys)
    assert report["ok"] is False
    assert report["signature_problem"] is None
    want = hashlib.sha256(PAYLOAD[DEB]).hexdigest()[:8]
    got = hashlib.sha256(bytes(data)).hexdigest()[:8]
    assert report["problems"] == [
        {"path": DEB, "problem": "corrupt", "detail": f"sha256 {want}... expected, {got}... found"}
    ]
    assert b.format_problems(report) == [f"corrupt: {DEB} (sha256 {want}... expected, {got}... found)"]


def test_missing_file(bundle, keys):
    (bundle / DEB).unlink()
    assert verify(bundle, keys)["problems"] == [
        {"path": DEB, "problem": "missing", "detail": "not in the bundle"}
    ]


def test_truncated_file(bundle, keys):
    (bundle / DEB).write_bytes(PAYLOAD[DEB][:1000])
    [problem] = verify(bundle, keys)["problems"]
    assert problem == {"path": DEB, "problem": "truncated", "detail": f"1000 of {len(PAYLOAD[DEB])} bytes"}


def test_longer_file_is_corrupt(bundle, keys):
    (bundle / DEB).write_bytes(PAYLOAD[DEB] + b"x")
    [problem] = verify(bundle, keys)["problems"]
    assert problem["problem"] == "corrupt"
    assert problem["detail"] == f"{len(PAYLOAD[DEB]) + 1} bytes, {len(PAYLOAD[DEB])} expected"


def test_extra_files_are_reported_and_empty_directories_are_not(bundle, keys):
    (bundle / "apt/pool/main/e").mkdir()
    (bundle / "apt/pool/main/e/evil_1.0_amd64.deb").write_bytes(b"evil")
    (bundle / "images").mkdir()  # an empty directory is not a file, so not extra
    (bundle / "link").symlink_to(bundle / DEB)
    (bundle / "linkdir").symlink_to(bundle / "apt")
    report = verify(bundle, keys)
    assert report["ok"] is False
    assert [(p["path"], p["problem"], p["detail"]) for p in report["problems"]] == [
        ("apt/pool/main/e/evil_1.0_amd64.deb", "extra", "4 bytes, not listed in manifest.json"),
        ("link", "extra", "symbolic link, not listed in manifest.json"),
        ("linkdir", "extra", "symbolic link to a directory, not listed in manifest.json"),
    ]


def test_listed_path_that_is_a_link_or_a_directory_is_corrupt(bundle, keys, tmp_path):
    outside = tmp_path / "outside.deb"
    outside.write_bytes(PAYLOAD[DEB])  # the right content, but outside the bundle
    (bundle / DEB).unlink()
    (bundle / DEB).symlink_to(outside)
    config = bundle / "files/models/tiny/config.json"
    config.unlink()
    config.mkdir()
    problems = {p["path"]: p for p in verify(bundle, keys)["problems"]}
    assert problems[DEB]["problem"] == "corrupt"
    assert "symbolic link" in problems[DEB]["detail"]
    assert problems["files/models/tiny/config.json"]["problem"] == "corrupt"
    assert "is a directory" in problems["files/models/tiny/config.json"]["detail"]


def test_files_reached_through_a_linked_directory_are_corrupt(bundle, keys, tmp_path):
    shutil.move(str(bundle / "wheels"), str(tmp_path / "wheels"))
    (bundle / "wheels").symlink_to(tmp_path / "wheels")
    problems = verify(bundle, keys)["problems"]
    assert [(p["path"], p["problem"]) for p in problems] == [
        ("wheels", "extra"),
        ("wheels/pyyaml-6.0.1-cp311-cp311-linux_x86_64.whl", "corrupt"),
    ]


def test_problems_are_sorted_by_path(bundle, keys):
    (bundle / "zzz").write_bytes(b"z")
    (bundle / "aaa").write_bytes(b"a")
    (bundle / DEB).unlink()
    paths = [p["path"] for p in verify(bundle, keys)["problems"]]
    assert paths == ["aaa", DEB, "zzz"]


# --- the signature ------------------------------------------------------------------------------


def test_manifest_edited_after_signing_is_badsig_and_files_are_not_checked(bundle, keys):
    manifest = json.loads((bundle / b.MANIFEST).read_text())
    manifest["files"] = [e for e in manifest["files"] if e["path"] != DEB]  # hide a file
    write_manifest(bundle, manifest)
    (bundle / "wheels/pyyaml-6.0.1-cp311-cp311-linux_x86_64.whl").write_bytes(b"corrupt")
    report = verify(bundle, keys)
    assert report["ok"] is False
    assert report["signature_problem"] == (
        "signature does not match manifest.json (BADSIG): the manifest was altered after signing"
    )
    assert report["files_checked"] is False
    assert report["problems"] == []  # a manifest that is not trusted says nothing about the files
    assert report["fingerprint"] is None
    lines = b.format_problems(report)
    assert lines[0].startswith("signature: signature does not match manifest.json (BADSIG)")
    assert "files were not checked" in lines[1]


def test_missing_signature_means_unsigned(bundle, keys):
    (bundle / b.SIGNATURE).unlink()
    report = verify(bundle, keys)
    assert report["signature_problem"] == "manifest.json.asc is missing: the bundle is unsigned"
    assert report["files_checked"] is False


def test_missing_manifest(bundle, keys):
    (bundle / b.MANIFEST).unlink()
    assert verify(bundle, keys)["signature_problem"] == "manifest.json is missing"


def test_missing_keyring_is_named(bundle, keys):
    (bundle / b.KEYRING).unlink()
    problem = verify(bundle, keys)["signature_problem"]
    assert problem == f"the keyring {bundle / b.KEYRING} is missing"


def test_keyring_that_is_not_a_key(bundle, keys):
    (bundle / b.KEYRING).write_bytes(b"KBXfake keybox")
    problem = verify(bundle, keys)["signature_problem"]
    assert "is not a usable OpenPGP public key" in problem


def test_bundle_resigned_by_another_key_with_its_own_keyring(tmp_path, keys):
    # A stranger rebuilt the bundle, signed it with their key and shipped their key in keys/.
    root = tmp_path / "bundle"
    build(root, keys["bundle"], signer=keys["other"])
    report = verify(root, keys)
    assert report["ok"] is False
    assert report["signature_problem"] == (
        f"the bundle's key {keys['other'].fpr} is not the pinned key {keys['bundle'].fpr} "
        "(gpufleet_bundle_fingerprint / --fingerprint)"
    )
    assert report["files_checked"] is False


def test_signature_by_another_key_with_the_pinned_keyring_is_no_pubkey(bundle, keys):
    keys["other"].sign(bundle / b.MANIFEST)  # only the signature was replaced
    problem = verify(bundle, keys)["signature_problem"]
    assert "(NO_PUBKEY): the bundle was signed by another key" in problem
    assert keys["other"].fpr in problem  # gpgv names the signer's fingerprint
    assert keys["bundle"].fpr in problem


def test_keyring_smuggling_a_second_key_behind_the_pinned_one(bundle, keys):
    # The pinned key comes first, so the keyring passes the first check; gpgv accepts a signature
    # by any key in it, so only VALIDSIG's primary fingerprint catches the stranger's signature.
    (bundle / b.KEYRING).write_bytes(keys["bundle"].binary + keys["other"].binary)
    keys["other"].sign(bundle / b.MANIFEST)
    report = verify(bundle, keys)
    assert report["ok"] is False
    assert report["signature_problem"] == (
        f"manifest.json is signed by key {keys['other'].fpr}, not the pinned key {keys['bundle'].fpr} "
        "(VALIDSIG)"
    )
    assert report["fingerprint"] == keys["other"].fpr
    assert report["files_checked"] is False


def test_wrong_pin(bundle, keys):
    report = b.verify_bundle(str(bundle), keys["other"].fpr)
    assert report["ok"] is False
    assert (
        f"the bundle's key {keys['bundle'].fpr} is not the pinned key {keys['other'].fpr}"
        in (report["signature_problem"])
    )


def test_signature_file_that_is_not_a_signature(bundle, keys):
    (bundle / b.SIGNATURE).write_text("this is not a signature\n")
    problem = verify(bundle, keys)["signature_problem"]
    assert (
        problem == "manifest.json.asc holds no OpenPGP signature (NODATA): it is damaged or not a signature"
    )


def test_gpgv_not_installed(bundle, keys, tmp_path):
    sig = b.check_signature(str(bundle), keys["bundle"].fpr, gpgv=str(tmp_path / "no-gpgv"))
    assert sig["ok"] is False
    assert "install the gpgv package" in sig["problem"]


def test_a_pin_is_required(bundle):
    with pytest.raises(b.BundleError, match="a pinned key fingerprint is required"):
        b.check_signature(str(bundle), None)
    with pytest.raises(b.BundleError, match="a pinned key fingerprint is required"):
        b.verify_bundle(str(bundle), None)


def test_manifest_naming_another_signing_key(tmp_path, keys):
    root = tmp_path / "bundle"
    build(root, keys["bundle"], signing_key=keys["other"].fpr)
    report = verify(root, keys)
    assert report["ok"] is False
    assert report["signature_problem"] is None
    assert report["manifest_problem"] == (
        f"manifest.json names signing_key '{keys['other'].fpr}', not the pinned key {keys['bundle'].fpr}"
    )
    assert report["files_checked"] is True


def test_signed_manifest_with_newer_schema(tmp_path, keys):
    root = tmp_path / "bundle"
    build(root, keys["bundle"], schema=2)
    report = verify(root, keys)
    assert report["ok"] is False
    assert "schema 2" in report["manifest_problem"]
    assert "a newer gpufleet is needed" in report["manifest_problem"]
    assert report["files_checked"] is False


# --- update bundles -----------------------------------------------------------------------------

NEW_DEB = "apt/pool/main/h/hello/hello_2.12-1_amd64.deb"


@pytest.fixture
def update(tmp_path, keys):
    """A base bundle and an update that drops one file, changes one and adds one; the update
    directory holds only the changed and added files."""
    base = tmp_path / "base"
    build(base, keys["bundle"])
    payload = dict(PAYLOAD)
    del payload[DEB]
    payload[NEW_DEB] = b"!<arch>\nnew hello"
    payload["apt/dists/bookworm/InRelease"] = b"Origin: gpufleet\nSuite: bookworm\nDate: later\n"
    unchanged = {
        "wheels/pyyaml-6.0.1-cp311-cp311-linux_x86_64.whl",
        "files/models/tiny/config.json",
        b.KEYRING,
        b.ARMORED_KEY,
    }
    root = tmp_path / "update"
    base_ref = {
        "name": "lab",
        "manifest_sha256": hashlib.sha256((base / b.MANIFEST).read_bytes()).hexdigest(),
    }
    manifest = build(root, keys["bundle"], payload, omit=unchanged - {b.KEYRING}, base=base_ref)
    return base, root, manifest


def test_update_bundle_verifies_with_its_base(update, keys):
    base, root, manifest = update
    assert not (root / "files").exists()  # unchanged files really are left out
    report = verify(root, keys, base=str(base))
    assert report["ok"] is True, b.format_problems(report)
    assert report["files"] == len(manifest["files"])


def test_update_bundle_without_the_key_takes_it_from_the_base(update, keys):
    base, root, _manifest = update
    (root / b.KEYRING).unlink()  # unchanged from the base, so an update may leave it out
    report = verify(root, keys, base=str(base))
    assert report["ok"] is True, b.format_problems(report)


def test_update_bundle_without_its_base_names_what_to_give(update, keys):
    _base, root, _manifest = update
    report = verify(root, keys)
    assert report["ok"] is False
    missing = [p for p in report["problems"] if p["problem"] == "missing"]
    assert [p["path"] for p in missing] == [
        "files/models/tiny/config.json",
        b.ARMORED_KEY,
        "wheels/pyyaml-6.0.1-cp311-cp311-linux_x86_64.whl",
    ]
    assert missing[0]["detail"] == (
        "not in the bundle; this is an update of bundle lab: give the base bundle's directory"
    )


def test_update_bundle_checks_the_files_it_takes_from_the_base(update, keys):
    base, root, _manifest = update
    (base / "files/models/tiny/config.json").write_bytes(b'{"hidden_size": 65}\n')
    [problem] = verify(root, keys, base=str(base))["problems"]
    assert problem["path"] == "files/models/tiny/config.json"
    assert problem["problem"] == "corrupt"
    assert problem["detail"].endswith(f"(in the base bundle {base})")


def test_update_bundle_file_in_neither_place(update, keys):
    base, root, _manifest = update
    (base / "files/models/tiny/config.json").unlink()
    [problem] = verify(root, keys, base=str(base))["problems"]
    assert problem == {
        "path": "files/models/tiny/config.json",
        "problem": "missing",
        "detail": f"not in the bundle nor in the base bundle {base}",
    }


def test_update_bundle_with_the_wrong_base(update, keys, tmp_path):
    _base, root, _manifest = update
    other = tmp_path / "other-base"
    build(other, keys["bundle"], name="another")
    report = verify(root, keys, base=str(other))
    assert report["ok"] is False
    assert f"{other} is not the base this update was built on" in report["manifest_problem"]


# --- diff_manifests, check_files, sha256_file ---------------------------------------------------


def test_diff_manifests(update, keys):
    base, _root, new = update
    old = b.load_manifest(str(base))
    diff = b.diff_manifests(old, new)
    assert [e["path"] for e in diff["added"]] == [NEW_DEB]
    assert [e["path"] for e in diff["removed"]] == [DEB]
    assert [(o["path"], n["path"]) for o, n in diff["changed"]] == [
        ("apt/dists/bookworm/InRelease", "apt/dists/bookworm/InRelease")
    ]
    assert diff["changed"][0][0]["sha256"] != diff["changed"][0][1]["sha256"]
    assert diff["unchanged"] == sorted(
        [
            b.ARMORED_KEY,
            b.KEYRING,
            "files/models/tiny/config.json",
            "wheels/pyyaml-6.0.1-cp311-cp311-linux_x86_64.whl",
        ]
    )
    assert b.diff_manifests(old, old)["unchanged"] == [e["path"] for e in old["files"]]


def test_check_files_on_a_missing_directory(tmp_path):
    with pytest.raises(b.BundleError, match="does not exist"):
        b.check_files(str(tmp_path / "nope"), manifest_with(GOOD))


def test_sha256_file_streams_in_mebibyte_blocks(tmp_path):
    data = os.urandom(b.BLOCK + 12345)
    path = tmp_path / "big"
    path.write_bytes(data)
    seen = []
    assert b.sha256_file(str(path), seen.append) == hashlib.sha256(data).hexdigest()
    assert seen == [b.BLOCK, 12345]
    assert b.sha256_file(str(path)) == hashlib.sha256(data).hexdigest()


# --- placing a copy -----------------------------------------------------------------------------


def test_copy_bundle_and_swap_into_place(bundle, keys, tmp_path):
    dest = tmp_path / "placed"
    dest.mkdir()
    (dest / "stale").write_text("old copy")
    partial = tmp_path / "placed.gpufleet-partial"
    (bundle / DEB).chmod(0o600)
    b.copy_bundle(str(bundle), str(partial), b.load_manifest(str(bundle)))
    assert (partial / DEB).stat().st_mode & 0o777 == 0o644
    assert (partial / "apt").stat().st_mode & 0o777 == 0o755
    b.swap_into_place(str(partial), str(dest))
    assert not partial.exists()
    assert not (tmp_path / "placed.gpufleet-old").exists()
    assert not (dest / "stale").exists()
    assert verify(dest, keys)["ok"] is True
