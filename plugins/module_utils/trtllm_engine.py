# Copyright: gpufleet developers
# Apache-2.0
"""The TensorRT-LLM legacy engine flow and its build cache: which engine a model needs, and building
it once.

The legacy flow (facts.md, "TensorRT-LLM") turns a Hugging Face checkpoint into a TensorRT engine in
two commands, run from the serving environment::

    ENV/bin/python CONVERT_SCRIPT --model_dir MODEL_DIR --output_dir TMP/checkpoint --tp_size N [convert args]
    ENV/bin/trtllm-build --checkpoint_dir TMP/checkpoint --output_dir TMP/engine [build args]

An engine is not portable across GPU models or TensorRT versions, and TensorRT-LLM's own cache key
(a hash of its version, the build config and the model *path*) knows neither the GPU nor the weights.
Here an engine is filed under a key that does: sha256 over the canonical JSON of ``key_inputs`` -- the
GPU model (nvidia-smi's product name, read by the ``gpu_facts`` code), the driver version, the
TensorRT-LLM and TensorRT versions installed in the environment, the sha256 of the model version's
signed manifest, the tensor-parallel size, the convert script's sha256 and both argument sets
(normalised: the order they are given in does not matter).

Cache layout (``/var/lib/gpufleet/trtllm-engines`` by default)::

    KEY/engine/               what trtllm-build wrote (config.json, rank<N>.engine): served
    KEY/key.json              the key's inputs and the commands, for an operator to read why
    KEY/.gpufleet-complete    the key, written last: the entry is whole
    .gpufleet-build-KEY-XXXX  a build in progress (same file system: the rename is atomic)
    .gpufleet-lock            held while the cache is looked at or changed

An entry appears only by one rename of a finished build directory, so ``KEY/`` is always whole. A
failed build removes its directory; one that was killed leaves it, under a name only gpufleet uses,
and the next run removes it. A ``KEY/`` without the marker was not made here and is never touched.

Host code: stdlib only, Python >= 3.8 (the ``trtllm_engine`` module ships it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile

from ansible_collections.gpufleet.cluster.plugins.module_utils.model_store import (
    MANIFEST_COPY,
    fsync_dir,
    makedirs,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.tool_run import TIMEOUT_EXIT, output_tail

DEFAULT_CACHE = "/var/lib/gpufleet/trtllm-engines"
KEY_FORMAT = "gpufleet-trtllm-engine-key"
KEY_FORMAT_VERSION = 1
KEY_FILE = "key.json"
MARKER = ".gpufleet-complete"
ENGINE = "engine"
CHECKPOINT = "checkpoint"
TEMP_PREFIX = ".gpufleet-build-"
LOCK = ".gpufleet-lock"
DIR_MODE = 0o755

# Set by the flow itself: an argument set may not name them.
CONVERT_RESERVED = frozenset({"model_dir", "output_dir", "tp_size"})
BUILD_RESERVED = frozenset({"checkpoint_dir", "output_dir", "model_config", "build_config"})
_FLAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_KEY = re.compile(r"[0-9a-f]{64}")

# Run with the environment's python: package metadata only (importing tensorrt_llm loads CUDA);
# TensorRT's own module is the fallback where its wheel is named per CUDA major (tensorrt-cu12).
VERSION_PROBE = """\
import json
from importlib import metadata


def dist(*names):
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return None


trt = dist("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11")
if trt is None:
    try:
        import tensorrt
        trt = getattr(tensorrt, "__version__", None)
    except Exception:
        trt = None
