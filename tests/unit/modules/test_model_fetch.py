"""gpufleet.cluster.model_fetch in-process: a real signed manifest (gpg), the real gpgv, a real
HTTP server in a thread; only exit_json/fail_json are replaced."""

import sys
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_manifest as mm
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_s3
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_store as ms
from ansible_collections.gpufleet.cluster.plugins.modules import model_fetch
from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "module_utils"))
from bundle_testkit import signing_keys
from model_testkit import Server, make_files, manifest_for


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    yield from signing_keys(tmp_path_factory)


def signed(tmp_path, keys, files, version="1", signer="bundle"):
    path = tmp_path / f"tiny-{version}.model.json"
    path.write_bytes(mm.dumps(manifest_for(files, version=version, signing_key=keys["bundle"].fpr)))
    keys[signer].sign(path)
    keyring = tmp_path / "key.gpg"
    keyring.write_bytes(keys["bundle"].binary)
    return path, keyring


def run(args, check_mode=False):
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args), pytest.raises((AnsibleExitJson, AnsibleFailJson)) as outcome:
        model_fetch.main()
    return outcome.type is AnsibleExitJson, outcome.value.args[0]


def args_for(path, keyring, keys, store, url):
    return {
        "manifest": str(path),
        "keyring": str(keyring),
        "fingerprint": keys["bundle"].fpr,
        "sources": [url],
        "store": str(store),
    }


def test_fetches_activates_and_is_idempotent(tmp_path, keys):
    files = make_files()
    path, keyring = signed(tmp_path, keys, files)
    store = tmp_path / "store"
    with Server(files) as src:
        args = args_for(path, keyring, keys, store, src.url)
        ok, result = run(args)
        assert ok and result["changed"] and result["current"] == "1" and result["previous"] is None
        assert sorted(result["fetched"]) == sorted(files)
        ok, again = run(args)
        assert ok and not again["changed"] and again["fetched"] == []
        ok, checked = run(args, check_mode=True)
        assert ok and not checked["changed"] and checked["bytes"] == 0
    assert ms.active_version(str(store), "tiny") == "1"


def test_without_sources_it_checks_a_placed_version_and_refuses_an_incomplete_one(tmp_path, keys):
    """What llm_serve runs before serving: the signature and a complete version, no source needed."""
    files = make_files()
    path, keyring = signed(tmp_path, keys, files)
    store = tmp_path / "store"
    args = dict(args_for(path, keyring, keys, store, "unused"), sources=[], activate=False)
    ok, result = run(args, check_mode=True)
    assert not ok and "lacks 5 file(s) of model tiny 1" in result["msg"]
    assert "no sources were given: place the model first (role model_store)" in result["msg"]
    with Server(files) as src:
        assert run(args_for(path, keyring, keys, store, src.url))[0]
    ok, result = run(args, check_mode=True)
    assert ok and not result["changed"] and result["fetched"] == []


def test_check_mode_reports_what_would_be_fetched_and_writes_nothing(tmp_path, keys):
    files = make_files()
    path, keyring = signed(tmp_path, keys, files)
    store = tmp_path / "store"
    ok, result = run(args_for(path, keyring, keys, store, "http://127.0.0.1:9"), check_mode=True)
    assert ok and result["changed"] and sorted(result["fetched"]) == sorted(files)
    assert result["bytes"] == sum(len(d) for d in files.values())
    assert not store.exists()


def test_a_manifest_signed_by_another_key_is_refused_and_the_previous_version_stays(tmp_path, keys):
    v1 = make_files()
    path1, keyring = signed(tmp_path, keys, v1, version="1")
    store = tmp_path / "store"
    with Server(v1) as src:
        assert run(args_for(path1, keyring, keys, store, src.url))[0]
        v2 = dict(v1, **{"config.json": b"{}\n"})
        path2, _ = signed(tmp_path, keys, v2, version="2", signer="other")
        ok, result = run(args_for(path2, keyring, keys, store, src.url))
        assert src.paths_requested() == set(v1) - {"empty.txt"}, "nothing fetched for the refused manifest"
    assert not ok and "signed by another key" in result["msg"]
    assert ms.active_version(str(store), "tiny") == "1" and ms.versions(str(store), "tiny") == ["1"]


def test_a_checksum_mismatch_fails_the_task_and_leaves_no_partial_data(tmp_path, keys):
    files = make_files()
    path, keyring = signed(tmp_path, keys, files)
    store = tmp_path / "store"
    with Server(files, corrupt={"config.json"}) as bad:
        ok, result = run(args_for(path, keyring, keys, store, bad.url))
    assert not ok and "refused" in result["msg"] and "config.json" in result["msg"]
    assert not [p for p in store.rglob("*") if ".partial" in p.name]
    assert ms.active_version(str(store), "tiny") is None


def test_an_s3_source_on_a_host_without_boto3_fails_saying_what_to_install(tmp_path, keys, monkeypatch):
    monkeypatch.setattr(model_s3, "HAS_BOTO3", False)
    files = make_files()
    path, keyring = signed(tmp_path, keys, files)
    args = args_for(path, keyring, keys, tmp_path / "store", "s3://models/tiny/1")
    ok, result = run(args, check_mode=True)
    assert not ok and "needs boto3 on the host (python3-boto3 or pip install boto3)" in result["msg"]
    ok, result = run(dict(args, s3_access_key="AKIDEXAMPLE"))
    assert not ok and "s3_secret_key" in result["msg"], "an access key without its secret is refused"
    assert not (tmp_path / "store").exists()
