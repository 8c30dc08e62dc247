# Copyright: gpufleet developers
# Apache-2.0
"""Per-GPU-SKU performance baselines, as data, and the one function that judges a measurement.

Controller code (plugin_utils): runs in filters and the CLI, never on managed hosts. ``sku_for`` maps an
``nvidia-smi`` product name to a SKU; ``load_overrides`` validates a user's ``baselines`` override; ``judge``
compares one measured value with the (possibly overridden) baseline and returns a typed result. ``judge``
never passes without a baseline: an unknown SKU or a metric without an ``expected`` figure is ``skip`` with
the reason; a missing or non-numeric measurement is ``fail``.

Each metric row: ``theoretical`` (the datasheet peak, for context only, never a pass mark),
``expected`` (the figure a healthy GPU reaches), ``warn_ratio`` / ``fail_ratio`` (measured/expected
below which the result is warn / fail), ``unit``, ``source``. A figure nobody verified is None;
a SKU with no figure at all for a metric has None instead of a row.

Figures come only from the team's reference notes (shared/reference/facts.md, outside this
repository; written "ref: <the source those notes name>") or from a page read while writing this
table (URL given). The ratios are gpufleet policy, not sourced figures:

- ``expected`` a typical *achieved* figure (MAMF matmul, achieved HBM copy): warn below 0.90, fail
  below 0.80; the lower end of a published range is used as ``expected``.
- ``expected`` a published *pass threshold* (azurehpc-health-checks conf): warn below 1.0 (below the
  threshold), fail below 0.95. The 5% margin is there because results fluctuate and a probe repeats
  before failing (facts.md, "Known traps").
- a link count: anything below the count fails (1.0 / 1.0).
"""

from __future__ import annotations

import math

METRICS = {
    "bf16_tflops": "TFLOPS",  # bf16 dense matmul, per GPU
    "mem_bw_tbps": "TB/s",  # device memory bandwidth, per GPU (HBM; GDDR6 on L40S)
    "h2d_gbps": "GB/s",  # host <-> device copy bandwidth, per GPU
    "allreduce_busbw_gbps": "GB/s",  # all-reduce bus bandwidth in one node: per GPU count and interconnect
    "nvlink_active_links": "links",  # NVLinks active per GPU
    "ib_write_bw_gbps": "Gb/s",  # ib_write_bw per InfiniBand port
    "sustained_bf16_tflops": "TFLOPS",  # bf16 matmul per GPU with every GPU loaded at once (burn-in)
}
FIELDS = ("expected", "warn_ratio", "fail_ratio")

ACHIEVED = (0.90, 0.80)
THRESHOLD = (1.0, 0.95)
COUNT = (1.0, 1.0)

# Sources, written once.
_ML_ENG = "ref: stas00/ml-engineering compute/accelerator/README.md"
_AZ_BENCH = "ref: Azure/AI-benchmarking-guide"
_AZ_NHC = "ref: Azure/azurehpc-health-checks conf"
_HV_NVLINK = (
    "https://docs.nvidia.com/health-validation/reference/checks/nvlink "
    "(nvlink_bandwidth_count_speed: expected_link_count 18, architectures include H100)"
)
_NVLINK_GEN = (
    "https://juejin.cn/post/7232679817128132665 (reproduces NVIDIA's NVLink table: max links per "
    "GPU Ampere 12, Hopper 18; secondary source)"
)


def _metric(theoretical, expected, ratios, unit, source):
    warn, fail = ratios
    return {
        "theoretical": theoretical,
        "expected": expected,
        "warn_ratio": warn,
        "fail_ratio": fail,
        "unit": unit,
        "source": source,
    }