print(json.dumps({"tensorrt_llm": dist("tensorrt_llm", "tensorrt-llm"), "tensorrt": trt}))
"""


class TrtllmEngineError(Exception):
    """An engine that cannot be keyed or built; the message says why and what to do."""


# --- arguments ----------------------------------------------------------------------------------


def normalize_args(args, what="build_args", reserved=BUILD_RESERVED):
    """``args`` (a mapping of option -> value) as a sorted list of ``[option, values]``.

    Options are given without or with leading dashes (``gemm_plugin`` or ``--gemm_plugin``); a value
    ``true`` is a bare flag, ``false`` or null leaves the option out, a list gives several values (in
    its order), anything else one value as text (``8`` and ``"8"`` are the same). Raises
    TrtllmEngineError naming ``what`` for anything else, or an option the flow sets itself.
    """
    if args is None:
        return []
    if not isinstance(args, dict):
        raise TrtllmEngineError(
            f"{what} must be a mapping of option to value (e.g. {{max_batch_size: 8}}), "
            f"got {type(args).__name__}"
        )
    out = {}
    for option, value in args.items():
        name = str(option).lstrip("-")
        if not _FLAG.fullmatch(name):
            raise TrtllmEngineError(f"{what}: {option!r} is not an option name")
        if name in reserved:
            raise TrtllmEngineError(f"{what}: {name} is set by gpufleet; leave it out")
        if name in out:
            raise TrtllmEngineError(f"{what}: {name} is given twice")
        if value is None or value is False:
            continue
        if value is True:
            values = []
        elif isinstance(value, (list, tuple)):
            values = [_scalar(what, name, v) for v in value]
        else:
            values = [_scalar(what, name, value)]
        out[name] = values
    return [[name, out[name]] for name in sorted(out)]


def _scalar(what, name, value):
    if isinstance(value, (bool, dict, list, tuple)) or value is None:
        raise TrtllmEngineError(f"{what}: {name} has a value that is not text or a number: {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def args_argv(normalized):
    """``normalize_args`` output as command-line arguments."""
    argv = []
    for name, values in normalized:
        argv.append(f"--{name}")
        argv.extend(values)
    return argv


# --- the key ------------------------------------------------------------------------------------


def gpu_identity(gpus, tensor_parallel_size=1):
    """``(gpu model, driver version)`` from the ``gpufleet_gpus`` facts (``host_facts.gather_gpus``).

    Raises TrtllmEngineError when nvidia-smi did not answer, when there are fewer GPUs than
    ``tensor_parallel_size``, or when the GPUs are of more than one model (an engine is built for one).
    """
    gpus = gpus or {}
    if gpus.get("source") != "nvidia-smi" or not gpus.get("gpus"):
        why = gpus.get("driver_error") or "nvidia-smi is not installed or reports no GPU"
        raise TrtllmEngineError(
            "a TensorRT-LLM engine is built for the GPU it runs on, and nvidia-smi did not report one "
            f"({why})"
        )
    names = sorted({str(g.get("name")) for g in gpus["gpus"]})
    if len(names) != 1:
        raise TrtllmEngineError(
            f"this host has GPUs of more than one model ({', '.join(names)}); "
            "an engine is built for one model"
        )
    if len(gpus["gpus"]) < int(tensor_parallel_size):
        raise TrtllmEngineError(
            f"tensor_parallel_size {tensor_parallel_size} needs that many GPUs; "
            f"this host has {len(gpus['gpus'])}"
        )
    if not gpus.get("driver_version"):
        raise TrtllmEngineError("nvidia-smi did not report the driver version")
    return names[0], str(gpus["driver_version"])


def parse_runtime_versions(text, env):
    """``{"tensorrt_llm", "tensorrt"}`` from ``VERSION_PROBE``'s output; TrtllmEngineError when one
    is missing (the environment has no TensorRT-LLM)."""
    try:
        versions = json.loads((text or "").strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise TrtllmEngineError(
            f"the version probe of {env} printed no JSON: {output_tail(text) or 'nothing'}"
        ) from None
    if not isinstance(versions, dict):
        raise TrtllmEngineError(f"the version probe of {env} printed {versions!r}")
    missing = [n for n in ("tensorrt_llm", "tensorrt") if not versions.get(n)]
    if missing:
        raise TrtllmEngineError(
            f"{' and '.join(missing)} not installed in the environment {env}: the legacy engine flow needs "
            "the TensorRT-LLM wheel from the bundle (python_runtime_envs)"
        )
    return {"tensorrt_llm": str(versions["tensorrt_llm"]), "tensorrt": str(versions["tensorrt"])}


def file_sha256(path, what):
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(block)
    except OSError as exc:
        raise TrtllmEngineError(f"{what} {path} cannot be read: {exc.strerror}") from None
    return digest.hexdigest()


def manifest_digest(model_dir):
    """sha256 of the signed manifest a model store version was made from (its ``MANIFEST_COPY``)."""
    return file_sha256(
        os.path.join(model_dir, MANIFEST_COPY),
        f"the model manifest copy (is {model_dir} a version in the model store?)",
    )


def key_inputs(
    gpu_model, driver_version, versions, manifest_sha256, tensor_parallel_size, convert_script_sha256,
    convert_args=None, build_args=None,
):  # fmt: skip
    """What an engine depends on, as the JSON-ready mapping the key is the hash of."""
    return {
        "format": KEY_FORMAT,
        "format_version": KEY_FORMAT_VERSION,
        "gpu_model": str(gpu_model),
        "driver_version": str(driver_version),
        "tensorrt_llm_version": str(versions["tensorrt_llm"]),
        "tensorrt_version": str(versions["tensorrt"]),
        "model_manifest_sha256": str(manifest_sha256),
        "tensor_parallel_size": int(tensor_parallel_size),
        "convert_script_sha256": str(convert_script_sha256),
        "convert_args": normalize_args(convert_args, "convert_args", CONVERT_RESERVED),
        "build_args": normalize_args(build_args, "build_args", BUILD_RESERVED),
    }


def canonical(inputs):
    return json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def cache_key(inputs):
    """sha256 (hex) over the canonical JSON of ``key_inputs``."""
    return hashlib.sha256(canonical(inputs)).hexdigest()


# --- commands -----------------------------------------------------------------------------------


def build_commands(env, convert_script, model_dir, workdir, inputs):
    """``[(name, argv), ...]``: the two commands of the flow, building into ``workdir``."""
    bin_dir = os.path.join(str(env), "bin")
    checkpoint = os.path.join(workdir, CHECKPOINT)
    convert = [os.path.join(bin_dir, "python"), str(convert_script), "--model_dir", str(model_dir)]
    convert += ["--output_dir", checkpoint, "--tp_size", str(inputs["tensor_parallel_size"])]
    build = [os.path.join(bin_dir, "trtllm-build"), "--checkpoint_dir", checkpoint]
    build += ["--output_dir", os.path.join(workdir, ENGINE)]
    return [
        ("convert_checkpoint", convert + args_argv(inputs["convert_args"])),
        ("trtllm-build", build + args_argv(inputs["build_args"])),
    ]


# --- the cache ----------------------------------------------------------------------------------


def entry_dir(cache, key):
    if not _KEY.fullmatch(key):
        raise TrtllmEngineError(f"{key!r} is not an engine key")
    return os.path.join(cache, key)


def is_complete(cache, key):
    """True when ``KEY/`` is a whole entry; False when absent. TrtllmEngineError for a ``KEY/`` that
    exists without the marker: not gpufleet's (an entry only ever appears whole), never replaced."""
    path = entry_dir(cache, key)
    if not os.path.lexists(path):
        return False
    try:
        with open(os.path.join(path, MARKER), encoding="utf-8") as handle:
            marked = handle.read().strip()
    except OSError:
        marked = None
    if marked == key and os.path.isfile(os.path.join(path, ENGINE, "config.json")):
        return True
    raise TrtllmEngineError(
        f"{path} exists but is not a complete engine of this cache (no {MARKER} naming its key, or no "
        f"{ENGINE}/config.json); gpufleet does not replace what it did not make: move it away"
    )


