"""module_utils.bundle_format through the bundle API: fingerprints (normalized, and computed from
real gpg key packets in every header form) and manifest validation."""

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import bundle as b
from bundle_testkit import GOOD, good_bundle, gpg, manifest_with, signing_keys, write_manifest


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    yield from signing_keys(tmp_path_factory)


@pytest.fixture
def bundle(tmp_path, keys):
    return good_bundle(tmp_path, keys)


# --- normalize_fingerprint ----------------------------------------------------------------------


def test_normalize_fingerprint():
    fpr = "2F173C5CB4120B0D1C028E34128F7BAC8776D15E"
    assert b.normalize_fingerprint(fpr) == fpr
    assert b.normalize_fingerprint("0x" + fpr.lower()) == fpr
    assert b.normalize_fingerprint("2F17 3C5C B412 0B0D 1C02  8E34 128F 7BAC 8776 D15E") == fpr


@pytest.mark.parametrize(
    "value", ["", "128F7BAC8776D15E", "2F173C5CB4120B0D1C028E34128F7BAC8776D15G", None, 42]
)
def test_normalize_fingerprint_rejects(value):
    with pytest.raises(b.BundleError, match="gpufleet bundle key --fingerprint") as exc:
        b.normalize_fingerprint(value)
    assert "40 hexadecimal characters" in str(exc.value)


# --- pgp_fingerprint ----------------------------------------------------------------------------


def old_header(tag, body, length_type):
    size = {0: 1, 1: 2, 2: 4}.get(length_type, 0)
    length = len(body).to_bytes(size, "big") if size else b""
    return bytes([0x80 | tag << 2 | length_type]) + length + body


def new_header(tag, body, form):
    n = len(body)
    if form == 1:
        length = bytes([n])
    elif form == 2:
        n2 = n - 192
        length = bytes([(n2 >> 8) + 192, n2 & 0xFF])
    else:
        length = b"\xff" + n.to_bytes(4, "big")
    return bytes([0xC0 | tag]) + length + body


def first_packet_body(binary):
    """The public key packet body of a gpg export, whose header gpg writes in the old format."""
    assert binary[0] & 0xC0 == 0x80 and (binary[0] >> 2) & 0x0F == 6
    size = {0: 1, 1: 2, 2: 4}[binary[0] & 3]
    length = int.from_bytes(binary[1 : 1 + size], "big")
    return binary[1 + size : 1 + size + length], binary[1 + size + length :]


@pytest.mark.parametrize("name", ["bundle", "other", "rsa"])
def test_pgp_fingerprint_matches_gpg(keys, name):
    key = keys[name]
    assert b.pgp_fingerprint(key.binary) == key.fpr
    assert b.pgp_fingerprint(key.armored) == key.fpr
    assert b.pgp_fingerprint(key.armored.encode()) == key.fpr


def test_gpg_writes_the_length_forms_under_test(keys):
    # ed25519's key packet fits a one-octet length, RSA-2048's needs two: both old-format paths run.
    assert keys["bundle"].binary[0] == 0x98
    assert keys["rsa"].binary[0] == 0x99


@pytest.mark.parametrize("name", ["bundle", "rsa"])
def test_pgp_fingerprint_reads_every_header_form(keys, name):
    key = keys[name]
    body, rest = first_packet_body(key.binary)
    forms = [old_header(6, body, 1), old_header(6, body, 2), new_header(6, body, 5)]
    forms.append(new_header(6, body, 1 if len(body) < 192 else 2))
    if len(body) < 256:
        forms.append(old_header(6, body, 0))
    for packet in forms:
        assert b.pgp_fingerprint(packet + rest) == key.fpr, packet[:6].hex()
    # Old format, indeterminate length: the packet runs to the end of the data.
    assert b.pgp_fingerprint(bytes([0x80 | 6 << 2 | 3]) + body) == key.fpr


def test_pgp_fingerprint_rejects_a_signature(bundle):
    with pytest.raises(b.BundleError, match="this is a signature, not a public key"):
        b.pgp_fingerprint((bundle / b.SIGNATURE).read_text())


def test_pgp_fingerprint_rejects_a_secret_key(keys):
    key = keys["bundle"]
    secret = gpg(key.home, "--pinentry-mode", "loopback", "--passphrase", "", "--export-secret-keys", key.fpr)
    with pytest.raises(b.BundleError, match=r"a secret key, not a public key.*gpg --export"):
        b.pgp_fingerprint(secret)


