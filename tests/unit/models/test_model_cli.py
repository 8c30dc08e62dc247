"""``gpufleet model add|verify`` with a real bundle key (gpg in a temporary home) and gpgv."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpufleet.cli import main
from gpufleet.models import ModelCommandError, api

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "module_utils"))
from model_testkit import Server

pytestmark = pytest.mark.skipif(
    not shutil.which("gpg") or not shutil.which("gpgv"),
    reason="gpg and gpgv are needed (apt-get install gnupg)",
)
FILES = {
    "config.json": b'{"hidden_size": 64}\n',
    "model.safetensors": bytes(range(256)) * 20,
    "tokenizer/tokenizer.json": b'{"version": "1.0"}\n',
}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("signing")
    yield path
    subprocess.run(["gpgconf", "--homedir", str(path), "--kill", "all"], check=False, capture_output=True)


@pytest.fixture
def model(tmp_path):
    root = tmp_path / "tiny"
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: main\n")
    return root


def add(model, home, tmp_path, *extra):
    out = tmp_path / "tiny-1.model.json"
    argv = ["model", "add", str(model), "--name", "tiny", "--version", "1", "-o", str(out)]
    argv += ["--chunk-size", "1024", "--signing-home", str(home), *extra]
    return main(argv), out


def test_add_writes_a_signed_manifest_that_verifies(model, home, tmp_path, capsys):
    rc, out = add(model, home, tmp_path)
    assert rc == 0
    manifest = json.loads(out.read_text())
    assert [e["path"] for e in manifest["files"]] == sorted(FILES), ".git is not part of the model"
    assert manifest["chunk_size"] == 1024 and len(manifest["files"][1]["chunks"]) == 5
    assert (tmp_path / "tiny-1.model.json.asc").is_file()
    assert not (tmp_path / "tiny-1.model.json.hashcache").exists(), "the hash cache goes once signed"
    fpr = manifest["signing_key"]
    capsys.readouterr()
    assert (
        main(
            [
                "model",
                "verify",
                str(out),
                "--fingerprint",
                fpr,
                "--signing-home",
                str(home),
                "--dir",
                str(model),
            ]
        )
        == 0
    )
    assert "OK: model 'tiny' version 1: signature good" in capsys.readouterr().out


def test_verify_refuses_another_pin_and_reports_a_changed_file(model, home, tmp_path, capsys):
    _rc, out = add(model, home, tmp_path)
    fpr = json.loads(out.read_text())["signing_key"]
    assert main(["model", "verify", str(out), "--fingerprint", "B" * 40, "--signing-home", str(home)]) == 2
    assert "not the pinned key" in capsys.readouterr().err
    (model / "model.safetensors").write_bytes(b"changed")
    argv = [
        "model",
        "verify",
        str(out),
        "--fingerprint",
        fpr,
        "--signing-home",
        str(home),
        "--dir",
        str(model),
    ]
    assert main(argv) == 1
    assert "corrupt: model.safetensors" in capsys.readouterr().out


def test_interrupted_hashing_resumes_without_hashing_finished_files_again(model, home, tmp_path, monkeypatch):
    mm = api._mm()
    real = mm.file_entry
    calls = []

    def dies_on_the_second_file(path, rel, chunk_size, progress=None):
        calls.append(rel)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, rel, chunk_size, progress)

    monkeypatch.setattr(mm, "file_entry", dies_on_the_second_file)
    out = tmp_path / "tiny-1.model.json"
    with pytest.raises(KeyboardInterrupt):
        api.add_model(model, "tiny", "1", output=out, chunk_size=1024, signing_home=home, say=lambda m: None)
    assert not out.exists()
    monkeypatch.setattr(mm, "file_entry", real)
    said = []
    result = api.add_model(
        model, "tiny", "1", output=out, chunk_size=1024, signing_home=home, say=said.append
    )
    assert result["cached"] == 1 and result["hashed"] == 2
    assert any("resuming" in line for line in said)


@pytest.mark.parametrize(
    ("name", "message"), [("../evil", "model name"), ("ok", "outside the model directory")]
)
def test_bad_input_is_refused_before_hashing(model, home, name, message):
    output = model / "m.json" if name == "ok" else None
    with pytest.raises(ModelCommandError, match=message):
        api.add_model(model, name, "1", output=output, signing_home=home, say=lambda m: None)


def test_fetch_into_a_local_store_then_roll_back(model, home, tmp_path, capsys):
    _rc, out1 = add(model, home, tmp_path)
    fpr = json.loads(out1.read_text())["signing_key"]
    store = tmp_path / "store"
    pin = ["--fingerprint", fpr, "--signing-home", str(home), "--store", str(store)]
    with Server(FILES) as src:
        assert main(["model", "fetch", str(out1), "--source", src.url, *pin]) == 0
    assert "versions/1: now current; 3 files fetched" in capsys.readouterr().out
    files2 = dict(FILES, **{"config.json": b'{"hidden_size": 128}\n'})
    (model / "config.json").write_bytes(files2["config.json"])
    out2 = tmp_path / "tiny-2.model.json"
    argv = ["model", "add", str(model), "--name", "tiny", "--version", "2", "-o", str(out2)]
    assert main([*argv, "--chunk-size", "1024", "--signing-home", str(home)]) == 0
    with Server(files2) as src:
        assert main(["model", "fetch", str(out2), "--source", src.url, "--rate-limit", "1M", *pin]) == 0
        assert src.paths_requested() == {"config.json"}, "only the changed file is fetched"
    assert "1 files fetched" in capsys.readouterr().out
    assert main(["model", "rollback", "tiny", "--store", str(store)]) == 0
    assert "current is 1 again (previous: 2)" in capsys.readouterr().out
    assert (store / "models/tiny/current/config.json").read_bytes() == FILES["config.json"]


def test_fetch_refuses_an_untrusted_manifest_before_any_request(model, home, tmp_path, capsys):
    _rc, out = add(model, home, tmp_path)
    with Server(FILES) as src:
        argv = ["model", "fetch", str(out), "--source", src.url, "--store", str(tmp_path / "s")]
        assert main([*argv, "--fingerprint", "C" * 40, "--signing-home", str(home)]) == 2
        assert src.requests == []
    assert "not the pinned key" in capsys.readouterr().err
