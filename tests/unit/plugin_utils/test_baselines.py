"""Per-SKU baselines: data shape, nvidia-smi name mapping, override validation and judging."""

import math

import pytest
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import baselines as B

SKUS = ["A100 SXM 80GB", "H100 SXM", "H100 PCIe", "H100 NVL", "H200", "L40S"]


# --- data ----------------------------------------------------------------------------------------


def test_every_sku_has_every_metric_key():
    assert list(B.BASELINES) == SKUS
    for sku, metrics in B.BASELINES.items():
        assert set(metrics) == set(B.METRICS), sku


def test_rows_are_well_formed_and_cited():
    for sku, metrics in B.BASELINES.items():
        for metric, row in metrics.items():
            if row is None:
                continue
            assert set(row) == {"theoretical", "expected", "warn_ratio", "fail_ratio", "unit", "source"}
            assert row["unit"] == B.METRICS[metric], (sku, metric)
            assert row["source"].startswith(("ref: ", "https://")), (sku, metric)
            assert 0 < row["fail_ratio"] <= row["warn_ratio"] <= 1
            assert row["expected"] is not None or row["theoretical"] is not None
            if row["expected"] is not None and row["theoretical"] is not None:
                assert row["expected"] <= row["theoretical"]


def test_figures_from_facts():
    assert B.BASELINES["H100 SXM"]["bf16_tflops"]["theoretical"] == 989
    assert B.BASELINES["H100 SXM"]["bf16_tflops"]["expected"] == 794
    assert B.BASELINES["A100 SXM 80GB"]["h2d_gbps"]["expected"] == 21
    assert B.BASELINES["H200"]["allreduce_busbw_gbps"]["expected"] == 431
    assert B.BASELINES["H200"]["ib_write_bw_gbps"]["expected"] == 360
    assert B.BASELINES["H100 NVL"]["nvlink_active_links"]["expected"] == 12
    assert B.BASELINES["L40S"]["mem_bw_tbps"]["theoretical"] == 0.86


def test_unverified_figures_are_left_out():
    assert B.BASELINES["H100 NVL"]["bf16_tflops"] is None
    assert B.BASELINES["H100 NVL"]["mem_bw_tbps"] is None
    assert B.BASELINES["L40S"]["nvlink_active_links"] is None
    assert B.BASELINES["H100 PCIe"]["bf16_tflops"]["expected"] is None


# --- sku_for -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sku"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM 80GB"),
        ("NVIDIA L40S", "L40S"),
        ("  nvidia   h100 80gb hbm3 ", "H100 SXM"),
        ("H100 SXM", "H100 SXM"),
        ("l40s", "L40S"),
    ],
)
def test_sku_for_known(name, sku):
    assert B.sku_for(name) == sku


@pytest.mark.parametrize(
    "name", ["NVIDIA A100-SXM4-40GB", "NVIDIA H200 NVL", "Tesla P100-PCIE-16GB", "", None, 42, "NVIDIA H100"]
)
def test_sku_for_unknown(name):
    assert B.sku_for(name) is None


# --- load_overrides -------------------------------------------------------------------------------


def test_load_overrides_good():
    data = {"H100 SXM": {"bf16_tflops": {"expected": 780, "warn_ratio": 0.95, "fail_ratio": 0.9}}}
    assert B.load_overrides(data) == {
        "H100 SXM": {"bf16_tflops": {"expected": 780.0, "warn_ratio": 0.95, "fail_ratio": 0.9}}
    }
    assert B.load_overrides(None) == {}
    assert B.load_overrides({}) == {}
    assert B.load_overrides({"L40S": {}}) == {}
    # idempotent: already-validated overrides validate again to the same thing
    assert B.load_overrides(B.load_overrides(data)) == B.load_overrides(data)