BASELINES = {
    "A100 SXM 80GB": {
        "bf16_tflops": _metric(312, 271, ACHIEVED, "TFLOPS", _ML_ENG + " (peak 312; MAMF achieved 271)"),
        "mem_bw_tbps": _metric(2.0, 1.6, ACHIEVED, "TB/s", _ML_ENG + " (peak); " + _AZ_BENCH + " (1.6-1.75)"),
        "h2d_gbps": _metric(None, 21, THRESHOLD, "GB/s", _AZ_NHC + " (host<->GPU threshold 21)"),
        "allreduce_busbw_gbps": _metric(None, 228, THRESHOLD, "GB/s", _AZ_NHC + " (8-GPU busbw 228)"),
        "nvlink_active_links": _metric(None, 12, COUNT, "links", _NVLINK_GEN),
        "ib_write_bw_gbps": _metric(None, 180, THRESHOLD, "Gb/s", _AZ_NHC + " (HDR port threshold 180)"),
    },
    "H100 SXM": {
        "bf16_tflops": _metric(989, 794, ACHIEVED, "TFLOPS", _ML_ENG + " (peak 989; MAMF achieved 794)"),
        "mem_bw_tbps": _metric(3.35, 2.9, ACHIEVED, "TB/s", _ML_ENG + " (peak); " + _AZ_BENCH + " (2.9-3.2)"),
        "h2d_gbps": _metric(None, 48, THRESHOLD, "GB/s", _AZ_NHC + " (host<->GPU threshold 48)"),
        "allreduce_busbw_gbps": _metric(None, 460, THRESHOLD, "GB/s", _AZ_NHC + " (8-GPU busbw 460)"),
        "nvlink_active_links": _metric(None, 18, COUNT, "links", _HV_NVLINK),
        "ib_write_bw_gbps": _metric(None, 380, THRESHOLD, "Gb/s", _AZ_NHC + " (NDR port threshold 380)"),
    },
    "H100 PCIe": {
        # No achieved figure in facts.md: the peaks are context only, judge() skips until an
        # override sets "expected".
        "bf16_tflops": _metric(756, None, ACHIEVED, "TFLOPS", _ML_ENG + " (peak 756; no achieved figure)"),
        "mem_bw_tbps": _metric(2.0, None, ACHIEVED, "TB/s", _ML_ENG + " (peak 2.0; no achieved figure)"),
        "h2d_gbps": _metric(None, 48, THRESHOLD, "GB/s", _AZ_NHC + " (host<->GPU threshold 48)"),
        "allreduce_busbw_gbps": None,
        "nvlink_active_links": None,  # NVLink bridge is optional on PCIe cards
        "ib_write_bw_gbps": None,
    },
    "H100 NVL": {
        # Pages found for bf16 and memory bandwidth disagree with each other (gpu.blog, grokipedia):
        # left out rather than guessed.
        "bf16_tflops": None,
        "mem_bw_tbps": None,
        "h2d_gbps": None,
        "allreduce_busbw_gbps": None,
        "nvlink_active_links": _metric(
            18, 12, COUNT, "links", "ref: Known traps (H100 NVL has 12 of 18 NVLinks by design)"
        ),
        "ib_write_bw_gbps": None,
    },
    "H200": {
        "bf16_tflops": _metric(
            989,
            788,
            ACHIEVED,
            "TFLOPS",
            _ML_ENG + " (peak 989; MAMF ~H100); ref: measured on this workplace's lent H200 (~788)",
        ),
        "mem_bw_tbps": _metric(4.8, 4.0, ACHIEVED, "TB/s", _ML_ENG + " (peak); " + _AZ_BENCH + " (4.0-4.5)"),
        "h2d_gbps": _metric(None, 48, THRESHOLD, "GB/s", _AZ_NHC + " (host<->GPU threshold 48)"),
        "allreduce_busbw_gbps": _metric(None, 431, THRESHOLD, "GB/s", _AZ_NHC + " (8-GPU busbw 431)"),
        "nvlink_active_links": _metric(None, 18, COUNT, "links", _NVLINK_GEN),
        "ib_write_bw_gbps": _metric(None, 360, THRESHOLD, "Gb/s", _AZ_NHC + " (NDR port threshold 360)"),
    },
    "L40S": {
        "bf16_tflops": _metric(362, None, ACHIEVED, "TFLOPS", _ML_ENG + " (peak 362; no achieved figure)"),
        "mem_bw_tbps": _metric(
            0.86, None, ACHIEVED, "TB/s", _ML_ENG + " (peak 0.86, GDDR6; no achieved figure)"
        ),
        "h2d_gbps": None,
        "allreduce_busbw_gbps": None,
        "nvlink_active_links": None,  # no NVLink on L40S
        "ib_write_bw_gbps": None,
    },
}

