"""Serving on the air-gapped node (playbooks/serve.yml, role llm_serve): the lab's tiny model served by a
real engine - llama.cpp's OpenAI server from the bundle's wheelhouse, on the node's CPU - behind the
front (nginx with njs): keys, scopes, the audit log; then a rollout of version 2 that fails readiness
(traffic stays), one that succeeds, a weighted split and a rollback, each a real ansible-playbook (or
gpufleet) run."""

import json
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

testinfra_hosts = ["ansible://gpu_nodes"]
# These tests change what the node serves (rollouts, a split, the front stopped and started again) and
# read it back; so does gpufleet verify (test_nodes.py): each holds the serving lock (conftest.py)
# while it runs, whichever xdist worker runs it.
pytestmark = pytest.mark.usefixtures("serving_lock")

REPO = Path(__file__).resolve().parents[3]
# What the rollout and the rollback printed, kept for the run's reports (make test keeps reports/).
REPORT = REPO / "reports" / "molecule-airgap-serving.txt"
KEY = "molecule-serve-key-5f2a9c"
OTHER_KEY = "molecule-other-key-81d3e0"
FRONT = "http://127.0.0.1:8080"
AUDIT = "/var/log/gpufleet/front-audit.log"
STATE = "/var/lib/gpufleet/serve"


