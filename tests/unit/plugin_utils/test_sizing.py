"""Sizing (gpufleet plan's arithmetic): parameters, weights, KV cache and the chosen layout for the
Done-when cases, checked against published figures (facts.md, "Sizing")."""

import copy
import json

import pytest
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import baselines, sizing, sizing_model
from conftest import FIXTURES

MODELS = FIXTURES / "models"


def config(name):
    return json.loads((MODELS / name / "config.json").read_text())


def params(name):
    return sizing_model.parameters(sizing_model.architecture(config(name)))


def within(value, published, tolerance):
    return abs(value - published) / published <= tolerance


# --- parameters, weights, KV -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "published"), [("llama-3.1-8b", 8.03e9), ("llama-3.1-70b", 70.6e9), ("deepseek-v3", 671e9)]
)
def test_parameter_counts_are_within_one_percent_of_published(name, published):
    assert within(params(name)["total"], published, 0.01)


def test_deepseek_v3_active_parameters():
    # Published "37B activated" is two significant figures; counting embeddings and lm_head gives 37.55B.
    counts = params("deepseek-v3")
    assert within(counts["active"], 37e9, 0.02)
    assert counts["n_moe"] == 58 and counts["n_dense"] == 3


def test_dense_model_has_no_active_figure():
    assert "active_parameters" not in sizing.plan(config("llama-3.1-8b"), "H100 SXM")["figures"]


@pytest.mark.parametrize(
    ("name", "kv_dtype", "expected"),
    [
        ("llama-3.1-8b", "bf16", 128 * 1024),
        ("llama-3.1-70b", "bf16", 320 * 1024),
        ("llama-3.1-70b", "fp8", 160 * 1024),
        ("deepseek-v3", "bf16", 61 * (512 + 64) * 2),
    ],
)
def test_kv_cache_per_token(name, kv_dtype, expected):
    total, how = sizing_model.kv_per_token(sizing_model.architecture(config(name)), kv_dtype)
    assert total == expected
    assert "MLA latent" in how if name == "deepseek-v3" else "2 (K and V) x" in how


def test_kv_how_spells_the_product():
    _total, how = sizing_model.kv_per_token(sizing_model.architecture(config("llama-3.1-70b")), "bf16")
    assert how == "2 (K and V) x 80 layers x 8 KV heads x 128 head dim x 2 B (bf16) = 320 KiB/token"


def test_weights_by_dtype():
    report = sizing.plan(config("llama-3.1-70b"), "H100 SXM")
    assert within(report["figures"]["weights"]["value"], 141e9, 0.01)  # facts.md: 141 GB bf16
    int4 = sizing.plan(config("llama-3.1-70b"), "H100 SXM", dtype="int4")["figures"]["weights"]
    assert 35e9 < int4["value"] < 42e9 and "128-weight group" in int4["how"]
    awq = sizing.plan(config("llama-3.1-70b-instruct-awq-int4"), "H100 SXM")
    assert awq["request"]["dtype"] == "int4" and awq["request"]["kv_dtype"] == "fp16"
    assert awq["figures"]["weights"]["value"] == pytest.approx(int4["value"])
    ds = sizing.plan(config("deepseek-v3"), "H100 SXM")["figures"]["weights"]
    assert 670e9 < ds["value"] < 676e9 and "128 x 128 block" in ds["how"]


# --- the chosen layout (Done-when cases, H100 SXM 80GB, 8k context x 16 sequences) -----------------


