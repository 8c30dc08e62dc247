"""gpufleet.cluster.model_fetch with an s3:// source: a real signed manifest, the real gpgv, moto's
S3 server in a thread (IAM authentication on); only exit_json/fail_json are replaced."""

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("boto3", reason="boto3 is not installed: the s3:// source tests need the dev extras")
pytest.importorskip(
    "moto.server", reason="moto[server] is not installed: the s3:// tests need the dev extras"
)

from ansible_collections.gpufleet.cluster.plugins.module_utils import model_s3
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_store as ms
from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401
from test_model_fetch import args_for, keys, run, signed  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "module_utils"))
from model_testkit import make_files
from s3_testkit import MotoS3


@pytest.fixture(scope="module")
def s3():
    with MotoS3() as endpoint:
        yield endpoint


@pytest.fixture
def asked(monkeypatch):
    calls = []
    real = model_s3.S3Source.get

    def counting(self, *args):
        calls.append(args[0])
        return real(self, *args)

    monkeypatch.setattr(model_s3.S3Source, "get", counting)
    return calls


def s3_args(path, keyring, keys, store, source, s3, **creds):  # noqa: F811 - keys is the fixture's value
    args = args_for(path, keyring, keys, store, source)
    creds = dict(s3.reader, **creds)
    args.update(
        s3_endpoint_url=s3.url,
        s3_region="us-east-1",
        s3_access_key=creds["access_key"],
        s3_secret_key=creds["secret_key"],
    )
    return args


def test_fetches_from_s3_and_returns_no_credentials(tmp_path, keys, s3):  # noqa: F811
    files = make_files()
    path, keyring = signed(tmp_path, keys, files)
    source = s3.upload("models", "tiny/1", files)
    ok, result = run(s3_args(path, keyring, keys, tmp_path / "store", source, s3))
    assert ok and result["changed"] and result["current"] == "1", result
    assert sorted(result["fetched"]) == sorted(files)
    dumped = json.dumps(result)
    assert s3.reader["secret_key"] not in dumped and s3.reader["access_key"] not in dumped
    assert ms.active_version(str(tmp_path / "store"), "tiny") == "1"


def test_a_wrong_secret_key_fails_the_task_without_showing_it(tmp_path, keys, s3):  # noqa: F811
    files = make_files()
    path, keyring = signed(tmp_path, keys, files)
    source = s3.upload("models", "tiny/1", files)
    secret = "Wrong/" + s3.reader["secret_key"][6:]
    ok, result = run(s3_args(path, keyring, keys, tmp_path / "store", source, s3, secret_key=secret))
    assert not ok and "SignatureDoesNotMatch" in result["msg"] and "s3://models/tiny/1/" in result["msg"]
    assert secret not in json.dumps(result) and s3.reader["access_key"] not in json.dumps(result)
    assert ms.active_version(str(tmp_path / "store"), "tiny") is None


def test_check_mode_with_an_s3_source_asks_s3_nothing(tmp_path, keys, s3, asked):  # noqa: F811
    files = make_files()
    path, keyring = signed(tmp_path, keys, files)
    store = tmp_path / "store"
    args = s3_args(path, keyring, keys, store, "s3://models/tiny/1", s3, secret_key="not-even-right")
    ok, result = run(args, check_mode=True)
    assert ok and result["changed"] and sorted(result["fetched"]) == sorted(files)
    assert result["bytes"] == sum(len(d) for d in files.values())
    assert asked == [] and not store.exists()