# Sustained (burn-in): every GPU multiplies at once for minutes, with an all-reduce beside it. Judged
# against the same achieved-matmul figure as the burst, with wider ratios (gpufleet policy): the whole
# node's power and cooling now limit the clocks, which the one-GPU-at-a-time burst never sees.
SUSTAINED = (0.85, 0.75)
for _sku, _rows in BASELINES.items():
    _burst = _rows.get("bf16_tflops")
    _rows["sustained_bf16_tflops"] = (
        None
        if _burst is None
        else _metric(
            _burst["theoretical"],
            _burst["expected"],
            SUSTAINED,
            "TFLOPS",
            _burst["source"] + "; sustained ratios gpufleet policy (all GPUs loaded at once)",
        )
    )

# All-reduce bus bandwidth depends on how many GPUs take part and how NCCL connects them: NVLink
# SHARP (NVLS, NVSwitch systems with all 8 GPUs) or a ring. One threshold for every configuration
# failed a healthy 4-GPU ring against the 8-GPU NVLS figure. Rows per (SKU, interconnect, GPUs);
# a configuration without a row is measured and not judged. BASELINES[sku]["allreduce_busbw_gbps"]
# stays the 8-GPU row (what ``gpufleet diagnose`` judges a recorded report against without a config).
_NCCL_212 = (
    "ref: nccl-tests #212, #290 (8xH100 NVLink: ring ~370 GB/s, NVLS ~480 GB/s; "
    "https://github.com/NVIDIA/nccl-tests/issues/212: ring busbw ~370 GB/s is NVLink4's effective rate)"
)
_ISSUE18_H200 = (
    "gpufleet issue 18 (public measurements: healthy 4-GPU H200 ring ~363 GB/s; not re-read), in line "
    "with " + _NCCL_212
)
NVLS = "nvls"
RING = "ring"
INTERCONNECTS = (NVLS, RING)
ALLREDUCE = {
    ("H100 SXM", NVLS, 8): BASELINES["H100 SXM"]["allreduce_busbw_gbps"],
    ("H200", NVLS, 8): BASELINES["H200"]["allreduce_busbw_gbps"],
    ("A100 SXM 80GB", RING, 8): BASELINES["A100 SXM 80GB"]["allreduce_busbw_gbps"],  # no NVLS on A100
}
for _n in range(2, 9):  # a ring over NVSwitch: busbw is bound by each GPU's NVLink, not by the count
    ALLREDUCE[("H100 SXM", RING, _n)] = _metric(None, 370, ACHIEVED, "GB/s", _NCCL_212)
    ALLREDUCE[("H200", RING, _n)] = _metric(None, 363, ACHIEVED, "GB/s", _ISSUE18_H200)

# nvidia-smi "Product Name" (lower-cased, spaces collapsed) -> SKU. Exact names only: an unlisted
# name (A100 40GB, H200 NVL, ...) is None, never the nearest neighbour.
GPU_NAMES = {
    "nvidia a100-sxm4-80gb": "A100 SXM 80GB",
    "nvidia h100 80gb hbm3": "H100 SXM",
    "nvidia h100 pcie": "H100 PCIe",
    "nvidia h100 nvl": "H100 NVL",
    "nvidia h200": "H200",
    "nvidia l40s": "L40S",
}

