"""module_utils/host_files.py: a file is written whole or not at all."""

import os

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils.host_files import write_atomically


def test_writes_the_text_with_the_mode_making_the_directory(tmp_path):
    dest = tmp_path / "state" / "receipt.json"
    write_atomically(str(dest), "one\n", mode=0o600)
    assert dest.read_text() == "one\n" and oct(dest.stat().st_mode & 0o777) == "0o600"
    write_atomically(str(dest), "two\n")
    assert dest.read_text() == "two\n" and oct(dest.stat().st_mode & 0o777) == "0o644"
    assert os.listdir(dest.parent) == ["receipt.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    dest = tmp_path / "receipt.json"
    dest.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomically(str(dest), "bad \udcff\n")
    assert dest.read_text() == "old\n" and os.listdir(tmp_path) == ["receipt.json"]
