# Copyright: gpufleet developers
# Apache-2.0
"""What an offline bundle is, independent of checking one: the layout's names, the manifest schema
(validated and loaded), sha256 of a file, and OpenPGP key packets (dearmor, v4 fingerprint).

Host code: stdlib only, Python >= 3.8 (Ansible ships it to hosts with ``bundle_verify``). Split out of
``bundle``, which checks signatures and files and re-exports these names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import posixpath
import re

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.asc"
KEYRING = "keys/gpufleet-bundle.gpg"
ARMORED_KEY = "keys/gpufleet-bundle.asc"
KINDS = (
    "apt",
    "apt-index",
    "wheel",
    "wheel-index",
    "image",
    "file",
    "model",
    "model-manifest",
    "model-signature",
    "key",
)
BLOCK = 1024 * 1024
_HEX40 = re.compile(r"[0-9A-F]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# A Docker image ID as `docker image inspect --format {{.Id}}` prints it (image entries' image_id).
IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


class BundleError(Exception):
    """A bundle, manifest, key or fingerprint that cannot be used; the message says why."""


# --- hashing ------------------------------------------------------------------------------------


def sha256_file(path, progress=None):
    """Hex sha256 of the file at ``path``, read in 1 MiB blocks.

    ``progress(nbytes)`` is called after each block when given (for a progress bar).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(BLOCK)
            if not block:
                break
            digest.update(block)
            if progress is not None:
                progress(len(block))
    return digest.hexdigest()


def _short(digest):
    return f"{digest[:8]}..."


# --- OpenPGP keys -------------------------------------------------------------------------------


def normalize_fingerprint(s):
    """``'0xab12 CD34 ...'`` -> ``'AB12CD34...'``: 40 upper-case hex characters, or BundleError."""
    text = s if isinstance(s, str) else ""
    value = "".join(text.split()).upper()
    if value.startswith("0X"):
        value = value[2:]
    if not _HEX40.fullmatch(value):
        raise BundleError(
            f"{s!r} is not an OpenPGP key fingerprint: expected the 40 hexadecimal characters of a "
            "v4 fingerprint (spaces and a 0x prefix are allowed), such as "
            "'2F17 3C5C B412 0B0D 1C02  8E34 128F 7BAC 8776 D15E'; print the bundle key's with "
            "`gpufleet bundle key --fingerprint`"
        )
    return value