def test_pgp_fingerprint_rejects_other_versions(keys):
    body, rest = first_packet_body(keys["bundle"].binary)
    with pytest.raises(b.BundleError, match="version 5 OpenPGP key"):
        b.pgp_fingerprint(old_header(6, b"\x05" + body[1:], 1) + rest)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"KBXf\x00\x00", "not an OpenPGP packet header"),
        (b"\x99\x01", "cut short inside a packet header"),
        (b"\x99\x01\x0d\x04\x00", "says it is 269 bytes long but only 2 follow"),
        (b"\xc6\xe0\x04", "partial body length"),
        (b"\x98\x00", "the public key packet is empty"),
        ("hello", "not ASCII-armored"),
        ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDME\n", "no '-----END PGP"),
        ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nm*ME\n-----END PGP PUBLIC KEY BLOCK-----\n", "base64"),
        (None, "expected OpenPGP key data"),
    ],
)
def test_pgp_fingerprint_errors(data, message):
    with pytest.raises(b.BundleError, match=message):
        b.pgp_fingerprint(data)


def test_dearmor_skips_headers_checksum_and_carriage_returns(keys):
    lines = keys["bundle"].armored.splitlines()
    assert lines[1] == ""  # gpg 2.2 writes no header: add some, as other tools do
    text = "\r\n".join([lines[0], "Comment: made by a test", "Version: x", *lines[1:]])
    assert b.dearmor(text) == keys["bundle"].binary
    assert b.dearmor("junk before\n" + keys["bundle"].armored) == keys["bundle"].binary


# --- manifest validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (
            manifest_with(GOOD, schema=2),
            "schema 2, newer than this gpufleet reads .*newer gpufleet is needed",
        ),
        (manifest_with(GOOD, schema="1"), "schema '1'; this gpufleet reads schema 1"),
        ({"schema": 1}, "no 'files' list"),
        ([], "not a JSON object"),
        (manifest_with({**GOOD, "path": "../etc/passwd"}), r"files\[0\] \('../etc/passwd'\).*'\.\.'"),
        (manifest_with(GOOD, {**GOOD, "path": "apt/../../x"}), r"files\[1\] \('apt/../../x'\).*'\.\.'"),
        (manifest_with({**GOOD, "path": "/etc/passwd"}), "the path is absolute"),
        (manifest_with({**GOOD, "path": "a//b"}), "not normalized"),
        (manifest_with({**GOOD, "path": "./a"}), "not normalized"),
        (manifest_with({**GOOD, "path": "a\\b"}), "backslash"),
        (manifest_with({**GOOD, "path": ""}), "has no path"),
        (manifest_with({**GOOD, "path": "manifest.json"}), "cannot be listed"),
        (manifest_with(GOOD, GOOD), r"files\[1\] \('files/a'\) is listed twice"),
        (manifest_with(GOOD, {**GOOD, "path": "files/a/b"}), "listed as a file and as the directory"),
        (manifest_with({**GOOD, "size": -1}), "size must be a whole number"),
        (manifest_with({**GOOD, "size": True}), "size must be a whole number"),
        (manifest_with({**GOOD, "size": "1"}), "size must be a whole number"),
        (manifest_with({**GOOD, "sha256": "abc"}), "sha256 must be 64 hexadecimal"),
        (manifest_with({**GOOD, "kind": "rpm"}), "kind 'rpm' is not one of"),
        (manifest_with("files/a"), r"files\[0\] is not an object"),
        (manifest_with({**GOOD, "kind": "image", "image_id": "abc"}), "image_id must be 'sha256:'"),
        (manifest_with({**GOOD, "kind": "image", "image_id": "sha256:" + "A" * 64}), "image_id must be"),
        (manifest_with({**GOOD, "kind": "file", "image_id": "sha256:" + "a" * 64}), "on an image entry"),
        (manifest_with(GOOD, base={"name": "lab"}), "base must be null or an object"),
    ],
)
def test_load_manifest_rejects(tmp_path, manifest, message):
    write_manifest(tmp_path, manifest)
    with pytest.raises(b.BundleError, match=message):
        b.load_manifest(str(tmp_path))


def test_load_manifest_reads_a_good_one(tmp_path):
    image = {**GOOD, "path": "images/x.tar", "kind": "image", "image_id": "sha256:" + "a" * 64}
    manifest = manifest_with(GOOD, {**GOOD, "path": "files/b", "kind": "file"}, image, base=None)
    write_manifest(tmp_path, manifest)
    assert b.load_manifest(str(tmp_path)) == manifest


def test_load_manifest_missing_and_not_json(tmp_path):
    with pytest.raises(b.BundleError, match=r"is missing: .* is not a gpufleet bundle"):
        b.load_manifest(str(tmp_path))
    (tmp_path / b.MANIFEST).write_text("{not json")
    with pytest.raises(b.BundleError, match="is not valid JSON"):
        b.load_manifest(str(tmp_path))
