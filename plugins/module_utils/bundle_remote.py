# Copyright: gpufleet developers
# Apache-2.0
"""A bundle on the bastion, seen from a node: its signed manifest fetched and verified against the
pinned key, and single files streamed to disk with their sha256 checked against that manifest.

Host code: stdlib only, Python >= 3.8 (the ``bundle_wheel_requirements`` and ``bundle_images``
modules ship it to nodes).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

from ansible.module_utils.urls import open_url
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle import (
    KEYRING,
    MANIFEST,
    SIGNATURE,
    BundleError,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_wheels import verified_manifest

BLOCK = 1024 * 1024


def _source(url, rel):
    return f"{url.rstrip('/')}/{rel}"


def fetch(url, root, timeout):
    """The manifest, its signature and the bundle key from ``url`` into ``root``."""
    for rel in (MANIFEST, SIGNATURE, KEYRING):
        target = os.path.join(root, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        source = _source(url, rel)
        try:
            with open_url(source, timeout=timeout) as response, open(target, "wb") as out:
                shutil.copyfileobj(response, out)
        except Exception as exc:  # urllib, HTTP and socket errors alike
            raise BundleError(
                f"{source} cannot be downloaded ({exc}): check that the bastion serves the bundle "
                "(bundle_server) and that url is the bundle's base URL"
            ) from None


def remote_manifest(url, fingerprint, timeout, gpgv="gpgv"):
    """The manifest of the bundle at ``url`` once its signature is the pinned key's (verified_manifest);
    BundleError says why not (unreachable, unsigned, altered, another key)."""
    with tempfile.TemporaryDirectory(prefix="gpufleet-bundle-") as root:
        fetch(url, root, timeout)
        return verified_manifest(root, fingerprint, gpgv=gpgv)


def _stream(source, out, timeout):
    """Copy ``source`` into the open file ``out``; (sha256 hex, bytes)."""
    digest, size = hashlib.sha256(), 0
    try:
        response = open_url(source, timeout=timeout)
    except Exception as exc:  # urllib, HTTP and socket errors alike
        raise BundleError(f"{source} cannot be downloaded ({exc})") from None
    with response:
        while True:
            try:
                block = response.read(BLOCK)
            except Exception as exc:  # a connection lost half way
                raise BundleError(f"{source} could not be read to the end ({exc})") from None
            if not block:
                return digest.hexdigest(), size
            digest.update(block)
            size += len(block)
            try:
                out.write(block)
            except OSError as exc:
                raise BundleError(f"{out.name} cannot be written: {exc.strerror}") from None


def download_checked(url, entry, dest, timeout):
    """Stream the bundle file of manifest ``entry`` (path, size, sha256) from ``url`` into ``dest``,
    hashing while writing; BundleError (``dest`` removed) when it is unreachable, or its size or sha256
    is not the manifest's: nothing unverified is left for a caller to use. Returns the sha256."""
    source = _source(url, entry["path"])
    try:
        with open(dest, "wb") as out:
            found, size = _stream(source, out, timeout)
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