def dearmor(text):
    """The binary OpenPGP data inside the first ASCII-armored block of ``text`` (RFC 4880 6.2).

    Armor headers (``Version: ...``) and the ``=XXXX`` checksum line are skipped; the checksum is
    not checked, since the data itself is verified (fingerprint pin, signature) afterwards.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("ascii", "replace")
    lines = [line.strip() for line in text.splitlines()]
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("-----BEGIN PGP "))
    except StopIteration:
        raise BundleError(
            "no '-----BEGIN PGP ...-----' armor line: this is not ASCII-armored OpenPGP data"
        ) from None
    body = []
    in_headers = True
    for line in lines[start + 1 :]:
        if line.startswith("-----END PGP "):
            break
        if in_headers:
            # Headers ("Key: value") end at the first blank line; base64 never contains ':'.
            if not line or ":" in line:
                continue
            in_headers = False
        if not line:
            continue
        if line.startswith("="):  # the CRC24 checksum line ends the data
            break
        body.append(line)
    else:
        raise BundleError("the armored block has no '-----END PGP ...-----' line: it is cut short")
    try:
        data = base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleError(f"the armored block is not valid base64 ({exc})") from None
    if not data:
        raise BundleError("the armored block is empty")
    return data


def _packet(data, offset=0):
    """``(tag, body, next_offset)`` of the OpenPGP packet at ``offset`` (RFC 4880 4.2)."""
    if offset >= len(data):
        raise BundleError("the key data is empty")
    first = data[offset]
    if not first & 0x80:
        raise BundleError(
            f"byte 0x{first:02x} at offset {offset} is not an OpenPGP packet header: "
            "this is not binary OpenPGP data (a gpg keybox .kbx is not a key export: use gpg --export)"
        )
    pos = offset + 1

    def take(n):
        nonlocal pos
        if pos + n > len(data):
            raise BundleError("the OpenPGP data is cut short inside a packet header")
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    if first & 0x40:  # new format: tag in the low 6 bits, length in 1, 2 or 5 octets
        tag = first & 0x3F
        o1 = take(1)[0]
        if o1 < 192:
            length = o1
        elif o1 < 224:
            length = ((o1 - 192) << 8) + take(1)[0] + 192
        elif o1 == 255:
            length = int.from_bytes(take(4), "big")
        else:
            raise BundleError(f"packet with tag {tag} uses a partial body length, which key packets may not")
    else:  # old format: tag in bits 5-2, length type in bits 1-0
        tag = (first >> 2) & 0x0F
        length_type = first & 0x03
        # Types 0, 1, 2: a 1, 2 or 4 octet length; 3: indeterminate, the packet runs to the end.
        length = len(data) - pos if length_type == 3 else int.from_bytes(take(1 << length_type), "big")
    end = pos + length
    if end > len(data):
        raise BundleError(
            f"the OpenPGP packet (tag {tag}) says it is {length} bytes long but only "
            f"{len(data) - pos} follow: the key data is cut short"
        )
    return tag, data[pos:end], end


_TAG_NAMES = {
    1: "an encrypted session key",
    2: "a signature",
    5: "a secret key",
    7: "a secret subkey",
    11: "literal data",
    13: "a user id",
    14: "a public subkey",
}


def pgp_fingerprint(data):
    """Fingerprint of the first (primary) public key in ``data``: binary or armored OpenPGP.

    v4 fingerprint = SHA-1 of 0x99, the two-octet big-endian body length and the public-key
    packet body (RFC 4880 12.2), as upper-case hex. Raises BundleError for anything else.
    """
    if isinstance(data, str):
        data = dearmor(data)
    elif isinstance(data, (bytes, bytearray)):
        data = bytes(data)
        if data.lstrip().startswith(b"-----BEGIN PGP "):
            data = dearmor(data)
    else:
        raise BundleError(f"expected OpenPGP key data as text or bytes, got {type(data).__name__}")
    tag, body, _end = _packet(data)
    if tag != 6:
        what = _TAG_NAMES.get(tag, f"an OpenPGP packet with tag {tag}")
        hint = " (export the public key: gpg --export FINGERPRINT)" if tag in (5, 7) else ""
        raise BundleError(f"this is {what}, not a public key: the first packet must be a public key{hint}")
    if not body:
        raise BundleError("the public key packet is empty")
    if body[0] != 4:
        raise BundleError(
            f"this is a version {body[0]} OpenPGP key; gpufleet pins version 4 keys (what gpg 2.2 "
            "and 2.4 create by default)"
        )
    if len(body) > 0xFFFF:
        raise BundleError("the public key packet is too long for a version 4 key")
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()  # noqa: S324


# --- manifest -----------------------------------------------------------------------------------


def _entry_problem(index, entry):
    """Why files[index] is not a valid manifest entry, or None."""
    if not isinstance(entry, dict):
        return f"files[{index}] is not an object"
    path = entry.get("path")
    label = f"files[{index}] ({path!r})" if isinstance(path, str) else f"files[{index}]"
    if not isinstance(path, str) or not path:
        return f"{label} has no path"
    if path.startswith("/"):
        return f"{label}: the path is absolute; bundle paths are relative to the bundle directory"
    if "\\" in path or "\0" in path:
        return f"{label}: the path has a backslash or NUL; bundle paths are POSIX paths"
    parts = path.split("/")
    if ".." in parts:
        return f"{label}: the path climbs out of the bundle with '..'"
    if posixpath.normpath(path) != path or "." in parts:
        return f"{label}: the path is not normalized (empty, '.' or trailing '/' parts)"
    if path in (MANIFEST, SIGNATURE):
        return f"{label}: {path} cannot be listed in the manifest"
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return f"{label}: size must be a whole number of bytes, 0 or more, got {size!r}"
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest.lower()):
        return f"{label}: sha256 must be 64 hexadecimal characters, got {digest!r}"
    kind = entry.get("kind")
    if kind is not None and kind not in KINDS:
        return f"{label}: kind {kind!r} is not one of {', '.join(KINDS)}"
    image_id = entry.get("image_id")
    if image_id is not None and (
        kind != "image" or not isinstance(image_id, str) or not IMAGE_ID.fullmatch(image_id)
    ):
        return (
            f"{label}: image_id must be 'sha256:' and 64 hexadecimal characters, on an image entry, "
            f"got {image_id!r}"
        )
    requires = entry.get("requires")
    if requires is not None and (
        not isinstance(requires, list) or not all(isinstance(name, str) and name for name in requires)
    ):
        return f"{label}: requires must be a list of wheel names, got {requires!r}"
    extras = entry.get("extras")
    if extras is not None and (
        kind != "wheel"
        or not isinstance(extras, dict)
        or not all(
            isinstance(extra, str)
            and extra
            and isinstance(names, list)
            and all(isinstance(n, str) and n for n in names)
            for extra, names in extras.items()
        )
    ):
        return (
            f"{label}: extras must map each extra to a list of wheel names, on a wheel entry, got {extras!r}"
        )
    return None


def validate_manifest(manifest):
    """Raise BundleError naming the first problem of a parsed manifest; return it unchanged."""
    if not isinstance(manifest, dict):
        raise BundleError(f"{MANIFEST} is not a JSON object")
    schema = manifest.get("schema")
    if schema != SCHEMA_VERSION:
        if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA_VERSION:
            raise BundleError(
                f"{MANIFEST} has schema {schema}, newer than this gpufleet reads (schema "
                f"{SCHEMA_VERSION}): a newer gpufleet is needed to verify this bundle"
            )
        raise BundleError(f"{MANIFEST} has schema {schema!r}; this gpufleet reads schema {SCHEMA_VERSION}")
    files = manifest.get("files")
    if not isinstance(files, list):
        raise BundleError(f"{MANIFEST} has no 'files' list")
    seen = set()
    for index, entry in enumerate(files):
        problem = _entry_problem(index, entry)
        if problem:
            raise BundleError(f"{MANIFEST}: {problem}")
        if entry["path"] in seen:
            raise BundleError(f"{MANIFEST}: files[{index}] ({entry['path']!r}) is listed twice")
        seen.add(entry["path"])
    for path in seen:
        parent = posixpath.dirname(path)
        while parent:
            if parent in seen:
                raise BundleError(
                    f"{MANIFEST}: {parent!r} is listed as a file and as the directory of {path!r}"
                )
            parent = posixpath.dirname(parent)
    base = manifest.get("base")
    if base is not None and (
        not isinstance(base, dict)
        or not isinstance(base.get("manifest_sha256"), str)
        or not _HEX64.fullmatch(base["manifest_sha256"].lower())
    ):
        raise BundleError(
            f"{MANIFEST}: base must be null or an object with the base manifest's manifest_sha256"
        )
    return manifest


def load_manifest(root):
    """Read and validate ``root/manifest.json``; BundleError names what is wrong."""
    path = os.path.join(root, MANIFEST)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise BundleError(f"{path} is missing: {root} is not a gpufleet bundle") from None
    except OSError as exc:
        raise BundleError(f"{path} cannot be read: {exc.strerror}") from None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BundleError(f"{path} is not UTF-8 text") from None
    except ValueError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    return validate_manifest(manifest)
