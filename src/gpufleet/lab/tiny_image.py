"""The lab's container image: a few kilobytes made here with ``docker import``, no registry.

The lab bundle carries it (``images:`` in bundles/lab.yml) so that the air-gapped nodes load a real
image from the bastion with ``bundle_images`` (tarball sha256 checked, loaded image ID compared with
the signed manifest's). It holds one text file and runs nothing: containers cannot start inside the
lab's containers anyway. Made once; an image already there is kept, so its ID (what the bundle
records) stays the same from run to run.
"""

from __future__ import annotations

import io
import tarfile

from gpufleet.lab import docker as dk

NAME = "gpufleet-lab-tiny:1"
README = b"gpufleet lab image: carried in the lab bundle, loaded on the air-gapped nodes\n"


def _tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("README")
        info.size, info.mode, info.mtime = len(README), 0o644, 0
        tar.addfile(info, io.BytesIO(README))
    return buf.getvalue()


def ensure(name: str = NAME) -> dict:
    """Make the image ``name`` unless it is there; ``{"name", "id", "made"}``."""
    dk.require_daemon()
    found = dk.inspect("image", name)
    if found:
        return {"name": name, "id": found["Id"], "made": False}
    dk.docker("import", "--message", "gpufleet lab tiny image", "-", name, input=_tar())
    return {"name": name, "id": dk.inspect("image", name)["Id"], "made": True}
