# Copyright: gpufleet developers
# Apache-2.0
"""The signed model manifest: what a model directory holds, down to fixed-size chunks.

A model is a directory (safetensors shards, config.json, tokenizer files). Its manifest is JSON::

    {
      "format": "gpufleet-model",  "format_version": 1,
      "name": "llama-3.1-8b",      "version": "2024-07-23",
      "chunk_size": 67108864,
      "signing_key": "<40 hex: the bundle key that signs it>",
      "files": [
        {"path": "model-00001-of-00004.safetensors", "size": 4976698672,
         "sha256": "<64 hex>", "chunks": ["<64 hex>", ...]}, ...
      ]
    }

``chunks[i]`` is the sha256 of bytes ``[i * chunk_size, min((i + 1) * chunk_size, size))``: a fetch
checks every chunk as it lands, so a bad chunk is fetched again (from another source) instead of
the whole file. The manifest is written canonically (``dumps``: sorted keys, no whitespace) and
signed with the *bundle* key (an armored detached signature next to it, ``MANIFEST.asc``); it is
trusted only through the pinned fingerprint, by the very check bundles use (``bundle.check_signature``
with gpgv), never because of a key that travels with it.

Host code: stdlib only, Python >= 3.8 (the ``model_fetch`` module ships it); the ``gpufleet model``
command shares it.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile

from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle import (
    BundleError,
    check_signature,
    normalize_fingerprint,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_format import (
    MANIFEST as _BUNDLE_MANIFEST,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_format import (
    SIGNATURE as _BUNDLE_SIGNATURE,
)

FORMAT = "gpufleet-model"
FORMAT_VERSION = 1
DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024
MIN_CHUNK_SIZE = 1024
MAX_CHUNK_SIZE = 1024 * 1024 * 1024
# Names and versions become directory names in the store: no separators, no leading dot.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_READ = 1024 * 1024


class ModelError(BundleError):
    """A model manifest, store or fetch that cannot be used; the message says why and what to do."""


# --- chunks -------------------------------------------------------------------------------------


def chunk_count(size, chunk_size):
    """How many chunks a file of ``size`` bytes has (0 for an empty file)."""
    return (size + chunk_size - 1) // chunk_size


def chunk_range(index, size, chunk_size):
    """``(start, length)`` of chunk ``index`` of a file of ``size`` bytes."""
    start = index * chunk_size
    return start, min(chunk_size, size - start)


def hash_file(path, chunk_size, progress=None):
    """``(size, sha256, [chunk sha256, ...])`` of the file at ``path``, read once.

    ``progress(nbytes)`` is called after each block read (for a progress bar).
    """
    whole = hashlib.sha256()
    chunks = []
    size = 0
    with open(path, "rb") as handle:
        while True:
            part = hashlib.sha256()
            got = 0
            while got < chunk_size:
                block = handle.read(min(_READ, chunk_size - got))
                if not block:
                    break
                part.update(block)
                whole.update(block)
                got += len(block)
                if progress is not None:
                    progress(len(block))
            if not got:
                break
            chunks.append(part.hexdigest())
            size += got
            if got < chunk_size:
                break
    return size, whole.hexdigest(), chunks


def file_entry(path, rel, chunk_size, progress=None):
    """The manifest entry of the file at ``path``, listed as ``rel``."""
    size, digest, chunks = hash_file(path, chunk_size, progress)
    return {"path": rel, "size": size, "sha256": digest, "chunks": chunks}


# --- format -------------------------------------------------------------------------------------


def _path_problem(path):
    if not isinstance(path, str) or not path:
        return "has no path"
    if path.startswith("/"):
        return "the path is absolute; model paths are relative to the model directory"
    if "\\" in path or "\0" in path:
        return "the path has a backslash or NUL; model paths are POSIX paths"
    parts = path.split("/")
    if ".." in parts:
        return "the path climbs out of the model directory with '..'"
    if posixpath.normpath(path) != path or "." in parts or "" in parts:
        return "the path is not normalized (empty, '.' or trailing '/' parts)"
    return None


def _entry_problem(entry, chunk_size):
    if not isinstance(entry, dict):
        return "is not an object"
    problem = _path_problem(entry.get("path"))
    if problem:
        return problem
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return f"size must be a whole number of bytes, 0 or more, got {size!r}"
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        return f"sha256 must be 64 lower-case hexadecimal characters, got {digest!r}"
    chunks = entry.get("chunks")
    if not isinstance(chunks, list) or not all(isinstance(c, str) and _HEX64.fullmatch(c) for c in chunks):
        return "chunks must be a list of sha256 values (64 lower-case hexadecimal characters)"
    want = chunk_count(size, chunk_size)
    if len(chunks) != want:
        return f"lists {len(chunks)} chunks; {size} bytes in chunks of {chunk_size} make {want}"
    return None


def validate(manifest):
    """Raise ModelError naming the first problem of a parsed manifest; return it unchanged."""
    if not isinstance(manifest, dict):
        raise ModelError("the model manifest is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise ModelError(f"this is not a gpufleet model manifest (format {manifest.get('format')!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
        hint = ": a newer gpufleet is needed to read it" if newer else ""
        raise ModelError(
            f"the model manifest has format_version {version!r}; this gpufleet reads {FORMAT_VERSION}{hint}"
        )
    for field in ("name", "version"):
        value = manifest.get(field)
        if not isinstance(value, str) or not _NAME.fullmatch(value) or value in (".", ".."):
            raise ModelError(
                f"model {field} {value!r} must be 1-128 letters, digits, '.', '_', '+' or '-', not "
                "starting with '.' or '-' (it names a directory in the model store)"
            )
    chunk_size = manifest.get("chunk_size")
    if (
        not isinstance(chunk_size, int)
        or isinstance(chunk_size, bool)
        or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE
    ):
        raise ModelError(
            f"chunk_size must be a whole number of bytes from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE}, "
            f"got {chunk_size!r}"
        )
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise ModelError("the model manifest has no 'files' list, or an empty one")
    seen = set()
    for index, entry in enumerate(files):
        problem = _entry_problem(entry, chunk_size)
        if problem:
            label = entry.get("path") if isinstance(entry, dict) else None
            raise ModelError(f"files[{index}] ({label!r}): {problem}")
        if entry["path"] in seen:
            raise ModelError(f"files[{index}] ({entry['path']!r}) is listed twice")
        seen.add(entry["path"])
    for path in seen:
        parent = posixpath.dirname(path)
        while parent:
            if parent in seen:
                raise ModelError(f"{parent!r} is listed as a file and as the directory of {path!r}")
            parent = posixpath.dirname(parent)
    return manifest


def dumps(manifest):
    """Canonical bytes of a manifest: sorted keys, no insignificant whitespace, UTF-8, final newline.

    The same manifest always gives the same bytes, so the signature is over exactly what is read.
    """
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (text + "\n").encode("utf-8")


def loads(raw, where="the model manifest"):
    """Parse and validate manifest bytes; ModelError names ``where`` and the problem."""
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelError(f"{where} is not UTF-8 text") from None
    except ValueError as exc:
        raise ModelError(f"{where} is not valid JSON: {exc}") from None
    try:
        return validate(manifest)
    except ModelError as exc:
        raise ModelError(f"{where}: {exc}") from None


def read(path):
    """The bytes of the manifest file at ``path``; ModelError when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ModelError(f"model manifest {path} cannot be read: {exc.strerror}") from None


