"""gpufleet.cluster.bundle_file in-process: real signed bundles (gpg), the real gpgv, a real HTTP
server in a thread serving the bundle directory; only exit_json/fail_json are replaced."""

import functools
import hashlib
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.modules import bundle_file
from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "module_utils"))
from bundle_testkit import build, signing_keys

PACK = "files/torch-env.tar.gz"
INSTALLER = "files/Miniforge3-24.11.3-0-Linux-x86_64.sh"
PAYLOAD = {PACK: b"\x1f\x8b\x08" + bytes(range(256)) * 64, INSTALLER: b"#!/bin/sh\necho miniforge\n"}
WHEEL = "wheels/six-1.17.0-py2.py3-none-any.whl"


def sha(path):
    return hashlib.sha256(PAYLOAD[path]).hexdigest()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    yield from signing_keys(tmp_path_factory)


@pytest.fixture
def serve():
    servers = []

    def start(root):
        handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
        handler.log_message = lambda *a: None
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def run(args, check_mode=False, diff=False):
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(args), pytest.raises((AnsibleExitJson, AnsibleFailJson)) as outcome:
        bundle_file.main()
    return outcome.type is AnsibleExitJson, outcome.value.args[0]


@pytest.fixture
def bundle(tmp_path, keys, serve):
    root = tmp_path / "bundle"
    build(root, keys["bundle"], {**PAYLOAD, WHEEL: b"PK\x03\x04six"})
    return root, serve(root)


def args_for(url, keys, dest, name="torch-env.tar.gz", **extra):
    return dict(url=url, fingerprint=keys["bundle"].fpr, name=name, dest=str(dest), **extra)


def test_a_pinned_file_is_downloaded_then_nothing_changes(tmp_path, keys, bundle):
    _root, url = bundle
    dest = tmp_path / "cache" / "torch-env.tar.gz"
    ok, result = run(args_for(url, keys, dest))
    assert ok, result
    assert result["changed"] is True
    assert result["sha256"] == sha(PACK) and result["size"] == len(PAYLOAD[PACK])
    assert dest.read_bytes() == PAYLOAD[PACK]
    assert dest.stat().st_mode & 0o777 == 0o644
    mtime = dest.stat().st_mtime_ns
    ok, again = run(args_for(url, keys, dest))
    assert ok and again["changed"] is False
    assert dest.stat().st_mtime_ns == mtime
    assert [p.name for p in dest.parent.iterdir()] == ["torch-env.tar.gz"]  # no temporary file left


def test_check_mode_reports_the_change_and_downloads_nothing(tmp_path, keys, bundle):
    _root, url = bundle
    dest = tmp_path / "Miniforge3.sh"
    dest.write_bytes(b"old")
    ok, result = run(
        args_for(url, keys, dest, name="Miniforge3-24.11.3-0-Linux-x86_64.sh"), check_mode=True, diff=True
    )
    assert ok and result["changed"] is True
    assert result["diff"]["before"] == f"sha256 {hashlib.sha256(b'old').hexdigest()}\n"
    assert result["diff"]["after"] == f"sha256 {sha(INSTALLER)}\n"
    assert dest.read_bytes() == b"old"


def test_a_file_altered_on_the_bastion_is_refused_and_dest_is_kept(tmp_path, keys, bundle):
    root, url = bundle
    (root / PACK).write_bytes(PAYLOAD[PACK] + b"tampered")
    dest = tmp_path / "torch-env.tar.gz"
    dest.write_bytes(b"previous")
    ok, result = run(args_for(url, keys, dest))
    assert not ok
    assert f"not the {sha(PACK)} the bundle's signed manifest lists" in result["msg"]
    assert dest.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".gpufleet-")] == []


def test_a_manifest_signed_by_another_key_is_refused_before_any_download(tmp_path, keys, serve):
    root = tmp_path / "bundle"
    build(root, keys["other"], PAYLOAD)
    dest = tmp_path / "torch-env.tar.gz"
    ok, result = run(args_for(serve(root), keys, dest))
    assert not ok
    assert result["msg"].startswith("the bundle manifest is refused: the bundle's key ")
    assert not dest.exists()


def test_a_manifest_altered_after_signing_is_refused(tmp_path, keys, bundle):
    root, url = bundle
    manifest = root / "manifest.json"
    manifest.write_text(manifest.read_text().replace(sha(PACK), "0" * 64))
    ok, result = run(args_for(url, keys, tmp_path / "x.tar.gz"))
    assert not ok and "BADSIG" in result["msg"]
    assert not (tmp_path / "x.tar.gz").exists()


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("other.tar.gz", "the bundle has no file files/other.tar.gz: add it to the bundle profile's files"),
        ("../manifest.json", "is not a bundle file name"),
    ],
)
def test_a_file_the_bundle_does_not_pin_is_named(tmp_path, keys, bundle, name, says):
    _root, url = bundle
    ok, result = run(args_for(url, keys, tmp_path / "x", name=name))
    assert not ok and says in result["msg"]
    assert not (tmp_path / "x").exists()


def test_an_unreachable_bastion_names_the_url(tmp_path, keys):
    ok, result = run(args_for("http://127.0.0.1:9/lab", keys, tmp_path / "x", timeout=5))
    assert not ok
    assert result["msg"].startswith("http://127.0.0.1:9/lab/manifest.json cannot be downloaded")