# Memory per GPU in GB, as NVIDIA's product datasheets state it (A100 80GB HBM2e; H100 SXM 80GB,
# H100 PCIe 80GB, H100 NVL 94GB; H200 SXM 141GB HBM3e; L40S 48GB GDDR6). Sizing (gpufleet plan,
# plugin_utils/sizing.py) reads a figure as 10^9 bytes: the smaller reading of "GB", so a plan that
# fits on paper is not short of memory on the card (nvidia-smi reports somewhat more, e.g. about
# 81559 MiB on an H100 80GB HBM3).
MEMORY_SOURCE = "NVIDIA datasheet"
MEMORY_GB = {
    "A100 SXM 80GB": 80,
    "H100 SXM": 80,
    "H100 PCIe": 80,
    "H100 NVL": 94,
    "H200": 141,
    "L40S": 48,
}


def _known(names):
    return ", ".join(names)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def sku_for(gpu_name):
    """SKU name for an nvidia-smi product name (or a SKU name itself), else None."""
    if not isinstance(gpu_name, str):
        return None
    key = " ".join(gpu_name.split()).lower()
    if key in GPU_NAMES:
        return GPU_NAMES[key]
    for sku in BASELINES:
        if sku.lower() == key:
            return sku
    return None


def load_overrides(data):
    """Validated overrides ``{sku: {metric: {field: float}}}`` from a user ``baselines`` mapping.

    Raises ValueError naming the exact field path (``baselines.<sku>.<metric>.<field>``) and, for an
    unknown SKU, metric or field, the known ones. ``warn_ratio`` must not be below ``fail_ratio``
    once merged with the built-in row.
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("baselines: must be a mapping of SKU name to metrics")
    result = {}
    for sku, metrics in data.items():
        path = f"baselines.{sku}"
        if sku not in BASELINES:
            raise ValueError(f"{path}: unknown SKU; known: {_known(BASELINES)}")
        if not isinstance(metrics, dict):
            raise ValueError(f"{path}: must be a mapping of metric name to settings")
        for metric, fields in metrics.items():
            mpath = f"{path}.{metric}"
            if metric not in METRICS:
                raise ValueError(f"{mpath}: unknown metric; known: {_known(METRICS)}")
            if not isinstance(fields, dict):
                raise ValueError(f"{mpath}: must be a mapping of {' / '.join(FIELDS)}")
            clean = {}
            for field, value in fields.items():
                fpath = f"{mpath}.{field}"
                if field not in FIELDS:
                    raise ValueError(f"{fpath}: unknown field; known: {_known(FIELDS)}")
                if field == "expected":
                    if not _is_number(value) or value <= 0:
                        raise ValueError(f"{fpath}: must be a positive number")
                elif not _is_number(value) or not 0 < value <= 1:
                    raise ValueError(f"{fpath}: must be a number between 0 and 1")
                clean[field] = float(value)
            merged = _merge(BASELINES[sku][metric], clean)
            if merged["warn_ratio"] < merged["fail_ratio"]:
                fail, warn = merged["fail_ratio"], merged["warn_ratio"]
                raise ValueError(f"{mpath}.warn_ratio: must be at least fail_ratio ({fail:g}), got {warn:g}")
            result.setdefault(sku, {})[metric] = clean
    return result


def _merge(base, fields):
    """Built-in row (or an empty one) with override fields applied."""
    row = _metric(None, None, ACHIEVED, None, None) if base is None else dict(base)
    row.update(fields)
    return row


def allreduce_config(gpus, interconnect):
    """A validated all-reduce configuration ``{"gpus", "interconnect"}`` (ValueError on bad input)."""
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 2:
        raise ValueError(f"all-reduce configuration: gpus must be an integer of at least 2, got {gpus!r}")
    if interconnect not in INTERCONNECTS:
        known = _known(INTERCONNECTS)
        raise ValueError(
            f"all-reduce configuration: interconnect must be one of {known}, got {interconnect!r}"
        )
    return {"gpus": gpus, "interconnect": interconnect}


def config_label(config):
    return f"{config['gpus']} GPUs, {config['interconnect']}" if config else ""


def _base_row(sku, metric, config):
    if metric == "allreduce_busbw_gbps" and config is not None:
        row = ALLREDUCE.get((sku, config["interconnect"], config["gpus"]))
        return dict(row) if row is not None else None
    row = BASELINES.get(sku, {}).get(metric)
    return dict(row) if row is not None else None


def baseline(sku, metric, overrides=None, config=None):
    """The effective row for (sku, metric), overrides applied, or None when there is none.

    ``config`` (``allreduce_config``) picks the all-reduce row for that GPU count and interconnect;
    an override of ``allreduce_busbw_gbps`` is the site's figure for its own nodes and applies to
    every configuration.
    """
    fields = load_overrides(overrides).get(sku, {}).get(metric) if overrides else None
    base = _base_row(sku, metric, config)
    if not fields:
        return dict(base) if base is not None else None
    row = _merge(base, fields)
    row["unit"] = row["unit"] or METRICS[metric]
    path = f"baselines.{sku}.{metric}"
    row["source"] = f"override ({path})" + (f"; built-in: {base['source']}" if base else "")
    return row


def judge(sku, metric, measured, overrides=None, config=None):
    """Judge one measurement against its baseline.

    Returns ``{"status": "pass"|"warn"|"fail"|"skip", "sku", "metric", "measured", "expected",
    "ratio", "unit", "source", "reason"}``. ``skip`` only for an unknown SKU or no ``expected``
    figure, with the reason; a missing/non-numeric measurement with a baseline is ``fail``. An
    unknown metric name is a programming error: ValueError. Invalid overrides raise ValueError.
    ``config`` (all-reduce only): the GPU count and interconnect whose row applies.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {_known(METRICS)}")
    result = {
        "status": "skip",
        "sku": sku,
        "metric": metric,
        "measured": measured,
        "expected": None,
        "ratio": None,
        "unit": METRICS[metric],
        "source": None,
        "reason": "",
    }
    if sku not in BASELINES:
        result["reason"] = f"unknown GPU SKU {sku!r}; known: {_known(BASELINES)}"
        return result
    row = baseline(sku, metric, overrides, config)
    if row is None or row["expected"] is None:
        peak = ""
        if row is not None and row["theoretical"] is not None:
            peak = f" (theoretical {row['theoretical']:g} {row['unit']} is not a pass mark)"
            result["source"] = row["source"]
        where = f" ({config_label(config)})" if config else ""
        result["reason"] = (
            f"no expected {metric} figure for {sku}{where}{peak}; "
            f"set baselines.{sku}.{metric}.expected to judge it"
        )
        return result
    expected, unit = row["expected"], row["unit"]
    result.update({"expected": expected, "unit": unit, "source": row["source"]})
    if not _is_number(measured):
        result["status"] = "fail"
        result["reason"] = f"no valid measured value ({measured!r}); expected {expected:g} {unit}"
        return result
    ratio = measured / expected
    result["ratio"] = round(ratio, 4)
    warn, fail = row["warn_ratio"], row["fail_ratio"]
    if ratio < fail:
        result["status"] = "fail"
    elif ratio < warn:
        result["status"] = "warn"
    else:
        result["status"] = "pass"
    result["reason"] = (
        f"measured {measured:g} {unit} is {ratio:.0%} of expected {expected:g} {unit} "
        f"(warn below {warn:.0%}, fail below {fail:.0%})"
    )
    return result