def new_manifest(name, version, files, chunk_size, signing_key):
    """A validated manifest from its parts (``files`` are ``file_entry`` results, any order)."""
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "chunk_size": chunk_size,
        "signing_key": normalize_fingerprint(signing_key),
        "files": sorted(files, key=lambda entry: entry["path"]),
    }
    return validate(manifest)


def total_bytes(manifest):
    return sum(entry["size"] for entry in manifest["files"])


# --- signature ----------------------------------------------------------------------------------


def verify_signed(path, fingerprint, keyring, signature=None, gpgv="gpgv"):
    """Check the signature of the manifest at ``path`` against the pinned key, then parse it.

    ``signature`` defaults to ``path + '.asc'``; ``keyring`` is the public key to check with
    (binary or armored: a bundle's ``keys/gpufleet-bundle.gpg``), which must be the pinned key.
    The check is the bundle's own (``bundle.check_signature``: key pin, then gpgv's status lines),
    run on a scratch directory laid out as a bundle, so the two cannot drift apart.
    Returns ``(manifest, raw_bytes)``; raises ModelError saying why the manifest is not trusted.
    """
    pin = normalize_fingerprint(fingerprint)
    signature = signature or path + ".asc"
    raw = read(path)
    if not os.path.isfile(signature):
        raise ModelError(f"model manifest {path} is unsigned: {signature} is missing")
    with tempfile.TemporaryDirectory(prefix="gpufleet-model-sig-") as scratch:
        with open(os.path.join(scratch, _BUNDLE_MANIFEST), "wb") as handle:
            handle.write(raw)
        shutil.copyfile(signature, os.path.join(scratch, _BUNDLE_SIGNATURE))
        result = check_signature(scratch, pin, keyring=os.path.abspath(keyring), gpgv=gpgv)
    if not result["ok"]:
        problem = (
            result["problem"]
            .replace(_BUNDLE_SIGNATURE, "the signature")
            .replace(_BUNDLE_MANIFEST, "the manifest")
        )
        raise ModelError(f"model manifest {path} is not trusted: {problem}")
    manifest = loads(raw, f"model manifest {path}")
    try:
        named = normalize_fingerprint(manifest.get("signing_key"))
    except BundleError:
        named = manifest.get("signing_key")
    if named != pin:
        raise ModelError(
            f"model manifest {path} names signing_key {manifest.get('signing_key')!r}, "
            f"not the pinned key {pin}"
        )
    return manifest, raw
