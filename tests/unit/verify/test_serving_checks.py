"""gpufleet verify's serving checks (plugin_utils/checks/serving.py) on what the host reads of itself
(module_utils/serve_state.py, module serve_facts), called through the registry as verify calls them.

The host side runs for real here: state files as the llm_serve role writes them in a temporary
directory, engines that are FakeEngine (tests/unit/serving/engine_double.py, a test double of an
OpenAI-compatible engine) over real HTTP on 127.0.0.1, and a front double answering as front.js does
(401, X-Request-Id, one audit line in the role's format). ``test_the_real_front...`` uses the role's
real front (nginx + njs) instead.
"""

import json
import socket
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fake_testinfra
import pytest
import yaml
from ansible_collections.gpufleet.cluster.plugins.module_utils import serve_state
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import serving_engine
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core, registry, serving

from gpufleet.verify import collect, wiring

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "unit" / "serving"))
from engine_double import FakeEngine  # noqa: E402

CHECKS = ("serving_units", "serving_ready", "serving_front_auth", "serving_front_ready", "serving_tokens")
PROBE_KEY = "0123abcd" * 8  # the node's probe key, as the role makes it (32 random bytes, hex)
UNIT = "gpufleet-serve-tiny-2.service"
ACTIVE = {UNIT: "active", serving_engine.FRONT_UNIT: "active"}
# The role's golden record (roles/llm_serve/tasks/engine_model.yml, "Record the golden answer").
GOLDEN = {"prompt": "The capital of France is", "max_tokens": 8, "answer": " Paris"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeFront(ThreadingHTTPServer):
    """A front double: refuses a request without a known key with 401 and an X-Request-Id, passes one
    with a key of ``keys`` ({key: name}) on to ``engine`` (a FakeEngine), and writes the audit line
    front.js's log format gives (the key's name, or "-"); ``audit=False``: writes none; ``open_=True``
    answers 200 without asking for a key, as a front that lets anyone through would."""

    daemon_threads = True

    def __init__(self, audit_log, open_=False, audit=True, keys=None, engine=None):
        self.audit_log, self.open_, self.audit = Path(audit_log), open_, audit
        self.keys, self.engine = keys or {}, engine
        super().__init__(("127.0.0.1", 0), _FrontHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self):
        return self.server_address[1]


class _FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self, status, body, key_name, model="-"):
        front = self.server
        request_id = uuid.uuid4().hex
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", request_id)
        self.end_headers()
        self.wfile.write(body)
        if front.audit:
            line = {"time": "2026-12-03T07:17:59+00:00", "key": key_name, "client": "127.0.0.1",
                    "method": self.command, "route": self.path, "model": model, "status": status,
                    "request_id": request_id}  # fmt: skip
            with front.audit_log.open("a") as log:
                log.write(json.dumps(line) + "\n")

    def _handle(self):
        front = self.server
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
        auth = self.headers.get("Authorization") or ""
        key_name = front.keys.get(auth.removeprefix("Bearer "))
        if front.open_ and not key_name:
            return self._answer(200, b'{"object":"list","data":[]}', "-")
        if not key_name:
            return self._answer(401, b'{"error":{"message":"an API key is required"}}', "-")
        req = urllib.request.Request(front.engine.url + self.path, data=data, method=self.command)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        model = json.loads(data).get("model", "-") if data else "-"
        return self._answer(200, body, key_name, model)

    do_GET = do_POST = _handle


def nginx_conf(port, audit_log, ssl=False):
    """An excerpt of roles/llm_serve/templates/front-nginx.conf.j2 as rendered (the lines read)."""
    return (
        "http {\n    server {\n"
        f"        listen {port}{' ssl' if ssl else ''};\n"
        f"        access_log {audit_log} gpufleet_audit;\n"
        "        add_header X-Request-Id $request_id always;\n    }\n}\n"
    )


class Served:
    """A host serving model ``tiny`` version 2 (version 1 kept), as the role leaves it."""

    def __init__(
        self, tmp, answer=" Paris", golden=True, front_open=False, audit=True, engine_up=True, probe_key=True,
        registered=True,
    ):  # fmt: skip
        self.tmp = tmp
        self.state_dir = tmp / "serve"
        (self.state_dir / "tiny").mkdir(parents=True)
        self.engine = FakeEngine("tiny", answer=answer) if engine_up else None
        port = self.engine.server_address[1] if engine_up else free_port()
        state = {"current": "2", "previous": "1", "ports": {"1": free_port(), "2": port}}
        (self.state_dir / "tiny.json").write_text(json.dumps(state))
        if golden:
            (self.state_dir / "tiny" / "2.golden.json").write_text(json.dumps(GOLDEN, indent=2) + "\n")
        self.audit_log = tmp / "log" / "front-audit.log"
        self.audit_log.parent.mkdir()
        keys = {PROBE_KEY: "gpufleet-probe"} if registered else {}
        self.front = FakeFront(self.audit_log, open_=front_open, audit=audit, keys=keys, engine=self.engine)
        self.conf = tmp / "nginx.conf"
        self.conf.write_text(nginx_conf(self.front.port, self.audit_log))
        self.probe_key = tmp / "probe.key"  # beside nginx.conf, where the role puts it
        if probe_key:
            self.probe_key.write_text(PROBE_KEY)
            self.probe_key.chmod(0o600)

    def facts(self, measure_tokens=8):
        return serve_state.collect(
            str(self.state_dir), str(self.conf), timeout=5, measure_tokens=measure_tokens
        )

    def close(self):
        for server in (self.engine, self.front):
            if server is not None:
                server.shutdown()
                server.server_close()


