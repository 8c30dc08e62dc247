# Copyright: gpufleet developers
# Apache-2.0
"""A bundle served by the bastion, seen from a node: its manifest fetched and verified (signature by
the pinned key, as ``bundle_verify`` checks it), and one of its pinned files (``files/NAME``)
downloaded and checked against the sha256 that verified manifest lists.

Host code: stdlib only, Python >= 3.8. The modules pass Ansible's ``open_url`` in as ``opener`` (it
honours the proxy and certificate settings Ansible gives modules); ``verified_manifest`` is the one
verification core (``bundle_wheels``), shared with ``bundle_wheel_requirements``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile

from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_format import (
    BLOCK,
    KEYRING,
    MANIFEST,
    SIGNATURE,
    BundleError,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_wheels import verified_manifest

# The options of every module that reads a bundle from the bastion (doc fragment: bundle_source).
SOURCE_SPEC = dict(
    url=dict(type="str", required=True),
    fingerprint=dict(type="str", required=True),
    timeout=dict(type="int", default=30),
)

# A pinned file's name under files/, as bundle profiles allow it (docs/bundles.md, files[].name).
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _download_error(source, exc):
    return BundleError(
        f"{source} cannot be downloaded ({exc}): check that the bastion serves the bundle "
        "(bundle_server) and that url is the bundle's base URL"
    )


def fetch_manifest(url, root, timeout, opener):
    """The manifest, its signature and the bundle key from ``url`` into the directory ``root``."""
    for rel in (MANIFEST, SIGNATURE, KEYRING):
        target = os.path.join(root, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        source = f"{url.rstrip('/')}/{rel}"
        try:
            with opener(source, timeout=timeout) as response, open(target, "wb") as out:
                shutil.copyfileobj(response, out)
        except Exception as exc:  # urllib, HTTP and socket errors alike
            raise _download_error(source, exc) from None


def remote_manifest(url, fingerprint, timeout, opener, gpgv="gpgv"):
    """The manifest of the bundle at ``url``, once its signature is the pinned key's; BundleError
    says why not (unsigned, altered, another key, unreachable)."""
    with tempfile.TemporaryDirectory(prefix="gpufleet-bundle-") as root:
        fetch_manifest(url, root, timeout, opener)
        return verified_manifest(root, fingerprint, gpgv=gpgv)


def file_entry(manifest, name):
    """The manifest entry of the pinned file ``files/NAME`` (``path``, ``size``, ``sha256``)."""
    if not isinstance(name, str) or not FILE_NAME_RE.match(name):
        raise BundleError(
            f"{name!r} is not a bundle file name: use the name the bundle profile's files[].name gives "
            "(letters, digits, '.', '_', '+', '-'), without a directory"
        )
    path = f"files/{name}"
    for entry in manifest.get("files", []):
        if entry.get("path") == path:
            if entry.get("kind") != "file":
                raise BundleError(f"{path} is listed as {entry.get('kind')!r}, not as a pinned file")
            return entry
    raise BundleError(
        f"the bundle has no file {path}: add it to the bundle profile's files (name, url or path, "
        "sha256) and rebuild the bundle with `gpufleet bundle build`"
    )


def file_sha256(path):
    """The sha256 of the regular file ``path``; None when there is none."""
    if not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_verified(source, dest, sha256, timeout, opener, mode=0o644):
    """``source`` into ``dest``: written to a temporary file beside it, hashed while it streams, and
    renamed into place only when its sha256 is ``sha256``; otherwise nothing is left behind and
    BundleError names both hashes."""
    directory = os.path.dirname(dest) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".gpufleet-", dir=directory)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with opener(source, timeout=timeout) as response:
                    for block in iter(lambda: response.read(BLOCK), b""):
                        digest.update(block)
                        out.write(block)
            except Exception as exc:  # urllib, HTTP and socket errors alike
                raise _download_error(source, exc) from None
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256.lower():
            raise BundleError(
                f"{source} has sha256 {digest.hexdigest()}, not the {sha256.lower()} the bundle's signed "
                f"manifest lists: the file was altered on the bastion or on the way; {dest} was not written"
            )
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download_checked(url, entry, dest, timeout, opener):
    """Stream the bundle file of manifest ``entry`` (path, size, sha256) from the bundle at ``url``
    into ``dest``, hashing while writing; BundleError (``dest`` removed) when it is unreachable, or
    its size or sha256 is not the manifest's: nothing unverified is left for a caller to use.
    Returns the sha256."""
    source = f"{url.rstrip('/')}/{entry['path']}"
    digest, size = hashlib.sha256(), 0
    try:
        with open(dest, "wb") as out:
            try:
                response = opener(source, timeout=timeout)
            except Exception as exc:  # urllib, HTTP and socket errors alike
                raise _download_error(source, exc) from None
            with response:
                while True:
                    try:
                        block = response.read(BLOCK)
                    except Exception as exc:  # a connection lost half way
                        raise BundleError(f"{source} could not be read to the end ({exc})") from None
                    if not block:
                        break
                    digest.update(block)
                    size += len(block)
                    out.write(block)
        found = digest.hexdigest()
        if found != entry["sha256"].lower() or size != entry["size"]:
            raise BundleError(
                f"{source} is not the file the signed manifest lists: sha256 {found} ({size} bytes) was "
                f"served, the manifest has {entry['sha256'].lower()} ({entry['size']} bytes); it was not used"
            )
    except OSError as exc:
        _remove(dest)
        raise BundleError(f"{dest} cannot be written: {exc.strerror}") from None
    except BaseException:
        _remove(dest)
        raise
    return found


def _remove(path):
    if os.path.exists(path):
        os.unlink(path)
