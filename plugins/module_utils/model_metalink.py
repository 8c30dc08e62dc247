# Copyright: gpufleet developers
# Apache-2.0
"""Fleet fan-out with aria2: a Metalink v4 from the signed manifest, aria2c to carry the bytes.

Distributing one model to N nodes must not cost the bastion N copies. Rather than a transfer engine
of our own, a node runs aria2c (Debian package ``aria2``) on a Metalink v4 (RFC 5854) made from the
signed manifest: per file its size, its sha256 and one sha256 per manifest chunk (``<pieces>``), and
one ``<url>`` per source - the bastion and peers that already hold the model, each serving its store
read-only over HTTP. aria2 checks every piece as it lands and fetches a bad one again; the bastion's
URL gets the lowest preference, so peers carry what they can.

aria2's checks are not trusted alone: after aria2c exits 0, every file is hashed again against the
signed manifest (size, sha256 and every chunk) before the store adopts it. The manifest decides.

``model_fetch`` uses it with ``engine: aria2`` (``model_transfer.install``); peers (other nodes'
stores, served read-only by the model_store role) come first, ahead of every source.
Host code: stdlib only, Python >= 3.8.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from urllib.parse import quote, urlsplit

from ansible_collections.gpufleet.cluster.plugins.module_utils import model_manifest as mm
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_manifest import ModelError
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_store import (
    FILE_MODE,
    fsync_dir,
    has_object,
    makedirs,
    object_path,
    remove_quietly,
)

NAMESPACE = "urn:ietf:params:xml:ns:metalink"
GENERATOR = "gpufleet"
CONTROL = ".aria2"  # aria2's resume control file next to a file being downloaded
PACKAGE = "aria2"
ARIA2C = "aria2c"  # the program fetch runs when not told otherwise (looked up on PATH)
STAGING = ".aria2-staging"
_STDERR_LINES = 8

# aria2c's exit statuses (aria2c(1), EXIT STATUS).
EXIT_MEANINGS = {
    1: "unknown error",
    2: "time out",
    3: "a resource was not found",
    4: "aria2 saw the given number of 'resource not found' errors (--max-file-not-found)",
    5: "download aborted: the speed was too slow (--lowest-speed-limit)",
    6: "network problem",
    7: "there were unfinished downloads",
    8: "the remote server did not support resume when resume was required",
    9: "not enough disk space",
    10: "the piece length differs from the one in the .aria2 control file",
    11: "aria2 was already downloading the same file",
    13: "the file already existed (--allow-overwrite=false)",
    14: "renaming the file failed",
    15: "could not open an existing file",
    16: "could not create a new file or truncate an existing one",
    17: "file I/O error",
    18: "could not create a directory",
    19: "name resolution failed",
    20: "could not parse the Metalink document",
    22: "the HTTP response header was bad or unexpected",
    23: "too many redirects",
    24: "HTTP authorization failed",
    28: "a bad or unrecognized option was given",
    29: "the remote server could not handle the request (overloaded or in maintenance)",
    32: "checksum validation failed",
}


# --- the Metalink -------------------------------------------------------------------------------


def check_sources(sources):
    """Raise ModelError for an empty list or a source aria2 cannot read (it reads only HTTP(S))."""
    if not sources:
        raise ModelError("no sources: give at least one http(s) URL of the model directory")
    for source in sources:
        parts = urlsplit(source) if isinstance(source, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ModelError(
                f"source {source!r} is not an http:// or https:// URL of a model directory; "
                "the aria2 engine reads only HTTP(S) sources"
            )


def _entries(manifest, files):
    """The manifest entries to fetch, in manifest order; ModelError for an unknown or unsafe path."""
    mm.validate(manifest)
    by_path = {entry["path"]: entry for entry in manifest["files"]}
    wanted = list(by_path) if files is None else list(files)
    for path in wanted:
        problem = mm._path_problem(path)
        if problem:
            raise ModelError(f"file {path!r}: {problem}")
        if path not in by_path:
            raise ModelError(
                f"file {path!r} is not in the manifest of {manifest['name']} {manifest['version']}"
            )
    chosen = set(wanted)
    return [entry for path, entry in by_path.items() if path in chosen]


def priorities(sources, bastion_last=True):
    """``[(priority, source), ...]``: 1 is the most preferred (RFC 5854 section 4.2.16.2).

    With ``bastion_last`` the first source (the bastion) gets the lowest preference and the peers
    keep their order ahead of it, so peers carry what they can; otherwise the list order is kept.
    """
    ordered = [*sources[1:], sources[0]] if bastion_last and len(sources) > 1 else list(sources)
    rank = {source: index + 1 for index, source in enumerate(ordered)}
    return [(rank[source], source) for source in sources]


def metalink(manifest, sources, files=None, bastion_last=True, peers=()):
    """Metalink v4 XML text for ``files`` (manifest paths; all when None) from ``sources``.

    ``sources`` are base URLs of the model directory (the bastion first, then peers); the file
    ``a/b.json`` is at ``SOURCE/a/b.json``. Per file: ``size``, the whole file's sha-256, and
    ``pieces`` with one sha-256 per manifest chunk (none for an empty file, which has no chunks).
    ``peers`` are base URLs of other nodes' stores (``PEER/objects/<sha[:2]>/<sha>``), preferred to
    every source.
    """
    check_sources(sources)
    chunk_size = manifest.get("chunk_size") if isinstance(manifest, dict) else None
    entries = _entries(manifest, files)
    ranked = [(priority + len(peers), source) for priority, source in priorities(list(sources), bastion_last)]
    ET.register_namespace("", NAMESPACE)
    root = ET.Element(f"{{{NAMESPACE}}}metalink")
    ET.SubElement(root, f"{{{NAMESPACE}}}generator").text = GENERATOR
    for entry in entries:
        node = ET.SubElement(root, f"{{{NAMESPACE}}}file", name=entry["path"])
        ET.SubElement(node, f"{{{NAMESPACE}}}size").text = str(entry["size"])
        ET.SubElement(node, f"{{{NAMESPACE}}}hash", type="sha-256").text = entry["sha256"]
        if entry["chunks"]:
            pieces = ET.SubElement(node, f"{{{NAMESPACE}}}pieces", length=str(chunk_size), type="sha-256")
            for digest in entry["chunks"]:
                ET.SubElement(pieces, f"{{{NAMESPACE}}}hash").text = digest
        for rank, peer in enumerate(peers, 1):
            url = ET.SubElement(node, f"{{{NAMESPACE}}}url", priority=str(rank))
            url.text = f"{peer.rstrip('/')}/objects/{entry['sha256'][:2]}/{entry['sha256']}"
        for priority, source in ranked:
            url = ET.SubElement(node, f"{{{NAMESPACE}}}url", priority=str(priority))
            url.text = source.rstrip("/") + "/" + quote(entry["path"])
    return ET.tostring(root, encoding="unicode")


# --- running aria2c -----------------------------------------------------------------------------


def staging_dir(store, manifest):
    """Where aria2c writes for this version: inside the store, so adopting a file is one rename."""
    return os.path.join(store, STAGING, manifest["name"], manifest["version"])


def _staged(staging, path):
    """The staged file of manifest ``path``; ModelError if it would leave ``staging`` (a symlink)."""
    root = os.path.realpath(staging)
    target = os.path.realpath(os.path.join(staging, path))
    if not target.startswith(root + os.sep):
        raise ModelError(f"staged file {path!r} resolves outside the staging directory {staging}")
    return os.path.join(staging, path)


def _problem(path, entry, chunk_size):
    """Why the file at ``path`` is not ``entry`` of the signed manifest (None when it is)."""
    try:
        size, digest, chunks = mm.hash_file(path, chunk_size)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if size != entry["size"]:
        return f"has {size} bytes, the manifest says {entry['size']}"
    want = entry["chunks"]
    bad = [index for index, got in enumerate(chunks) if index >= len(want) or got != want[index]]
    if bad:
        return f"chunk(s) {bad[:5]} differ from the manifest"
    if digest != entry["sha256"]:
        return f"sha256 {digest[:12]}... is not the manifest's {entry['sha256'][:12]}..."
    return None


def _done(staging, entry, chunk_size):
    path = _staged(staging, entry["path"])
    return not os.path.exists(path + CONTROL) and _problem(path, entry, chunk_size) is None


def command(aria2c, metalink_file, staging, connections=4, split=4, timeout=60, uri_selector="inorder"):
    """The aria2c command line: every piece checked as it lands, resumable, nothing renamed.

    aria2c refuses values out of its ranges (exit 28): connections are kept to 1-16 per server,
    the timeout to 1-600 s.
    """
    connections = max(1, min(16, int(connections)))
    split = max(1, int(split))
    timeout = max(1, min(600, int(timeout)))
    return [
        aria2c,
        f"--metalink-file={metalink_file}",
        f"--dir={staging}",
        "--check-integrity=true",  # check existing data against the piece hashes (resume)
        "--realtime-chunk-checksum=true",  # check each piece as it lands; refetch a bad one
        "--continue=true",
        "--allow-overwrite=false",
        "--auto-file-renaming=false",
        "--metalink-enable-unique-protocol=false",
        f"--uri-selector={uri_selector}",  # inorder: honour the Metalink priorities (peers first)
        f"--max-connection-per-server={connections}",
        f"--split={split}",
        "--min-split-size=1M",
        "--file-allocation=none",
        f"--timeout={timeout}",
        "--max-tries=5",
        "--retry-wait=1",
        "--summary-interval=0",
        "--console-log-level=warn",
        "--download-result=hide",
        "--no-conf=true",
        "--follow-metalink=false",
    ]


def fetch(
    manifest,
    sources,
    staging,
    files=None,
    aria2c=None,
    bastion_last=True,
    run_timeout=None,
    peers=(),
    **options,
):
    """Fetch ``files`` (all when None) of ``manifest`` into ``staging`` with aria2c, then verify them.

    Files already in ``staging`` that match the manifest are not fetched again; empty files are
    written here, not by aria2c. After aria2c exits 0, every file is checked again against the
    manifest (size, each chunk, sha256); a file that fails is removed and named in the ModelError.
    aria2c failing leaves its partial files and ``.aria2`` control files for the next run to resume.
    Returns ``{"fetched": [paths aria2c fetched], "kept": [paths already staged], "exit": code}``.
    ``options`` go to ``command`` (connections, split, timeout, uri_selector).
    """
    check_sources(sources)
    entries = _entries(manifest, files)
    aria2c = aria2c or ARIA2C
    binary = shutil.which(aria2c)
    if binary is None:
        raise ModelError(
            f"{aria2c} is not installed: the aria2 engine needs it (Debian package '{PACKAGE}': "
            f"apt-get install {PACKAGE})"
        )
    chunk_size = manifest["chunk_size"]
    makedirs(staging)
    kept, todo = [], []
    for entry in entries:
        path = _staged(staging, entry["path"])
        if entry["size"] == 0:
            makedirs(os.path.dirname(path))
            with open(path, "wb"):
                pass
            kept.append(entry["path"])
        elif _done(staging, entry, chunk_size):
            kept.append(entry["path"])
        else:
            todo.append(entry)
    code = 0
    if todo:
        paths = [e["path"] for e in todo]
        code = _run(binary, manifest, sources, staging, paths, bastion_last, run_timeout, options, peers)
    bad = []
    for entry in todo:
        path = _staged(staging, entry["path"])
        problem = _problem(path, entry, chunk_size)
        if problem:
            bad.append(f"{entry['path']} {problem}")
            remove_quietly(path)
            remove_quietly(path + CONTROL)
    if bad:
        raise ModelError(
            "aria2c reported success but these files do not match the signed manifest and were "
            f"removed: {'; '.join(bad)}; a source serves wrong data - run again, or drop that source"
        )
    return {"fetched": [entry["path"] for entry in todo], "kept": kept, "exit": code}


def _run(binary, manifest, sources, staging, paths, bastion_last, run_timeout, options, peers=()):
    text = metalink(manifest, sources, paths, bastion_last, peers)
    with tempfile.TemporaryDirectory(prefix="gpufleet-metalink-") as scratch:
        metalink_file = os.path.join(scratch, f"{manifest['name']}-{manifest['version']}.meta4")
        with open(metalink_file, "w", encoding="utf-8") as handle:
            handle.write(text)
        argv = command(binary, metalink_file, staging, **options)
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=run_timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ModelError(
                f"aria2c did not finish within {run_timeout} s and was stopped; its partial files "
                f"in {staging} are kept: run again to resume"
            ) from None
    if result.returncode != 0:
        meaning = EXIT_MEANINGS.get(result.returncode, "see aria2c(1), EXIT STATUS")
        lines = (result.stderr or result.stdout or "").strip().splitlines()[-_STDERR_LINES:]
        said = " | ".join(line.strip() for line in lines if line.strip()) or "(nothing on stderr)"
        raise ModelError(
            f"aria2c exited {result.returncode} ({meaning}); partial files in {staging} are kept: "
            f"run again to resume. aria2c said: {said}"
        )
    return result.returncode


def adopt(store, manifest, staging, files=None):
    """Move verified staged files into the store's objects (one rename each); return the sha256s moved.

    Each file is checked against the manifest once more right before the rename, so nothing
    changed in staging after ``fetch`` reaches ``objects/``.
    """
    chunk_size = manifest["chunk_size"]
    moved = []
    for entry in _entries(manifest, files):
        if has_object(store, entry):
            continue
        path = _staged(staging, entry["path"])
        problem = _problem(path, entry, chunk_size)
        if problem:
            raise ModelError(f"staged {entry['path']} {problem}; it was not adopted: fetch it again")
        final = object_path(store, entry["sha256"])
        makedirs(os.path.dirname(final))
        os.chmod(path, FILE_MODE)
        os.replace(path, final)
        fsync_dir(os.path.dirname(final))
        moved.append(entry["sha256"])
    return moved


def install_objects(store, manifest, entries, sources, connections, timeout, peers=()):
    """``model_transfer.fetch_objects`` with aria2c: the files of ``entries`` into the store's staging
    directory, each verified, then adopted into ``objects/``; the same result keys."""
    staging = staging_dir(store, manifest)
    paths = [entry["path"] for entry in entries]
    done = fetch(
        manifest, sources, staging, files=paths, connections=connections, split=connections,
        timeout=timeout, peers=peers,
    )  # fmt: skip
    adopt(store, manifest, staging, files=paths)
    shutil.rmtree(staging, ignore_errors=True)
    fetched = set(done["fetched"])
    return {
        "fetched": paths,
        "bytes": sum(entry["size"] for entry in entries if entry["path"] in fetched),
        "resumed_bytes": sum(entry["size"] for entry in entries if entry["path"] not in fetched),
        "peer_bytes": None,  # aria2 does not say which server sent what
    }
