"""gpufleet.cluster.bundle_wheel_requirements in-process: real signed bundles (gpg), the real gpgv,
a real HTTP server in a thread serving the bundle directory; only exit_json/fail_json are replaced."""

import functools
import hashlib
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.modules import bundle_wheel_requirements
from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "module_utils"))
from bundle_testkit import build, signing_keys, write_manifest

CUDNN = "wheels/nvidia_cudnn_cu12-9.1.0.70-py3-none-manylinux2014_x86_64.whl"
CUBLAS = "wheels/nvidia_cublas_cu12-12.4.5.8-py3-none-manylinux2014_x86_64.whl"
NCCL = "wheels/nvidia_nccl_cu12-2.21.5-py3-none-manylinux2014_x86_64.whl"
PAYLOAD = {CUDNN: b"PK\x03\x04cudnn", CUBLAS: b"PK\x03\x04cublas", NCCL: b"PK\x03\x04nccl"}
REQUIRES = {CUDNN: ["nvidia-cublas-cu12"], CUBLAS: [], NCCL: []}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    yield from signing_keys(tmp_path_factory)


def make_bundle(root, key, signer=None, requires=True):
    manifest = build(root, key, PAYLOAD, signer=signer)
    if requires:
        for item in manifest["files"]:
            if item["path"] in REQUIRES:
                item["requires"] = REQUIRES[item["path"]]
        # Sign the manifest again with the requires added.
        write_manifest(root, manifest)
        (signer or key).sign(root / "manifest.json")
    return manifest


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
        bundle_wheel_requirements.main()
    return outcome.type is AnsibleExitJson, outcome.value.args[0]


def pinned(path):
    return f"--hash=sha256:{hashlib.sha256(PAYLOAD[path]).hexdigest()}"


def test_good_bundle_writes_the_closure_with_hashes_then_changes_nothing(tmp_path, keys, serve):
    make_bundle(tmp_path / "bundle", keys["bundle"])
    dest = tmp_path / "venv" / "req.txt"
    args = dict(
        url=serve(tmp_path / "bundle"),
        fingerprint=keys["bundle"].fpr,
        packages=["nvidia-cudnn-cu12"],
        dest=str(dest),
    )
    ok, result = run(args)
    assert ok, result
    assert result["changed"] is True
    assert result["lines"] == [
        f"nvidia-cublas-cu12==12.4.5.8 {pinned(CUBLAS)}",
        f"nvidia-cudnn-cu12==9.1.0.70 {pinned(CUDNN)}",
    ]
    text = dest.read_text()
    assert text.splitlines()[1:] == result["lines"]
    assert text.startswith("#")
    assert dest.stat().st_mode & 0o777 == 0o644
    mtime = dest.stat().st_mtime_ns
    ok, again = run(args)
    assert ok and again["changed"] is False
    assert dest.stat().st_mtime_ns == mtime
    assert [p.name for p in dest.parent.iterdir()] == ["req.txt"]  # no temporary file left


def test_check_mode_reports_the_change_and_writes_nothing(tmp_path, keys, serve):
    make_bundle(tmp_path / "bundle", keys["bundle"])
    dest = tmp_path / "req.txt"
    dest.write_text("old\n")
    args = dict(
        url=serve(tmp_path / "bundle"),
        fingerprint=keys["bundle"].fpr,
        packages=["nvidia-nccl-cu12==2.21.5"],
        dest=str(dest),
    )
    ok, result = run(args, check_mode=True, diff=True)
    assert ok and result["changed"] is True
    assert result["diff"]["before"] == "old\n"
    assert result["diff"]["after"].endswith(f"nvidia-nccl-cu12==2.21.5 {pinned(NCCL)}\n")
    assert dest.read_text() == "old\n"


