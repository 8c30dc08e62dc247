"""A bundle carries models: signed model manifests (bundle key) beside the model's files, all of it
listed in the bundle's own signed manifest. Built for real: gpg in a temporary home, gpgv checks."""

import json
import os
import shutil
import subprocess

import pytest
import yaml

from gpufleet.bundle import BundleBuildError, build, profile
from gpufleet.lab import tiny_model
from gpufleet.models import api

pytestmark = pytest.mark.skipif(
    not shutil.which("gpg") or not shutil.which("gpgv"),
    reason="gpg and gpgv are needed (apt-get install gnupg)",
)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("signing")
    yield path
    subprocess.run(["gpgconf", "--homedir", str(path), "--kill", "all"], check=False, capture_output=True)


@pytest.fixture
def setup(tmp_path):
    model = tmp_path / "src" / "tiny-llama"
    tiny_model.write(model)
    prof = {
        "name": "models-only",
        "target": {"os": "debian-12", "arch": "amd64"},
        "models": [{"name": "tiny-llama", "version": "1", "path": "src/tiny-llama", "chunk_size": 262144}],
    }
    path = tmp_path / "profile.yml"
    path.write_text(yaml.safe_dump(prof))
    return {"profile": path, "data": prof, "model": model, "out": tmp_path / "bundle"}


def _build(setup, home):
    return build.build(setup["profile"], setup["out"], signing_home=home)


def test_carried_model_is_signed_listed_and_verifies(setup, home):
    result = _build(setup, home)
    out = setup["out"]
    manifest = json.loads((out / "manifest.json").read_text())
    by_path = {e["path"]: e for e in manifest["files"]}
    shard = "models/tiny-llama/1/model-00001-of-00002.safetensors"
    assert by_path[shard]["kind"] == "model"
    assert by_path["models/tiny-llama/1.model.json"]["kind"] == "model-manifest"
    assert by_path["models/tiny-llama/1.model.json.asc"]["kind"] == "model-signature"
    carried = {p for p in by_path if p.startswith("models/tiny-llama/1/")}
    assert carried == {f"models/tiny-llama/1/{rel}" for rel in tiny_model.files()}
    core = build._core()
    assert core.verify_bundle(str(out), result["fingerprint"])["ok"]
    report = api.verify_model(
        out / "models/tiny-llama/1.model.json",
        result["fingerprint"],
        keyring=out / "keys" / "gpufleet-bundle.gpg",
        directory=out / "models/tiny-llama/1",
    )
    assert report["ok"], report
    model_manifest = json.loads((out / "models/tiny-llama/1.model.json").read_text())
    entry = next(e for e in model_manifest["files"] if e["path"] == "model-00001-of-00002.safetensors")
    assert len(entry["chunks"]) == 5, "1.2 MB in 256 KiB chunks"
    assert by_path[shard]["sha256"] == entry["sha256"]


def test_rebuild_copies_only_what_changed_and_drops_models_no_longer_listed(setup, home):
    _build(setup, home)
    out = setup["out"]
    kept = out / "models/tiny-llama/1/config.json"
    inode = kept.stat().st_ino
    (setup["model"] / "generation_config.json").write_text('{"do_sample": true}\n')
    _build(setup, home)
    assert kept.stat().st_ino == inode, "an unchanged file is not copied again"
    assert (out / "models/tiny-llama/1/generation_config.json").read_text() == '{"do_sample": true}\n'
    data = dict(setup["data"])
    data["models"] = [dict(data["models"][0], version="2")]
    setup["profile"].write_text(yaml.safe_dump(data))
    _build(setup, home)
    assert sorted(p.name for p in (out / "models/tiny-llama").iterdir()) == [
        "2",
        "2.model.json",
        "2.model.json.asc",
    ]


def test_a_missing_model_directory_fails_before_anything_is_written(setup, home):
    shutil.rmtree(setup["model"])
    with pytest.raises(
        BundleBuildError, match=r"tiny-llama 1: .* is not a directory .*gpufleet lab tiny-model"
    ):
        _build(setup, home)
    assert not (setup["out"] / "models").exists()


def test_a_carried_file_that_differs_from_the_signed_manifest_fails_the_build(setup, home, monkeypatch):
    real_copy = shutil.copy2

    def flips_a_byte(src, dst, **kw):
        real_copy(src, dst, **kw)
        if str(src).endswith("00002.safetensors"):
            with open(dst, "r+b") as fh:
                fh.seek(100)
                fh.write(b"\xff")
            st = os.stat(src)
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))

    monkeypatch.setattr(shutil, "copy2", flips_a_byte)
    with pytest.raises(
        BundleBuildError, match=r"00002\.safetensors: its copy does not match the model manifest"
    ):
        _build(setup, home)
    assert not (setup["out"] / "manifest.json").exists()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "tiny llama", "version": "1", "path": "x"}, r"models\[0\]\.name: 'tiny llama' must be"),
        ({"name": "tiny", "version": "1"}, r"models\[0\]\.path: the model's directory is required"),
        ({"name": "tiny", "version": "1", "path": "x", "chunk_size": 10}, r"chunk_size: 10 must be"),
        ({"name": "tiny", "version": "1", "path": "x", "sha256": "0"}, r"unknown keys sha256"),
        ("tiny", r"models\[0\]: must be a mapping"),
    ],
)
def test_bad_model_entries_are_named(entry, message):
    data = {"name": "b", "target": {"os": "debian-12"}, "models": [entry]}
    with pytest.raises(BundleBuildError, match=message):
        profile.validate(data)


def test_the_same_model_version_twice_is_refused():
    m = {"name": "tiny", "version": 1, "path": "x"}
    data = {"name": "b", "target": {"os": "debian-12"}, "models": [m, dict(m)]}
    with pytest.raises(BundleBuildError, match=r"models\[1\]: model tiny version 1 is listed twice"):
        profile.validate(data)
