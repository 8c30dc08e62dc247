# Copyright: gpufleet developers
# Apache-2.0
"""Offline-bundle verification: the signed manifest, the pinned key, and every file's sha256.

An offline bundle is a directory::

    manifest.json             what the bundle holds: every other file with its size and sha256
    manifest.json.asc         armored detached OpenPGP signature of manifest.json
    keys/gpufleet-bundle.gpg  the signing key, binary (also usable as a gpgv keyring)
    keys/gpufleet-bundle.asc  the same key, armored
    apt/ wheels/ images/ files/   the payload

Trust comes from the *pinned* fingerprint the operator configures, never from the key shipped in
the bundle: the shipped key must be the pinned one, gpgv must report a valid signature whose
primary key is the pinned one, and only then is the manifest read and every file hashed against it.

An update bundle's manifest lists the full new file set; files unchanged from its base bundle are
absent from the update directory and are found (and hash-checked) in the base directory.

Stdlib only, so Ansible can ship it to hosts (Python 3.9+); the ``gpufleet`` command, the
``bundle_verify`` module and the ``pgp_fingerprint`` filter share it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import subprocess
import tempfile

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.asc"
KEYRING = "keys/gpufleet-bundle.gpg"
ARMORED_KEY = "keys/gpufleet-bundle.asc"
KINDS = ("apt", "apt-index", "wheel", "wheel-index", "image", "file", "key")

# A placed bundle is public data (the bastion's web server serves it): world-readable, owner-written.
DIR_MODE = 0o755
FILE_MODE = 0o644
BLOCK = 1024 * 1024
GPGV_TIMEOUT = 120  # seconds; gpgv checks one small file, so this is only a guard against a hang
_HEX40 = re.compile(r"[0-9A-F]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_C_LOCALE = {"LANG": "C", "LC_ALL": "C"}
_NOT_CHECKED = (
    "files were not checked: a manifest that is unsigned, altered or signed by another key "
    "cannot be trusted to say what the files should be"
)


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


# --- signature ----------------------------------------------------------------------------------


def _status(stdout):
    """gpgv ``--status-fd`` lines -> list of (keyword, [args])."""
    rows = []
    for line in stdout.splitlines():
        if line.startswith("[GNUPG:] "):
            fields = line[len("[GNUPG:] ") :].split()
            if fields:
                rows.append((fields[0], fields[1:]))
    return rows


def _gpgv_problem(status, rc, stderr, pin, keyring):
    """``(fingerprint, problem)`` from gpgv's status lines and exit code."""
    by_kw = {}
    for keyword, args in status:
        by_kw.setdefault(keyword, args)
    if "BADSIG" in by_kw:
        return None, f"signature does not match {MANIFEST} (BADSIG): the manifest was altered after signing"
    if "NO_PUBKEY" in by_kw:
        errsig = by_kw.get("ERRSIG", [])
        signer = errsig[6] if len(errsig) > 6 else by_kw["NO_PUBKEY"][0]
        return None, (
            f"{SIGNATURE} was made by key {signer}, which is not in the keyring {keyring} holding the "
            f"pinned key {pin} (NO_PUBKEY): the bundle was signed by another key"
        )
    if "ERRSIG" in by_kw:
        code = by_kw["ERRSIG"][5] if len(by_kw["ERRSIG"]) > 5 else "?"
        reason = {"4": "an algorithm gpgv does not support"}.get(code, f"gpgv reason code {code}")
        return None, f"the signature cannot be checked (ERRSIG): {reason}"
    if "NODATA" in by_kw:
        return None, f"{SIGNATURE} holds no OpenPGP signature (NODATA): it is damaged or not a signature"
    for keyword, what in (
        ("EXPKEYSIG", "the signing key has expired"),
        ("REVKEYSIG", "the signing key was revoked"),
        ("EXPSIG", "the signature has expired"),
    ):
        if keyword in by_kw:
            return None, f"{what} ({keyword}): sign the bundle again with a valid key"
    valid = by_kw.get("VALIDSIG")
    if valid and rc == 0:
        primary = valid[-1].upper()
        if primary != pin:
            return primary, f"{MANIFEST} is signed by key {primary}, not the pinned key {pin} (VALIDSIG)"
        return primary, None
    tail = " ".join(stderr.split())[-300:]
    return None, f"gpgv could not verify the signature (exit {rc}): {tail or 'no output'}"


def _require_pin(fingerprint):
    if fingerprint is None:
        raise BundleError(
            "a pinned key fingerprint is required to verify a bundle (gpufleet_bundle_fingerprint / "
            "--fingerprint): the key shipped inside the bundle proves nothing by itself"
        )
    return normalize_fingerprint(fingerprint)


