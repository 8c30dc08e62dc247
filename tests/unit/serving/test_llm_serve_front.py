"""The llm_serve role's front, for real: the role's front tasks run with ansible-playbook on this
machine into a temporary directory (no package installed, no systemd), then the nginx it configured
is started in front of FakeEngine (a test double of an OpenAI-compatible engine) and spoken to over
HTTP: keys, scopes, models, /metrics, rate limits, unbuffered streaming and the audit log."""

import hashlib
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime

import pytest
from engine_double import STREAM_DELAY, STREAM_EVENTS, FakeEngine
from front_harness import NGINX, NJS, PLAYBOOK, free_port, run_role, start_nginx

pytestmark = [
    pytest.mark.skipif(not PLAYBOOK.exists(), reason="ansible-playbook is not in this Python's environment"),
    pytest.mark.skipif(
        NGINX is None or not NJS.is_file(),
        reason="nginx and its njs module are not installed (apt-get install nginx libnginx-mod-http-js;"
        " scripts/host-deps.sh installs them)",
    ),
]

# Keys of the test fixture: the plaintext ones go through `key:` (hashed on the controller), the
# others through `sha256:`.
ALICE = "alice-0123456789-secret"
BOB = "bob-0123456789-secret"
OPS = "ops-0123456789-secret"
SLOW = "slow-0123456789-secret"
KEYS = [
    {"name": "alice", "key": ALICE, "models": ["*"], "scopes": ["inference"]},
    {
        "name": "bob",
        "sha256": hashlib.sha256(BOB.encode()).hexdigest(),
        "models": ["tiny-a"],
        "scopes": ["inference"],
    },
    {
        "name": "ops",
        "sha256": hashlib.sha256(OPS.encode()).hexdigest().upper(),
        "models": ["*"],
        "scopes": ["metrics"],
    },
    {"name": "slow", "key": SLOW, "models": ["*"], "scopes": ["inference"], "rate": 1},
]


class Front:
    def __init__(self, tmp, port):
        self.tmp, self.port = tmp, port
        self.audit = tmp / "log" / "front-audit.log"

    def request(self, path, body=None, key=None, header="Authorization", timeout=10):
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers[header] = f"Bearer {key}" if header == "Authorization" else key
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), dict(err.headers)

    def audit_lines(self):
        return (
            [json.loads(line) for line in self.audit.read_text().splitlines()] if self.audit.exists() else []
        )

    def audit_of(self, request):
        """The audit line written for a request just made, found by the X-Request-Id the front answered
        with (nginx writes the line after the response; an earlier stream's line may come later)."""
        status = request()
        request_id = status[2].get("X-Request-Id")
        assert request_id, "the front answers with X-Request-Id"
        for _ in range(50):
            lines = [line for line in self.audit_lines() if line["request_id"] == request_id]
            if lines:
                assert len(lines) == 1, lines
                return status, lines[0]
            time.sleep(0.05)
        raise AssertionError(f"no audit line written for request {request_id}")


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("front")
    engines = {"tiny-a": FakeEngine("tiny-a"), "tiny-b": FakeEngine("tiny-b")}
    port = free_port()
    extra = {
        "llm_serve_keys": KEYS,
        "llm_serve_upstreams": [{"model": m, "url": e.url} for m, e in engines.items()],
        "llm_serve_front_port": port,
        "llm_serve_rate": 0,
        "llm_serve_rate_burst": 2,
        # The probe key at llm_serve_rate (0 here: not limited): a burst of 2 would refuse verify's
        # requests in a row (the role's defaults allow 40 at once).
        "llm_serve_probe_rate": 0,
    }
    result = run_role(tmp, extra)
    assert result.returncode == 0, result.stdout + result.stderr
    for key in (ALICE, SLOW):
        assert key not in result.stdout + result.stderr, "a plaintext key was printed"
    server = start_nginx(tmp, port)
    handle = Front(tmp, port)
    handle.engines, handle.extra = engines, extra
    yield handle
    server.terminate()
    server.wait(timeout=10)
    for engine in engines.values():
        engine.shutdown()
        engine.server_close()


