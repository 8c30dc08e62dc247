"""Engines and versions (plugin_utils/serving_engine.py) and readiness (module_utils/serve_probe.py,
spoken to FakeEngine, a test double of an OpenAI-compatible engine, over real HTTP)."""

import socket
import threading
import time

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import serve_probe
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import serving_engine as se
from engine_double import FakeEngine

ENV = "/opt/gpufleet/envs/serve"
MODEL = "/var/lib/gpufleet/model-store/models/m/versions/2"


def test_vllm_is_started_on_localhost_with_the_plans_layout_and_no_api_key():
    argv = se.engine_command(
        "vllm", ENV, MODEL + "/", "m", 8101, tensor_parallel_size=4, gpu_memory_utilization=0.92
    )
    assert argv == [
        f"{ENV}/bin/vllm", "serve", MODEL, "--served-model-name", "m", "--host", "127.0.0.1",
        "--port", "8101", "--tensor-parallel-size", "4", "--gpu-memory-utilization", "0.92",
    ]  # fmt: skip
    assert "--api-key" not in argv


def test_trtllm_uses_the_pytorch_backend_and_its_own_option_names():
    argv = se.engine_command("trtllm", ENV, MODEL, "m", 8102, tensor_parallel_size=2, max_model_len=8192)
    assert argv[:3] == [f"{ENV}/bin/trtllm-serve", MODEL, "--backend"] and argv[3] == "pytorch"
    assert argv[argv.index("--tp_size") + 1] == "2" and argv[argv.index("--max_seq_len") + 1] == "8192"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"


def test_trtllm_serves_a_built_engine_with_the_tensorrt_backend_and_the_models_tokenizer():
    engine = "/var/lib/gpufleet/trtllm-engines/" + "a" * 64 + "/engine"
    argv = se.engine_command(
        "trtllm", ENV, MODEL, "m", 8102, tensor_parallel_size=2, max_model_len=8192, engine_dir=engine + "/"
    )
    assert argv[:6] == [f"{ENV}/bin/trtllm-serve", engine, "--tokenizer", MODEL, "--backend", "tensorrt"]
    assert argv[argv.index("--tp_size") + 1] == "2" and argv[argv.index("--port") + 1] == "8102"
    assert "--max_seq_len" not in argv  # built into the engine (build_args)
    with pytest.raises(ValueError, match="build: legacy is for engine trtllm"):
        se.engine_command("vllm", ENV, MODEL, "m", 8102, engine_dir=engine)


def test_legacy_trtllm_models_keep_their_build_inputs_and_others_default_to_pytorch():
    legacy = {
        "name": "l", "version": "1", "engine": "trtllm", "build": "legacy",
        "convert_script": "/opt/trtllm/examples/models/core/llama/convert_checkpoint.py",
        "convert_args": {"dtype": "bfloat16"}, "build_args": {"max_batch_size": 8},
    }  # fmt: skip
    assert se.model_problems([legacy, {"name": "p", "version": "1"}], "trtllm") == []
    built, plain = se.serving_models([legacy, {"name": "p", "version": "1"}], "trtllm", 8101, "/store")
    assert built["build"] == "legacy" and built["build_args"] == {"max_batch_size": 8}
    assert built["convert_script"] == legacy["convert_script"] and built["convert_args"] == {
        "dtype": "bfloat16"
    }
    assert (plain["build"], plain["convert_script"], plain["build_args"]) == ("pytorch", "", {})


