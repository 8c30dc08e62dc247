# Copyright: gpufleet developers
# Apache-2.0
"""The model store on a node: content-addressed objects, versions as directories of links, and an
atomically flipped ``current`` link.

Layout under the store directory (``/var/lib/gpufleet/model-store`` by default)::

    objects/ab/ab12...ef                 a verified file, named by its sha256 (mode 0644)
    objects/ab/ab12...ef.partial         one being fetched (never at the final name until whole)
    objects/ab/ab12...ef.partial.chunks  the chunk indexes of .partial already verified (resume)
    models/NAME/versions/VERSION/...     the model's files as relative symlinks into objects/,
                                         plus .gpufleet-model.json, the manifest it was made from
    models/NAME/current  -> versions/VERSION   what serving uses; replaced by rename (atomic)
    models/NAME/previous -> versions/OLD       the version current pointed at before the last flip

A new version fetches only objects the store lacks (files unchanged between versions share their
object); switching is one rename of a symlink; rollback swaps current and previous. The store
removes only what it made (``.partial`` files and directories); ``current``/``previous`` that are
not symlinks (a user's directory) are refused, never replaced.

The fetch engine (``fetch_objects``, ``install``) is in ``model_transfer``.
Host code: stdlib only, Python >= 3.8.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil

from ansible_collections.gpufleet.cluster.plugins.module_utils.model_manifest import (
    ModelError,
    chunk_range,
)

OBJECTS = "objects"
MODELS = "models"
VERSIONS = "versions"
CURRENT = "current"
PREVIOUS = "previous"
MANIFEST_COPY = ".gpufleet-model.json"
PARTIAL = ".partial"
SIDECAR = ".partial.chunks"
DIR_MODE = 0o755
FILE_MODE = 0o644


# --- paths --------------------------------------------------------------------------------------


def object_path(store, sha256):
    return os.path.join(store, OBJECTS, sha256[:2], sha256)


def model_dir(store, name):
    return os.path.join(store, MODELS, name)


def version_dir(store, name, version):
    return os.path.join(store, MODELS, name, VERSIONS, version)


def makedirs(path):
    """``os.makedirs`` with every directory it creates at mode 0755 whatever the umask."""
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            continue
        os.chmod(directory, DIR_MODE)


def fsync_dir(path):
    """Make a rename in ``path`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_quietly(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# --- what a version needs -----------------------------------------------------------------------


def has_object(store, entry):
    path = object_path(store, entry["sha256"])
    try:
        return os.path.isfile(path) and os.path.getsize(path) == entry["size"]
    except OSError:
        return False


def read_sidecar(path, entry, chunk_size):
    """The verified chunk indexes recorded for a ``.partial`` (empty set when unusable)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return set()
    if not isinstance(data, dict) or data.get("sha256") != entry["sha256"]:
        return set()
    if data.get("chunk_size") != chunk_size:
        return set()  # the same file under a manifest with other chunks: indexes mean other ranges
    count = len(entry["chunks"])
    return {i for i in data.get("done", ()) if isinstance(i, int) and 0 <= i < count}


def missing_objects(store, manifest):
    """Manifest entries whose object the store lacks, one per distinct sha256, in manifest order."""
    seen = set()
    missing = []
    for entry in manifest["files"]:
        if entry["sha256"] in seen:
            continue
        seen.add(entry["sha256"])
        if not has_object(store, entry):
            missing.append(entry)
    return missing


def resumable_bytes(store, entry, chunk_size):
    """Bytes of ``entry`` already verified in its ``.partial`` (what a resumed fetch skips)."""
    final = object_path(store, entry["sha256"])
    try:
        if os.path.getsize(final + PARTIAL) != entry["size"]:
            return 0
    except OSError:
        return 0
    done = read_sidecar(final + SIDECAR, entry, chunk_size)
    return sum(chunk_range(i, entry["size"], chunk_size)[1] for i in done)


def active_version(store, name):
    """The version ``current`` points at, or None."""
    return _link_version(os.path.join(model_dir(store, name), CURRENT))


def previous_version(store, name):
    return _link_version(os.path.join(model_dir(store, name), PREVIOUS))


def _link_version(link):
    if not os.path.lexists(link):
        return None
    if not os.path.islink(link):
        raise ModelError(
            f"{link} is not a symbolic link: it is not the store's, and gpufleet does not replace "
            "what it did not make; move it away"
        )
    return os.path.basename(os.readlink(link).rstrip("/"))


def plan(store, manifest, raw=None):
    """What installing ``manifest`` would do, without doing it.

    Returns ``{"fetch": [entries], "fetch_bytes", "resumable_bytes", "present_files",
    "version_exists", "active", "would_activate_change"}``; ``fetch_bytes`` counts what is still
    to download (bytes already verified in ``.partial`` files are left out).
    Raises ModelError when the version exists in the store with another manifest.
    """
    name, version = manifest["name"], manifest["version"]
    fetch = missing_objects(store, manifest)
    resumed = sum(resumable_bytes(store, entry, manifest["chunk_size"]) for entry in fetch)
    vdir = version_dir(store, name, version)
    exists = os.path.isdir(vdir)
    if exists and raw is not None:
        check_same_version(vdir, raw)
    active = active_version(store, name)
    return {
        "fetch": fetch,
        "fetch_bytes": sum(entry["size"] for entry in fetch) - resumed,
        "resumable_bytes": resumed,
        "present_files": len(manifest["files"]) - len(fetch),
        "version_exists": exists,
        "active": active,
        "would_activate_change": active != version,
    }


def check_disk(store, needed):
    """Raise ModelError before the first byte when ``store``'s file system has under ``needed`` free."""
    probe = store
    while probe and not os.path.isdir(probe):
        probe = os.path.dirname(probe)
    usage = shutil.disk_usage(probe or "/")
    if usage.free < needed:
        raise ModelError(
            f"not enough disk space for the model in {store}: {needed} bytes needed, {usage.free} free "
            f"on the file system of {probe or '/'}; free {needed - usage.free} bytes or choose another "
            "store (nothing was downloaded)"
        )
    return usage.free


# --- versions -----------------------------------------------------------------------------------


def check_same_version(vdir, raw):
    """Versions are immutable: refuse a different manifest under an existing version's name."""
    try:
        with open(os.path.join(vdir, MANIFEST_COPY), "rb") as handle:
            have = handle.read()
    except OSError:
        have = None
    if have != raw:
        raise ModelError(
            f"{vdir} already holds a version with another manifest; versions are immutable: give the "
            "new model another version (gpufleet model add --version)"
        )


def build_version(store, manifest, raw):
    """Make ``models/NAME/versions/VERSION`` (links to objects, manifest copy); True when made.

    Built under a hidden ``.VERSION.partial`` name and renamed into place, so a version directory is
    always complete. Every object must already be in the store.
    """
    name, version = manifest["name"], manifest["version"]
    vdir = version_dir(store, name, version)
    if os.path.isdir(vdir):
        check_same_version(vdir, raw)
        return False
    for entry in manifest["files"]:
        if not has_object(store, entry):
            raise ModelError(f"object {entry['sha256']} of {entry['path']} is not in the store {store}")
    tmp = os.path.join(os.path.dirname(vdir), f".{version}{PARTIAL}")
    if os.path.lexists(tmp):
        shutil.rmtree(tmp)  # the store's own leftover of an interrupted build
    makedirs(tmp)
    for entry in manifest["files"]:
        link = os.path.join(tmp, *entry["path"].split("/"))
        makedirs(os.path.dirname(link))
        target = os.path.relpath(object_path(store, entry["sha256"]), os.path.dirname(link))
        # the link's relative target is the same under tmp and under vdir: both sit at one depth
        os.symlink(target, link)
    copy = os.path.join(tmp, MANIFEST_COPY)
    with open(copy, "wb") as handle:
        handle.write(raw)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(copy, FILE_MODE)
    os.rename(tmp, vdir)
    fsync_dir(os.path.dirname(vdir))
    return True


def _point(link, version):
    """Make ``link`` a symlink to ``versions/VERSION`` by renaming a new link over it (atomic)."""
    _link_version(link)  # refuses a link path that holds something other than a symlink
    tmp = link + ".gpufleet-new"
    remove_quietly(tmp)
    os.symlink(os.path.join(VERSIONS, version), tmp)
    os.replace(tmp, link)


def activate(store, name, version):
    """Point ``current`` at ``version`` (and ``previous`` at what it pointed at); True when changed."""
    if not os.path.isdir(version_dir(store, name, version)):
        raise ModelError(f"version {version} of model {name} is not in the store {store}")
    mdir = model_dir(store, name)
    current = active_version(store, name)
    previous_version(store, name)  # refuse a user's 'previous' before touching anything
    if current == version:
        return False
    if current is not None:
        _point(os.path.join(mdir, PREVIOUS), current)
    _point(os.path.join(mdir, CURRENT), version)
    fsync_dir(mdir)
    return True


def rollback(store, name):
    """Swap ``current`` and ``previous``: the version served before the last flip is served again.

    Returns the version now current; ModelError when there is no previous version to go back to.
    """
    mdir = model_dir(store, name)
    current = active_version(store, name)
    previous = previous_version(store, name)
    if previous is None or not os.path.isdir(version_dir(store, name, previous)):
        raise ModelError(f"model {name} has no previous version in {store} to roll back to")
    _point(os.path.join(mdir, CURRENT), previous)
    if current is not None:
        _point(os.path.join(mdir, PREVIOUS), current)
    fsync_dir(mdir)
    return previous


def versions(store, name):
    """The versions of ``name`` in the store, sorted."""
    try:
        names = os.listdir(os.path.join(model_dir(store, name), VERSIONS))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return []
        raise
    return sorted(n for n in names if not n.startswith("."))
