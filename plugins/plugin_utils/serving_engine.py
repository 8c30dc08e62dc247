# Copyright: gpufleet developers
# Apache-2.0
"""LLM serving engines and versions: how each engine is started, and which version of a model runs
where during a blue/green rollout.

Controller code (plugin_utils), stdlib only; the llm_serve role reaches it through the filters of
plugins/filter/serving.py, ``gpufleet serve`` through ``gpufleet.serve``. Raises ValueError on bad input
with a message naming the option to fix.

Engines (facts.md, "Serving"):

- ``vllm``: ``vllm serve MODEL_DIR`` from a python_runtime environment; ``--tensor-parallel-size`` and
  ``--gpu-memory-utilization`` from ``gpufleet plan``; ``/health``. No ``--api-key``: it guards only the
  ``/v1`` routes and takes one key; the front does authentication for every route.
- ``trtllm``: ``trtllm-serve MODEL_DIR`` (PyTorch backend: Hugging Face checkpoints directly) from an
  environment whose TensorRT-LLM wheel came from the bundle; ``--tp_size``; ``/health``. It has no
  authentication at all. A model with ``build: legacy`` is served from a TensorRT engine instead
  (``trtllm-serve ENGINE_DIR --tokenizer MODEL_DIR --backend tensorrt``), built once into the engine
  cache by the ``trtllm_engine`` module (module_utils/trtllm_engine.py).
- ``llamacpp``: llama.cpp through llama-cpp-python's OpenAI-compatible server, on a GGUF file of the
  model directory: the engine that runs on the lab's CPU-only nodes. No health route: readiness is
  ``/v1/models`` plus a generation.

Every engine binds to 127.0.0.1 only: clients reach it through the front.
"""

from __future__ import annotations

# Unit naming and the name rule are host code too (verify_collect asks systemctl about the served
# units on the host): one copy, in module_utils/serve_state.py.
from ansible_collections.gpufleet.cluster.plugins.module_utils.serve_state import (
    FRONT_UNIT,
    NAME,
    unit_name,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.trtllm_engine import (
    BUILD_RESERVED,
    CONVERT_RESERVED,
    TrtllmEngineError,
    normalize_args,
)

ENGINES = {
    "vllm": {"health": "/health", "gpu": True},
    "trtllm": {"health": "/health", "gpu": True},
    "llamacpp": {"health": None, "gpu": False},
}
# Blue/green: a model's two versions in service listen on its two ports, alternately.
SLOTS = 2
# The readiness check's golden prompt unless a model sets its own (greedy: same weights, same answer).
GOLDEN_PROMPT = "The capital of France is"
GOLDEN_TOKENS = 8
# How a trtllm model is built: pytorch (trtllm-serve loads the checkpoint) or legacy (a TensorRT engine).
BUILDS = ("pytorch", "legacy")


def check_engine(engine):
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r} is not one of {', '.join(sorted(ENGINES))}")