def test_legacy_build_problems_say_what_to_set():
    problems = se.model_problems(
        [
            {"name": "a", "version": "1", "build": "legacy"},
            {"name": "b", "version": "1", "engine": "trtllm", "build": "legacy", "convert_script": "x.py",
             "build_args": {"output_dir": "/tmp"}, "convert_args": ["--dtype", "float16"]},
            {"name": "c", "version": "1", "engine": "trtllm", "build": "onnx"},
            {"name": "d", "version": "1", "engine": "trtllm", "build_args": {"max_batch_size": 8}},
        ],
        "vllm",
    )  # fmt: skip
    assert problems == [
        "llm_serve_models[0] (a): build: legacy is TensorRT-LLM's engine flow; engine is vllm,"
        " set engine: trtllm",
        "llm_serve_models[1] (b): build: legacy needs convert_script, the absolute path on the node of"
        " the model family's convert_checkpoint.py (from the TensorRT-LLM release in llm_serve_env)",
        "llm_serve_models[1] (b): convert_args must be a mapping of option to value"
        " (e.g. {max_batch_size: 8}), got list",
        "llm_serve_models[1] (b): build_args: output_dir is set by gpufleet; leave it out",
        "llm_serve_models[2] (c): build 'onnx' is not one of pytorch, legacy",
        "llm_serve_models[3] (d): build_args: only for build: legacy",
    ]


def test_llamacpp_serves_the_gguf_file_under_the_models_name():
    argv = se.engine_command(
        "llamacpp", ENV, MODEL, "tiny", 8101, gguf="tiny.gguf", threads=2, max_model_len=512
    )
    assert argv[:4] == [f"{ENV}/bin/python", "-m", "llama_cpp.server", "--model"]
    assert argv[4] == f"{MODEL}/tiny.gguf" and argv[argv.index("--model_alias") + 1] == "tiny"
    assert argv[argv.index("--n_ctx") + 1] == "512" and argv[argv.index("--n_threads") + 1] == "2"


@pytest.mark.parametrize(
    "engine, kw, message",
    [
        ("tgi", {}, r"engine 'tgi' is not one of llamacpp, trtllm, vllm"),
        ("llamacpp", {}, r"needs gguf: the name of a \.gguf file"),
        ("llamacpp", {"gguf": "../x.gguf"}, r"needs gguf"),
        ("llamacpp", {"gguf": "m.gguf", "tensor_parallel_size": 2}, r"tensor_parallel_size must be 1"),
        ("vllm", {"tensor_parallel_size": 0}, r"tensor_parallel_size 0: must be 1 or more"),
        ("vllm", {"gpu_memory_utilization": 1.5}, r"gpu_memory_utilization 1.5"),
        ("vllm", {"port": 70000}, r"port 70000 is not a TCP port"),
        ("vllm", {"name": "a b"}, r"model name 'a b'"),
    ],
)
def test_bad_engine_input_names_the_option(engine, kw, message):
    args = {"port": 8101, "name": "m", **kw}
    port, name = args.pop("port"), args.pop("name")
    with pytest.raises(ValueError, match=message):
        se.engine_command(engine, ENV, MODEL, name, port, **args)


def test_unit_names_are_per_model_version():
    assert se.unit_name("tiny-llama", "2") == "gpufleet-serve-tiny-llama-2.service"
    with pytest.raises(ValueError, match=r"version '2/\.\./x'"):
        se.unit_name("m", "2/../x")


PORTS = [8101, 8102]


def test_first_version_starts_on_the_first_port():
    step = se.version_switch({}, "1", PORTS)
    assert step == {
        "version": "1", "port": 8101, "start": True, "switch": True, "retire": [], "split": None,
        "state": {"current": "1", "previous": None, "ports": {"1": 8101}},
    }  # fmt: skip


def test_a_new_version_starts_beside_the_current_one_and_the_oldest_retires():
    state = {"current": "2", "previous": "1", "ports": {"1": 8101, "2": 8102}}
    step = se.version_switch(state, "3", PORTS)
    assert step["port"] == 8101 and step["start"] and step["switch"]
    assert step["retire"] == ["1"]
    assert step["state"] == {"current": "3", "previous": "2", "ports": {"2": 8102, "3": 8101}}


def test_the_current_version_again_changes_nothing():
    state = {"current": "2", "previous": "1", "ports": {"1": 8101, "2": 8102}}
    step = se.version_switch(state, "2", PORTS)
    assert not step["start"] and not step["switch"] and step["retire"] == []
    assert step["state"] == state


