"""gpufleet._io.write_atomic: readers see the old file or the new one, never a part."""

import os

import pytest

from gpufleet import _io
from gpufleet._io import write_atomic


def test_write_atomic_creates_parents_and_leaves_no_temp(tmp_path):
    target = tmp_path / "textfile" / "collector" / "gpufleet_verify.prom"
    write_atomic(target, "first\n")
    assert target.read_text() == "first\n"
    assert os.listdir(target.parent) == ["gpufleet_verify.prom"]
    assert (target.stat().st_mode & 0o777) == 0o644


def test_write_atomic_replaces_in_one_step_and_spares_other_files(tmp_path, monkeypatch):
    target = tmp_path / "gpufleet_verify.prom"
    other = tmp_path / "node_other.prom"
    other.write_text("keep me\n")
    write_atomic(target, "old\n")
    inode_before = target.stat().st_ino
    seen = {}
    real_replace = os.replace

    def spy_replace(src, dst):
        # At the moment of the rename the reader still sees the whole old file, and the new text
        # is complete in a hidden temp file of the same directory that the collector ignores.
        seen["target"] = target.read_text()
        with open(src) as handle:
            seen["tmp"] = handle.read()
        seen["tmp_name"] = os.path.basename(src)
        seen["same_dir"] = os.path.dirname(os.path.abspath(src)) == str(tmp_path)
        return real_replace(src, dst)

    monkeypatch.setattr(_io.os, "replace", spy_replace)
    write_atomic(target, "new\n" * 1000)
    assert seen["target"] == "old\n"
    assert seen["tmp"] == "new\n" * 1000
    assert seen["same_dir"]
    assert seen["tmp_name"].startswith(".") and not seen["tmp_name"].endswith(".prom")
    assert target.read_text() == "new\n" * 1000
    assert target.stat().st_ino != inode_before  # a new file renamed in, not rewritten in place
    assert sorted(os.listdir(tmp_path)) == ["gpufleet_verify.prom", "node_other.prom"]
    assert other.read_text() == "keep me\n"


def test_write_atomic_failure_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "gpufleet_verify.prom"
    write_atomic(target, "old\n")

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(_io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["gpufleet_verify.prom"]


def test_write_atomic_writes_bytes_as_they_are(tmp_path):
    data = bytes(range(256)) + b"\r\n\x00"
    write_atomic(tmp_path / "blob.bin", data)
    assert (tmp_path / "blob.bin").read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["blob.bin"]
