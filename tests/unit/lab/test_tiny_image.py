"""The lab's tiny image is imported once from a one-file tar, then kept (its ID must not change)."""

import io
import tarfile

from gpufleet.lab import docker as dk
from gpufleet.lab import tiny_image


def test_made_once_from_a_one_file_tar_then_kept(monkeypatch):
    images, calls = {}, []

    def docker(*args, input=None, **kw):
        calls.append(args)
        images[args[-1]] = {"Id": "sha256:" + "a" * 64}
        with tarfile.open(fileobj=io.BytesIO(input)) as tar:
            assert tar.getnames() == ["README"]
            assert tar.extractfile("README").read() == tiny_image.README
        return ""

    monkeypatch.setattr(dk, "require_daemon", lambda: "24.0")
    monkeypatch.setattr(dk, "inspect", lambda kind, name: images.get(name))
    monkeypatch.setattr(dk, "docker", docker)
    first = tiny_image.ensure()
    assert first == {"name": tiny_image.NAME, "id": "sha256:" + "a" * 64, "made": True}
    assert calls[0][:1] == ("import",) and calls[0][-2:] == ("-", tiny_image.NAME)
    second = tiny_image.ensure()
    assert second["made"] is False and second["id"] == first["id"] and len(calls) == 1