def test_rollback_returns_to_the_previous_version_on_its_port():
    state = {"current": "2", "previous": "1", "ports": {"1": 8101, "2": 8102}}
    step = se.version_switch(state, "ignored", PORTS, rollback=True)
    assert step["version"] == "1" and step["port"] == 8101 and step["switch"]
    assert step["state"] == {"current": "1", "previous": "2", "ports": {"1": 8101, "2": 8102}}
    with pytest.raises(ValueError, match="no previous version to roll back to"):
        se.version_switch({"current": "1", "ports": {"1": 8101}}, "x", PORTS, rollback=True)
    with pytest.raises(ValueError, match="two different ports"):
        se.version_switch({}, "1", [8101, 8101])


# --- a split: a share of a model's requests to one of its two versions ---

SERVED = {"current": "1", "previous": None, "ports": {"1": 8101}}


def test_a_canary_split_sends_its_share_to_the_new_version_and_the_rest_to_the_one_served():
    step = se.version_switch(SERVED, "2", PORTS, split={"version": "2", "percent": 10})
    assert step["start"] and step["switch"] and step["retire"] == []
    assert step["split"] == {
        "version": "2",
        "percent": 10,
        "port": 8102,
        "rest": {"version": "1", "port": 8101},
    }
    assert step["state"] == {
        "current": "2", "previous": "1", "ports": {"1": 8101, "2": 8102},
        "split": {"version": "2", "percent": 10},
    }  # fmt: skip
    assert se.front_route(step, "m") == {
        "model": "m", "url": "http://127.0.0.1:8101", "version": "1",
        "split": {"url": "http://127.0.0.1:8102", "version": "2", "percent": 10},
    }  # fmt: skip


def test_a_split_can_keep_a_share_on_the_previous_version_and_change_without_a_switch():
    state = {"current": "2", "previous": "1", "ports": {"1": 8101, "2": 8102}}
    step = se.version_switch(state, "2", PORTS, split={"version": "1", "percent": 25})
    assert not step["start"] and not step["switch"]
    assert step["split"] == {
        "version": "1",
        "percent": 25,
        "port": 8101,
        "rest": {"version": "2", "port": 8102},
    }
    assert step["state"]["split"] == {"version": "1", "percent": 25}
    route = se.front_route(step, "m")
    assert (route["url"], route["version"]) == ("http://127.0.0.1:8102", "2")
    assert route["split"] == {"url": "http://127.0.0.1:8101", "version": "1", "percent": 25}
    # without a split again: no split recorded, the route has the one version
    plain = se.version_switch({**state, "split": {"version": "1", "percent": 25}}, "2", PORTS)
    assert plain["split"] is None and "split" not in plain["state"]
    assert se.front_route(plain, "m") == {
        "model": "m",
        "url": "http://127.0.0.1:8102",
        "version": "2",
        "split": None,
    }


def test_rollback_drops_the_split_all_traffic_on_the_previous_version():
    state = {
        "current": "2", "previous": "1", "ports": {"1": 8101, "2": 8102},
        "split": {"version": "2", "percent": 10},
    }  # fmt: skip
    step = se.version_switch(state, "2", PORTS, rollback=True, split={"version": "2", "percent": 10})
    assert step["version"] == "1" and step["split"] is None
    assert step["state"] == {"current": "1", "previous": "2", "ports": {"1": 8101, "2": 8102}}
    assert se.front_route(step, "m") == {
        "model": "m",
        "url": "http://127.0.0.1:8101",
        "version": "1",
        "split": None,
    }
    model = {"name": "m", "version": "2", "ports": PORTS, "split": {"version": "9", "percent": 10}}
    assert se.split_problems(state, model, rollback=True) == []