@pytest.fixture
def host(tmp_path):
    made = []

    def make(**kw):
        made.append(Served(tmp_path, **kw))
        return made[-1]

    yield make
    for served in made:
        served.close()


def judge(facts, states=None, error=None, hostvars=None, gpus=None):
    """The serving checks as verify calls them (registry needs, wiring.run: without ``gpus``, a host
    without GPUs)."""
    state = {"serving": facts, "services": ACTIVE if states is None else states, "errors": {}, "gpus": gpus}
    if error:
        state["errors"]["serving"] = error
    return {name: wiring.run(registry.CHECKS[name], state, hostvars or {}, None) for name in CHECKS}


def test_a_healthy_serving_host_passes_every_serving_check(host):
    served = host()
    out = judge(served.facts())
    # tokens/s is a figure on a host without GPUs: reported, never judged (so never a pass)
    expected = {**dict.fromkeys(CHECKS, core.PASS), "serving_tokens": core.SKIP}
    assert {n: r["status"] for n, r in out.items()} == expected, out
    assert out["serving_units"]["measured"] == ACTIVE
    assert "tiny 2" in out["serving_ready"]["summary"]
    # the engine was asked the recorded golden prompt, greedily, directly and through the front
    golden = out["serving_ready"]["details"][0]["checks"][-1]
    assert (golden["name"], golden["ok"], golden["answer"]) == ("golden", True, " Paris")
    # nginx writes a request's audit line after the client has its answer: the last one may come late
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in served.audit_log.read_text().splitlines()]
        if sum(line["key"] == "gpufleet-probe" for line in lines) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    refused = [line for line in lines if line["key"] == "-"]
    assert len(refused) == 1 and refused[0]["request_id"] in out["serving_front_auth"]["summary"]
    # through the front with the node's probe key: audited by its name, for each request
    ready = out["serving_front_ready"]
    assert "ready through the front" in ready["summary"] and "tiny 2" in ready["summary"]
    assert "audited as gpufleet-probe" in ready["summary"]
    probed = [line for line in lines if line["key"] == "gpufleet-probe"]
    # GET /v1/models, then one token, the golden prompt and the timed completion, each naming the model
    assert [(line["route"], line["model"]) for line in probed] == [("/v1/models", "-")] + [
        ("/v1/completions", "tiny")
    ] * 3
    assert probed[0]["request_id"] in ready["summary"]
    assert PROBE_KEY not in served.audit_log.read_text()
    assert PROBE_KEY not in json.dumps(served.facts()), "the probe key never leaves the host"
    tokens = out["serving_tokens"]
    assert tokens["measured"] > 0 and tokens["unit"] == "tokens/s"
    assert "tiny 2: " in tokens["summary"] and "(5 tokens in" in tokens["summary"]
    assert "not judged: no tokens/s baseline" in tokens["summary"]


def test_a_missing_probe_key_fails_saying_what_to_do(host):
    served = host(probe_key=False)
    out = judge(served.facts())
    res = out["serving_front_ready"]
    assert res["status"] == core.FAIL and res["action"] == core.REPROVISION
    assert f"no probe key to ask the front with: {served.probe_key}" in res["summary"]
    assert "re-run playbooks/serve.yml" in res["summary"]
    assert out["serving_tokens"]["status"] == core.SKIP and "not measured" in out["serving_tokens"]["summary"]
    assert out["serving_front_auth"]["status"] == core.PASS, "the keyless refusal is still checked"


def test_a_probe_key_the_front_does_not_know_fails_naming_the_key_file(host):
    served = host(registered=False)
    res = judge(served.facts())["serving_front_ready"]
    assert res["status"] == core.FAIL and res["measured"] == 401
    assert f"the front refused the probe key of {served.probe_key} with 401" in res["summary"]
    assert "gpufleet-probe" in res["summary"] and "re-run playbooks/serve.yml" in res["summary"]
    assert PROBE_KEY not in json.dumps(res)


