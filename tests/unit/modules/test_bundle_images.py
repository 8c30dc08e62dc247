"""gpufleet.cluster.bundle_images in-process: real signed bundles (gpg), the real gpgv, a real HTTP
server in a thread; docker is a TEST DOUBLE (fake_docker.py, put first on PATH as ``docker`` in a
temporary fake-docker-bin directory) that keeps its images in a JSON file and logs every call."""

import hashlib
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_images import image_file
from ansible_collections.gpufleet.cluster.plugins.modules import bundle_images
from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "module_utils"))
from bundle_testkit import build, signing_keys, write_manifest
from model_testkit import Server

HERE = Path(__file__).resolve().parent

REF = "registry.example.internal/llm/server:1.0"
ROUTER = "registry.example.internal/llm/router@sha256:" + "d" * 64
SERVER_ID = "sha256:" + hashlib.sha256(b"server").hexdigest()
ROUTER_ID = "sha256:" + hashlib.sha256(b"router").hexdigest()
OTHER_ID = "sha256:" + hashlib.sha256(b"something else").hexdigest()


def tarball(image_id, tags):
    """What the test double loads (see fake_docker.py), standing in for a docker save tarball."""
    return json.dumps({"id": image_id, "tags": tags}).encode()


PAYLOAD = {
    image_file(REF): tarball(SERVER_ID, [REF]),
    image_file(ROUTER): tarball(ROUTER_ID, []),
    "files/notes.txt": b"notes\n",
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    yield from signing_keys(tmp_path_factory)


@pytest.fixture
def docker(tmp_path, monkeypatch):
    """The test double on PATH; returns a reader of its state (tags, ids, calls)."""
    bindir = tmp_path / "fake-docker-bin"
    bindir.mkdir()
    exe = bindir / "docker"
    exe.write_text(f"#!{sys.executable}\n" + (HERE / "fake_docker.py").read_text())
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    state = tmp_path / "fake-docker-state.json"
    state.write_text(json.dumps({"tags": {}, "ids": [], "calls": []}))
    monkeypatch.setenv("FAKE_DOCKER_STATE", str(state))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp))

    class Fake:
        temp = tmp

        @staticmethod
        def state():
            return json.loads(state.read_text())

        @staticmethod
        def has(tags=None, ids=()):
            data = Fake.state()
            data["tags"].update(tags or {})
            data["ids"] = sorted(set(data["ids"]) | set(ids) | set((tags or {}).values()))
            state.write_text(json.dumps(data))

        @staticmethod
        def loads():
            return [c for c in Fake.state()["calls"] if c[0] == "load"]

    return Fake


def make_bundle(root, key, signer=None, ids=None):
    """A signed bundle whose image entries record image IDs (``ids``: path -> ID to record)."""
    manifest = build(root, key, PAYLOAD, signer=signer)
    recorded = {image_file(REF): SERVER_ID, image_file(ROUTER): ROUTER_ID, **(ids or {})}
    for item in manifest["files"]:
        if item["path"] in recorded:
            item["image_id"] = recorded[item["path"]]
    write_manifest(root, manifest)
    (signer or key).sign(root / "manifest.json")
    return root


def serve(root, **kwargs):
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return Server(files, **kwargs)


def run(args, check_mode=False):
    args = dict(args, _ansible_check_mode=check_mode)
    with patch_module_args(args), pytest.raises((AnsibleExitJson, AnsibleFailJson)) as outcome:
        bundle_images.main()
    return outcome.type is AnsibleExitJson, outcome.value.args[0]


def args_for(server, keys, images=(REF,), **extra):
    return dict(url=server.url, fingerprint=keys["bundle"].fpr, images=list(images), **extra)


def test_a_fresh_image_is_downloaded_loaded_and_checked_then_left_alone(tmp_path, keys, docker):
    root = make_bundle(tmp_path / "bundle", keys["bundle"])
    with serve(root) as server:
        ok, result = run(args_for(server, keys, images=[REF, ROUTER]))
        assert ok, result
        assert result["changed"] is True
        assert [(r["ref"], r["action"], r["image_id"]) for r in result["images"]] == [
            (REF, "loaded", SERVER_ID),
            (ROUTER, "loaded", ROUTER_ID),
        ]
        assert docker.state()["tags"] == {REF: SERVER_ID}
        assert ROUTER_ID in docker.state()["ids"], "a digest reference is found by its image ID"
        assert len(docker.loads()) == 2
        assert {image_file(REF), image_file(ROUTER)} <= server.paths_requested()
        assert list(docker.temp.iterdir()) == [], "the downloaded tarballs are removed"
        server.requests.clear()

        ok, again = run(args_for(server, keys, images=[REF, ROUTER]))
    assert ok and again["changed"] is False
    assert {r["action"] for r in again["images"]} == {"present"}
    assert len(docker.loads()) == 2, "nothing loaded again"
    assert not {image_file(REF), image_file(ROUTER)} & server.paths_requested(), "nothing downloaded again"