PROMPT = "the quick secret prompt"
SECRETS = (ALICE, BOB, OPS, SLOW)


def no_key_material(text):
    return not any(secret in text for secret in SECRETS)


def test_missing_key_is_refused_and_audited_without_a_key(front):
    (status, body, headers), line = front.audit_of(
        lambda: front.request("/v1/completions", {"model": "tiny-a", "prompt": PROMPT})
    )
    assert status == 401
    assert json.loads(body)["error"]["type"] == "missing_api_key"
    assert headers["WWW-Authenticate"] == "Bearer"
    assert (line["key"], line["status"], line["route"], line["method"]) == (
        "-",
        401,
        "/v1/completions",
        "POST",
    )
    assert line["prompt_tokens"] is None and line["upstream"] == ""
    assert headers["X-Request-Id"] == line["request_id"], "the client can quote its audit line"


def test_gpufleet_verify_reads_this_front_as_it_is_configured(front, tmp_path):
    """The serving checks of gpufleet verify on the role's real front: its address and audit log read
    from the nginx.conf the role wrote, the keyless request's 401 found in the audit log by its
    X-Request-Id, and a model served by tiny-a's engine ready with its recorded golden answer."""
    from ansible_collections.gpufleet.cluster.plugins.module_utils import serve_state
    from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core, serving

    engine = front.engines["tiny-a"]
    state_dir = tmp_path / "serve"
    (state_dir / "tiny-a").mkdir(parents=True)
    (state_dir / "tiny-a.json").write_text(
        json.dumps({"current": "1", "previous": None, "ports": {"1": engine.server_address[1]}})
    )
    golden = {"prompt": "The capital of France is", "max_tokens": 8, "answer": engine.answer}
    (state_dir / "tiny-a" / "1.golden.json").write_text(json.dumps(golden))
    facts = serve_state.collect(str(state_dir), str(front.tmp / "etc" / "nginx.conf"), timeout=10)
    assert facts["front"]["url"] == f"http://127.0.0.1:{front.port}"
    assert facts["front"]["audit_log"] == str(front.audit)
    auth = serving.serving_front_auth(facts)
    assert auth["status"] == core.PASS, auth
    line = [
        entry
        for entry in front.audit_lines()
        if entry["request_id"] == facts["front"]["refusal"]["request_id"]
    ]
    assert [(entry["key"], entry["status"], entry["route"]) for entry in line] == [("-", 401, "/v1/models")]
    assert serving.serving_ready(facts)["status"] == core.PASS
    # Through the front with the node's probe key (probe.key beside nginx.conf, as the role made it):
    # accepted, ready with the golden answer, audited as gpufleet-probe, and a tokens/s figure.
    ready = serving.serving_front_ready(facts)
    assert ready["status"] == core.PASS, ready
    probed = [
        entry for entry in front.audit_lines() if entry["request_id"] == facts["front"]["probe"]["request_id"]
    ]
    assert [(entry["key"], entry["status"]) for entry in probed] == [("gpufleet-probe", 200)]
    assert probe_key(front) not in front.audit.read_text() and probe_key(front) not in json.dumps(facts)
    facts = serve_state.collect(
        str(state_dir), str(front.tmp / "etc" / "nginx.conf"), timeout=10, measure_tokens=4
    )
    tokens = serving.serving_tokens(facts)
    assert tokens["status"] == core.SKIP and tokens["measured"] > 0, tokens


def test_wrong_key_is_refused_never_echoed_nor_logged(front):
    wrong = "wrong-0123456789-key"
    for header in ("Authorization", "x-api-key"):
        (status, body, _), line = front.audit_of(
            lambda header=header: front.request("/v1/models", key=wrong, header=header)
        )
        assert status == 401, header
        assert json.loads(body)["error"]["type"] == "invalid_api_key"
        assert wrong not in body
        assert (line["key"], line["status"]) == ("-", 401)
    assert wrong not in front.audit.read_text()
    assert no_key_material(front.audit.read_text())


