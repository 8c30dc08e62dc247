"""The model store and its fetch engine against real HTTP servers in threads (Range support, a
source that sends corrupt bytes, one that drops the connection mid-transfer)."""

import hashlib
import json
import os
import re
import shutil
import time
from collections import namedtuple

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_manifest as mm
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_s3
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_store as ms
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_transfer as mt
from model_testkit import CHUNK, Server, make_files, manifest_for


def install(store, manifest, sources, **kwargs):
    return mt.install(str(store), manifest, mm.dumps(manifest), sources, **kwargs)


def read_model(store, name="tiny", link="current"):
    root = store / "models" / name / link
    out = {}
    for dirpath, _dirs, names in os.walk(root, followlinks=True):
        for n in names:
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if rel != ms.MANIFEST_COPY:
                out[rel] = open(full, "rb").read()  # noqa: SIM115
    return out


def range_length(header):
    start, end = re.fullmatch(r"bytes=(\d+)-(\d+)", header).groups()
    return int(end) - int(start) + 1


def leftovers(store):
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if ".partial" in p.name)


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"


def test_fetch_places_every_file_and_flips_current(store):
    files = make_files()
    manifest = manifest_for(files)
    seen = []
    with Server(files) as src:
        result = install(store, manifest, [src.url], workers=3, progress=seen.append)
    assert sum(seen) == sum(len(d) for d in files.values()), "progress reports every verified byte"
    assert result["changed"] and result["activated"] and result["built"]
    assert sorted(result["fetched"]) == sorted(files)
    assert result["bytes"] == sum(len(d) for d in files.values())
    assert read_model(store) == files
    assert os.readlink(store / "models/tiny/current") == "versions/1"
    assert ms.active_version(str(store), "tiny") == "1"
    assert leftovers(store) == []
    # every shard chunk was asked for by a ranged request
    assert all(rng and rng.startswith("bytes=") for _path, rng in src.requests)
    for data in files.values():
        obj = store / "objects" / hashlib.sha256(data).hexdigest()[:2] / hashlib.sha256(data).hexdigest()
        assert obj.is_file() and not obj.is_symlink() and oct(obj.stat().st_mode & 0o777) == "0o644"


def test_second_run_changes_nothing(store):
    files = make_files()
    manifest = manifest_for(files)
    with Server(files) as src:
        install(store, manifest, [src.url])
        again = install(store, manifest, [src.url])
        assert not again["changed"] and again["fetched"] == [] and again["bytes"] == 0


def test_new_version_fetches_only_changed_files_then_rollback_is_instant(store):
    v1 = make_files()
    v2 = dict(
        v1, **{"model-00001-of-00002.safetensors": make_files(seed=b"v2")["model-00001-of-00002.safetensors"]}
    )
    with Server(v1) as s1:
        install(store, manifest_for(v1, version="1"), [s1.url])
    with Server(v2) as s2:
        result = install(store, manifest_for(v2, version="2"), [s2.url])
    assert result["fetched"] == ["model-00001-of-00002.safetensors"]
    assert s2.paths_requested() == {"model-00001-of-00002.safetensors"}
    assert result["previous"] == "1"
    assert read_model(store) == v2 and read_model(store, link="previous") == v1
    assert ms.versions(str(store), "tiny") == ["1", "2"]
    assert ms.rollback(str(store), "tiny") == "1"
    assert read_model(store) == v1 and ms.previous_version(str(store), "tiny") == "2"
    assert ms.rollback(str(store), "tiny") == "2" and read_model(store) == v2


def test_rollback_without_previous_is_refused(store):
    files = make_files()
    with Server(files) as src:
        install(store, manifest_for(files), [src.url])
    with pytest.raises(mm.ModelError, match="no previous version"):
        ms.rollback(str(store), "tiny")


def test_activate_false_stages_the_version_without_serving_it(store):
    files = make_files()
    with Server(files) as src:
        result = install(store, manifest_for(files), [src.url], activate_it=False)
    assert result["built"] and not result["activated"]
    assert not os.path.lexists(store / "models/tiny/current")


def test_corrupt_chunk_from_one_source_is_fetched_from_the_next(store):
    files = make_files()
    shard = "model-00002-of-00002.safetensors"
    with Server(files, corrupt={shard}) as bad, Server(files) as good:
        result = install(store, manifest_for(files), [bad.url, good.url], workers=2)
        assert any(p == shard for p, _ in bad.requests), "the corrupt source was asked at least once"
        assert sum(1 for p, _ in good.requests if p == shard) == 5, "every chunk ended up from the good one"
    assert read_model(store) == files and result["changed"]