def test_load_overrides_metric_without_builtin_row():
    assert B.load_overrides({"H100 NVL": {"bf16_tflops": {"expected": 700}}}) == {
        "H100 NVL": {"bf16_tflops": {"expected": 700.0}}
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1], "baselines: must be a mapping of SKU name to metrics"),
        ({"H100 SXM": 5}, "baselines.H100 SXM: must be a mapping of metric name to settings"),
        ({"H100 SXM": {"bf16_tflops": 5}}, "baselines.H100 SXM.bf16_tflops: must be a mapping of expected"),
        (
            {"H100 SXM": {"bf16_tflops": {"fail_ratio": 1.5}}},
            "baselines.H100 SXM.bf16_tflops.fail_ratio: must be a number between 0 and 1",
        ),
        (
            {"H100 SXM": {"bf16_tflops": {"fail_ratio": 0}}},
            "baselines.H100 SXM.bf16_tflops.fail_ratio: must be a number between 0 and 1",
        ),
        (
            {"H200": {"mem_bw_tbps": {"warn_ratio": "0.9"}}},
            "baselines.H200.mem_bw_tbps.warn_ratio: must be a number between 0 and 1",
        ),
        (
            {"H200": {"mem_bw_tbps": {"warn_ratio": True}}},
            "baselines.H200.mem_bw_tbps.warn_ratio: must be a number between 0 and 1",
        ),
        (
            {"H200": {"mem_bw_tbps": {"expected": -1}}},
            "baselines.H200.mem_bw_tbps.expected: must be a positive number",
        ),
        (
            {"H200": {"mem_bw_tbps": {"expected": math.nan}}},
            "baselines.H200.mem_bw_tbps.expected: must be a positive number",
        ),
        (
            {"H200": {"mem_bw_tbps": {"expected": None}}},
            "baselines.H200.mem_bw_tbps.expected: must be a positive number",
        ),
        (
            {"H200": {"mem_bw_tbps": {"expcted": 4}}},
            "baselines.H200.mem_bw_tbps.expcted: unknown field; known: expected, warn_ratio, fail_ratio",
        ),
        (
            {"H200": {"mem_bw": {"expected": 4}}},
            "baselines.H200.mem_bw: unknown metric; known: bf16_tflops, mem_bw_tbps, h2d_gbps, "
            "allreduce_busbw_gbps, nvlink_active_links, ib_write_bw_gbps",
        ),
        (
            {"B200": {}},
            "baselines.B200: unknown SKU; known: A100 SXM 80GB, H100 SXM, H100 PCIe, H100 NVL, H200, L40S",
        ),
        (
            {"H100 SXM": {"bf16_tflops": {"warn_ratio": 0.7}}},
            "baselines.H100 SXM.bf16_tflops.warn_ratio: must be at least fail_ratio (0.8), got 0.7",
        ),
        (
            {"H100 SXM": {"bf16_tflops": {"warn_ratio": 0.5, "fail_ratio": 0.6}}},
            "baselines.H100 SXM.bf16_tflops.warn_ratio: must be at least fail_ratio (0.6), got 0.5",
        ),
    ],
)
def test_load_overrides_bad(data, message):
    with pytest.raises(ValueError) as excinfo:
        B.load_overrides(data)
    assert str(excinfo.value).startswith(message)


# --- baseline / judge -------------------------------------------------------------------------------


def test_baseline_plain_and_overridden():
    assert B.baseline("H100 SXM", "bf16_tflops") == B.BASELINES["H100 SXM"]["bf16_tflops"]
    assert B.baseline("H100 NVL", "bf16_tflops") is None
    row = B.baseline("H100 SXM", "bf16_tflops", {"H100 SXM": {"bf16_tflops": {"expected": 780}}})
    assert row["expected"] == 780.0 and row["theoretical"] == 989
    assert row["source"].startswith("override (baselines.H100 SXM.bf16_tflops); built-in: ref: ")
    row = B.baseline("H100 NVL", "bf16_tflops", {"H100 NVL": {"bf16_tflops": {"expected": 700}}})
    assert row["unit"] == "TFLOPS" and row["source"] == "override (baselines.H100 NVL.bf16_tflops)"


@pytest.mark.parametrize(
    ("measured", "status"),
    [
        (800, "pass"),
        (794, "pass"),
        (794 * 0.9, "pass"),
        (700, "warn"),
        (794 * 0.8, "warn"),
        (600, "fail"),
        (0, "fail"),
    ],
)
def test_judge_achieved_bands(measured, status):
    result = B.judge("H100 SXM", "bf16_tflops", measured)
    assert result["status"] == status
    assert result["expected"] == 794 and result["unit"] == "TFLOPS"
    assert result["ratio"] == round(measured / 794, 4)
    assert result["source"].startswith("ref: stas00/ml-engineering")


