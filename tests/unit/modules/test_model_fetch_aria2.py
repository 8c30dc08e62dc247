"""gpufleet.cluster.model_fetch with engine: aria2, aria2c faked (the real one runs in
tests/unit/module_utils/test_model_metalink_aria2.py): a real signed manifest and the real gpgv."""

import sys
from pathlib import Path

from ansible_collections.gpufleet.cluster.plugins.module_utils import model_metalink as ml
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_store as ms
from module_harness import _module_exits  # noqa: F401 (autouse: exit_json/fail_json raise)
from test_model_fetch import args_for, keys, run, signed  # noqa: F401 (keys is a fixture)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "module_utils"))
from model_testkit import make_files


def _copying_aria2c(tmp_path, files):
    source = tmp_path / "good"
    for path, data in files.items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_bytes(data)
    fake = tmp_path / "bin" / "aria2c"
    fake.parent.mkdir()
    fake.write_text(
        '#!/bin/sh\nfor a; do case "$a" in --dir=*) d="${a#--dir=}";; esac; done\n'
        f'cp -R "{source}/." "$d/"\n'
    )
    fake.chmod(0o755)
    return str(fake)


def test_engine_aria2_fetches_and_activates(tmp_path, keys, monkeypatch):  # noqa: F811
    files = make_files()
    path, keyring = signed(tmp_path, keys, files)
    store = tmp_path / "store"
    monkeypatch.setattr(ml, "ARIA2C", _copying_aria2c(tmp_path, files))
    args = dict(args_for(path, keyring, keys, store, "http://bastion.invalid/models/tiny/1"), engine="aria2")
    ok, result = run(args)
    assert ok and result["changed"] and result["current"] == "1"
    assert sorted(result["fetched"]) == sorted(files)
    assert ms.active_version(str(store), "tiny") == "1"


def test_engine_aria2_without_aria2c_fails_naming_the_package(tmp_path, keys, monkeypatch):  # noqa: F811
    files = make_files()
    path, keyring = signed(tmp_path, keys, files)
    store = tmp_path / "store"
    monkeypatch.setattr(ml, "ARIA2C", "no-such-aria2c-here")
    args = dict(args_for(path, keyring, keys, store, "http://bastion.invalid/models/tiny/1"), engine="aria2")
    ok, result = run(args)
    assert not ok
    assert "apt-get install aria2" in result["msg"]
    assert ms.active_version(str(store), "tiny") is None