def test_an_image_already_present_with_the_recorded_id_is_not_downloaded(tmp_path, keys, docker):
    root = make_bundle(tmp_path / "bundle", keys["bundle"])
    docker.has({REF: SERVER_ID})
    with serve(root) as server:
        ok, result = run(args_for(server, keys))
    assert ok and result["changed"] is False
    assert result["images"][0]["action"] == "present"
    assert image_file(REF) not in server.paths_requested()
    assert docker.loads() == []


def test_check_mode_says_what_would_be_loaded_and_downloads_nothing(tmp_path, keys, docker):
    root = make_bundle(tmp_path / "bundle", keys["bundle"])
    with serve(root) as server:
        ok, result = run(args_for(server, keys), check_mode=True)
    assert ok and result["changed"] is True
    assert result["images"][0]["action"] == "would load"
    assert image_file(REF) not in server.paths_requested()
    assert docker.loads() == [] and docker.state()["tags"] == {}


def test_a_tarball_whose_sha256_differs_from_the_manifest_is_not_loaded(tmp_path, keys, docker):
    root = make_bundle(tmp_path / "bundle", keys["bundle"])
    with serve(root, corrupt=[image_file(REF)]) as server:
        ok, result = run(args_for(server, keys))
    assert not ok
    assert f"{image_file(REF)} is not the file the signed manifest lists: sha256 " in result["msg"]
    assert hashlib.sha256(PAYLOAD[image_file(REF)]).hexdigest() in result["msg"]
    assert docker.loads() == []
    assert list(docker.temp.iterdir()) == [], "the refused download is removed"


def test_a_loaded_image_with_another_id_fails_naming_both_and_removes_nothing(tmp_path, keys, docker):
    # The manifest records OTHER_ID for the tarball, which holds SERVER_ID (a bundle built wrong).
    root = make_bundle(tmp_path / "bundle", keys["bundle"], ids={image_file(REF): OTHER_ID})
    users = "sha256:" + "9" * 64
    docker.has({"site/own:latest": users})
    with serve(root) as server:
        ok, result = run(args_for(server, keys))
    assert not ok
    assert result["msg"].startswith(f"image {REF}: ")
    assert (
        f"now has image ID {SERVER_ID} where the bundle's signed manifest records {OTHER_ID}" in result["msg"]
    )
    assert "Nothing was removed" in result["msg"]
    calls = docker.state()["calls"]
    assert {c[0] for c in calls} <= {"image", "load"}, calls  # no rmi, no tag
    assert docker.state()["tags"]["site/own:latest"] == users


@pytest.mark.parametrize("how", ["other key", "unsigned"])
def test_a_manifest_not_signed_by_the_pinned_key_is_refused_before_docker_is_asked(
    tmp_path, keys, docker, how
):
    root = tmp_path / "bundle"
    if how == "other key":
        make_bundle(root, keys["other"])
    else:
        make_bundle(root, keys["bundle"])
        (root / "manifest.json.asc").unlink()
    with serve(root) as server:
        ok, result = run(args_for(server, keys))
    assert not ok
    if how == "other key":
        assert result["msg"].startswith("the bundle manifest is refused: the bundle's key ")
        assert f"is not the pinned key {keys['bundle'].fpr}" in result["msg"]
    else:  # the bastion serves no signature: nothing can be verified
        assert result["msg"].startswith(f"{server.url}/manifest.json.asc cannot be downloaded")
    assert image_file(REF) not in server.paths_requested()
    assert docker.state()["calls"] == []


def test_an_image_the_bundle_does_not_carry_fails_before_any_is_loaded(tmp_path, keys, docker):
    root = make_bundle(tmp_path / "bundle", keys["bundle"])
    with serve(root) as server:
        ok, result = run(args_for(server, keys, images=[REF, "nope:1"]))
    assert not ok
    assert result["msg"].startswith("the bundle carries no image nope:1 (it carries: ")
    assert docker.state()["calls"] == []


def test_a_bundle_without_image_ids_asks_for_a_rebuild(tmp_path, keys, docker):
    root = tmp_path / "bundle"
    build(root, keys["bundle"], PAYLOAD)  # image entries without image_id
    with serve(root) as server:
        ok, result = run(args_for(server, keys))
    assert not ok
    assert "records no image_id" in result["msg"] and "gpufleet bundle build" in result["msg"]


def test_without_docker_check_mode_says_every_image_would_load_and_a_real_run_fails(
    tmp_path, keys, monkeypatch
):
    root = make_bundle(tmp_path / "bundle", keys["bundle"])
    bindir = tmp_path / "gpgv-only-bin"
    bindir.mkdir()
    (bindir / "gpgv").symlink_to(shutil.which("gpgv"))
    monkeypatch.setenv("PATH", str(bindir))  # gpgv and no docker
    with serve(root) as server:
        ok, result = run(args_for(server, keys), check_mode=True)
        assert ok and result["changed"] is True and result["images"][0]["action"] == "would load"
        ok, result = run(args_for(server, keys))
    assert not ok and result["msg"].startswith("docker is not installed on this host")
