"""gpufleet lab ask: the key goes to the node on stdin (never on a command line), the answer, the
statuses and the audit line are read back; a front that refuses the lab's key is an error."""

import json

import pytest

from gpufleet.errors import GpufleetError
from gpufleet.lab import ask
from gpufleet.lab import docker as dk

RID = "0123456789abcdef0123456789abcdef"


def fake_docker(calls, with_key_status=200):
    def run(*args, input=None, check=True):
        calls.append((args, input))
        if args[:1] == ("exec",) and "grep" in args:
            return json.dumps({"key": "lab", "status": 200, "request_id": RID}) + "\n"
        key = (input or b"").decode().strip()
        if key:
            body = (
                json.dumps({"choices": [{"text": " on fire"}]}) if with_key_status == 200 else '{"error":1}'
            )
            return f"{body}\n{with_key_status}\n{RID}\n"
        return '{"error":{"type":"missing_api_key"}}\n401\n' + RID + "\n"

    return run


def test_asks_with_the_key_on_stdin_and_shows_the_refusal_without_it(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(dk, "docker", fake_docker(calls))
    r = ask.ask("demo", prompt="The fleet is", tokens=4)
    key = (tmp_path / "gpufleet" / "lab" / "demo" / "api-key").read_text().strip()
    assert (r["text"], r["status"], r["refused_status"]) == (" on fire", 200, 401)
    assert RID in r["audit"]
    first_args, first_input = calls[0]
    assert first_input == (key + "\n").encode() and not any(key in str(a) for a in first_args)
    assert first_args[:3] == ("exec", "-i", "gpufleet-demo-node1")
    assert json.loads(first_args[7]) == {"model": "tiny-llama", "prompt": "The fleet is", "max_tokens": 4,
                                         "temperature": 0}  # fmt: skip


def test_a_front_refusing_the_labs_key_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setattr(dk, "docker", fake_docker([], with_key_status=403))
    with pytest.raises(GpufleetError, match="answered 403 with the lab's key"):
        ask.ask("demo")