def test_good_key_reaches_the_model_engine_and_the_audit_has_its_usage(front):
    (status, body, headers), line = front.audit_of(
        lambda: front.request("/v1/completions", {"model": "tiny-b", "prompt": PROMPT}, key=ALICE)
    )
    assert status == 200
    assert headers["X-Engine"] == "tiny-b", "routes.conf sends the model to its engine"
    assert json.loads(body)["usage"]["prompt_tokens"] == 4
    assert line["key"] == "alice" and headers["X-Request-Id"] == line["request_id"]
    assert (line["model"], line["route"], line["status"]) == ("tiny-b", "/v1/completions", 200)
    assert (line["prompt_tokens"], line["completion_tokens"]) == (4, 5)
    assert line["upstream"] == front.engines["tiny-b"].url.removeprefix("http://")
    assert isinstance(line["request_time"], float) and line["upstream_time"]
    assert datetime.fromisoformat(line["time"]).tzinfo is not None, "ISO 8601 with its offset"
    # The engine never sees the client's key; the log never holds the prompt.
    seen = {k.lower(): v for k, v in front.engines["tiny-b"].seen[-1].items()}
    assert "authorization" not in seen and "x-api-key" not in seen
    assert PROMPT not in front.audit.read_text()
    # x-api-key works as well as Authorization: Bearer.
    status, _, headers = front.request("/v1/models", key=ALICE, header="x-api-key")
    assert (status, headers["X-Engine"]) == (200, "tiny-a")


def test_a_key_may_use_only_its_models_and_routes(front):
    (status, body, _), line = front.audit_of(
        lambda: front.request("/v1/completions", {"model": "tiny-b", "prompt": PROMPT}, key=BOB)
    )
    assert status == 403 and "tiny-b" in json.loads(body)["error"]["message"]
    assert (line["key"], line["model"], line["status"]) == ("bob", "tiny-b", 403)
    assert front.request("/v1/completions", {"model": "tiny-a", "prompt": PROMPT}, key=BOB)[0] == 200
    # The metrics-only key may not call the inference routes.
    assert front.request("/v1/models", key=OPS)[0] == 403
    # A body that is not a JSON object with a string model is refused, not passed on unchecked.
    assert front.request("/v1/completions", {"model": ["tiny-b"]}, key=BOB)[0] == 400


def test_metrics_need_the_metrics_scope(front):
    assert front.request("/metrics")[0] == 401
    assert front.request("/metrics", key=ALICE)[0] == 403
    status, body, _ = front.request("/metrics", key=OPS)
    assert status == 200 and "vllm:num_requests_running" in body


def test_streamed_tokens_are_not_buffered_and_their_usage_is_audited(front):
    body = json.dumps({"model": "tiny-a", "prompt": PROMPT, "stream": True}).encode()

    def stream():
        req = urllib.request.Request(
            f"http://127.0.0.1:{front.port}/v1/completions",
            data=body,
            headers={"Authorization": f"Bearer {ALICE}", "Content-Type": "application/json"},
        )
        start, arrivals, text = time.monotonic(), [], b""
        with urllib.request.urlopen(req, timeout=30) as resp:
            headers = dict(resp.headers)
            while chunk := resp.read1(65536):
                arrivals.append(time.monotonic() - start)
                text += chunk
        return arrivals, text.decode(), headers

    (arrivals, text, _headers), line = front.audit_of(stream)
    assert text.count("data: ") == STREAM_EVENTS + 2 and text.endswith("data: [DONE]\n\n")
    total = arrivals[-1]
    assert total >= STREAM_DELAY * (STREAM_EVENTS - 1)
    assert arrivals[0] < total / 2, f"the first token came with the last ones: {arrivals}"
    assert len(arrivals) >= STREAM_EVENTS - 1, f"tokens arrived in bursts: {arrivals}"
    assert (line["key"], line["status"], line["model"]) == ("alice", 200, "tiny-a")
    assert (line["prompt_tokens"], line["completion_tokens"]) == (4, 5)