def test_judge_threshold_bands():
    assert B.judge("H200", "allreduce_busbw_gbps", 431)["status"] == "pass"
    assert B.judge("H200", "allreduce_busbw_gbps", 420)["status"] == "warn"
    assert B.judge("H200", "allreduce_busbw_gbps", 400)["status"] == "fail"
    result = B.judge("H200", "allreduce_busbw_gbps", 420)
    assert result["reason"] == (
        "measured 420 GB/s is 97% of expected 431 GB/s (warn below 100%, fail below 95%)"
    )


def test_judge_nvlink_count_nvl_by_design():
    assert B.judge("H100 NVL", "nvlink_active_links", 12)["status"] == "pass"
    assert B.judge("H100 NVL", "nvlink_active_links", 11)["status"] == "fail"
    assert B.judge("H100 SXM", "nvlink_active_links", 12)["status"] == "fail"
    assert B.judge("H100 SXM", "nvlink_active_links", 18)["status"] == "pass"


def test_judge_unknown_sku_skips_with_reason():
    result = B.judge(None, "bf16_tflops", 500)
    assert result["status"] == "skip"
    assert result["reason"].startswith("unknown GPU SKU None; known: A100 SXM 80GB")
    assert B.judge("B200", "bf16_tflops", 500)["status"] == "skip"


def test_judge_no_baseline_skips_never_passes():
    result = B.judge("H100 NVL", "bf16_tflops", 5000)
    assert result["status"] == "skip" and result["expected"] is None and result["ratio"] is None
    assert result["reason"] == (
        "no expected bf16_tflops figure for H100 NVL; set baselines.H100 NVL.bf16_tflops.expected to judge it"
    )
    result = B.judge("H100 PCIe", "bf16_tflops", 700)
    assert result["status"] == "skip"
    assert "(theoretical 756 TFLOPS is not a pass mark)" in result["reason"]
    assert result["source"].startswith("ref: ")


def test_judge_with_override_makes_it_judgeable():
    overrides = {"H100 PCIe": {"bf16_tflops": {"expected": 600}}}
    result = B.judge("H100 PCIe", "bf16_tflops", 590, overrides)
    assert (result["status"], result["expected"]) == ("pass", 600.0)
    assert result["source"].startswith("override (baselines.H100 PCIe.bf16_tflops)")
    strict = {"H100 SXM": {"bf16_tflops": {"warn_ratio": 0.99, "fail_ratio": 0.95}}}
    assert B.judge("H100 SXM", "bf16_tflops", 780, strict)["status"] == "warn"


@pytest.mark.parametrize("measured", [None, "800", True, math.nan, math.inf])
def test_judge_bad_measurement_fails(measured):
    result = B.judge("H100 SXM", "bf16_tflops", measured)
    assert result["status"] == "fail"
    assert result["reason"].startswith("no valid measured value")
    assert result["ratio"] is None and result["expected"] == 794


def test_judge_unknown_metric_and_bad_overrides_raise():
    with pytest.raises(ValueError, match="unknown metric 'tflops'; known: bf16_tflops"):
        B.judge("H100 SXM", "tflops", 1)
    with pytest.raises(ValueError, match=r"baselines\.H100 SXM\.bf16_tflops\.fail_ratio: must be"):
        B.judge("H100 SXM", "bf16_tflops", 1, {"H100 SXM": {"bf16_tflops": {"fail_ratio": 2}}})


# --- all-reduce per GPU count and interconnect; inference per model and GPU (issue 18) -------------


def test_healthy_4_gpu_h200_ring_passes_its_own_row_not_the_8_gpu_nvls_one():
    ring4 = B.allreduce_config(4, "ring")
    assert B.judge("H200", "allreduce_busbw_gbps", 363.0, config=ring4)["status"] == "pass"
    assert (
        B.judge("H200", "allreduce_busbw_gbps", 363.0, config=B.allreduce_config(8, "nvls"))["status"]
        == "fail"
    )
    low = B.judge("H200", "allreduce_busbw_gbps", 250.0, config=ring4)
    assert low["status"] == "fail" and low["expected"] == 363 and "issue 18" in low["source"]


