"""``gpufleet model add|verify|fetch|rollback`` with a real bundle key (gpg in a temporary home) and gpgv;
fetches from a real HTTP server on 127.0.0.1 (the s3:// ones: test_model_cli_s3.py)."""

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_metalink as ml
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_s3
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_store as ms
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_transfer as mt

from gpufleet.cli import main
from gpufleet.models import ModelCommandError, api
from gpufleet.models import cli as model_cli

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


def two_versions(model, home, tmp_path, capsys):
    """Version 1 fetched (current), version 2 signed with a changed config.json: ``(manifest2, pin)``."""
    _rc, out1 = add(model, home, tmp_path)
    fpr = json.loads(out1.read_text())["signing_key"]
    pin = ["--fingerprint", fpr, "--signing-home", str(home), "--store", str(tmp_path / "store")]
    with Server(FILES) as src:
        assert main(["model", "fetch", str(out1), "--source", src.url, *pin]) == 0
    (model / "config.json").write_bytes(b'{"hidden_size": 128}\n')
    out2 = tmp_path / "tiny-2.model.json"
    argv = ["model", "add", str(model), "--name", "tiny", "--version", "2", "-o", str(out2)]
    assert main([*argv, "--chunk-size", "1024", "--signing-home", str(home)]) == 0
    capsys.readouterr()
    return out2, pin


def one_line_error(err):
    """The one line ``gpufleet: error: ...`` the CLI prints for a problem the user can fix."""
    assert "Traceback" not in err
    assert err.startswith("gpufleet: error: ") and err.count("\n") == 1, err
    return err


def test_engine_choices_are_the_engines_model_transfer_has():
    assert model_cli.ENGINES == mt.ENGINES


def test_engine_aria2_without_aria2c_fails_in_one_line_and_current_stays(
    model, home, tmp_path, capsys, monkeypatch
):
    out2, pin = two_versions(model, home, tmp_path, capsys)
    # PATH without aria2c; gpg and gpgv stay reachable, for the signature check before it
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gpg", "gpgv"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(bin_dir))
    with Server(dict(FILES, **{"config.json": b'{"hidden_size": 128}\n'}), http11=True) as src:
        rc = main(["model", "fetch", str(out2), "--source", src.url, "--engine", "aria2", *pin])
        assert src.requests == [], "nothing is asked of a source when aria2c is missing"
    assert rc == 2
    err = one_line_error(capsys.readouterr().err)
    assert "aria2c is not installed" in err and "apt-get install aria2" in err
    assert ms.active_version(str(tmp_path / "store"), "tiny") == "1"


@pytest.mark.skipif(
    shutil.which("aria2c") is None,
    reason="aria2c is not installed (Debian package aria2: apt-get install -y aria2; scripts/host-deps.sh)",
)
def test_engine_aria2_fetches_with_the_real_aria2c(model, home, tmp_path, capsys, monkeypatch):
    out2, pin = two_versions(model, home, tmp_path, capsys)
    files2 = dict(FILES, **{"config.json": b'{"hidden_size": 128}\n'})
    calls = []
    real = ml.fetch

    def recorded(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ml, "fetch", recorded)
    argv = ["model", "fetch", str(out2), "--engine", "aria2", "--timeout", "7", "--workers", "2", *pin]
    with Server(files2, http11=True) as src:
        assert main([*argv, "--source", src.url]) == 0
        assert src.paths_requested() == {"config.json"}, "only the changed file is fetched"
    assert "versions/2: now current; 1 files fetched" in capsys.readouterr().out
    assert len(calls) == 1 and calls[0]["timeout"] == 7 and calls[0]["connections"] == 2
    current = tmp_path / "store/models/tiny/current"
    assert {rel: (current / rel).read_bytes() for rel in files2} == files2
    assert not (tmp_path / "store" / ".aria2-staging" / "tiny" / "2").exists()


def test_timeout_bounds_each_request_to_a_source_that_never_answers(model, home, tmp_path, capsys):
    _rc, out = add(model, home, tmp_path)
    fpr = json.loads(out.read_text())["signing_key"]
    store = tmp_path / "store"
    capsys.readouterr()
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(32)
        source = f"http://127.0.0.1:{silent.getsockname()[1]}"
        argv = ["model", "fetch", str(out), "--source", source, "--fingerprint", fpr, "--store", str(store)]
        started = time.monotonic()
        rc = main([*argv, "--signing-home", str(home), "--timeout", "1", "--workers", "8"])
        took = time.monotonic() - started
    assert rc == 2
    assert took < 20, f"{took:.0f} s: --timeout 1 did not reach the requests (the default is 60 s)"
    err = one_line_error(capsys.readouterr().err)
    assert "timed out" in err and "run again to resume" in err
    assert ms.active_version(str(store), "tiny") is None


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_timeout_must_be_a_positive_number_of_seconds(value, capsys):
    argv = ["model", "fetch", "m.json", "--fingerprint", "A" * 40, "--source", "http://x", "--store", "s"]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--timeout", value])
    assert exc.value.code == 2
    assert "--timeout: want a whole number of seconds" in capsys.readouterr().err


def test_an_s3_source_without_boto3_is_refused_before_anything(model, home, tmp_path, capsys, monkeypatch):
    _rc, out = add(model, home, tmp_path)
    fpr = json.loads(out.read_text())["signing_key"]
    monkeypatch.setattr(model_s3, "HAS_BOTO3", False)
    store = tmp_path / "store"
    argv = [
        "model",
        "fetch",
        str(out),
        "--fingerprint",
        fpr,
        "--signing-home",
        str(home),
        "--store",
        str(store),
    ]
    capsys.readouterr()
    assert main([*argv, "--source", "s3://models/tiny/1", "--s3-endpoint-url", "http://127.0.0.1:9"]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "s3://models/tiny/1" in err and "need boto3" in err and "-m pip install boto3" in err
    assert not store.exists(), "nothing is written before the sources are judged"
