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

Host code: stdlib only, Python >= 3.8 (Ansible ships it to hosts); the ``gpufleet`` command, the
``bundle_verify`` module and the ``pgp_fingerprint`` filter share it. The bundle's format (names,
manifest schema, OpenPGP key packets) is in ``bundle_format``; this module re-exports it.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import subprocess
import tempfile

from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_format import (
    ARMORED_KEY,
    BLOCK,
    KEYRING,
    KINDS,
    MANIFEST,
    SCHEMA_VERSION,
    SIGNATURE,
    BundleError,
    _short,
    dearmor,
    load_manifest,
    normalize_fingerprint,
    pgp_fingerprint,
    sha256_file,
    validate_manifest,
)

# The bundle API the CLI, the bundle_verify module and the filters use (format names included).
__all__ = [
    "ARMORED_KEY",
    "BLOCK",
    "DIR_MODE",
    "FILE_MODE",
    "GPGV_TIMEOUT",
    "KEYRING",
    "KINDS",
    "MANIFEST",
    "SCHEMA_VERSION",
    "SIGNATURE",
    "BundleError",
    "check_files",
    "check_signature",
    "copy_bundle",
    "dearmor",
    "diff_manifests",
    "format_problems",
    "load_manifest",
    "normalize_fingerprint",
    "pgp_fingerprint",
    "remove_tree",
    "sha256_file",
    "signing_key_problem",
    "swap_into_place",
    "validate_manifest",
    "verify_bundle",
]


# A placed bundle is public data (the bastion's web server serves it): world-readable, owner-written.
DIR_MODE = 0o755
FILE_MODE = 0o644
GPGV_TIMEOUT = 120  # seconds; gpgv checks one small file, so this is only a guard against a hang
_C_LOCALE = {"LANG": "C", "LC_ALL": "C"}
_NOT_CHECKED = (
    "files were not checked: a manifest that is unsigned, altered or signed by another key "
    "cannot be trusted to say what the files should be"
)


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


def signing_key_problem(manifest, fingerprint):
    """Why the manifest's ``signing_key`` is not the pinned key ``fingerprint``, or None.

    The signature proves who signed; the manifest must also name that key, so that a manifest copied
    into a bundle signed by another trusted key is not taken for its own.
    """
    pin = _require_pin(fingerprint)
    signing_key = manifest.get("signing_key")
    try:
        named = normalize_fingerprint(signing_key)
    except BundleError:
        named = signing_key
    if named != pin:
        return f"{MANIFEST} names signing_key {signing_key!r}, not the pinned key {pin}"
    return None


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
    key_problem = signing_key_problem(manifest, pin)
    if key_problem:
        manifest_problems.append(key_problem)
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