@pytest.mark.parametrize(
    "state, version, split, message",
    [
        (SERVED, "2", {"version": "3", "percent": 10},
         "model m (version 2): split version 3 is neither the version served after this run nor the previous"
         " one (versions on this host: 2 and 1); name one of them"),
        ({}, "1", {"version": "1", "percent": 10},
         "model m (version 1): split needs two versions running, and version 1 has no previous version on"
         " this host: roll out one version first, then the other with the split"),
        (SERVED, "1", {"version": "1", "percent": 50},
         "model m (version 1): split needs two versions running, and version 1 has no previous version on"
         " this host: roll out one version first, then the other with the split"),
        (SERVED, "2", {"version": "1", "percent": 101},
         "model m (version 2): split percent 101: a whole number from 0 to 100"),
    ],
)  # fmt: skip
def test_split_problems_name_the_model_and_what_to_set(state, version, split, message):
    model = {"name": "m", "version": version, "ports": PORTS, "split": split}
    assert se.split_problems(state, model) == [message]
    with pytest.raises(ValueError, match="split"):
        se.version_switch(state, version, PORTS, split=split)


@pytest.mark.parametrize(
    "split, problem",
    [
        ({"version": "1", "percent": 101}, "split percent 101: a whole number from 0 to 100"),
        ({"version": "1", "percent": -1}, "split percent -1: a whole number from 0 to 100"),
        ({"version": "1", "percent": 12.5}, "split percent 12.5: a whole number from 0 to 100"),
        ({"version": "1", "percent": "10"}, "split percent '10': a whole number from 0 to 100"),
        ({"version": "1", "percent": True}, "split percent True: a whole number from 0 to 100"),
        ({"version": "a b", "percent": 10}, "split version 'a b': letters, digits, '.', '_' and '-' only"),
        ({"version": "1"}, "split must be a mapping of version and percent, got {'version': '1'}"),
        ("1:10", "split must be a mapping of version and percent, got '1:10'"),
    ],
)
def test_a_bad_split_is_a_model_problem(split, problem):
    models = [{"name": "m", "version": "2", "split": split}]
    assert se.model_problems(models, "vllm") == [f"llm_serve_models[0] (m): {problem}"]


def test_a_split_passes_into_the_serving_models():
    models = [
        {"name": "m", "version": "2", "split": {"version": 1, "percent": 0}},
        {"name": "n", "version": "1"},
    ]
    assert se.model_problems(models, "vllm") == []
    m, n = se.serving_models(models, "vllm", 8101, "/store")
    assert m["split"] == {"version": "1", "percent": 0} and n["split"] is None


# --- readiness, against FakeEngine over HTTP ---


@pytest.fixture
def engine():
    server = FakeEngine("tiny", answer=" Paris")
    yield server
    server.shutdown()
    server.server_close()


def test_a_sound_engine_is_ready_and_its_golden_answer_can_be_recorded(engine):
    checks = serve_probe.check(
        engine.url, "tiny", health_path="/health", golden={"prompt": "x", "expect": None}
    )
    assert [c["name"] for c in checks] == ["health", "models", "generate", "golden"]
    assert all(c["ok"] for c in checks) and checks[-1]["answer"] == " Paris"


def test_health_alone_is_not_readiness(engine):
    checks = serve_probe.check(engine.url, "other-model", health_path="/health")
    assert [(c["name"], c["ok"]) for c in checks] == [("health", True), ("models", False)]
    assert "lists ['tiny'], not 'other-model'" in checks[-1]["detail"]


def test_an_unhealthy_engine_is_not_ready(engine):
    engine.healthy = False
    checks = serve_probe.check(engine.url, "tiny", health_path="/health")
    assert checks == [{"name": "health", "ok": False, "detail": "/health: HTTP 503 Service Unavailable"}]


def test_another_golden_answer_fails_at_once_without_waiting(engine):
    t0 = time.monotonic()
    ready, checks, _waited, rounds = serve_probe.wait_ready(
        engine.url, "tiny", 30, interval=0.1, golden={"prompt": "x", "expect": " Berlin"}
    )
    assert not ready and rounds == 1 and time.monotonic() - t0 < 5
    assert checks[-1]["detail"] == "golden prompt 'x': answered ' Paris', the recorded answer is ' Berlin'"


def test_an_engine_that_comes_up_later_is_waited_for():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    holder = {}

    def start():
        time.sleep(0.6)
        holder["engine"] = FakeEngine.on_port("tiny", port)

    threading.Thread(target=start, daemon=True).start()
    try:
        ready, checks, waited, rounds = serve_probe.wait_ready(url, "tiny", 20, interval=0.2)
        assert ready and rounds > 1 and waited >= 0.5, checks
    finally:
        if "engine" in holder:
            holder["engine"].shutdown()
            holder["engine"].server_close()


