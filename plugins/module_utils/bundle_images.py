# Copyright: gpufleet developers
# Apache-2.0
"""Container images carried in a bundle: where a reference's tarball lies (``images/<name>.tar``,
named here once for ``gpufleet bundle build`` and for the nodes), the image ID the signed manifest
records for it, and loading it into Docker with that ID checked.

Host code: stdlib only, Python >= 3.8 (the ``bundle_images`` module ships it to nodes).
"""

from __future__ import annotations

import os
import re
import tempfile

from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle import BundleError
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_format import IMAGE_ID
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_remote import download_checked

_OLD_BUNDLE = (
    "the bundle's manifest records no image_id for {path}: it was built before gpufleet recorded "
    "image IDs; rebuild it with `gpufleet bundle build`"
)


def image_file(ref):
    """The bundle path of image ``ref``'s ``docker save`` tarball."""
    return "images/" + re.sub(r"[^A-Za-z0-9._-]+", "_", ref) + ".tar"


def image_entries(manifest, refs):
    """{ref: manifest entry} for every reference in ``refs``, each with a valid ``image_id``;
    BundleError naming every reference the bundle does not carry (checked before anything is done)."""
    by_path = {e["path"]: e for e in manifest.get("files", []) if e.get("kind") == "image"}
    found, missing = {}, []
    for ref in refs:
        entry = by_path.get(image_file(ref))
        if entry is None:
            missing.append(ref)
            continue
        if not IMAGE_ID.fullmatch(str(entry.get("image_id", ""))):
            raise BundleError(_OLD_BUNDLE.format(path=entry["path"]))
        found[ref] = entry
    if missing:
        carried = sorted(e["path"] for e in by_path.values())
        raise BundleError(
            f"the bundle carries no image {', '.join(missing)} (it carries: {', '.join(carried) or 'none'}): "
            "add it to the bundle profile's images and rebuild the bundle"
        )
    return found


def _lookup(ref, image_id):
    """What to inspect: the reference, or the ID for a digest reference (``docker load`` restores
    tags, never repository digests, so ``name@sha256:...`` does not name a loaded image)."""
    return image_id if "@" in ref else ref


class Docker:
    """The docker CLI through ``run(argv) -> (rc, stdout, stderr)`` (AnsibleModule.run_command)."""

    def __init__(self, binary, run):
        self.binary, self.run = binary, run

    def image_id(self, name):
        """The ID of the local image ``name``, or None when there is none."""
        rc, out, _err = self.run([self.binary, "image", "inspect", "--format", "{{.Id}}", name])
        return out.strip() if rc == 0 and out.strip() else None

    def load(self, path):
        rc, out, err = self.run([self.binary, "load", "--input", path])
        if rc != 0:
            raise BundleError(f"docker load --input {path} failed: {(err or out).strip()[-600:]}")
        return out


def ensure_image(docker, url, ref, entry, timeout, opener, check_mode=False, tmpdir=None):
    """Make image ``ref`` present with the ID the signed manifest records. Returns a result dict:
    ref, image_id, changed, and action (``present``, ``loaded`` or ``would load``).

    Already present with that ID: nothing is downloaded. Else the tarball is downloaded with its
    sha256 checked while streaming, ``docker load``ed, and the loaded ID compared; BundleError names
    the image and both IDs when they differ. Nothing is ever removed from Docker."""
    expected = entry["image_id"]
    result = {"ref": ref, "image_id": expected, "path": entry["path"]}
    before = docker.image_id(_lookup(ref, expected))
    if before == expected:
        return dict(result, changed=False, action="present")
    if check_mode:
        return dict(result, changed=True, action="would load", before=before)
    fd, tar = tempfile.mkstemp(prefix="gpufleet-image-", suffix=".tar", dir=tmpdir)
    os.close(fd)
    try:
        download_checked(url, entry, tar, timeout, opener)
        output = docker.load(tar)
    finally:
        if os.path.exists(tar):
            os.unlink(tar)
    loaded = docker.image_id(_lookup(ref, expected))
    if loaded != expected:
        said = " ".join(output.split())[-300:]
        raise BundleError(
            f"image {ref}: {entry['path']} was loaded (docker said: {said}), but {ref} now has image ID "
            f"{loaded or '(none)'} where the bundle's signed manifest records {expected}; the image is "
            "not the one the bundle was built with. Nothing was removed; rebuild the bundle"
        )
    return dict(result, changed=True, action="loaded", before=before)
