"""model_metalink without aria2c: the Metalink v4 XML, the aria2c command line, the exit-code errors,
the re-verification against the signed manifest and adopting into the store (aria2c faked)."""

import hashlib
import os
import xml.etree.ElementTree as ET

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_manifest as mm
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_metalink as ml
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_store as ms
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_transfer as mt
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_manifest import ModelError
from model_testkit import CHUNK, make_files, manifest_for

NS = {"m": ml.NAMESPACE}
BASTION = "http://bastion:8080/models/tiny/1"
PEER_A = "http://node-a:9000/store/tiny/1/"
PEER_B = "https://node-b/store/tiny/1"


def parse(text):
    root = ET.fromstring(text)
    assert root.tag == f"{{{ml.NAMESPACE}}}metalink"
    return {node.get("name"): node for node in root.findall("m:file", NS)}


def test_metalink_lists_size_hash_and_every_chunk_hash_of_the_manifest():
    files = make_files()
    manifest = manifest_for(files)
    parsed = parse(ml.metalink(manifest, [BASTION]))
    assert set(parsed) == set(files)
    for entry in manifest["files"]:
        node = parsed[entry["path"]]
        assert node.find("m:size", NS).text == str(entry["size"])
        whole = node.find("m:hash", NS)
        assert (whole.get("type"), whole.text) == ("sha-256", entry["sha256"])
        pieces = node.find("m:pieces", NS)
        if not entry["chunks"]:
            assert pieces is None  # an empty file has no chunks; an empty <pieces> is not valid
            continue
        assert (pieces.get("length"), pieces.get("type")) == (str(CHUNK), "sha-256")
        got = [piece.text for piece in pieces.findall("m:hash", NS)]
        data = files[entry["path"]]
        assert (
            got
            == entry["chunks"]
            == [hashlib.sha256(data[i : i + CHUNK]).hexdigest() for i in range(0, len(data), CHUNK)]
        )


def test_bastion_is_least_preferred_and_urls_are_quoted():
    manifest = manifest_for({"sub dir/a#b.json": b"x" * 10})
    node = parse(ml.metalink(manifest, [BASTION, PEER_A, PEER_B]))["sub dir/a#b.json"]
    urls = {url.text: int(url.get("priority")) for url in node.findall("m:url", NS)}
    assert urls == {
        PEER_A.rstrip("/") + "/sub%20dir/a%23b.json": 1,
        PEER_B + "/sub%20dir/a%23b.json": 2,
        BASTION + "/sub%20dir/a%23b.json": 3,
    }
    kept = parse(ml.metalink(manifest, [BASTION, PEER_A], bastion_last=False))["sub dir/a#b.json"]
    assert [(u.get("priority"), u.text.split("/")[2]) for u in kept.findall("m:url", NS)] == [
        ("1", "bastion:8080"),
        ("2", "node-a:9000"),
    ]


def test_files_selects_a_subset_in_manifest_order():
    manifest = manifest_for(make_files())
    chosen = ["tokenizer/tokenizer.json", "config.json"]
    text = ml.metalink(manifest, [BASTION], files=chosen)
    assert list(parse(text)) == ["config.json", "tokenizer/tokenizer.json"]


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a\\b"])
def test_unsafe_or_unknown_names_are_refused(bad):
    manifest = manifest_for(make_files())
    with pytest.raises(ModelError, match=r"path|not in the manifest"):
        ml.metalink(manifest, [BASTION], files=[bad])


def test_a_manifest_with_an_unsafe_path_is_refused():
    manifest = manifest_for({"ok.bin": b"1"})
    manifest["files"][0]["path"] = "../ok.bin"
    with pytest.raises(ModelError, match="climbs out"):
        ml.metalink(manifest, [BASTION])


@pytest.mark.parametrize("source", ["s3://bucket/x", "file:///srv/x", "ftp://h/x", "http://", ""])
def test_only_http_sources(source):
    with pytest.raises(ModelError, match="http"):
        ml.metalink(manifest_for({"a": b"1"}), [source])
    with pytest.raises(ModelError, match="no sources"):
        ml.metalink(manifest_for({"a": b"1"}), [])


def test_command_checks_pieces_resumes_and_never_renames():
    argv = ml.command("/usr/bin/aria2c", "/tmp/x.meta4", "/store/stage", connections=8, split=3)
    assert argv[0] == "/usr/bin/aria2c"
    for option in (
        "--metalink-file=/tmp/x.meta4",
        "--dir=/store/stage",
        "--check-integrity=true",
        "--realtime-chunk-checksum=true",
        "--continue=true",
        "--allow-overwrite=false",
        "--auto-file-renaming=false",
        "--max-connection-per-server=8",
        "--split=3",
        "--uri-selector=inorder",
    ):
        assert option in argv
    clamped = ml.command("aria2c", "x.meta4", "d", connections=64, split=0, timeout=3600)
    for option in ("--max-connection-per-server=16", "--split=1", "--timeout=600"):
        assert option in clamped


def _fake_aria2c(tmp_path, script):
    path = tmp_path / "bin" / "aria2c"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


def test_missing_aria2c_names_the_package(tmp_path):
    with pytest.raises(ModelError, match="apt-get install aria2"):
        ml.fetch(manifest_for({"a": b"1"}), [BASTION], str(tmp_path / "s"), aria2c="no-such-aria2c-here")