def engine_command(
    engine,
    env,
    model_dir,
    name,
    port,
    tensor_parallel_size=1,
    gpu_memory_utilization=0.9,
    max_model_len=0,
    gguf="",
    threads=0,
    extra=(),
    engine_dir="",
):
    """The engine's command line (argv) serving ``model_dir`` as model ``name`` on 127.0.0.1:``port``.

    ``env``: the python_runtime environment (its bin/ holds the engine); ``max_model_len``: context
    length (0: the engine's default); ``gguf``: the GGUF file in ``model_dir`` (llamacpp only);
    ``threads``: CPU threads (llamacpp; 0: the engine's default); ``extra``: more arguments, as given;
    ``engine_dir``: a built TensorRT engine (trtllm only, ``build: legacy``): served with the TensorRT
    backend, ``model_dir`` giving the tokenizer; its sequence length is the one it was built with.
    """
    check_engine(engine)
    if not NAME.match(str(name)):
        raise ValueError(f"model name {name!r}: letters, digits, '.', '_' and '-' only")
    port = int(port)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not a TCP port")
    tp = int(tensor_parallel_size)
    if tp < 1:
        raise ValueError(f"tensor_parallel_size {tp}: must be 1 or more")
    bin_dir = f"{str(env).rstrip('/')}/bin"
    model_dir = str(model_dir).rstrip("/")
    if engine_dir and engine != "trtllm":
        raise ValueError(f"engine {engine} serves no prebuilt engine: build: legacy is for engine trtllm")
    if engine == "vllm":
        util = float(gpu_memory_utilization)
        if not 0 < util <= 1:
            raise ValueError(f"gpu_memory_utilization {util}: must be above 0 and at most 1")
        argv = [f"{bin_dir}/vllm", "serve", model_dir, "--served-model-name", name]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--tensor-parallel-size", str(tp)]
        argv += ["--gpu-memory-utilization", f"{util:g}"]
        if max_model_len:
            argv += ["--max-model-len", str(int(max_model_len))]
    elif engine == "trtllm" and engine_dir:
        argv = [f"{bin_dir}/trtllm-serve", str(engine_dir).rstrip("/"), "--tokenizer", model_dir]
        argv += ["--backend", "tensorrt", "--host", "127.0.0.1", "--port", str(port), "--tp_size", str(tp)]
    elif engine == "trtllm":
        argv = [f"{bin_dir}/trtllm-serve", model_dir, "--backend", "pytorch"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--tp_size", str(tp)]
        if max_model_len:
            argv += ["--max_seq_len", str(int(max_model_len))]
    else:
        if not gguf or "/" in str(gguf) or not str(gguf).endswith(".gguf"):
            raise ValueError(
                f"engine llamacpp needs gguf: the name of a .gguf file in the model directory (got {gguf!r})"
            )
        if tp != 1:
            raise ValueError("engine llamacpp runs on one device: tensor_parallel_size must be 1")
        argv = [f"{bin_dir}/python", "-m", "llama_cpp.server", "--model", f"{model_dir}/{gguf}"]
        argv += ["--model_alias", name, "--host", "127.0.0.1", "--port", str(port)]
        if max_model_len:
            argv += ["--n_ctx", str(int(max_model_len))]
        if threads:
            argv += ["--n_threads", str(int(threads))]
    return argv + [str(a) for a in extra]


def version_switch(state, version, ports, rollback=False, split=None):
    """What a rollout of ``version`` does, from the model's serving ``state`` on the host.

    ``state``: ``{"current": V or None, "previous": V or None, "ports": {V: port}, "split": ...}``
    (empty for a model never served); ``ports``: the model's two ports (blue/green). ``rollback``:
    serve ``previous`` again instead (``version`` is ignored), all of its traffic: a split is dropped.
    ``split``: ``{"version": V, "percent": P}`` (the model's ``split``): P percent of the model's
    requests go to V, the rest to the other of the two versions served after the switch (``version``
    and the previous one); V must be one of them and both must have a port, else ValueError.

    Returns ``{"version", "port", "start": bool (a new unit starts beside the current one), "switch":
    bool (the front moves to it), "retire": [versions whose units stop once the switch is done],
    "split": None or {"version", "percent", "port", "rest": {"version", "port"}} (the version the rest
    goes to), "state": the state to record after the switch (with ``split`` when there is one)}``.
    """
    step = _switch(state, version, ports, rollback)
    step["split"] = None
    if split is not None and not rollback:
        step["split"] = _split(step["state"], split)
        step["state"]["split"] = {"version": step["split"]["version"], "percent": step["split"]["percent"]}
    return step


def _split(after, split):
    """The split of ``split`` ({version, percent}) over the versions served per ``after`` (the state
    after the switch)."""
    problems = _split_shape(split)
    if problems:
        raise ValueError("; ".join(problems))
    version, percent = str(split["version"]), split["percent"]
    current, previous, have = after["current"], after["previous"], after["ports"]
    if version not in (current, previous):
        known = " and ".join(str(v) for v in (current, previous) if v) or "none"
        raise ValueError(
            f"split version {version} is neither the version served after this run nor the previous one"
            f" (versions on this host: {known}); name one of them"
        )
    if not previous or previous not in have:
        raise ValueError(
            f"split needs two versions running, and version {current} has no previous version on this"
            " host: roll out one version first, then the other with the split"
        )
    rest = previous if version == current else current
    return {
        "version": version,
        "percent": percent,
        "port": have[version],
        "rest": {"version": rest, "port": have[rest]},
    }


def _switch(state, version, ports, rollback):
    state = dict(state or {})
    ports = [int(p) for p in ports]
    if len(ports) != SLOTS or ports[0] == ports[1]:
        raise ValueError(f"ports {ports}: give the model two different ports (blue/green)")
    have = {str(k): int(v) for k, v in (state.get("ports") or {}).items()}
    current, previous = state.get("current"), state.get("previous")
    if rollback:
        if not previous:
            raise ValueError("there is no previous version to roll back to")
        version = previous
    version = str(version)
    if not NAME.match(version):
        raise ValueError(f"version {version!r}: letters, digits, '.', '_' and '-' only")
    if version == current:
        port = have.get(version, ports[0])
        return {
            "version": version,
            "port": port,
            "start": False,
            "switch": False,
            "retire": [],
            "state": {
                "current": current,
                "previous": previous,
                "ports": {version: port, **_kept(have, previous)},
            },
        }
    if version in have and version == previous:
        port = have[version]  # the previous version kept running: back to its port
    else:
        used = have.get(current) if current else None
        port = next(p for p in ports if p != used)
    kept = {current: have[current]} if current in have else {}
    retire = sorted(v for v in have if v not in (version, current))
    return {
        "version": version,
        "port": port,
        "start": True,
        "switch": True,
        "retire": retire,
        "state": {"current": version, "previous": current, "ports": {**kept, version: port}},
    }


def _kept(have, version):
    return {version: have[version]} if version and version in have else {}


def split_problems(state, model, rollback=False):
    """Why ``model`` (a ``serving_models`` entry with a ``split``) cannot be split on a host whose
    serving state is ``state``: one message, or none. A rollback drops the split: never a problem."""
    if not model.get("split") or rollback:
        return []
    try:
        version_switch(state, model["version"], model["ports"], split=model["split"])
    except ValueError as exc:
        return [f"model {model['name']} (version {model['version']}): {exc}"]
    return []


def front_route(step, name):
    """The front's route for model ``name`` after the rollout ``step`` (``version_switch``'s result):
    ``{"model", "url", "version", "split"}``; ``split``: None, or ``{"url", "version", "percent"}`` -
    the version that gets ``percent`` of the requests, ``url``/``version`` getting the rest."""
    split = step.get("split")
    if not split:
        return {"model": name, "url": _url(step["port"]), "version": step["version"], "split": None}
    return {
        "model": name,
        "url": _url(split["rest"]["port"]),
        "version": split["rest"]["version"],
        "split": {"url": _url(split["port"]), "version": split["version"], "percent": split["percent"]},
    }


def _url(port):
    return f"http://127.0.0.1:{int(port)}"


MODEL_KEYS = {
    "name", "version", "engine", "gguf", "tensor_parallel_size", "gpu_memory_utilization",
    "max_model_len", "threads", "args", "ports", "golden", "split", "build", "convert_script",
    "convert_args", "build_args",
}  # fmt: skip
LEGACY_KEYS = ("convert_script", "convert_args", "build_args")


def model_problems(models, engine="vllm"):
    """Why the llm_serve role cannot serve ``models`` (its llm_serve_models), one message each; empty
    when it can. ``engine``: the default engine (llm_serve_engine)."""
    problems, seen = [], set()
    if not isinstance(models, list):
        return ["llm_serve_models must be a list of {name, version, ...}"]
    for i, model in enumerate(models):
        where = f"llm_serve_models[{i}]"
        if not isinstance(model, dict):
            problems.append(f"{where}: must be a mapping with name and version")
            continue
        name, version = model.get("name"), model.get("version")
        where = f"llm_serve_models[{i}] ({name})" if name else where
        unknown = sorted(set(model) - MODEL_KEYS)
        if unknown:
            problems.append(
                f"{where}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(MODEL_KEYS))}"
            )
        for what, value in (("name", name), ("version", version)):
            if value is None or not NAME.match(str(value)):
                problems.append(
                    f"{where}: {what} {value!r} must be set: letters, digits, '.', '_' and '-' only"
                )
        if name in seen:
            problems.append(f"{where}: model {name} is listed twice; serve one version per model")
        seen.add(name)
        ports = model.get("ports")
        if ports is not None and (
            not isinstance(ports, list) or len(ports) != SLOTS or len(set(map(str, ports))) != SLOTS
        ):
            problems.append(f"{where}: ports must be two different ports (blue/green), got {ports!r}")
        golden = model.get("golden")
        if golden is not None and (
            not isinstance(golden, dict) or set(golden) - {"prompt", "max_tokens", "expect"}
        ):
            problems.append(f"{where}: golden must be a mapping of prompt, max_tokens and expect")
        split = model.get("split")
        if split is not None:
            problems += [f"{where}: {p}" for p in _split_shape(split)]
        problems.extend(f"{where}: {p}" for p in _build_problems(model, model.get("engine") or engine))
        try:
            engine_command(
                model.get("engine") or engine, "/env", "/model", name if name else "x", 8000,
                tensor_parallel_size=model.get("tensor_parallel_size", 1),
                gpu_memory_utilization=model.get("gpu_memory_utilization", 0.9),
                gguf=model.get("gguf", ""),
            )  # fmt: skip
        except (ValueError, TypeError) as exc:
            problems.append(f"{where}: {exc}")
    return problems


def _split_shape(split):
    if not isinstance(split, dict) or set(split) != {"version", "percent"}:
        return [f"split must be a mapping of version and percent, got {split!r}"]
    problems = []
    if not NAME.match(str(split["version"])):
        problems.append(f"split version {split['version']!r}: letters, digits, '.', '_' and '-' only")
    percent = split["percent"]
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        problems.append(f"split percent {percent!r}: a whole number from 0 to 100")
    return problems


def _build_problems(model, engine):
    build = model.get("build", "pytorch")
    if build not in BUILDS:
        return [f"build {build!r} is not one of {', '.join(BUILDS)}"]
    if build != "legacy":
        given = [k for k in LEGACY_KEYS if k in model]
        return [f"{', '.join(given)}: only for build: legacy"] if given else []
    if engine != "trtllm":
        return [f"build: legacy is TensorRT-LLM's engine flow; engine is {engine}, set engine: trtllm"]
    problems = []
    script = model.get("convert_script")
    if not isinstance(script, str) or not script.startswith("/"):
        problems.append(
            "build: legacy needs convert_script, the absolute path on the node of the model family's "
            "convert_checkpoint.py (from the TensorRT-LLM release in llm_serve_env)"
        )
    for what, reserved in (("convert_args", CONVERT_RESERVED), ("build_args", BUILD_RESERVED)):
        try:
            normalize_args(model.get(what), what, reserved)
        except TrtllmEngineError as exc:
            problems.append(str(exc))
    return problems


def serving_models(models, engine, port_base, store):
    """llm_serve_models with every default filled in, for the role's tasks (after ``model_problems``
    found none): ``dir`` (the version in the store), ``unit``, ``ports``, ``health``, ``gpu``, ..."""
    out = []
    for i, model in enumerate(models):
        eng = model.get("engine") or engine
        name, version = str(model["name"]), str(model["version"])
        ports = [int(p) for p in model.get("ports") or (int(port_base) + 2 * i, int(port_base) + 2 * i + 1)]
        golden = model.get("golden") or {}
        out.append(
            {
                "name": name,
                "version": version,
                "engine": eng,
                "gguf": model.get("gguf", ""),
                "tensor_parallel_size": int(model.get("tensor_parallel_size", 1)),
                "gpu_memory_utilization": float(model.get("gpu_memory_utilization", 0.9)),
                "max_model_len": int(model.get("max_model_len", 0)),
                "threads": int(model.get("threads", 0)),
                "args": [str(a) for a in model.get("args", [])],
                # trtllm: pytorch (the checkpoint) or legacy (a TensorRT engine built by trtllm_engine)
                "build": model.get("build", "pytorch"),
                "convert_script": model.get("convert_script", ""),
                "convert_args": dict(model.get("convert_args") or {}),
                "build_args": dict(model.get("build_args") or {}),
                "ports": ports,
                # the readiness check's golden prompt; expect None: the answer the version gives the
                # first time it is ready is recorded on the host and expected from then on
                "golden": {
                    "prompt": golden.get("prompt") or GOLDEN_PROMPT,
                    "max_tokens": int(golden.get("max_tokens") or GOLDEN_TOKENS),
                    "expect": golden.get("expect"),
                },
                # {version, percent}: that share of the requests to that version (version_switch)
                "split": (
                    {"version": str(model["split"]["version"]), "percent": model["split"]["percent"]}
                    if model.get("split") is not None
                    else None
                ),
                "dir": f"{str(store).rstrip('/')}/models/{name}/versions/{version}",
                "unit": unit_name(name, version),
                "health": ENGINES[eng]["health"],
                "gpu": ENGINES[eng]["gpu"],
            }
        )  # fmt: skip
    return out


# --- stopping and starting a serving host (the role's stop and start entry points) ----------------
# The record of a stop: which units it stopped, so that start brings back exactly those.
STOP_RECORD_SCHEMA = 1


def _recorded_versions(states):
    """(model, version) of each model's current and previous version, from the role's state files."""
    out = []
    for name in sorted(states or {}):
        state = states[name] if isinstance(states[name], dict) else {}
        for key in ("current", "previous"):
            if state.get(key):
                out.append((str(name), str(state[key])))
    return out


def serving_stop_plan(states, services, record=None, front_unit=FRONT_UNIT):
    """What the llm_serve role's ``stop`` stops on a host, and the record it keeps.

    ``states``: ``{model: its state file}`` (``current``, ``previous``, ``ports``); ``services``:
    ``ansible_facts.services`` (service_facts); ``record``: the record an earlier stop left, or
    None. The units of the recorded versions and the front that run now are stopped; those an earlier
    stop recorded stay in the record (a second stop, or a resumed one, finds them stopped already
    and must not forget them). Returns ``{"front": [unit] or [], "engines": [units], "record": {schema,
    front, engines}, "write": bool (the record is new or holds more units)}``.
    """
    services = services or {}
    record = record if isinstance(record, dict) else {}

    def running(unit):
        return (services.get(unit) or {}).get("state") == "running"

    engines = [str(u) for u in record.get("engines") or []]
    for model, version in _recorded_versions(states):
        unit = unit_name(model, version)
        if unit not in engines and running(unit):
            engines.append(unit)
    front = [str(u) for u in record.get("front") or []]
    if not front and running(front_unit):
        front = [front_unit]
    new = {"schema": STOP_RECORD_SCHEMA, "front": front, "engines": engines}
    had = {"schema": record.get("schema"), "front": record.get("front"), "engines": record.get("engines")}
    return {"front": front, "engines": engines, "record": new, "write": bool(front or engines) and new != had}


def serving_start_plan(record, states):
    """What the llm_serve role's ``start`` brings back from a stop's ``record``: ``{"engines": [units],
    "front": [unit] or [], "ready": [{"model", "version", "unit", "port"}]}`` - the engines first, then
    each model's current version (whose unit the stop recorded) waited for until ready, then the front.
    """
    record = record if isinstance(record, dict) else {}
    engines = [str(u) for u in record.get("engines") or []]
    ready = []
    for name in sorted(states or {}):
        state = states[name] if isinstance(states[name], dict) else {}
        current = state.get("current")
        port = (state.get("ports") or {}).get(str(current)) if current else None
        if current and port is not None and unit_name(name, current) in engines:
            ready.append(
                {
                    "model": str(name),
                    "version": str(current),
                    "unit": unit_name(name, current),
                    "port": int(port),
                }
            )
    return {"engines": engines, "front": [str(u) for u in record.get("front") or []], "ready": ready}
