"""``gpufleet.plan``: what hardware a model needs to be served, every figure with how it was computed.

    from gpufleet.plan import plan

    report = plan("models/Llama-3.1-70B/config.json", gpu="H100 SXM", context=8192, concurrency=16)
    print(report["tensor_parallel_size"], report["figures"]["weights"]["how"])

The arithmetic lives once, in the collection's ``plugins/plugin_utils/sizing.py`` (the serving role's
preflight calls it too, as the ``gpufleet.cluster.plan_problems`` filter); this module reads the
model's ``config.json`` and turns bad input into ``PlanError``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import sizing

from gpufleet._io import write_atomic
from gpufleet.errors import GpufleetError


class PlanError(GpufleetError):
    """Bad input to ``plan``: the message names the file or option to fix (exit status 2)."""


def load_config(source) -> tuple[dict, Path]:
    """The ``config.json`` at ``source`` (the file, or a model directory holding it) and its path."""
    path = Path(source)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise PlanError(f"{path}: no such file; pass a model's config.json or the directory holding it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"{path}: not a readable JSON config.json ({exc})") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path}: config.json must hold a JSON object")
    return data, path


def plan(
    model,
    gpu: str,
    gpus_per_node: int = 8,
    context: int = 8192,
    concurrency: int = 16,
    dtype: str | None = None,
    kv_dtype: str | None = None,
    gpu_memory_utilization: float = 0.90,
    max_nodes: int = sizing.DEFAULT_MAX_NODES,
    json_report=None,
) -> dict:
    """Size serving ``model`` on ``gpu`` and return the report (a dict, JSON-ready).

    model: a ``config.json`` path, a model directory holding one, or the config as a dict.
    gpu: a GPU SKU of the baselines ("H100 SXM", "H200", ...) or an nvidia-smi product name,
        case-insensitive.
    gpus_per_node: GPUs in one node; tensor parallelism stays within a node.
    context: tokens per sequence (prompt + output); at most the model's max_position_embeddings.
    concurrency: sequences served at once, each with ``context`` tokens of KV cache.
    dtype: weight dtype (bf16, fp16, fp8, int8, int4); default: the checkpoint's
        quantization_config, else its torch_dtype.
    kv_dtype: KV cache dtype (bf16, fp16, fp8); default: the model's 16-bit dtype.
    gpu_memory_utilization: the share of each GPU's memory the engine may use (vLLM's option).
    max_nodes: the most nodes a pipeline-parallel layout may span.
    json_report: write the report as JSON to this path (atomically).

    The report has ``figures`` (each ``value``, ``unit``, ``text``, ``how``), ``fits``,
    ``tensor_parallel_size``, ``pipeline_parallel_size``, ``gpus``, ``nodes``, ``max_concurrency``,
    ``tried`` and ``problems``. Raises PlanError on bad input.
    """
    if isinstance(model, dict):
        config, source = model, None
    else:
        config, source = load_config(model)
    try:
        report = sizing.plan(
            config,
            gpu,
            gpus_per_node=gpus_per_node,
            context=context,
            concurrency=concurrency,
            dtype=dtype,
            kv_dtype=kv_dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            max_nodes=max_nodes,
        )
    except ValueError as exc:
        raise PlanError(
            f"{source}: {exc}" if source and str(exc).startswith("config.json") else str(exc)
        ) from None
    name = config.get("_name_or_path") or (source.parent.name if source else "model")
    report["model"] = {"name": name, "config": str(source) if source else None, **report["model"]}
    if json_report is not None:
        write_atomic(json_report, render_json(report))
    return report


def render_json(report: dict) -> str:
    return json.dumps(report, indent=2) + "\n"


def render_table(report: dict) -> str:
    """The report as a plain table: figure, value, how it was computed."""
    model, gpu, req = report["model"], report["gpu"], report["request"]
    head = (
        f"{model['name']} ({model['model_type']}, {req['dtype']} weights, {req['kv_dtype']} KV cache) on "
        f"{gpu['sku']}, {gpu['gpus_per_node']} per node: context {req['context']} x {req['concurrency']} "
        "sequences"
    )
    rows = [(key.replace("_", " "), fig["text"], fig["how"]) for key, fig in report["figures"].items()]
    w1 = max(len("FIGURE"), *(len(r[0]) for r in rows))
    w2 = max(len("VALUE"), *(len(r[1]) for r in rows))
    lines = [head, "", f"{'FIGURE':<{w1}}  {'VALUE':<{w2}}  HOW COMPUTED"]
    lines += [f"{a:<{w1}}  {b:<{w2}}  {c}" for a, b, c in rows]
    lines.append("")
    if report["fits"]:
        lines.append(
            f"fits: TP {report['tensor_parallel_size']} x PP {report['pipeline_parallel_size']} = "
            f"{report['gpus']} GPU(s) on {report['nodes']} node(s); up to {report['max_concurrency']} "
            f"sequences of {req['context']} tokens"
        )
    else:
        lines += [f"does not fit: {problem}" for problem in report["problems"]]
    return "\n".join(lines)