def test_checksum_mismatch_everywhere_is_refused_partial_removed_previous_still_active(store):
    v1 = make_files()
    with Server(v1) as src:
        install(store, manifest_for(v1, version="1"), [src.url])
    v2 = dict(
        v1, **{"model-00001-of-00002.safetensors": make_files(seed=b"v2")["model-00001-of-00002.safetensors"]}
    )
    refused = pytest.raises(mm.ModelError, match=r"refused.*partial data was removed")
    with Server(v2, corrupt={"model-00001-of-00002.safetensors"}) as bad, refused as err:
        install(store, manifest_for(v2, version="2"), [bad.url])
    assert "active version is unchanged" in str(err.value)
    assert leftovers(store) == []
    assert ms.active_version(str(store), "tiny") == "1" and read_model(store) == v1
    assert ms.versions(str(store), "tiny") == ["1"]


def test_source_gone_mid_transfer_then_the_next_run_resumes(store):
    files = make_files()
    manifest = manifest_for(files)
    total = sum(len(d) for d in files.values())
    # one worker takes the files in manifest order: the source dies 2.1 chunks into the second shard
    dies_at = (
        sum(len(files[p]) for p in ("config.json", "model-00001-of-00002.safetensors")) + 2 * CHUNK + 100
    )
    resumable = pytest.raises(mm.ModelError, match="run again to resume")
    with Server(files, drop_after=dies_at) as flaky, resumable:
        install(store, manifest, [flaky.url], workers=1)
    assert any(name.endswith(".partial") for name in leftovers(store))
    assert not os.path.lexists(store / "models/tiny/current")
    # nothing unverified at a final path: every object there matches its name
    for obj in (store / "objects").rglob("*"):
        if obj.is_file() and "." not in obj.name:
            assert hashlib.sha256(obj.read_bytes()).hexdigest() == obj.name
    with Server(files) as back:
        result = install(store, manifest, [back.url], workers=2)
        fetched_again = sum(range_length(rng) for _, rng in back.requests)
    assert result["resumed_bytes"] == 2 * CHUNK
    assert fetched_again == total - result["resumed_bytes"] - sum(
        len(files[p]) for p in files if p not in result["fetched"]
    )
    assert read_model(store) == files and leftovers(store) == []


def test_a_claimed_chunk_the_disk_lost_is_fetched_again(store):
    """The sidecar is not synced with the data: after a power loss it may claim a chunk that never
    reached the disk. A resume reads claimed chunks back, and fetches the one that does not match."""
    files = make_files()
    manifest = manifest_for(files)
    shard = "model-00002-of-00002.safetensors"
    dies_at = (
        sum(len(files[p]) for p in ("config.json", "model-00001-of-00002.safetensors")) + 2 * CHUNK + 100
    )
    with Server(files, drop_after=dies_at) as flaky, pytest.raises(mm.ModelError, match="run again"):
        install(store, manifest, [flaky.url], workers=1)
    entry = next(e for e in manifest["files"] if e["path"] == shard)
    (partial,) = [p for p in (store / "objects").rglob(entry["sha256"] + ".partial")]
    with open(partial, "r+b") as handle:  # chunk 1 claimed, but zeros on disk (lost in a power cut)
        handle.seek(CHUNK)
        handle.write(bytes(CHUNK))
    with Server(files) as back:
        result = install(store, manifest, [back.url], workers=1)
        asked = [rng for path, rng in back.requests if path.endswith(shard)]
    assert result["resumed_bytes"] == CHUNK, "only chunk 0 is taken over"
    assert f"bytes={CHUNK}-{2 * CHUNK - 1}" in asked, "the lost chunk is fetched again"
    assert f"bytes=0-{CHUNK - 1}" not in asked, "the intact chunk is not"
    assert read_model(store) == files and leftovers(store) == []


def test_not_enough_disk_is_said_before_the_first_byte(store, monkeypatch):
    files = make_files()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 100, 100))
    with Server(files) as src:
        with pytest.raises(mm.ModelError, match=r"not enough disk space .* bytes needed, 100 free") as err:
            install(store, manifest_for(files), [src.url])
        assert src.requests == []
    assert str(store) in str(err.value)


def test_a_different_manifest_under_an_existing_version_is_refused(store):
    files = make_files()
    with Server(files) as src:
        install(store, manifest_for(files, version="1"), [src.url])
        changed = dict(files, **{"config.json": b"{}\n"})
        with pytest.raises(mm.ModelError, match="versions are immutable"):
            install(store, manifest_for(changed, version="1"), [src.url])


def test_a_users_directory_at_current_is_never_replaced(store):
    files = make_files()
    (store / "models/tiny/current").mkdir(parents=True)
    (store / "models/tiny/current/mine.txt").write_text("keep me")
    with Server(files) as src, pytest.raises(mm.ModelError, match="not a symbolic link"):
        install(store, manifest_for(files), [src.url])
    assert (store / "models/tiny/current/mine.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ([], "no sources"),
        (["s3:///models/tiny"], "bucket name is missing"),
        (["s3://models/tiny?versionId=3"], "no query string"),
        (["ftp://mirror/tiny"], "not an http"),
    ],
)
def test_sources_are_checked(store, sources, message):
    with pytest.raises(mm.ModelError, match=message):
        install(store, manifest_for(make_files()), sources)
    assert not store.exists(), "refused before the store is touched"


