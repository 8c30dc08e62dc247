"""gpufleet lab ask: the key goes to the node on stdin (never on a command line), the answer, the
statuses and the audit line are read back; a front that refuses the lab's key is an error."""

import json

import pytest

from gpufleet.errors import GpufleetError
from gpufleet.lab import ask, fleet
from gpufleet.lab import docker as dk

RID = "0123456789abcdef0123456789abcdef"


def fake_docker(calls, with_key_status=200, lab="demo"):
    """docker for a lab named ``lab`` with a bastion and node1 (None: no lab at all)."""
    names = [f"gpufleet-{lab}-bastion", f"gpufleet-{lab}-node1"] if lab else []

    def run(*args, input=None, check=True):
        calls.append((args, input))
        if args[:2] == ("ps", "-aq"):
            return "".join(f"id-{n}\n" for n in names) if args[-1] == f"label={fleet.LAB_LABEL}={lab}" else ""
        if args[:1] == ("inspect",):
            return json.dumps(
                [
                    {"Name": "/" + n, "Config": {"Labels": {fleet.ROLE_LABEL: n.rsplit("-", 1)[1]}}}
                    for n in names
                ]
            )
        container = args[2] if args[1:2] == ("-i",) else args[1]
        if args[:1] == ("exec",) and container not in names:
            raise dk.DockerError(f"Error response from daemon: No such container: {container}")
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


def lab_key(tmp_path, lab="demo"):
    """The key the lab got when it came up (fleet.api_key while its inventory is written)."""
    path, _digest = fleet.api_key(lab)
    assert path == tmp_path / "gpufleet" / "lab" / lab / "api-key"
    return path.read_text().strip()


def test_asks_with_the_key_on_stdin_and_shows_the_refusal_without_it(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    key = lab_key(tmp_path)
    calls = []
    monkeypatch.setattr(dk, "docker", fake_docker(calls))
    r = ask.ask("demo", prompt="The fleet is", tokens=4)
    calls = [c for c in calls if c[0][:1] == ("exec",)]
    assert (r["text"], r["status"], r["refused_status"]) == (" on fire", 200, 401)
    assert RID in r["audit"]
    first_args, first_input = calls[0]
    assert first_input == (key + "\n").encode() and not any(key in str(a) for a in first_args)
    assert first_args[:3] == ("exec", "-i", "gpufleet-demo-node1")
    assert json.loads(first_args[7]) == {"model": "tiny-llama", "prompt": "The fleet is", "max_tokens": 4,
                                         "temperature": 0}  # fmt: skip


def test_a_front_refusing_the_labs_key_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    lab_key(tmp_path)
    monkeypatch.setattr(dk, "docker", fake_docker([], with_key_status=403))
    with pytest.raises(GpufleetError, match="answered 403 with the lab's key"):
        ask.ask("demo")


def test_a_lab_that_does_not_exist_is_a_clear_error_and_leaves_no_key_behind(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(dk, "docker", fake_docker(calls, lab=None))
    with pytest.raises(fleet.LabError, match=r"there is no lab 'nolab' .*gpufleet lab up --name nolab"):
        ask.ask("nolab")
    assert list(tmp_path.iterdir()) == [], "asking a lab that does not exist wrote a key or a directory"
    assert not any(args[:1] == ("exec",) for args, _ in calls), "nothing is sent to a node"


def test_a_host_the_lab_does_not_have_and_a_lab_without_its_key_are_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setattr(dk, "docker", fake_docker([]))
    with pytest.raises(fleet.LabError, match=r"lab 'demo' has no host 'node9'; its hosts: bastion, node1"):
        ask.ask("demo", node="node9")
    with pytest.raises(fleet.LabError, match=r"lab 'demo' has no API key .*gpufleet lab up --name demo"):
        ask.ask("demo")
    assert list(tmp_path.iterdir()) == []