def test_a_version_not_ready_through_the_front_fails(host):
    served = host()
    served.engine.answer = " Rome"  # another answer than the recorded one, through the front too
    facts = served.facts()
    res = judge(facts)["serving_front_ready"]
    assert res["status"] == core.FAIL
    assert "tiny 2 is not ready through the front" in res["summary"] and "answered ' Rome'" in res["summary"]


def test_a_wrong_or_leaking_probe_audit_line_fails(host):
    facts = host().facts()
    facts["front"]["probe"]["audit_has_key"] = True
    res = judge(facts)["serving_front_ready"]
    assert res["status"] == core.FAIL and "holds the probe key itself" in res["summary"]
    facts["front"]["probe"]["audit_has_key"] = False
    facts["front"]["probe"]["audit"]["key"] = "-"
    res = judge(facts)["serving_front_ready"]
    assert (
        res["status"] == core.FAIL and "says key '-', status 200; expected 'gpufleet-probe'" in res["summary"]
    )
    facts["front"]["probe"]["audit"] = None
    res = judge(facts)["serving_front_ready"]
    assert res["status"] == core.FAIL and "no audit line with request_id" in res["summary"]


H100 = {"gpu_count": 1, "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "pci_bus_id": "0000:17:00.0"}]}


@pytest.mark.parametrize(("expected", "status"), [(0.001, core.PASS), (1e9, core.FAIL)])
def test_tokens_per_s_is_judged_only_against_the_sites_baseline(host, expected, status):
    facts = host().facts()
    table = {"tiny": {"H100 SXM": {"expected": expected, "source": "our healthy nodes"}}}
    res = judge(facts, hostvars={"gpufleet_inference_baselines": table}, gpus=H100)["serving_tokens"]
    assert res["status"] == status, res
    assert "of expected" in res["summary"] and res["source"].startswith("site baseline")
    # the same figure on an unknown SKU (or without GPUs) is reported, not judged
    res = judge(facts, hostvars={"gpufleet_inference_baselines": table})["serving_tokens"]
    assert res["status"] == core.SKIP and res["measured"] > 0


def test_a_failed_tokens_measurement_on_a_ready_version_fails(host):
    facts = host().facts()
    error = "/v1/completions: HTTP 429 Too Many Requests"
    facts["models"]["tiny"]["tokens"] = {
        "max_tokens": 8,
        "tokens": None,
        "tokens_per_s": None,
        "error": error,
    }
    res = judge(facts)["serving_tokens"]
    assert res["status"] == core.FAIL and res["action"] == core.MONITOR
    assert "tiny 2: tokens/s not measured through the front: /v1/completions: HTTP 429" in res["summary"]


def test_no_tokens_are_measured_unless_asked(host):
    facts = host().facts(measure_tokens=0)
    assert "tokens" not in facts["models"]["tiny"] and facts["models"]["tiny"]["front_ready"]


def test_an_inactive_unit_fails_naming_it_and_its_state(host):
    facts = host().facts()
    out = judge(facts, {UNIT: "failed", serving_engine.FRONT_UNIT: "active"})
    res = out["serving_units"]
    assert res["status"] == core.FAIL and res["action"] == core.REPROVISION
    assert f"{UNIT} is failed (systemctl is-active)" in res["summary"]
    assert serving_engine.FRONT_UNIT not in res["summary"].split(";")[0]
    res = judge(facts, {UNIT: "active"})["serving_units"]  # the front's unit not even known
    assert res["status"] == core.FAIL and f"{serving_engine.FRONT_UNIT} is unknown" in res["summary"]


def test_an_engine_that_refuses_connections_is_not_ready(host):
    served = host(engine_up=False)
    res = judge(served.facts())["serving_ready"]
    port = json.loads((served.state_dir / "tiny.json").read_text())["ports"]["2"]
    assert res["status"] == core.FAIL and res["action"] == core.REPROVISION
    assert f"tiny 2 on 127.0.0.1:{port} is not ready: models: /v1/models: no answer" in res["summary"]
    assert "refused" in res["summary"].lower() and f"journalctl -u {UNIT}" in res["summary"]


def test_a_different_golden_answer_fails_with_both_answers(host):
    res = judge(host(answer=" Rome").facts())["serving_ready"]
    assert res["status"] == core.FAIL
    assert "answered ' Rome', the recorded answer is ' Paris'" in res["summary"]


def test_no_recorded_golden_answer_warns_never_passes(host):
    served = host(golden=False)
    res = judge(served.facts())["serving_ready"]
    assert res["status"] == core.WARN and res["action"] == core.MONITOR
    assert "no golden answer recorded" in res["summary"]
    assert str(served.state_dir / "tiny" / "2.golden.json") in res["summary"]


def test_a_front_answering_without_a_key_fails(host):
    res = judge(host(front_open=True).facts())["serving_front_auth"]
    assert res["status"] == core.FAIL and res["action"] == core.REPROVISION
    assert "without an API key with HTTP 200: it must refuse it" in res["summary"] and res["measured"] == 200


def test_a_refusal_without_its_audit_line_fails(host):
    res = judge(host(audit=False).facts())["serving_front_auth"]
    assert res["status"] == core.FAIL and "no audit line with request_id" in res["summary"]


def test_a_front_that_does_not_answer_fails(host):
    served = host()
    served.conf.write_text(nginx_conf(free_port(), served.audit_log))
    res = judge(served.facts())["serving_front_auth"]
    assert res["status"] == core.FAIL and "the front did not answer: no answer from" in res["summary"]


def test_no_serving_configured_skips_with_the_reason_and_asks_nothing(tmp_path):
    facts = serve_state.collect(str(tmp_path / "serve"), str(tmp_path / "absent.conf"))
    assert facts["configured"] is False and facts["front"] is None
    out = judge(facts, states={})
    for name in CHECKS:
        assert out[name]["status"] == core.SKIP, out[name]
        assert out[name]["summary"].startswith("no model served on this host"), out[name]
    assert serving.units(facts) == []


def test_unreadable_serving_state_fails_never_skips():
    for facts, error in ((None, "serve_facts failed: constructed"), (None, None)):
        for res in judge(facts, error=error).values():
            assert res["status"] == core.FAIL and "serving state could not be read" in res["summary"]


def test_a_corrupt_state_file_fails_the_model(host):
    served = host()
    (served.state_dir / "tiny.json").write_text("{not json")
    out = judge(served.facts())
    assert (
        out["serving_ready"]["status"] == core.FAIL and "state unreadable" in out["serving_ready"]["summary"]
    )
    assert out["serving_units"]["status"] == core.FAIL
    assert serving.units(served.facts()) == [serving_engine.FRONT_UNIT]  # no version, no unit to ask


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("listen 8080;", "http://127.0.0.1:8080"),
        ("listen 8443 ssl;", "https://127.0.0.1:8443"),
        ("listen 10.0.0.5:8080;", "http://10.0.0.5:8080"),
        ("listen [::]:8080;", "http://127.0.0.1:8080"),
        ("# listen 9;", None),
    ],
)
def test_the_front_address_comes_from_its_listen_line(listen, url):
    conf = f"server {{\n    {listen}\n    access_log /var/log/gpufleet/front-audit.log gpufleet_audit;\n}}\n"
    out = serve_state.front_settings(conf)
    assert out["url"] == url and out["audit_log"] == "/var/log/gpufleet/front-audit.log"