def test_an_s3_source_without_boto3_is_refused_with_what_to_install(store, monkeypatch):
    monkeypatch.setattr(model_s3, "HAS_BOTO3", False)
    message = (
        r"s3://models/tiny: the s3:// source needs boto3 on the host \(python3-boto3 or pip install boto3\)"
    )
    with pytest.raises(mm.ModelError, match=message):
        install(store, manifest_for(make_files()), ["http://127.0.0.1:9/tiny", "s3://models/tiny"])
    assert not store.exists()
    mt.check_sources(["http://127.0.0.1:9/tiny"])  # http(s) sources need nothing more


def test_credentials_in_an_s3_url_are_refused_and_not_shown(store):
    with pytest.raises(mm.ModelError, match="credentials do not belong in an s3:// URL") as err:
        install(store, manifest_for(make_files()), ["s3://AKIDEXAMPLE:wJalrXUtnFEMI@models/tiny"])
    assert "AKIDEXAMPLE" not in str(err.value) and "wJalrXUtnFEMI" not in str(err.value)


def test_credentials_never_appear_in_messages():
    assert mt.redact("https://user:s3cret@mirror.example/m") == "https://mirror.example/m"
    presigned = "https://s3.example/b/m?X-Amz-Credential=AKID&X-Amz-Signature=s3cret"
    assert mt.redact(presigned) == "https://s3.example/b/m"
    assert mt.redact("s3://bucket/models/tiny") == "s3://bucket/models/tiny"
    with pytest.raises(mt.TransferFailed) as err:
        mt.get_range("http://user:s3cret@127.0.0.1:9/x", 0, 10, timeout=2)
    assert "s3cret" not in str(err.value)


def test_plan_reports_what_would_be_fetched(store):
    files = make_files()
    manifest = manifest_for(files)
    todo = ms.plan(str(store), manifest)
    assert len(todo["fetch"]) == len(files) and todo["active"] is None and not todo["version_exists"]
    assert todo["fetch_bytes"] == sum(len(d) for d in files.values())
    assert not store.exists(), "planning writes nothing"


def test_rate_limit_caps_the_download_rate(store):
    files = make_files()
    total = sum(len(d) for d in files.values())
    with Server(files) as src:
        started = time.monotonic()
        install(store, manifest_for(files), [src.url], workers=4, rate_limit=total * 4)
        took = time.monotonic() - started
    assert took >= 0.2, f"{total} bytes at {total * 4} bytes/s take at least a quarter second, not {took:.2f}"


def test_one_fetch_at_a_time_per_store(store):
    files = make_files()
    with mt.store_lock(str(store)), pytest.raises(mm.ModelError, match="another model fetch"):
        install(store, manifest_for(files), ["http://127.0.0.1:9"])


def test_a_source_that_ignores_range_is_passed_over_for_the_next(store):
    files = make_files()
    with Server(files, ranges=False) as plain, Server(files) as ranged:
        install(store, manifest_for(files), [plain.url, ranged.url], workers=2)
        assert plain.requests, "the source without Range support was asked"
    assert read_model(store) == files


def test_identical_files_share_one_object(store):
    files = dict(make_files(), **{"copy/config.json": make_files()["config.json"]})
    with Server(files) as src:
        result = install(store, manifest_for(files), [src.url])
        assert sum(1 for p, _ in src.requests if p.endswith("config.json")) == 1
    assert len(result["fetched"]) == len(files) - 1
    assert read_model(store) == files


def test_an_interrupted_fetch_stops_at_once_and_resumes(store):
    files = make_files()
    manifest = manifest_for(files)

    def interrupt(nbytes):
        raise KeyboardInterrupt

    with Server(files) as src, pytest.raises(KeyboardInterrupt):
        install(store, manifest, [src.url], workers=1, progress=interrupt)
    assert len(src.requests) <= 2, "the chunks not started were cancelled, not fetched on the way out"
    with Server(files) as back:
        install(store, manifest, [back.url])
    assert read_model(store) == files and leftovers(store) == []


def test_verified_chunks_of_another_chunk_size_are_not_trusted(store):
    files = make_files()
    manifest = manifest_for(files)
    shard = next(e for e in manifest["files"] if e["path"] == "model-00002-of-00002.safetensors")
    chunk = manifest["chunk_size"]
    assert ms.read_sidecar("/nonexistent", shard, chunk) == set()
    sidecar = store / "sidecar.json"
    store.mkdir()
    sidecar.write_text(json.dumps({"sha256": shard["sha256"], "chunk_size": chunk, "done": [0, 2, 99]}))
    assert ms.read_sidecar(str(sidecar), shard, chunk) == {0, 2}, "indexes beyond the file are ignored"
    assert ms.read_sidecar(str(sidecar), shard, chunk * 2) == set()