@pytest.mark.parametrize(
    ("name", "dtype", "tp", "pp", "nodes"),
    [
        ("llama-3.1-8b", None, 1, 1, 1),
        ("llama-3.1-70b", None, 4, 1, 1),
        ("llama-3.1-70b", "int4", 2, 1, 1),
        ("llama-3.1-70b-instruct-awq-int4", None, 2, 1, 1),
        ("deepseek-v3", None, 8, 2, 2),
    ],
)
def test_done_when_layouts(name, dtype, tp, pp, nodes):
    report = sizing.plan(config(name), "H100 SXM", dtype=dtype)
    assert report["fits"] and report["problems"] == []
    assert (report["tensor_parallel_size"], report["pipeline_parallel_size"], report["nodes"]) == (
        tp,
        pp,
        nodes,
    )
    assert report["figures"]["need_per_gpu"]["value"] <= report["figures"]["budget_per_gpu"]["value"]
    assert report["max_concurrency"] >= 16
    for fig in report["figures"].values():
        assert fig["how"] and fig["text"]


def test_deepseek_v3_does_not_fit_one_node():
    report = sizing.plan(config("deepseek-v3"), "H100 SXM", max_nodes=1)
    assert not report["fits"]
    (problem,) = report["problems"]
    assert "TP 8 x PP 1" in problem and "72.00 GB" in problem and "--max-nodes 1" in problem


def test_70b_bf16_needs_tp4_because_tp2_is_over_budget():
    tried = sizing.plan(config("llama-3.1-70b"), "H100 SXM")["tried"]
    assert [t["tp"] for t in tried] == [1, 2, 4]
    assert tried[1]["need"] > 72e9 >= tried[2]["need"]


def test_gpu_memory_is_known_for_every_baseline_sku():
    assert set(baselines.MEMORY_GB) == set(baselines.BASELINES)
    assert sizing.gpu_memory("nvidia h100 80gb hbm3") == ("H100 SXM", 80e9)
    assert sizing.gpu_memory("h200") == ("H200", 141e9)


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpu": "B300"}, "--gpu 'B300' is not a known GPU SKU; use one of: A100 SXM 80GB, H100 SXM"),
        ({"dtype": "int3"}, "--dtype 'int3' is not known"),
        ({"kv_dtype": "int4"}, "--kv-dtype 'int4' is not known"),
        ({"context": 200000}, "--context 200000 is above the model's max_position_embeddings (131072)"),
        ({"concurrency": 0}, "--concurrency must be a positive integer"),
        ({"gpu_memory_utilization": 1.5}, "--gpu-memory-utilization must be a number in (0, 1]"),
    ],
)
def test_bad_options_name_the_option(kwargs, message):
    args = {"gpu": "H100 SXM", **kwargs}
    with pytest.raises(ValueError) as info:
        sizing.plan(config("llama-3.1-8b"), **args)
    assert message in str(info.value)


def test_config_without_a_key_says_which():
    broken = copy.deepcopy(config("llama-3.1-8b"))
    del broken["num_hidden_layers"]
    with pytest.raises(ValueError, match=r"config\.json has no num_hidden_layers"):
        sizing.plan(broken, "H100 SXM")


def test_unknown_quantization_method_asks_for_dtype():
    odd = dict(config("llama-3.1-8b"), quantization_config={"quant_method": "bitnet"})
    with pytest.raises(ValueError, match="pass --dtype"):
        sizing.plan(odd, "H100 SXM")
    assert sizing.plan(odd, "H100 SXM", dtype="int4")["fits"]


# --- plan_problems (the serving preflight's view) ---------------------------------------------------


def test_plan_problems_empty_when_it_fits_and_numbers_when_not():
    assert sizing.plan_problems(config("llama-3.1-70b"), "H100 SXM", tensor_parallel_size=4) == []
    (problem,) = sizing.plan_problems(config("llama-3.1-70b"), "H100 SXM", tensor_parallel_size=2)
    assert "TP 2 x PP 1" in problem and "95.19 GB" in problem and "72.00 GB" in problem
    assert "the layout asked for" in problem


def test_plan_problems_never_raises():
    assert sizing.plan_problems("not a dict", "H100 SXM") == [
        "cannot size the model: config.json must hold a JSON object"
    ]
    (problem,) = sizing.plan_problems(config("llama-3.1-8b"), "H100 SXM", tensor_parallel_size=3)
    assert "tensor_parallel_size 3 is not usable" in problem