# ---- inference tokens/s: per model and GPU, set by the site ----------------------------------------
# Tokens/s depend on the model, the engine and its settings as much as on the GPU, and no public
# figure fits "this model on this engine on this GPU" well enough to ship one. So there is no built-in
# row: a site sets ``gpufleet_inference_baselines`` ({model: {sku: {expected, warn_ratio, fail_ratio,
# source}}}) from its own healthy nodes; without one the figure is measured and not judged (a skip
# that carries it), never a pass.
INFERENCE_METRIC = "inference_tokens_per_s"
INFERENCE_UNIT = "tokens/s"
INFERENCE_FIELDS = ("expected", "warn_ratio", "fail_ratio", "source")


def load_inference_baselines(data):
    """Validated ``{model: {sku: row}}`` from ``gpufleet_inference_baselines``; ValueError names the field."""
    if data is None:
        return {}
    where = "gpufleet_inference_baselines"
    if not isinstance(data, dict):
        raise ValueError(f"{where}: must be a mapping of model name to {{GPU SKU: baseline}}")
    table = {}
    for model, per_sku in data.items():
        mpath = f"{where}.{model}"
        if not isinstance(model, str) or not model:
            raise ValueError(f"{where}: model names must be non-empty strings, got {model!r}")
        if not isinstance(per_sku, dict):
            raise ValueError(f"{mpath}: must be a mapping of GPU SKU to baseline")
        for sku, fields in per_sku.items():
            spath = f"{mpath}.{sku}"
            if sku not in BASELINES:
                raise ValueError(f"{spath}: unknown SKU; known: {_known(BASELINES)}")
            if not isinstance(fields, dict):
                raise ValueError(f"{spath}: must be a mapping of {' / '.join(INFERENCE_FIELDS)}")
            unknown = sorted(set(fields) - set(INFERENCE_FIELDS))
            if unknown:
                raise ValueError(f"{spath}.{unknown[0]}: unknown field; known: {_known(INFERENCE_FIELDS)}")
            expected = fields.get("expected")
            if not _is_number(expected) or expected <= 0:
                raise ValueError(f"{spath}.expected: must be a positive number")
            row = _metric(None, float(expected), ACHIEVED, INFERENCE_UNIT, None)
            for name in ("warn_ratio", "fail_ratio"):
                if name in fields:
                    value = fields[name]
                    if not _is_number(value) or not 0 < value <= 1:
                        raise ValueError(f"{spath}.{name}: must be a number between 0 and 1")
                    row[name] = float(value)
            if row["warn_ratio"] < row["fail_ratio"]:
                raise ValueError(f"{spath}.warn_ratio: must be at least fail_ratio ({row['fail_ratio']:g})")
            row["source"] = f"site baseline ({spath})" + (
                f": {fields['source']}" if fields.get("source") else ""
            )
            table.setdefault(model, {})[sku] = row
    return table


