"""The TensorRT-LLM engine cache key (module_utils/trtllm_engine.py): what it holds, what it ignores."""

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import trtllm_engine as te
from ansible_collections.gpufleet.cluster.plugins.module_utils.nvidia_smi import parse_nvidia_smi_xml
from conftest import FIXTURES

BASE = {
    "gpu_model": "NVIDIA H100 80GB HBM3",
    "driver_version": "550.54.15",
    "versions": {"tensorrt_llm": "1.2.1", "tensorrt": "10.13.2.6"},
    "manifest_sha256": "a" * 64,
    "tensor_parallel_size": 2,
    "convert_script_sha256": "b" * 64,
    "convert_args": {"dtype": "bfloat16"},
    "build_args": {
        "gemm_plugin": "auto",
        "max_batch_size": 8,
        "max_seq_len": 8192,
        "multiple_profiles": "enable",
    },
}


def key(**changes):
    return te.cache_key(te.key_inputs(**{**BASE, **changes}))


@pytest.mark.parametrize(
    "changes",
    [
        {"gpu_model": "NVIDIA H200"},
        {"driver_version": "550.54.14"},
        {"versions": {"tensorrt_llm": "1.2.2", "tensorrt": "10.13.2.6"}},
        {"versions": {"tensorrt_llm": "1.2.1", "tensorrt": "10.13.3.9"}},
        {"manifest_sha256": "c" * 64},
        {"tensor_parallel_size": 4},
        {"convert_script_sha256": "d" * 64},
        {"convert_args": {"dtype": "float16"}},
        {"build_args": {**BASE["build_args"], "max_batch_size": 16}},
        {"build_args": {**BASE["build_args"], "workers": 2}},
        {"build_args": {k: v for k, v in BASE["build_args"].items() if k != "gemm_plugin"}},
    ],
    ids=[
        "gpu",
        "driver",
        "trtllm",
        "tensorrt",
        "manifest",
        "tp",
        "script",
        "convert-arg",
        "build-value",
        "build-added",
        "build-removed",
    ],
)
def test_the_key_changes_when_any_one_input_changes(changes):
    assert key(**changes) != key()


def test_the_key_does_not_depend_on_how_the_build_args_are_written():
    reordered = dict(reversed(list(BASE["build_args"].items())))
    spelled = {
        "--max_seq_len": "8192",
        "--max_batch_size": "8",
        "gemm_plugin": "auto",
        "multiple_profiles": "enable",
        "use_fp8_context_fmha": False,  # false: left out, as if not given
    }
    assert key(build_args=reordered) == key(build_args=spelled) == key()


def test_a_flag_and_several_values_become_arguments_in_order():
    normalized = te.normalize_args(
        {"strongly_typed": True, "lora_target_modules": ["attn_q", "attn_k"], "x": None}
    )
    assert normalized == [["lora_target_modules", ["attn_q", "attn_k"]], ["strongly_typed", []]]
    assert te.args_argv(normalized) == ["--lora_target_modules", "attn_q", "attn_k", "--strongly_typed"]


@pytest.mark.parametrize(
    "args, message",
    [
        ({"output_dir": "/tmp/x"}, "output_dir is set by gpufleet"),
        ({"max_batch_size": 8, "--max_batch_size": 8}, "max_batch_size is given twice"),
        ({"a b": 1}, "is not an option name"),
        ({"plugins": {"gemm": "auto"}}, "not text or a number"),
        (["--max_batch_size", "8"], "must be a mapping"),
    ],
)
def test_arguments_that_cannot_be_keyed_are_refused(args, message):
    with pytest.raises(te.TrtllmEngineError, match=message):
        te.normalize_args(args)


def test_the_gpu_and_driver_come_from_the_gpu_facts():
    report = parse_nvidia_smi_xml((FIXTURES / "nvidia_smi" / "tesla-t4.xml").read_text())
    facts = {"source": "nvidia-smi", "driver_version": report["driver_version"], "gpus": report["gpus"]}
    assert te.gpu_identity(facts) == ("Tesla T4", "515.105.01")
    with pytest.raises(te.TrtllmEngineError, match="needs that many GPUs; this host has 1"):
        te.gpu_identity(facts, tensor_parallel_size=2)
    mixed = {**facts, "gpus": [*report["gpus"], {**report["gpus"][0], "name": "NVIDIA L4"}]}
    with pytest.raises(te.TrtllmEngineError, match="more than one model"):
        te.gpu_identity(mixed)
    with pytest.raises(te.TrtllmEngineError, match="driver not loaded"):
        te.gpu_identity({"source": "pci", "gpus": report["gpus"], "driver_error": "driver not loaded"})


@pytest.mark.parametrize(
    "out, message",
    [
        ('{"tensorrt_llm": null, "tensorrt": "10.13.2.6"}', "tensorrt_llm not installed"),
        ('{"tensorrt_llm": "1.2.1", "tensorrt": null}', "tensorrt not installed"),
        ("Traceback (most recent call last)", "printed no JSON"),
    ],
)
def test_an_environment_without_the_runtime_is_refused(out, message):
    with pytest.raises(te.TrtllmEngineError, match=message):
        te.parse_runtime_versions(out, "/opt/env")