def curl(host, path, key=None, body=None, with_id=False):
    """(status, body) of a request to the front, from the node itself; with ``with_id`` also the
    request id the front answered with (X-Request-Id, the audit line's request_id)."""
    tag = uuid.uuid4().hex
    out, head = f"/tmp/gpufleet-test-{tag}.body", f"/tmp/gpufleet-test-{tag}.head"
    args = ["curl", "-s", "-o", out, "-D", head, "-w", "%{http_code}", "-m", "60"]
    if key:
        args += ["-H", f"Authorization: Bearer {key}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    status = host.check_output(" ".join(f"'{a}'" for a in args) + f" '{FRONT}{path}'")
    body = host.file(out).content_string
    ids = [line.split(":", 1)[1].strip() for line in host.file(head).content_string.splitlines()
           if line.lower().startswith("x-request-id:")]  # fmt: skip
    host.run(f"rm -f {out} {head}")
    return (int(status), body, ids[0] if ids else None) if with_id else (int(status), body)


def golden(host, version):
    return json.loads(host.file(f"{STATE}/tiny-llama/{version}.golden.json").content_string)


def complete(host, version_golden, key=KEY):
    """(text, the audit line of the request) of a greedy completion through the front."""
    body = {"model": "tiny-llama", "prompt": version_golden["prompt"], "temperature": 0, "seed": 1234,
            "max_tokens": version_golden["max_tokens"]}  # fmt: skip
    status, answer, request_id = curl(host, "/v1/completions", key, body, with_id=True)
    assert status == 200, answer
    return json.loads(answer)["choices"][0]["text"], audited(host, request_id)


def audit_lines(host):
    return [json.loads(line) for line in host.file(AUDIT).content_string.splitlines() if line.strip()]


def audited(host, request_id):
    lines = [line for line in audit_lines(host) if line["request_id"] == request_id]
    assert len(lines) == 1, f"request {request_id}: {len(lines)} audit lines"
    return lines[0]


def complete_many(host, version_golden, n):
    """The audit lines of ``n`` greedy completions sent from the node in one shell loop (each must
    answer 200): one round trip for all of them, and the audit log read once."""
    body = {"model": "tiny-llama", "prompt": version_golden["prompt"], "temperature": 0, "seed": 1234,
            "max_tokens": version_golden["max_tokens"]}  # fmt: skip
    request = (
        f"curl -s -o /dev/null -m 60 -w '%{{http_code}} %header{{x-request-id}}\\n' "
        f"-H 'Authorization: Bearer {KEY}' -H 'Content-Type: application/json' "
        f"--data-binary {shlex.quote(json.dumps(body))} {FRONT}/v1/completions"
    )
    out = host.check_output(f"for i in $(seq {int(n)}); do {request}; done")
    answers = [line.split() for line in out.splitlines() if line.strip()]
    assert len(answers) == n and all(status == "200" for status, _id in answers), out
    lines = {line["request_id"]: line for line in audit_lines(host)}
    return [lines[request_id] for _status, request_id in answers]


def test_no_key_is_refused_and_audited_without_key_material(host):
    marker = f"/v1/models/{uuid.uuid4().hex}"
    status, body = curl(host, marker)
    assert status == 401 and "API key is required" in body
    status, _ = curl(host, marker, key="not-a-key-of-this-site")
    assert status == 401
    lines = [line for line in audit_lines(host) if line["route"] == marker]
    assert [(line["key"], line["status"]) for line in lines] == [("-", 401), ("-", 401)]
    assert "not-a-key-of-this-site" not in host.file(AUDIT).content_string


def test_a_key_scoped_to_another_model_gets_403(host):
    status, body = curl(
        host, "/v1/completions", OTHER_KEY, {"model": "tiny-llama", "prompt": "x", "max_tokens": 1}
    )
    assert status == 403 and "tiny-llama" in body


def test_no_file_on_the_node_holds_a_key(host):
    for key in (KEY, OTHER_KEY):
        found = host.run(
            f"grep -rlF -- '{key}' /etc/gpufleet /var/lib/gpufleet/serve /var/log/gpufleet /etc/systemd"
        )
        assert found.rc == 1, found.stdout


def _inventory(host, tmp_path, **extra):
    """This node over docker, with the scenario's own group_vars (molecule.yml) and ``extra``."""
    scenario = yaml.safe_load((Path(__file__).resolve().parents[1] / "molecule.yml").read_text())
    group_vars = scenario["provisioner"]["inventory"]["group_vars"]
    nodes = {k: v for k, v in group_vars["gpu_nodes"].items() if not k.startswith("ansible_")}
    inv = {
        "all": {
            "vars": {
                **group_vars["all"],
                "ansible_connection": "community.docker.docker",
                "ansible_python_interpreter": "/usr/bin/python3",
            },
            "children": {
                "gpu_nodes": {
                    "hosts": {"node": {"ansible_host": host.backend.host}},
                    "vars": {**nodes, **extra},
                }
            },
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


def play(host, tmp_path, *args, **extra):
    """serve.yml on the node (both versions are in its store: the converge placed them); the completed
    process (its output is the report)."""
    inv = _inventory(host, tmp_path, **extra)
    proc = subprocess.run(
        [Path(sys.executable).with_name("ansible-playbook"), "-i", inv, REPO / "playbooks" / "serve.yml",
         *args],
        capture_output=True, text=True, timeout=900, check=False, env=_env(),
    )  # fmt: skip
    keep(f"ansible-playbook serve.yml {' '.join(map(str, args))} {json.dumps(extra)}", proc)
    return proc


def keep(what, proc):
    REPORT.parent.mkdir(exist_ok=True)
    with REPORT.open("a") as out:
        out.write(f"===== {what} (exit {proc.returncode})\n{proc.stdout[-6000:]}\n")


def _env():
    import os

    return {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}


def state(host):
    return json.loads(host.file(f"{STATE}/tiny-llama.json").content_string)


V1 = {"name": "tiny-llama", "version": "1", "engine": "llamacpp", "gguf": "tiny-llama-f16.gguf",
      "max_model_len": 512, "threads": 1}  # fmt: skip
V2 = {**V1, "version": "2"}


def test_served_then_rollout_gated_on_readiness_then_split_then_rollback(host, tmp_path):
    """The converged state (version 1 served by llama.cpp, unprivileged, on 127.0.0.1 only), then:
    version 2 with a golden answer it does not give - refused, traffic stays on 1; version 2 as it is -
    started beside 1 on the other port, the front switched; a 50 % split back to version 1; rollback -
    version 1 alone again, at once, the split gone. One test: each step starts from the state the one
    before left."""
    unit = host.service("gpufleet-serve-tiny-llama-1.service")
    assert unit.is_running and unit.is_enabled
    assert host.service("gpufleet-front.service").is_running
    listening = host.check_output("ss -Hltn")
    assert "127.0.0.1:8101" in listening and "0.0.0.0:8101" not in listening
    user = host.check_output("systemctl show -p User --value gpufleet-serve-tiny-llama-1.service")
    assert user == "gpufleet-serve"
    pid = host.check_output("systemctl show -p MainPID --value gpufleet-serve-tiny-llama-1.service")
    assert host.check_output(f"ps -o user= -p {pid}") == "gpufleet-serve"
    assert "llama_cpp.server" in host.file(f"/proc/{pid}/cmdline").content_string.replace("\0", " ")

    v1 = golden(host, "1")
    text, line = complete(host, v1)
    assert text == v1["answer"]
    assert (line["key"], line["model"], line["status"], line["route"]) == ("molecule", "tiny-llama", 200,
                                                                          "/v1/completions")  # fmt: skip
    assert line["upstream"] == "127.0.0.1:8101"
    assert line["prompt_tokens"] > 0 and line["completion_tokens"] == v1["max_tokens"]

    # 1. a version that does not answer as recorded never gets traffic
    bad = {
        **V2,
        "golden": {"prompt": v1["prompt"], "max_tokens": v1["max_tokens"], "expect": "not its answer"},
    }
    proc = play(host, tmp_path, llm_serve_models=[bad])
    assert proc.returncode != 0
    assert "version 2 did not become ready on port 8102" in proc.stdout
    assert "traffic stays on version 1" in proc.stdout and "not its answer" in proc.stdout
    assert state(host)["current"] == "1"
    assert not host.service("gpufleet-serve-tiny-llama-2.service").is_running
    text, line = complete(host, v1)
    assert text == v1["answer"] and line["upstream"] == "127.0.0.1:8101"

    # 2. version 2 as it is: beside version 1, then the switch
    proc = play(host, tmp_path, llm_serve_models=[V2])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert state(host) == {"current": "2", "previous": "1", "ports": {"1": 8101, "2": 8102}}
    v2 = golden(host, "2")
    text, line = complete(host, v2)
    assert text == v2["answer"] and line["upstream"] == "127.0.0.1:8102"
    assert host.service("gpufleet-serve-tiny-llama-1.service").is_running, "kept for an instant rollback"

    # 3. a weighted split: half the traffic back to version 1, each audit line names who answered
    proc = play(host, tmp_path, llm_serve_models=[{**V2, "split": {"version": "1", "percent": 50}}])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert state(host)["split"] == {"version": "1", "percent": 50}
    answered = complete_many(host, v2, 40)
    versions = [line["version"] for line in answered]
    assert set(versions) == {"1", "2"} and 8 <= versions.count("1") <= 32, versions
    upstreams = {line["version"]: line["upstream"] for line in answered}
    assert upstreams == {"1": "127.0.0.1:8101", "2": "127.0.0.1:8102"}
    with REPORT.open("a") as out:
        out.write(
            f"===== 40 completions with a 50 % split to version 1: {versions.count('1')} answered by 1\n"
        )

    # 4. rollback, as an operator runs it: version 1 again, on its port, where it kept running; the
    # split goes with it
    inv = _inventory(host, tmp_path, llm_serve_models=[V2])
    proc = subprocess.run(
        [Path(sys.executable).with_name("gpufleet"), "serve", "rollback", "-i", inv, "--plain",
         "--runs-dir", tmp_path / "runs"],
        capture_output=True, text=True, timeout=900, check=False, env=_env(), cwd=tmp_path,
    )  # fmt: skip
    keep("gpufleet serve rollback -i INVENTORY --plain", proc)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert state(host) == {"current": "1", "previous": "2", "ports": {"1": 8101, "2": 8102}}
    text, line = complete(host, v1)
    assert text == v1["answer"] and line["upstream"] == "127.0.0.1:8101"
    with REPORT.open("a") as out:
        out.write(f"===== the audit line of a completion after the rollback\n{json.dumps(line)}\n")
    assert {line["version"] for line in complete_many(host, v1, 10)} == {"1"}


ENTRY_POINT = """
- name: llm_serve's {what} entry point (the rolling upgrade's {what}_serving step)
  hosts: gpu_nodes
  gather_facts: false
  tasks:
    - name: "{what}"
      ansible.builtin.include_role:
        name: gpufleet.cluster.llm_serve
        tasks_from: {what}
"""
STOP_RECORD = "/var/lib/gpufleet/serve-stopped.json"
INFLIGHT = "/tmp/gpufleet-test-inflight.txt"


def entry_point(host, tmp_path, what):
    """llm_serve's ``stop`` or ``start`` on the node, as playbooks/upgrade.yml includes it."""
    playbook = tmp_path / f"{what}.yml"
    playbook.write_text(ENTRY_POINT.format(what=what))
    inv = _inventory(host, tmp_path, llm_serve_models=[V1])
    proc = subprocess.run(
        [Path(sys.executable).with_name("ansible-playbook"), "-i", inv, playbook],
        capture_output=True, text=True, timeout=900, check=False, env=_env(),
    )  # fmt: skip
    keep(f"llm_serve tasks_from: {what}", proc)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc


def test_the_front_stops_only_once_the_stream_in_flight_has_ended(host):
    """What llm_serve's stop relies on: stopping the front's unit (SIGQUIT, nginx's graceful quit,
    bounded by TimeoutStopSec) while a streamed completion is under way lets the engine finish it: the
    client gets every token and [DONE], and the unit goes inactive only after that (measured on the
    lab: the stop began after 1.7 kB of 87 kB, the unit was inactive 2.5 s later, as the stream ended)."""
    body = json.dumps({"model": "tiny-llama", "prompt": "The fleet is", "max_tokens": 400, "temperature": 0,
                       "stream": True})  # fmt: skip
    client = (
        f"curl -sN -m 120 -H 'Authorization: Bearer {KEY}' -H 'Content-Type: application/json' "
        f"--data-binary '{body}' {FRONT}/v1/completions > {INFLIGHT} 2>&1; "
        f"echo curl-exit=$? >> {INFLIGHT}; echo ended-at=$(cut -d' ' -f1 /proc/uptime) >> {INFLIGHT}"
    )
    host.run_expect([0], f"rm -f {INFLIGHT}; nohup sh -c {shlex.quote(client)} > /dev/null 2>&1 &")
    # the stop comes as soon as the first chunks are there
    host.run_expect([0], f"for i in $(seq 200); do [ -s {INFLIGHT} ] && exit 0; sleep 0.05; done; exit 1")
    sent_at_stop = int(host.check_output(f"wc -c < {INFLIGHT}"))
    host.run_expect([0], "systemctl stop gpufleet-front.service")
    try:
        host.run_expect(
            [0], f"for i in $(seq 60); do grep -q ended-at= {INFLIGHT} && exit 0; sleep 1; done; exit 1"
        )
        streamed = host.file(INFLIGHT).content_string
        assert "data: [DONE]" in streamed and "curl-exit=0" in streamed, streamed[-500:]
        assert streamed.count('"finish_reason": "length"') == 1 and len(streamed) > 4 * sent_at_stop
        times = host.check_output(
            "systemctl show -p ActiveExitTimestampMonotonic -p InactiveEnterTimestampMonotonic --value "
            "gpufleet-front.service"
        ).split()
        stopping, stopped = (int(t) / 1e6 for t in times)
        ended = float(streamed.rsplit("ended-at=", 1)[1].split()[0])
        assert stopping < ended <= stopped + 1, (stopping, ended, stopped)
    finally:
        host.run_expect([0], f"systemctl start gpufleet-front.service; rm -f {INFLIGHT}")


def test_stop_records_what_it_stopped_and_start_brings_exactly_that_back(host, tmp_path):
    """The rolling upgrade's stop_serving and start_serving steps (llm_serve's stop and start entry
    points): the front and the running engines stop, what was stopped is recorded; start brings it
    back, each current version ready with its golden answer, and removes the record."""
    served = state(host)
    running = [v for v in (served["current"], served["previous"]) if v is not None
               and host.service(f"gpufleet-serve-tiny-llama-{v}.service").is_running]  # fmt: skip
    assert running, served

    entry_point(host, tmp_path, "stop")
    record = json.loads(host.file(STOP_RECORD).content_string)
    assert "gpufleet-front.service" in json.dumps(record)
    assert not host.service("gpufleet-front.service").is_running
    for version in running:
        assert not host.service(f"gpufleet-serve-tiny-llama-{version}.service").is_running
        assert f"gpufleet-serve-tiny-llama-{version}.service" in json.dumps(record)

    entry_point(host, tmp_path, "start")
    assert not host.file(STOP_RECORD).exists
    assert host.service("gpufleet-front.service").is_running
    for version in running:
        assert host.service(f"gpufleet-serve-tiny-llama-{version}.service").is_running
    current = golden(host, served["current"])
    text, _line = complete(host, current)
    assert text == current["answer"]