def judge_inference(model, sku, measured, table=None):
    """Judge tokens/s against the site's baseline for (model, sku); ``judge``'s result shape.

    No baseline for the pair (or no model name) is ``skip`` with the measured figure and what to set.
    """
    row = (load_inference_baselines(table).get(model) or {}).get(sku) if model else None
    result = {
        "status": "skip",
        "sku": sku,
        "metric": INFERENCE_METRIC,
        "measured": measured,
        "expected": None,
        "ratio": None,
        "unit": INFERENCE_UNIT,
        "source": None,
        "reason": (
            f"no tokens/s baseline for model {model!r} on {sku or 'an unknown GPU SKU'}; set "
            f"gpufleet_inference_baselines.{model or '<model>'}.{sku or '<SKU>'}.expected to judge it"
        ),
    }
    if row is None:
        return result
    expected = row["expected"]
    result.update({"expected": expected, "source": row["source"]})
    if not _is_number(measured):
        result.update(
            status="fail", reason=f"no valid measured value ({measured!r}); expected {expected:g} tokens/s"
        )
        return result
    ratio = measured / expected
    status = "fail" if ratio < row["fail_ratio"] else "warn" if ratio < row["warn_ratio"] else "pass"
    result.update(
        status=status,
        ratio=round(ratio, 4),
        reason=(
            f"measured {measured:g} tokens/s is {ratio:.0%} of expected {expected:g} tokens/s for {model} "
            f"(warn below {row['warn_ratio']:.0%}, fail below {row['fail_ratio']:.0%})"
        ),
    )
    return result