def leftovers(cache):
    """The directories of builds that never finished (killed runs): gpufleet's own names only."""
    try:
        names = os.listdir(cache)
    except FileNotFoundError:
        return []
    return sorted(
        os.path.join(cache, n)
        for n in names
        if n.startswith(TEMP_PREFIX) and os.path.isdir(os.path.join(cache, n))
        and not os.path.islink(os.path.join(cache, n))
    )  # fmt: skip


@contextlib.contextmanager
def locked(cache):
    """Hold the cache's lock: one run at a time builds, cleans or looks (a leftover is then surely
    not another run's build in progress)."""
    makedirs(cache)
    fd = os.open(os.path.join(cache, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _check_engine(engine):
    names = os.listdir(engine) if os.path.isdir(engine) else []
    if "config.json" not in names or not any(n.endswith(".engine") for n in names):
        raise TrtllmEngineError(
            f"trtllm-build exited 0 but {engine} holds no config.json and rank<N>.engine "
            f"(found: {', '.join(sorted(names)) or 'nothing'})"
        )


def _write(path, data):
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, 0o644)


def _fail(name, argv, rc, out, err, timeout):
    if timeout and rc == TIMEOUT_EXIT:
        why = f"did not finish within {timeout} seconds"
    else:
        why = f"exited with status {rc}"
    tail = output_tail(err, out) or "(no output)"
    return TrtllmEngineError(
        f"{name} {why}; nothing was cached. Command: {' '.join(argv)}\nOutput (tail):\n{tail}"
    )


def build(cache, key, inputs, env, convert_script, model_dir, run, timeout=0):
    """Build the engine of ``key`` into the cache, unless it is there. Call under ``locked(cache)``.

    ``run(argv, cwd)`` runs a command and returns ``(rc, stdout, stderr)``. Returns ``{"built": bool,
    "removed": [leftover directories removed], "commands": [argv, ...] run}``. A failing command
    raises TrtllmEngineError naming it, with its output's tail, after its directory is removed.
    """
    removed = []
    for path in leftovers(cache):
        shutil.rmtree(path)
        removed.append(path)
    if is_complete(cache, key):
        return {"built": False, "removed": removed, "commands": []}
    work = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{key[:16]}-", dir=cache)
    ran = []
    try:
        for name, argv in build_commands(env, convert_script, model_dir, work, inputs):
            ran.append(argv)
            rc, out, err = run(argv, work)
            if rc != 0:
                raise _fail(name, argv, rc, out, err, timeout)
        _check_engine(os.path.join(work, ENGINE))
        # the converted checkpoint is as large as the weights and serves nothing once built
        shutil.rmtree(os.path.join(work, CHECKPOINT), ignore_errors=True)
        record = {
            "key": key,
            "inputs": inputs,
            "model_dir": str(model_dir),
            "convert_script": str(convert_script),
            "commands": ran,
        }
        _write(os.path.join(work, KEY_FILE), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
        _write(os.path.join(work, MARKER), (key + "\n").encode())  # last: the entry is whole
        fsync_dir(work)
        os.chmod(work, DIR_MODE)
        os.rename(work, entry_dir(cache, key))
        fsync_dir(cache)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {"built": True, "removed": removed, "commands": ran}