def test_a_bundle_signed_by_another_key_is_refused_and_nothing_is_written(tmp_path, keys, serve):
    make_bundle(tmp_path / "bundle", keys["other"])
    dest = tmp_path / "req.txt"
    ok, result = run(
        dict(
            url=serve(tmp_path / "bundle"),
            fingerprint=keys["bundle"].fpr,
            packages=["nvidia-cudnn-cu12"],
            dest=str(dest),
        )
    )
    assert not ok
    assert result["msg"].startswith("the bundle manifest is refused: the bundle's key ")
    assert f"is not the pinned key {keys['bundle'].fpr}" in result["msg"]
    assert not dest.exists()


def test_a_manifest_altered_after_signing_is_refused(tmp_path, keys, serve):
    root = tmp_path / "bundle"
    make_bundle(root, keys["bundle"])
    manifest = root / "manifest.json"
    manifest.write_text(manifest.read_text().replace(hashlib.sha256(PAYLOAD[CUDNN]).hexdigest(), "0" * 64))
    ok, result = run(
        dict(
            url=serve(root),
            fingerprint=keys["bundle"].fpr,
            packages=["nvidia-cudnn-cu12"],
            dest=str(tmp_path / "req.txt"),
        )
    )
    assert not ok
    assert "BADSIG" in result["msg"]
    assert not (tmp_path / "req.txt").exists()


def test_an_old_bundle_without_requires_asks_for_a_rebuild(tmp_path, keys, serve):
    make_bundle(tmp_path / "bundle", keys["bundle"], requires=False)
    ok, result = run(
        dict(
            url=serve(tmp_path / "bundle"),
            fingerprint=keys["bundle"].fpr,
            packages=["nvidia-cudnn-cu12"],
            dest=str(tmp_path / "req.txt"),
        )
    )
    assert not ok
    assert "rebuild it with `gpufleet bundle build`" in result["msg"]


def test_an_unreachable_bastion_names_the_url(tmp_path, keys):
    ok, result = run(
        dict(
            url="http://127.0.0.1:9/lab",
            fingerprint=keys["bundle"].fpr,
            packages=["x"],
            dest=str(tmp_path / "req.txt"),
            timeout=5,
        )
    )
    assert not ok
    assert result["msg"].startswith("http://127.0.0.1:9/lab/manifest.json cannot be downloaded")


LLAMA = "wheels/llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
DISKCACHE = "wheels/diskcache-5.6.3-py3-none-any.whl"
UVICORN = "wheels/uvicorn-0.55.0-py3-none-any.whl"
ENGINE = {LLAMA: b"PK\x03\x04llama", DISKCACHE: b"PK\x03\x04diskcache", UVICORN: b"PK\x03\x04uvicorn"}


def test_an_extra_pins_the_wheels_the_manifest_records_for_it(tmp_path, keys, serve):
    root = tmp_path / "bundle"
    manifest = build(root, keys["bundle"], ENGINE)
    recorded = {
        LLAMA: {"requires": ["diskcache"], "extras": {"server": ["uvicorn"]}},
        DISKCACHE: {"requires": [], "extras": {}},
        UVICORN: {"requires": [], "extras": {}},
    }
    for item in manifest["files"]:
        item.update(recorded.get(item["path"], {}))
    write_manifest(root, manifest)
    keys["bundle"].sign(root / "manifest.json")
    args = dict(url=serve(root), fingerprint=keys["bundle"].fpr, dest=str(tmp_path / "req.txt"))
    sha = {path: hashlib.sha256(data).hexdigest() for path, data in ENGINE.items()}
    ok, result = run(dict(args, packages=["llama-cpp-python[server]==0.3.36"]))
    assert ok, result
    assert result["lines"] == [
        f"diskcache==5.6.3 --hash=sha256:{sha[DISKCACHE]}",
        f"llama-cpp-python[server]==0.3.36 --hash=sha256:{sha[LLAMA]}",
        f"uvicorn==0.55.0 --hash=sha256:{sha[UVICORN]}",
    ]
    ok, result = run(dict(args, packages=["llama-cpp-python[all]==0.3.36"]))
    assert not ok
    assert (
        "asks for the extra 'all'" in result["msg"]
        and "(extras it carries complete: server)" in result["msg"]
    )