# --- collection: the units systemctl is asked about come from the served state -----------------


class _Out:
    def __init__(self, rc=0, stdout="", stderr=""):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr


class ServingHost(fake_testinfra.FakeHost):
    """A host whose serving facts are ``facts``; records the systemctl query."""

    def __init__(self, facts):
        super().__init__(parts={"serving": facts})
        self.queried = None

    def shell(self, cmd):
        if "systemctl is-active" in cmd:
            self.queried = cmd
            return _Out(stdout="active\n" * 10)
        return _Out(rc=1, stderr="constructed failure")


def test_collect_asks_systemctl_about_each_current_version_and_the_front(host):
    facts = host().facts()
    remote = ServingHost(facts)
    state = collect.collect(remote, {}, services=[])
    assert state["serving"] == facts
    # gpufleet_verify_serving_tokens: tokens/s through the front, measured on the host
    assert json.loads(remote.modules[0][1])["serve_measure_tokens"] == 32
    assert UNIT in remote.queried and serving_engine.FRONT_UNIT in remote.queried
    assert "gpufleet-serve-tiny-1.service" not in remote.queried  # the previous version may idle
    assert judge(state["serving"], state["services"])["serving_units"]["status"] == core.PASS


def test_the_front_unit_name_is_the_roles():
    role_vars = yaml.safe_load((REPO / "roles" / "llm_serve" / "vars" / "main.yml").read_text())
    assert role_vars["__llm_serve_front_unit"] == serving_engine.FRONT_UNIT
    assert role_vars["__llm_serve_state_dir"] == serve_state.STATE_DIR
    assert role_vars["__llm_serve_front_dir"] + "/nginx.conf" == serve_state.FRONT_CONF
    assert role_vars["__llm_serve_front_probe_key"].endswith("/" + serve_state.PROBE_KEY_FILE)
    assert role_vars["__llm_serve_front_dir"] + "/" + serve_state.PROBE_KEY_FILE == serving.PROBE_KEY_FILE
