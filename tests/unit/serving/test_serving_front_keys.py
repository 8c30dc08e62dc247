"""The front's API keys (plugin_utils/serving_front.py): every problem named by key name or position,
never by a key or digest; keys given as plaintext are hashed on the controller."""

import hashlib

from ansible_collections.gpufleet.cluster.plugins.plugin_utils.serving_front import (
    PROBE_KEY_NAME,
    front_key_problems,
    front_keys,
)

DIGEST = hashlib.sha256(b"k").hexdigest()


def key(**fields):
    return {"name": "alice", "sha256": DIGEST, "models": ["*"], "scopes": ["inference"], **fields}


def test_good_keys_have_no_problems_and_are_hashed():
    keys = [key(), {"name": "bob", "key": "bob-secret", "models": ["m"], "scopes": ["metrics"], "rate": 3}]
    assert front_key_problems(keys) == []
    assert front_keys(keys) == [
        {"name": "alice", "sha256": DIGEST, "models": ["*"], "scopes": ["inference"], "rate": None},
        {
            "name": "bob",
            "sha256": hashlib.sha256(b"bob-secret").hexdigest(),
            "models": ["m"],
            "scopes": ["metrics"],
            "rate": 3,
        },
    ]
    assert front_keys([key(sha256=DIGEST.upper())])[0]["sha256"] == DIGEST


def test_no_key_is_a_problem():
    assert "llm_serve_keys is empty" in front_key_problems([])[0]
    assert "llm_serve_keys is empty" in front_key_problems(None)[0]


def test_each_bad_field_is_named():
    cases = {
        "has no name": {"models": ["*"], "scopes": ["inference"], "sha256": DIGEST},
        "name must be": key(name="a b"),
        "needs exactly one of sha256": key(key="also-secret"),
        "sha256 is not a sha256 hex digest": key(sha256="12ab"),
        "unknown scopes ['admin']": key(scopes=["admin"]),
        "scopes must be a non-empty list": key(scopes=[]),
        "models must be a non-empty list": key(models="*"),
        "are not model names": key(models=["bad model"]),
        "rate must be a whole number": key(rate=0),
        "unknown fields ['scope']": key(scope=["inference"]),
        "must be a mapping": "alice",
    }
    for message, bad in cases.items():
        problems = front_key_problems([bad])
        assert len(problems) == 1 and message in problems[0], (message, problems)
        assert "also-secret" not in problems[0] and DIGEST not in problems[0]


def test_duplicates_are_problems_without_the_key():
    assert front_key_problems([key(), key(sha256=None, key="other")]) == [
        "llm_serve_keys: names used by more than one key: ['alice']"
    ]
    same = front_key_problems([key(), {**key(name="bob"), "sha256": None, "key": "k"}])
    assert same == ["llm_serve_keys: keys ['alice', 'bob'] are the same key: give each its own"]


def test_the_probe_key_name_is_reserved():
    problems = front_key_problems([key(name=PROBE_KEY_NAME)])
    assert len(problems) == 1 and "'gpufleet-probe' is reserved" in problems[0], problems
    assert DIGEST not in problems[0]


def test_the_probe_digest_is_added_last_for_every_model_inference_only():
    probe = hashlib.sha256(b"node-probe-key").hexdigest()
    keys = front_keys([key()], probe_sha256=probe.upper(), probe_rate=5)
    assert keys[-1] == {
        "name": "gpufleet-probe",
        "sha256": probe,
        "models": ["*"],
        "scopes": ["inference"],
        "rate": 5,
    }
    assert [k["name"] for k in keys] == ["alice", "gpufleet-probe"]
    assert front_keys([key()], probe_sha256="") == front_keys([key()]), (
        "no digest read (check mode): no probe key"
    )
    for bad in ({"probe_sha256": "12ab"}, {"probe_sha256": probe, "probe_rate": "5"}):
        try:
            front_keys([key()], **bad)
        except ValueError as exc:
            assert probe not in str(exc)
        else:
            raise AssertionError(f"accepted {bad}")
