"""s3:// model sources against a real local S3-compatible endpoint (moto's server in a thread, IAM
authentication on) and, mixed in, the real ranged HTTP server of model_testkit."""

import os
import time
import traceback

import pytest

pytest.importorskip("boto3", reason="boto3 is not installed: the s3:// source tests need the dev extras")
pytest.importorskip(
    "moto.server", reason="moto[server] is not installed: the s3:// tests need the dev extras"
)

from ansible_collections.gpufleet.cluster.plugins.module_utils import model_manifest as mm
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_s3
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_transfer as mt
from model_testkit import CHUNK, Server, make_files, manifest_for
from s3_testkit import MotoS3

SHARD = "model-00002-of-00002.safetensors"


@pytest.fixture(scope="module")
def s3():
    with MotoS3() as endpoint:
        yield endpoint


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch, tmp_path):
    """Only what a test gives: no AWS_* variables or ~/.aws files of the machine running the tests."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"


@pytest.fixture
def asked(monkeypatch):
    """How many ranged GetObject requests reached S3 (model_s3.S3Source.get calls)."""
    calls = []
    real = model_s3.S3Source.get

    def counting(self, path, start, length, throttle):
        calls.append((self.bucket, path, start))
        return real(self, path, start, length, throttle)

    monkeypatch.setattr(model_s3.S3Source, "get", counting)
    return calls


def install(store, files, sources, **kwargs):
    manifest = manifest_for(files)
    return mt.install(str(store), manifest, mm.dumps(manifest), sources, **kwargs)


def installed(store, files):
    root = store / "models" / "tiny" / "current"
    return all((root / path).read_bytes() == data for path, data in files.items())


def leftovers(store):
    return sorted(p.name for p in store.rglob("*") if ".partial" in p.name)


def whole_text(exc):
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) + repr(exc)


def test_fetches_a_model_from_s3_and_verifies_it(s3, store, asked):
    files = make_files()
    source = s3.upload("models", "tiny/1", files)
    result = install(store, files, [source], workers=3, s3=s3.options())
    assert result["changed"] and sorted(result["fetched"]) == sorted(files)
    assert result["bytes"] == sum(len(d) for d in files.values())
    assert installed(store, files) and leftovers(store) == []
    shard_starts = sorted(start for _bucket, path, start in asked if path == SHARD)
    assert shard_starts == [i * CHUNK for i in range(5)], "one ranged GetObject per chunk"


def test_a_corrupt_chunk_in_s3_is_fetched_from_the_http_source(s3, store, asked):
    files = make_files()
    bad = bytearray(files[SHARD])
    bad[2 * CHUNK + 7] ^= 0xFF  # chunk 2 of the shard is wrong in the bucket, the rest is right
    source = s3.upload("models", "tiny/corrupt", dict(files, **{SHARD: bytes(bad)}))
    with Server(files) as good:
        result = install(store, files, [source, good.url], workers=2, s3=s3.options())
        shard_ranges = sorted(rng for path, rng in good.requests if path == SHARD)
    assert installed(store, files) and result["changed"]
    assert (("models", SHARD, 2 * CHUNK)) in asked, "chunk 2 was asked of S3 first (source i mod n)"
    assert f"bytes={2 * CHUNK}-{3 * CHUNK - 1}" in shard_ranges, "then of the http source"
    assert f"bytes=0-{CHUNK - 1}" not in shard_ranges, "a checksum mismatch does not drop the S3 source"


def test_a_wrong_secret_key_fails_fast_names_the_error_and_never_shows_the_keys(s3, store, asked):
    files = make_files()
    source = s3.upload("models", "tiny/1", files)
    secret = "wrong-" + s3.reader["secret_key"][:20]
    options = s3.options(secret_key=secret)
    with pytest.raises(mm.ModelError) as err:
        install(store, files, [source], workers=2, s3=options)
    text = whole_text(err.value)
    assert "SignatureDoesNotMatch" in text and "s3://models/tiny/1/" in text and "check s3_secret_key" in text
    assert secret not in text and s3.reader["access_key"] not in text
    assert "run again to resume" in text and "active version is unchanged" in text
    assert len(asked) <= 2, f"the source failed at once, not chunk after chunk ({len(asked)} requests)"
    assert leftovers(store), "a transfer failure keeps the partial files (no chunk was verified)"
    assert not (store / "models" / "tiny" / "current").exists()


def test_wrong_credentials_move_every_chunk_to_the_next_source(s3, store, asked):
    files = make_files()
    source = s3.upload("models", "tiny/1", files)
    with Server(files) as good:
        started = time.monotonic()
        result = install(
            store, files, [source, good.url], workers=2, s3=s3.options(access_key="AKIANOTKNOWN0000")
        )
        took = time.monotonic() - started
    assert installed(store, files) and sorted(result["fetched"]) == sorted(files)
    assert len(asked) <= 2 and took < 20


@pytest.mark.parametrize(
    ("bucket_and_prefix", "user", "code", "hint"),
    [
        ("s3://no-such-bucket/tiny/1", "reader", "NoSuchBucket", "check the bucket in the source URL"),
        ("s3://models/not/here", "reader", "NoSuchKey", "check the prefix in the source URL"),
        ("s3://models/tiny/1", "nobody", "AccessDenied", "grants s3:GetObject"),
        ("s3://models/tiny/1", "unknown", "InvalidAccessKeyId", "does not know the access key"),
    ],
)
def test_storage_errors_say_where_what_and_what_to_check(s3, store, bucket_and_prefix, user, code, hint):
    files = make_files()
    s3.upload("models", "tiny/1", files)
    creds = {"reader": s3.reader, "nobody": s3.nobody}.get(
        user, {"access_key": "AKIAUNKNOWN", "secret_key": "x" * 40}
    )
    with pytest.raises(mm.ModelError) as err:
        install(store, files, [bucket_and_prefix], workers=2, s3=s3.options(user=creds))
    text = whole_text(err.value)
    key = bucket_and_prefix + "/config.json"
    assert code in text and hint in text and key in text, text
    assert creds["secret_key"] not in text and creds["access_key"] not in text


def test_an_unreachable_endpoint_is_said_and_not_retried_per_chunk(s3, store, asked):
    files = make_files()
    options = s3.options(endpoint_url="http://127.0.0.1:9")
    with pytest.raises(mm.ModelError, match=r"endpoint http://127\.0\.0\.1:9 could not be reached") as err:
        install(store, files, ["s3://models/tiny/1"], workers=1, s3=options)
    assert "check s3_endpoint_url" in str(err.value) and len(asked) == 1


def test_the_credential_chain_applies_when_no_keys_are_given(s3, store, monkeypatch):
    files = make_files()
    source = s3.upload("models", "tiny/1", files)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.reader["access_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.reader["secret_key"])
    install(store, files, [source], s3={"endpoint_url": s3.url, "region": "us-east-1"})
    assert installed(store, files)


def test_the_rate_limit_applies_to_s3(s3, store):
    files = make_files()
    total = sum(len(d) for d in files.values())
    source = s3.upload("models", "tiny/1", files)
    started = time.monotonic()
    install(store, files, [source], workers=4, rate_limit=total // 2, s3=s3.options())
    took = time.monotonic() - started
    # the same fetch without the limit takes about 0.4 s here
    assert 1.6 <= took < 30, f"{total} bytes at {total // 2} bytes/s take about 2 s, not {took:.2f}"


def test_a_second_run_asks_s3_nothing(s3, store, asked):
    files = make_files()
    source = s3.upload("models", "tiny/1", files)
    install(store, files, [source], s3=s3.options())
    del asked[:]
    again = install(store, files, [source], s3=s3.options())
    assert not again["changed"] and asked == []


def test_messages_name_s3_objects_without_credentials():
    reader = model_s3.S3Source("s3://models/tiny/1/", {"secret_key": "SeCrEt", "access_key": "AKID"})
    assert reader.name("a/b.json") == "s3://models/tiny/1/a/b.json"
    assert reader.scrub("x SeCrEt y AKID") == "x *** y ***"
    assert model_s3.split_source("s3://models") == ("models", "")
    assert mt.redact("s3://models/tiny/1") == "s3://models/tiny/1"