def test_no_engine_at_all_is_reported_after_the_wait():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    ready, checks, waited, _rounds = serve_probe.wait_ready(url, "tiny", 1, interval=0.3)
    assert not ready and 0.5 <= waited < 5
    assert checks[0]["name"] == "models" and checks[0]["detail"].startswith("/v1/models: no answer")


def test_models_get_their_defaults_ports_and_a_golden_prompt():
    models = [
        {"name": "a", "version": "1"},
        {"name": "b", "version": "2", "engine": "llamacpp", "gguf": "b.gguf"},
    ]
    assert se.model_problems(models, "vllm") == []
    a, b = se.serving_models(models, "vllm", 8101, "/store/")
    assert a["ports"] == [8101, 8102] and b["ports"] == [8103, 8104]
    assert a["dir"] == "/store/models/a/versions/1" and a["unit"] == "gpufleet-serve-a-1.service"
    assert (a["health"], a["gpu"]) == ("/health", True) and (b["health"], b["gpu"]) == (None, False)
    assert a["golden"] == {"prompt": se.GOLDEN_PROMPT, "max_tokens": se.GOLDEN_TOKENS, "expect": None}


def test_model_problems_name_the_entry_and_what_is_wrong():
    problems = se.model_problems(
        [
            {"name": "a", "version": "1", "colour": "red"},
            {"name": "a", "version": "x y"},
            {"name": "c", "version": "1", "ports": [9000, 9000]},
            {"name": "d", "version": "1", "engine": "llamacpp"},
            {"version": "1"},
        ],
        "vllm",
    )
    assert problems == [
        "llm_serve_models[0] (a): unknown keys colour; known: args, build, build_args, convert_args,"
        " convert_script, engine, gguf, golden, gpu_memory_utilization, max_model_len, name, ports,"
        " split, tensor_parallel_size, threads, version",
        "llm_serve_models[1] (a): version 'x y' must be set: letters, digits, '.', '_' and '-' only",
        "llm_serve_models[1] (a): model a is listed twice; serve one version per model",
        "llm_serve_models[2] (c): ports must be two different ports (blue/green), got [9000, 9000]",
        "llm_serve_models[3] (d): engine llamacpp needs gguf: the name of a .gguf file in the model directory"
        " (got '')",
        "llm_serve_models[4]: name None must be set: letters, digits, '.', '_' and '-' only",
    ]


def test_an_engine_whose_unit_stopped_ends_the_wait_at_once(engine):
    """A host restarted during a rollout starts only the served version at boot: the new version's
    unit is inactive and waiting out the whole wait would not start it."""
    engine.healthy = False  # never ready: only the unit's state can end the wait early
    states = iter(["activating", "active", "inactive"])
    alive = lambda: serve_probe.unit_stopped("gpufleet-serve-tiny-2.service", next(states))  # noqa: E731
    t0 = time.monotonic()
    ready, checks, _waited, rounds = serve_probe.wait_ready(
        engine.url, "tiny", 30, interval=0.05, health_path="/health", alive=alive
    )
    assert not ready and rounds == 3 and time.monotonic() - t0 < 5
    assert [(c["name"], c["ok"]) for c in checks] == [("running", False)]
    assert checks[0]["detail"].startswith("gpufleet-serve-tiny-2.service is inactive, not running")
    assert "journalctl -u gpufleet-serve-tiny-2.service" in checks[0]["detail"]


@pytest.mark.parametrize("state", ["active", "activating", "reloading"])
def test_a_running_or_restarting_unit_is_waited_for(state):
    assert serve_probe.unit_stopped("u.service", state) is None


@pytest.mark.parametrize("state", ["inactive", "failed", "deactivating", "unknown (no such unit)"])
def test_a_stopped_unit_is_not(state):
    assert serve_probe.unit_stopped("u.service", state).startswith(f"u.service is {state}, not running")
