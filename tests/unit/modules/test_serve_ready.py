"""gpufleet.cluster.serve_ready: the module's contract in-process against FakeEngine (a test double of
an OpenAI-compatible engine, tests/unit/serving/engine_double.py) over real HTTP."""

import sys
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.modules import serve_ready
from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "serving"))
from engine_double import FakeEngine


def run(expect=AnsibleExitJson, **args):
    with patch_module_args(args), pytest.raises(expect) as exc:
        serve_ready.main()
    return exc.value.args[0]


@pytest.fixture
def engine():
    server = FakeEngine("tiny", answer=" Paris")
    yield server
    server.shutdown()
    server.server_close()


def test_ready_returns_every_check_and_the_golden_answer_to_record(engine):
    out = run(url=engine.url, model="tiny", health_path="/health", golden={"prompt": "q"}, wait=5)
    assert out["ready"] and not out["changed"] and out["answer"] == " Paris"
    assert [c["name"] for c in out["checks"]] == ["health", "models", "generate", "golden"]


def test_a_different_golden_answer_fails_with_both_answers(engine):
    out = run(
        AnsibleFailJson, url=engine.url, model="tiny", golden={"prompt": "q", "expect": " Rome"}, wait=30
    )
    assert not out["ready"] and "answer" not in out
    assert "is not ready after" in out["msg"]
    assert "golden: golden prompt 'q': answered ' Paris', the recorded answer is ' Rome'" in out["msg"]


def test_the_key_goes_to_the_engine_and_nowhere_in_the_result(engine):
    out = run(url=engine.url, model="tiny", api_key="secret-key-123", wait=5)
    assert out["ready"]
    assert engine.seen and all(h.get("Authorization") == "Bearer secret-key-123" for h in engine.seen)
    assert "secret-key-123" not in repr(out)