def test_a_key_over_its_rate_gets_429(front):
    # 'slow': 1 request per second with a burst of 2; the keys without a rate are not limited.
    statuses = [front.request("/v1/models", key=SLOW)[0] for _ in range(6)]
    assert statuses[0] == 200 and 429 in statuses, statuses
    status, body, _ = front.request("/v1/models", key=SLOW)
    assert status == 429 and json.loads(body)["error"]["code"] == 429
    assert [front.request("/v1/models", key=ALICE)[0] for _ in range(6)] == [200] * 6
    assert front.audit_lines()[-7]["key"] == "slow" and front.audit_lines()[-7]["status"] == 429


def test_keys_file_holds_names_digests_models_and_scopes_only(front):
    path = front.tmp / "etc" / "keys.json"
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    text = path.read_text()
    assert no_key_material(text)
    keys = json.loads(text)["keys"]
    assert [k["name"] for k in keys] == ["alice", "bob", "ops", "slow", "gpufleet-probe"]
    assert {tuple(sorted(k)) for k in keys} == {("models", "name", "scopes", "sha256")}
    digests = {k["name"]: k["sha256"] for k in keys}
    probe = probe_key(front)
    assert probe not in text, "the keys file holds the probe key's digest, never the key"
    assert digests == {
        "alice": hashlib.sha256(ALICE.encode()).hexdigest(),
        "bob": hashlib.sha256(BOB.encode()).hexdigest(),
        "ops": hashlib.sha256(OPS.encode()).hexdigest(),
        "slow": hashlib.sha256(SLOW.encode()).hexdigest(),
        "gpufleet-probe": hashlib.sha256(probe.encode()).hexdigest(),
    }
    assert (keys[-1]["models"], keys[-1]["scopes"]) == (["*"], ["inference"])


def probe_key(front):
    """The node's probe key the role made (mode 0600: this test runs as the file's owner)."""
    return (front.tmp / "etc" / "probe.key").read_text()