def test_a_failed_aria2c_says_what_its_exit_code_means_and_keeps_partials(tmp_path):
    staging = tmp_path / "stage"
    staging.mkdir()
    (staging / "a").write_bytes(b"12")
    (staging / "a.aria2").write_bytes(b"control")
    fake = _fake_aria2c(tmp_path, "echo 'errorCode=32 Checksum error detected.' >&2\nexit 32\n")
    with pytest.raises(
        ModelError, match=r"exited 32 \(checksum validation failed\).*Checksum error detected"
    ):
        ml.fetch(manifest_for({"a": b"1234"}), [BASTION], str(staging), aria2c=fake)
    assert (staging / "a").read_bytes() == b"12"
    assert (staging / "a.aria2").exists()


def test_success_is_not_trusted_without_the_manifest(tmp_path):
    # The fake "aria2c" writes wrong bytes and exits 0: the re-verification refuses and removes them.
    files = {"a.bin": b"A" * (3 * CHUNK), "b.bin": b"B" * 100}
    manifest = manifest_for(files)
    staging = tmp_path / "stage"
    script = 'for a; do case "$a" in --dir=*) d="${a#--dir=}";; esac; done\n'
    script += f'head -c {3 * CHUNK} /dev/zero > "$d/a.bin"\nprintf "%0100d" 0 | tr 0 B > "$d/b.bin"\n'
    fake = _fake_aria2c(tmp_path, script)
    with pytest.raises(ModelError, match=r"a\.bin chunk\(s\) \[0, 1, 2\] differ") as caught:
        ml.fetch(manifest, [BASTION], str(staging), aria2c=fake)
    assert "b.bin" not in str(caught.value)
    assert not (staging / "a.bin").exists()
    assert (staging / "b.bin").read_bytes() == files["b.bin"]


def test_verified_files_are_kept_and_adopted_into_the_store(tmp_path):
    files = make_files()
    manifest = manifest_for(files)
    store = tmp_path / "store"
    staging = ml.staging_dir(str(store), manifest)
    for path, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(staging, path)), exist_ok=True)
        with open(os.path.join(staging, path), "wb") as handle:
            handle.write(data)
    fake = _fake_aria2c(tmp_path, "exit 99\n")  # must not run: everything is already staged
    result = ml.fetch(manifest, [BASTION], staging, aria2c=fake)
    assert result == {"fetched": [], "kept": sorted(files), "exit": 0}
    with open(os.path.join(staging, "config.json"), "ab") as handle:
        handle.write(b" ")
    with pytest.raises(ModelError, match=r"config\.json has"):
        ml.adopt(str(store), manifest, staging)
    with open(os.path.join(staging, "config.json"), "wb") as handle:
        handle.write(files["config.json"])
    moved = ml.adopt(str(store), manifest, staging)
    assert len(moved) == len(files)
    assert ms.missing_objects(str(store), manifest) == []
    with open(ms.object_path(str(store), hashlib.sha256(files["config.json"]).hexdigest()), "rb") as handle:
        assert handle.read() == files["config.json"]
    assert ml.adopt(str(store), manifest, staging) == []


def test_a_staged_symlink_out_of_staging_is_refused(tmp_path):
    staging = tmp_path / "stage"
    staging.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (staging / "tokenizer").symlink_to(tmp_path / "elsewhere")
    fake = _fake_aria2c(tmp_path, "exit 0\n")
    with pytest.raises(ModelError, match="outside the staging directory"):
        ml.fetch(manifest_for(make_files()), [BASTION], str(staging), aria2c=fake)


def _copying_aria2c(tmp_path, files):
    """A fake aria2c that "downloads" by copying a good model directory into --dir."""
    source = tmp_path / "good"
    for path, data in files.items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_bytes(data)
    script = 'for a; do case "$a" in --dir=*) d="${a#--dir=}";; esac; done\n'
    return _fake_aria2c(tmp_path, script + f'cp -R "{source}/." "$d/"\n')


def test_install_with_the_aria2_engine_builds_and_activates_the_version(tmp_path, monkeypatch):
    files = make_files()
    manifest = manifest_for(files)
    store = str(tmp_path / "store")
    monkeypatch.setattr(ml, "ARIA2C", _copying_aria2c(tmp_path, files))
    done = mt.install(store, manifest, mm.dumps(manifest), [BASTION, PEER_A], engine="aria2")
    assert done["activated"] and done["changed"]
    assert sorted(done["fetched"]) == sorted(files)
    assert done["bytes"] == sum(len(data) for data in files.values())
    assert ms.active_version(store, "tiny") == "1"
    for path, data in files.items():
        with open(os.path.join(ms.version_dir(store, "tiny", "1"), path), "rb") as handle:
            assert handle.read() == data
    assert not os.path.exists(ml.staging_dir(store, manifest))  # staging is removed once adopted
    again = mt.install(store, manifest, mm.dumps(manifest), [BASTION], engine="aria2")
    assert not again["changed"] and again["fetched"] == []


def test_install_with_the_aria2_engine_refuses_s3_and_unknown_engines(tmp_path):
    manifest = manifest_for({"a": b"1"})
    store = str(tmp_path / "store")
    with pytest.raises(ModelError, match="only HTTP"):
        mt.install(store, manifest, mm.dumps(manifest), ["s3://bucket/tiny/1"], engine="aria2")
    with pytest.raises(ModelError, match="engine 'torrent' is not one of builtin, aria2"):
        mt.install(store, manifest, mm.dumps(manifest), [BASTION], engine="torrent")
    assert ms.active_version(store, "tiny") is None