def test_h100_ring_and_nvls_rows_are_sourced():
    ring = B.baseline("H100 SXM", "allreduce_busbw_gbps", config=B.allreduce_config(8, "ring"))
    nvls = B.baseline("H100 SXM", "allreduce_busbw_gbps", config=B.allreduce_config(8, "nvls"))
    assert ring["expected"] == 370 and "nccl-tests #212" in ring["source"]
    assert nvls["expected"] == 460 and "azurehpc" in nvls["source"]


def test_allreduce_configuration_without_a_row_is_measured_not_judged():
    res = B.judge("H200", "allreduce_busbw_gbps", 300.0, config=B.allreduce_config(4, "nvls"))
    assert res["status"] == "skip" and "(4 GPUs, nvls)" in res["reason"]
    assert res["measured"] == 300.0


def test_allreduce_override_applies_to_the_sites_configuration():
    res = B.judge(
        "H200",
        "allreduce_busbw_gbps",
        300.0,
        {"H200": {"allreduce_busbw_gbps": {"expected": 310}}},
        config=B.allreduce_config(4, "nvls"),
    )
    assert res["status"] == "pass" and res["source"].startswith("override")


@pytest.mark.parametrize(("gpus", "interconnect"), [(1, "ring"), ("8", "ring"), (8, "tree"), (True, "ring")])
def test_allreduce_config_bad(gpus, interconnect):
    with pytest.raises(ValueError, match="all-reduce configuration"):
        B.allreduce_config(gpus, interconnect)


def test_sustained_row_follows_the_burst_row_with_its_own_ratios():
    burst = B.baseline("H100 SXM", "bf16_tflops")
    sustained = B.baseline("H100 SXM", "sustained_bf16_tflops")
    assert sustained["expected"] == burst["expected"]
    assert (sustained["warn_ratio"], sustained["fail_ratio"]) == B.SUSTAINED
    assert B.judge("H100 SXM", "sustained_bf16_tflops", 700)["status"] == "pass"  # 88%: above 85%
    assert B.judge("H100 SXM", "bf16_tflops", 700)["status"] == "warn"


def test_inference_without_a_baseline_is_measured_not_judged():
    res = B.judge_inference("llama-3.1-8b", "H100 SXM", 2400.0, None)
    assert res["status"] == "skip" and res["measured"] == 2400.0
    assert "gpufleet_inference_baselines.llama-3.1-8b.H100 SXM.expected" in res["reason"]


def test_inference_judged_per_model_and_gpu():
    table = {"llama-3.1-8b": {"H100 SXM": {"expected": 2500, "source": "our node17, 2026-10"}}}
    assert B.judge_inference("llama-3.1-8b", "H100 SXM", 2400.0, table)["status"] == "pass"
    low = B.judge_inference("llama-3.1-8b", "H100 SXM", 1500.0, table)
    assert low["status"] == "fail" and "our node17" in low["source"]
    assert B.judge_inference("llama-3.1-8b", "H200", 2400.0, table)["status"] == "skip"
    assert B.judge_inference("other", "H100 SXM", 2400.0, table)["status"] == "skip"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "gpufleet_inference_baselines: must be a mapping"),
        ({"m": {"B300": {"expected": 1}}}, "gpufleet_inference_baselines.m.B300: unknown SKU"),
        (
            {"m": {"H200": {"expected": 0}}},
            "gpufleet_inference_baselines.m.H200.expected: must be a positive",
        ),
        (
            {"m": {"H200": {"expected": 5, "tokens": 1}}},
            "gpufleet_inference_baselines.m.H200.tokens: unknown field",
        ),
        (
            {"m": {"H200": {"expected": 5, "warn_ratio": 0.5}}},
            "gpufleet_inference_baselines.m.H200.warn_ratio",
        ),
    ],
)
def test_inference_baselines_bad(data, message):
    with pytest.raises(ValueError) as excinfo:
        B.load_inference_baselines(data)
    assert str(excinfo.value).startswith(message)