def test_the_role_makes_a_probe_key_once_and_keeps_it(front):
    path = front.tmp / "etc" / "probe.key"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    key = probe_key(front)
    assert len(key) == 64 and int(key, 16) >= 0, "32 random bytes, hex"
    assert not (front.tmp / "etc" / "probe.key.new").exists()
    result = run_role(front.tmp, front.extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert probe_key(front) == key, "a probe key that is there is never replaced"
    assert key not in result.stdout + result.stderr, "the probe key was printed"


def test_the_probe_key_is_accepted_for_every_model_and_audited_by_name(front):
    key = probe_key(front)
    (status, _body, headers), line = front.audit_of(
        lambda: front.request("/v1/completions", {"model": "tiny-b", "prompt": PROMPT}, key=key)
    )
    assert (status, headers["X-Engine"]) == (200, "tiny-b")
    assert (line["key"], line["status"], line["model"]) == ("gpufleet-probe", 200, "tiny-b")
    assert key not in front.audit.read_text()
    assert front.request("/metrics", key=key)[0] == 403, "the probe key has the inference scope only"


def test_the_unit_refuses_to_start_without_a_key(front):
    etc = front.tmp / "etc"
    unit = (front.tmp / "units" / "gpufleet-front.service").read_text()
    pre = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStartPre=")]
    assert pre[0] == f"{etc}/check-keys {etc}/keys.json"
    assert "Restart=always" in unit and f"-c {etc}/nginx.conf -g 'daemon off;'" in unit
    check = pre[0].split()
    assert subprocess.run(check, capture_output=True, check=False).returncode == 0
    empty = front.tmp / "empty-keys.json"
    empty.write_text('{\n  "keys": [\n  ]\n}\n')
    # The node's own probe key alone is no key a client could use: the front stays down.
    probe_only = front.tmp / "probe-only-keys.json"
    written = (etc / "keys.json").read_text().splitlines()  # one key per line, as the role writes them
    probe_line = next(line for line in written if '"gpufleet-probe"' in line).rstrip(",")
    probe_only.write_text('{\n  "keys": [\n' + probe_line + "\n  ]\n}\n")
    assert json.loads(probe_only.read_text())["keys"][0]["name"] == "gpufleet-probe"
    for keys in (empty, probe_only, front.tmp / "absent.json"):
        done = subprocess.run([check[0], str(keys)], capture_output=True, text=True, check=False)
        assert done.returncode == 1, keys
        assert "refusing to start" in done.stderr and "llm_serve_keys" in done.stderr


def test_a_second_run_changes_nothing(front):
    result = run_role(front.tmp, front.extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in result.stdout, result.stdout


def test_preflight_refuses_bad_keys_before_any_change(tmp_path):
    bad = [
        {"key": "plain-0123456789-secret", "models": ["*"], "scopes": ["inference"]},
        {"name": "bob", "sha256": "abc123", "models": ["*"], "scopes": ["inference"]},
        {
            "name": "carol",
            "key": "carol-0123456789-secret",
            "models": ["*"],
            "scopes": ["inference", "admin"],
        },
        {"name": "dave", "key": "dave-0123456789-secret", "models": ["*"], "scopes": ["inference"]},
        {"name": "dave", "key": "dave-other-0123456789", "models": ["*"], "scopes": ["inference"]},
    ]
    result = run_role(tmp_path, {"llm_serve_keys": bad, "llm_serve_upstream": "127.0.0.1:8000"})
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "nothing was changed" in out
    for problem in (
        "llm_serve_keys[0] has no name",
        "llm_serve_keys[1] (bob): sha256 is not a sha256 hex digest",
        "llm_serve_keys[2] (carol): unknown scopes ['admin']",
        "llm_serve_upstream '127.0.0.1:8000' is not an http://host:port URL",
    ):
        assert problem in out, problem
    assert "plain-0123456789-secret" not in out and "carol-0123456789-secret" not in out
    assert not (tmp_path / "etc").exists(), "preflight changed something"
    # Duplicate names once the rest is right; and no key at all.
    good = [k for k in bad[3:]]
    result = run_role(tmp_path, {"llm_serve_keys": good})
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0 and "names used by more than one key: ['dave']" in out
    assert "dave-0123456789-secret" not in out
    result = run_role(tmp_path, {"llm_serve_keys": []})
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0 and "llm_serve_keys is empty" in out
    assert not (tmp_path / "etc").exists(), "preflight changed something"


# --- A model split between two versions: the routes a rollout with a split writes
# (version_switch -> front_route -> routes.conf), on the real nginx, in front of two engines.

SPLIT_MODEL = "tiny-ab"


class SplitFront(Front):
    def serve(self, percent):
        """The front of a rollout of version 2 beside version 1 with ``percent`` of the requests to 2."""
        from ansible_collections.gpufleet.cluster.plugins.plugin_utils import serving_engine as se

        ports = [self.v1.server_address[1], self.v2.server_address[1]]
        state = {"current": "1", "previous": None, "ports": {"1": ports[0]}}
        step = se.version_switch(state, "2", ports, split={"version": "2", "percent": percent})
        assert step["port"] == ports[1], "version 2 starts on the model's other port"
        extra = {
            "llm_serve_keys": KEYS,
            "__llm_serve_front_routes": [se.front_route(step, SPLIT_MODEL)],
            "llm_serve_front_port": self.port,
            "llm_serve_rate": 0,
        }
        result = run_role(self.tmp, extra)
        assert result.returncode == 0, result.stdout + result.stderr
        if getattr(self, "server", None):
            self.server.terminate()
            self.server.wait(timeout=10)
        self.server = start_nginx(self.tmp, self.port)

    def answered(self, requests):
        """``requests`` completions: the versions that answered, by the engines' answers, each checked
        against its audit line (version and upstream)."""
        engines = {self.v1.answer: ("1", self.v1), self.v2.answer: ("2", self.v2)}
        ids = {}
        for _ in range(requests):
            status, body, headers = self.request(
                "/v1/completions", {"model": SPLIT_MODEL, "prompt": "x"}, key=ALICE
            )
            assert status == 200, body
            ids[headers["X-Request-Id"]] = engines[json.loads(body)["choices"][0]["text"]]
        for _ in range(100):
            lines = {line["request_id"]: line for line in self.audit_lines() if line["request_id"] in ids}
            if len(lines) == len(ids):
                break
            time.sleep(0.05)
        assert len(lines) == len(ids), "an audit line for every request"
        for request_id, (version, engine) in ids.items():
            line = lines[request_id]
            assert (line["model"], line["version"]) == (SPLIT_MODEL, version), line
            assert line["upstream"] == engine.url.removeprefix("http://"), line
        return [version for version, _ in ids.values()]


@pytest.fixture(scope="module")
def split_front(tmp_path_factory):
    handle = SplitFront(tmp_path_factory.mktemp("split"), free_port())
    handle.v1 = FakeEngine(SPLIT_MODEL, answer=" one")
    handle.v2 = FakeEngine(SPLIT_MODEL, answer=" two")
    yield handle
    if getattr(handle, "server", None):
        handle.server.terminate()
        handle.server.wait(timeout=10)
    for engine in (handle.v1, handle.v2):
        engine.shutdown()
        engine.server_close()


def test_a_split_of_50_percent_sends_requests_to_both_versions_and_audits_which(split_front):
    split_front.serve(50)
    routes = (split_front.tmp / "etc" / "routes.conf").read_text()
    assert 'split_clients "${request_id}" $gpufleet_split_1' in routes
    versions = split_front.answered(200)
    # $request_id is random: each version's share of 200 requests is far inside 20-80%.
    assert 40 <= versions.count("2") <= 160, versions.count("2")
    assert versions.count("1") + versions.count("2") == 200


def test_a_split_of_0_percent_sends_nothing_to_the_split_version(split_front):
    split_front.serve(0)
    assert 'split_clients "' not in (split_front.tmp / "etc" / "routes.conf").read_text()
    assert set(split_front.answered(50)) == {"1"}


def test_preflight_refuses_a_split_version_the_host_does_not_have_before_any_change(tmp_path):
    state_dir = tmp_path / "serve"
    state_dir.mkdir()
    (state_dir / "m.json").write_text(json.dumps({"current": "1", "previous": None, "ports": {"1": 8101}}))
    models = [{"name": "m", "version": "2", "split": {"version": "3", "percent": 10}}]
    result = run_role(
        tmp_path,
        {"llm_serve_keys": KEYS, "llm_serve_models": models, "__llm_serve_state_dir": str(state_dir)},
    )
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert (
        "nothing was changed. 1. model m (version 2): split version 3 is neither the version served after"
        " this run nor the previous one (versions on this host: 2 and 1); name one of them"
    ) in out, out
    assert not (tmp_path / "etc").exists(), "preflight changed something"
    # a rollback drops the split: the same inputs pass the split checks (and stop later, at systemd)
    result = run_role(
        tmp_path,
        {
            "llm_serve_keys": KEYS,
            "llm_serve_models": models,
            "__llm_serve_state_dir": str(state_dir),
            "llm_serve_rollback": True,
        },
    )
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0 and "split version" not in out
    assert "runs each model version as a systemd unit" in out, out
    # a split over the served version and the new one passes, and preflight finds the version it keeps
    models = [{"name": "m", "version": "2", "split": {"version": "2", "percent": 10}}]
    result = run_role(
        tmp_path,
        {"llm_serve_keys": KEYS, "llm_serve_models": models, "__llm_serve_state_dir": str(state_dir)},
    )
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0 and "split version" not in out
    assert re.search(
        r"Find the version each split keeps beside the one rolled out\] \*+ ok: \[localhost\]", out
    ), out
    assert "runs each model version as a systemd unit" in out, out
