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

CHECKS = ("serving_units", "serving_ready", "serving_front_auth")
UNIT = "gpufleet-serve-tiny-2.service"
ACTIVE = {UNIT: "active", serving_engine.FRONT_UNIT: "active"}
# The role's golden record (roles/llm_serve/tasks/engine_model.yml, "Record the golden answer").
GOLDEN = {"prompt": "The capital of France is", "max_tokens": 8, "answer": " Paris"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeFront(ThreadingHTTPServer):
    """A front double: refuses every request with 401 and an X-Request-Id, and writes the audit line
    front.js's log format gives a keyless request (``audit=False``: writes none); ``open_=True``
    answers 200 without asking for a key, as a front that lets anyone through would."""

    daemon_threads = True

    def __init__(self, audit_log, open_=False, audit=True):
        self.audit_log, self.open_, self.audit = Path(audit_log), open_, audit
        super().__init__(("127.0.0.1", 0), _FrontHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self):
        return self.server_address[1]


class _FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        front = self.server
        request_id = uuid.uuid4().hex
        status = 200 if front.open_ else 401
        body = (
            b'{"object":"list","data":[]}'
            if front.open_
            else b'{"error":{"message":"an API key is required"}}'
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", request_id)
        self.end_headers()
        self.wfile.write(body)
        if front.audit:
            line = {"time": "2026-12-03T07:17:59+00:00", "key": "-", "client": "127.0.0.1", "method": "GET",
                    "route": self.path, "model": "-", "status": status, "request_id": request_id}  # fmt: skip
            with front.audit_log.open("a") as log:
                log.write(json.dumps(line) + "\n")


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

    def __init__(self, tmp, answer=" Paris", golden=True, front_open=False, audit=True, engine_up=True):
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
        self.front = FakeFront(self.audit_log, open_=front_open, audit=audit)
        self.conf = tmp / "nginx.conf"
        self.conf.write_text(nginx_conf(self.front.port, self.audit_log))

    def facts(self):
        return serve_state.collect(str(self.state_dir), str(self.conf), timeout=5)

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


def judge(facts, states=None, error=None):
    """The three serving checks as verify calls them (registry needs, wiring.call)."""
    state = {"serving": facts, "services": ACTIVE if states is None else states, "errors": {}}
    if error:
        state["errors"]["serving"] = error
    return {name: wiring.call(registry.CHECKS[name], state, {}, None) for name in CHECKS}


def test_a_healthy_serving_host_passes_every_serving_check(host):
    served = host()
    out = judge(served.facts())
    assert {n: r["status"] for n, r in out.items()} == dict.fromkeys(CHECKS, core.PASS), out
    assert out["serving_units"]["measured"] == ACTIVE
    assert "tiny 2" in out["serving_ready"]["summary"]
    # the engine was asked the recorded golden prompt, greedily
    golden = out["serving_ready"]["details"][0]["checks"][-1]
    assert (golden["name"], golden["ok"], golden["answer"]) == ("golden", True, " Paris")
    line = json.loads(served.audit_log.read_text().splitlines()[-1])
    assert line["request_id"] in out["serving_front_auth"]["summary"]


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
    assert UNIT in remote.queried and serving_engine.FRONT_UNIT in remote.queried
    assert "gpufleet-serve-tiny-1.service" not in remote.queried  # the previous version may idle
    assert judge(state["serving"], state["services"])["serving_units"]["status"] == core.PASS


def test_the_front_unit_name_is_the_roles():
    role_vars = yaml.safe_load((REPO / "roles" / "llm_serve" / "vars" / "main.yml").read_text())
    assert role_vars["__llm_serve_front_unit"] == serving_engine.FRONT_UNIT
    assert role_vars["__llm_serve_state_dir"] == serve_state.STATE_DIR
    assert role_vars["__llm_serve_front_dir"] + "/nginx.conf" == serve_state.FRONT_CONF