def check_signature(root, fingerprint, keyring=None, gpgv="gpgv"):
    """Check ``root/manifest.json.asc`` against the pinned key ``fingerprint`` with gpgv.

    ``keyring`` (default ``root/keys/gpufleet-bundle.gpg``; binary or armored) must hold the pinned
    key first; the signature must be valid and made by the pinned primary key (or one of its
    subkeys).
    Returns ``{"ok", "fingerprint", "problem"}``: the primary fingerprint gpgv reported for the
    signer (None when it reported none), and a sentence for the operator when not ok.
    """
    pin = _require_pin(fingerprint)

    def result(problem, signer=None):
        return {"ok": problem is None, "fingerprint": signer, "problem": problem}

    manifest = os.path.join(root, MANIFEST)
    signature = os.path.join(root, SIGNATURE)
    keyring = keyring or os.path.join(root, KEYRING)
    if not os.path.isdir(root):
        return result(f"bundle directory {root} does not exist")
    if not os.path.isfile(manifest):
        return result(f"{MANIFEST} is missing")
    if not os.path.isfile(signature):
        return result(f"{SIGNATURE} is missing: the bundle is unsigned")
    if not os.path.isfile(keyring):
        return result(f"the keyring {keyring} is missing")
    try:
        with open(keyring, "rb") as handle:
            key_data = handle.read()
        key = pgp_fingerprint(key_data)
    except (BundleError, OSError) as exc:
        return result(f"the keyring {keyring} is not a usable OpenPGP public key: {exc}")
    if key != pin:
        return result(
            f"the bundle's key {key} is not the pinned key {pin} "
            "(gpufleet_bundle_fingerprint / --fingerprint)"
        )
    gpgv_path = gpgv if os.path.isabs(gpgv) else shutil.which(gpgv)
    if not gpgv_path or not os.access(gpgv_path, os.X_OK):
        return result(f"gpgv ({gpgv}) is not installed: install the gpgv package to verify bundles")
    with tempfile.TemporaryDirectory(prefix="gpufleet-gpgv-") as scratch:
        gpgv_keyring = os.path.abspath(keyring)
        if key_data.lstrip().startswith(b"-----BEGIN PGP "):
            # gpgv reads binary keyrings only: give it the armored key (a .asc keyring) dearmored.
            gpgv_keyring = os.path.join(scratch, "keyring.gpg")
            with open(gpgv_keyring, "wb") as handle:
                handle.write(dearmor(key_data))
        command = [
            gpgv_path,
            "--status-fd",
            "1",
            "--keyring",
            gpgv_keyring,
            os.path.abspath(signature),
            os.path.abspath(manifest),
        ]
        try:
            proc = subprocess.run(
                command,
                capture_output=True,
                text=True,
                errors="replace",
                env={**os.environ, **_C_LOCALE},
                timeout=GPGV_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return result(f"gpgv did not answer within {GPGV_TIMEOUT} seconds")
        except OSError as exc:
            return result(f"gpgv ({gpgv_path}) could not be run: {exc.strerror}")
    signer, problem = _gpgv_problem(_status(proc.stdout), proc.returncode, proc.stderr, pin, keyring)
    return result(problem, signer)


# --- files --------------------------------------------------------------------------------------


def _problem(path, problem, detail):
    return {"path": path, "problem": problem, "detail": detail}


def _check_one(root, entry, progress):
    """Problem dict for one manifest entry found under ``root``; None when it is intact.

    Returns the string ``"absent"`` when nothing is at the path (so a base may be asked).
    """
    path = entry["path"]
    full = os.path.join(root, *path.split("/"))
    try:
        st = os.lstat(full)
    except (FileNotFoundError, NotADirectoryError):
        return "absent"
    except OSError as exc:
        return _problem(path, "corrupt", f"cannot be examined ({exc.strerror})")
    if os.path.realpath(full) != os.path.join(os.path.realpath(root), *path.split("/")):
        return _problem(
            path, "corrupt", "is reached through a symbolic link; bundles hold regular files only"
        )
    if stat.S_ISDIR(st.st_mode):
        return _problem(path, "corrupt", f"is a directory, expected a file of {entry['size']} bytes")
    if not stat.S_ISREG(st.st_mode):
        return _problem(path, "corrupt", "is not a regular file")
    expected = entry["size"]
    if st.st_size < expected:
        return _problem(path, "truncated", f"{st.st_size} of {expected} bytes")
    if st.st_size > expected:
        return _problem(path, "corrupt", f"{st.st_size} bytes, {expected} expected")
    try:
        actual = sha256_file(full, progress)
    except OSError as exc:
        return _problem(path, "corrupt", f"cannot be read ({exc.strerror})")
    wanted = entry["sha256"].lower()
    if actual != wanted:
        return _problem(path, "corrupt", f"sha256 {_short(wanted)} expected, {_short(actual)} found")
    return None


def _extras(root, listed):
    """Problems for what is on disk under ``root`` but not in the manifest."""
    problems = []

    def unlistable(exc):
        rel = os.path.relpath(exc.filename, root).replace(os.sep, "/")
        problems.append(_problem(rel, "corrupt", f"directory cannot be listed ({exc.strerror})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        for name in list(dirnames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full):  # os.walk lists links to directories here and does not enter them
                rel = posixpath.join(rel_dir, name)
                detail = "symbolic link to a directory, not listed in manifest.json"
                problems.append(_problem(rel, "extra", detail))
        for name in filenames:
            rel = posixpath.join(rel_dir, name)
            if rel in (MANIFEST, SIGNATURE) or rel in listed:
                continue
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                detail = "symbolic link, not listed in manifest.json"
            elif not os.path.isfile(full):
                detail = "not a regular file, not listed in manifest.json"
            else:
                detail = f"{os.lstat(full).st_size} bytes, not listed in manifest.json"
            problems.append(_problem(rel, "extra", detail))
    return problems


def check_files(root, manifest, base=None, progress=None):
    """Compare the files under ``root`` with a validated manifest.

    Returns problems sorted by path, each ``{"path", "problem", "detail"}`` with ``problem`` one of
    ``missing`` (nowhere to be found), ``truncated`` (shorter than listed), ``corrupt`` (longer, a
    different sha256, or not a regular file) and ``extra`` (on disk under ``root``, not listed).
    A listed file absent from ``root`` is looked up, and checked, in the ``base`` directory when
    given (update bundles). ``progress(nbytes)`` is forwarded to the hashing.
    """
    if not os.path.isdir(root):
        raise BundleError(f"bundle directory {root} does not exist")
    problems = []
    for entry in manifest["files"]:
        found = _check_one(root, entry, progress)
        if found == "absent" and base is not None:
            found = _check_one(base, entry, progress)
            if isinstance(found, dict):
                found["detail"] += f" (in the base bundle {base})"
        if found == "absent":
            detail = "not in the bundle"
            if base is not None:
                detail += f" nor in the base bundle {base}"
            elif manifest.get("base"):
                base_name = manifest["base"].get("name") or "its base"
                detail += f"; this is an update of bundle {base_name}: give the base bundle's directory"
            found = _problem(entry["path"], "missing", detail)
        if found:
            problems.append(found)
    problems.extend(_extras(root, {entry["path"] for entry in manifest["files"]}))
    return sorted(problems, key=lambda p: (p["path"], p["problem"]))


# --- the whole bundle ---------------------------------------------------------------------------


def verify_bundle(root, fingerprint, keyring=None, base=None, progress=None, gpgv="gpgv"):
    """Signature first, then (only when it is good) the manifest and every file.

    Returns a report::

        ok                 True when nothing is wrong
        fingerprint        primary fingerprint of the key that signed (None when unknown)
        signature_problem  why the signature is not trusted, or None
        manifest_problem   why the manifest cannot be used (schema, bad entry, signing_key, base)
        problems           check_files' problems (empty when files were not checked)
        files_checked      False when the signature or manifest stopped the check
        note               why files were not checked, or None
        files, bytes, name the manifest's file count, total size and name (0/0/None if unread)

    ``base`` is the base bundle's directory for an update bundle: listed files absent from
    ``root`` are checked there, and its key is used when ``root`` has none.
    BundleError is raised only for a missing or malformed ``fingerprint`` (the caller's input).
    """
    pin = _require_pin(fingerprint)
    if keyring is None and base is not None and not os.path.lexists(os.path.join(root, KEYRING)):
        keyring = os.path.join(base, KEYRING)  # an unchanged key is left out of an update bundle
    sig = check_signature(root, pin, keyring=keyring, gpgv=gpgv)
    report = {
        "ok": False,
        "fingerprint": sig["fingerprint"],
        "signature_problem": sig["problem"],
        "manifest_problem": None,
        "problems": [],
        "files": 0,
        "bytes": 0,
        "name": None,
        "files_checked": False,
        "note": None,
    }
    if not sig["ok"]:
        report["note"] = _NOT_CHECKED
        return report
    try:
        manifest = load_manifest(root)
    except BundleError as exc:
        report["manifest_problem"] = str(exc)
        report["note"] = "files were not checked: the manifest cannot be read"
        return report
    report["name"] = manifest.get("name")
    report["files"] = len(manifest["files"])
    report["bytes"] = sum(entry["size"] for entry in manifest["files"])
    manifest_problems = []
    signing_key = manifest.get("signing_key")
    try:
        named = normalize_fingerprint(signing_key)
    except BundleError:
        named = signing_key
    if named != pin:
        manifest_problems.append(f"{MANIFEST} names signing_key {signing_key!r}, not the pinned key {pin}")
    if base is not None and manifest.get("base"):
        want = manifest["base"]["manifest_sha256"].lower()
        try:
            have = sha256_file(os.path.join(base, MANIFEST))
        except OSError:
            have = None
        if have != want:
            found = f"{_short(have)} found" if have else f"{MANIFEST} missing there"
            manifest_problems.append(
                f"{base} is not the base this update was built on (base manifest sha256 "
                f"{_short(want)} expected, {found})"
            )
    report["manifest_problem"] = "; ".join(manifest_problems) or None
    report["problems"] = check_files(root, manifest, base=base, progress=progress)
    report["files_checked"] = True
    report["ok"] = not manifest_problems and not report["problems"]
    return report


def format_problems(report):
    """Human lines for a verify_bundle report: signature, manifest, then one per file problem."""
    lines = []
    if report.get("signature_problem"):
        lines.append(f"signature: {report['signature_problem']}")
    if report.get("manifest_problem"):
        lines.append(f"manifest: {report['manifest_problem']}")
    if report.get("note"):
        lines.append(report["note"])
    for problem in report.get("problems", ()):
        lines.append(f"{problem['problem']}: {problem['path']} ({problem['detail']})")
    return lines


def diff_manifests(old, new):
    """What changed between two manifests, by path.

    ``{"added": [entry], "removed": [entry], "changed": [(old_entry, new_entry)], "unchanged": [path]}``,
    each sorted by path; an entry is changed when its sha256 differs.
    """
    before = {entry["path"]: entry for entry in old.get("files", ())}
    after = {entry["path"]: entry for entry in new.get("files", ())}
    result = {"added": [], "removed": [], "changed": [], "unchanged": []}
    for path in sorted(set(before) | set(after)):
        if path not in before:
            result["added"].append(after[path])
        elif path not in after:
            result["removed"].append(before[path])
        elif before[path]["sha256"].lower() != after[path]["sha256"].lower():
            result["changed"].append((before[path], after[path]))
        else:
            result["unchanged"].append(path)
    return result


# --- placing a verified copy --------------------------------------------------------------------


def copy_bundle(src, dest, manifest, base=None):
    """Copy a bundle's manifest, signature and listed files from ``src`` (or ``base``) to ``dest``.

    ``dest`` must not exist. Directories are made 0755 and files 0644 whatever the umask; only what
    the manifest lists is copied, so verify ``src`` first and verify the copy afterwards.
    """
    os.makedirs(dest)
    os.chmod(dest, DIR_MODE)
    paths = [MANIFEST, SIGNATURE] + [entry["path"] for entry in manifest["files"]]
    for path in paths:
        parts = path.split("/")
        source = os.path.join(src, *parts)
        if base is not None and not os.path.lexists(source):
            source = os.path.join(base, *parts)
        directory = dest
        for part in parts[:-1]:
            directory = os.path.join(directory, part)
            if not os.path.isdir(directory):
                os.mkdir(directory)
                os.chmod(directory, DIR_MODE)
        target = os.path.join(dest, *parts)
        shutil.copy2(source, target)
        os.chmod(target, FILE_MODE)


def remove_tree(path):
    """Remove a directory tree gpufleet placed (or a leftover of an interrupted placement)."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def swap_into_place(new, dest):
    """Replace ``dest`` with the directory ``new`` by renames; the old ``dest`` is then removed.

    An existing ``dest`` is first renamed to ``dest + '.gpufleet-old'``, so ``dest`` is never a
    partly copied bundle: it is the old one, absent for the instant between two renames, or the new
    one. The old copy is put back if the second rename fails. ``new`` and ``dest`` must be on the
    same file system (``dest + '.gpufleet-partial'`` is).
    """
    old = dest + ".gpufleet-old"
    had_old = os.path.lexists(dest)
    if had_old:
        remove_tree(old)
        os.rename(dest, old)
    try:
        os.rename(new, dest)
    except OSError:
        if had_old:
            os.rename(old, dest)
        raise
    if had_old:
        remove_tree(old)
