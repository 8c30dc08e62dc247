# Copyright: gpufleet developers
# Apache-2.0
"""LLM serving sizing: what a model needs in GPU memory, and the smallest layout that holds it.

Controller code (plugin_utils), stdlib only. From a Hugging Face ``config.json`` (a dict) and a GPU
SKU of ``baselines``: parameters (total and, for mixture-of-experts, active), weights by dtype or
quantization, KV cache per token (GQA/MHA, or MLA's latent for DeepSeek-V3), activations and the
runtime reserve, then the smallest tensor-parallel size (and, beyond one node, pipeline stages) where
one GPU's share fits in ``memory x gpu_memory_utilization``, as vLLM budgets it (facts.md, "Sizing").

Every figure carries ``how``: the arithmetic that produced it, in words. ``plan`` raises ValueError
(and nothing else) on bad input, with a message naming the option or config key to fix;
``plan_problems`` returns problems as strings instead, for a role's preflight.
"""

from __future__ import annotations

import math

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import baselines
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.sizing_model import (
    KV_DTYPES,
    architecture,
    count_text,
    gb_text,
    kib_text,
    kv_per_token,
    parameters,
    quantization,
    weights,
)

# Tokens in one forward pass when vLLM profiles peak activations: its default
# max_num_batched_tokens for the OpenAI server on 80 GB-class GPUs (vLLM engine arguments).
BATCH_TOKENS = 8192
# Hidden-sized bf16 buffers alive at once in a layer (residual, normed input, attention output,
# layer output): gpufleet's estimate; vLLM measures the real peak at startup.
HIDDEN_BUFFERS = 4
LOGIT_BYTES = 4  # vLLM samples from fp32 logits

# Memory outside PyTorch's allocator on every GPU, which vLLM subtracts too (facts.md: "non-torch
# memory such as NCCL buffers and CUDA graphs"): CUDA context ~0.5 GiB, CUDA graphs ~1 GiB, NCCL
# buffers ~0.5 GiB. gpufleet's rule of thumb, not a measurement.
RUNTIME_RESERVE_BYTES = 2 * 2**30

DEFAULT_MAX_NODES = 8


def tp_candidates(arch, gpus_per_node):
    """Tensor-parallel sizes vLLM can use: powers of two up to a node that divide the attention heads
    and divide, or are a multiple of, the KV heads (KV heads are then replicated)."""
    out, tp = [], 1
    while tp <= gpus_per_node:
        kv = arch["kv_heads"]
        if arch["heads"] % tp == 0 and (arch["mla"] or kv % tp == 0 or tp % kv == 0):
            out.append(tp)
        tp *= 2
    return out


def _stage_layers(layers, pp):
    """Layers per pipeline stage as vLLM splits them (the remainder goes to the stages before the last)."""
    sizes = [layers // pp] * pp
    for i in range(2, layers % pp + 2):
        sizes[-i] += 1
    return sizes


def per_gpu(arch, params, wts, kv_token, tokens, concurrency, tp, pp):
    """Bytes one GPU needs at (tp, pp): the heaviest pipeline stage's share, with ``how``."""
    moe = set(arch["moe"]["layers"]) if arch["moe"] else set()
    start, worst, worst_layers = 0, 0, 0
    for i, n in enumerate(_stage_layers(arch["layers"], pp)):
        stage = sum(wts["moe_layer"] if j in moe else wts["dense_layer"] for j in range(start, start + n))
        stage += (wts["embed"] if i == 0 else 0) + (wts["lm_head"] if i == pp - 1 else 0)
        worst, worst_layers = max(worst, stage), max(worst_layers, n)
        start += n
    weight = worst / tp
    # MLA's latent is one shared head: every TP rank holds all of it. GQA heads split over TP ranks
    # (replicated when TP > KV heads).
    shards = 1 if arch["mla"] else min(tp, arch["kv_heads"])
    kv = kv_token * worst_layers / arch["layers"] / shards * tokens
    act = activation(arch, tp, concurrency)
    need = weight + kv + act + RUNTIME_RESERVE_BYTES
    split = f" / TP {tp}" + (f" (heaviest of {pp} stages)" if pp > 1 else "")
    stage = f" ({worst_layers} of {arch['layers']} layers)" if pp > 1 else ""
    how = (
        f"weights {gb_text(worst)}{split} + KV {gb_text(kv * shards)}{stage} / {shards} + activations "
        f"{gb_text(act)} + reserve {gb_text(RUNTIME_RESERVE_BYTES)} = {gb_text(need)}"
    )
    return {"tp": tp, "pp": pp, "weights": weight, "kv": kv, "activations": act, "need": need, "how": how}


def activation(arch, tp, concurrency):
    """Peak activation bytes per GPU (estimate): BATCH_TOKENS x 2 B x (HIDDEN_BUFFERS x hidden + the
    widest MLP output / TP) + fp32 logits for the running sequences."""
    moe = arch["moe"]
    width = 2 * arch["intermediate"]
    if moe:
        width = max(
            width,
            2 * (moe["top_k"] * moe["expert_intermediate"] + moe["shared"] * moe["shared_intermediate"]),
        )
    return (
        BATCH_TOKENS * 2 * (HIDDEN_BUFFERS * arch["hidden"] + width / tp)
        + concurrency * arch["vocab"] * LOGIT_BYTES
    )


def gpu_memory(gpu):
    """(SKU, bytes) for a SKU name or nvidia-smi product name; ValueError lists the known SKUs."""
    sku = baselines.sku_for(gpu)
    if sku is None or sku not in baselines.MEMORY_GB:
        known = ", ".join(baselines.MEMORY_GB)
        raise ValueError(f"--gpu {gpu!r} is not a known GPU SKU; use one of: {known}")
    return sku, baselines.MEMORY_GB[sku] * 10**9


def plan(
    config,
    gpu,
    gpus_per_node=8,
    context=8192,
    concurrency=16,
    dtype=None,
    kv_dtype=None,
    gpu_memory_utilization=0.90,
    max_nodes=DEFAULT_MAX_NODES,
    tensor_parallel_size=None,
    pipeline_parallel_size=None,
):
    """The sizing report for ``config`` on ``gpu``: ``figures`` (each with ``value``, ``text``, ``how``),
    the chosen ``tensor_parallel_size``/``pipeline_parallel_size``, ``gpus``, ``nodes``, ``fits``,
    ``max_concurrency``, ``tried`` and ``problems``. With tensor_parallel_size (and optionally
    pipeline_parallel_size) given, that layout is judged instead of searched. Raises ValueError on bad
    input, naming the option or config key."""
    for name, value in (
        ("--gpus-per-node", gpus_per_node),
        ("--context", context),
        ("--concurrency", concurrency),
        ("--max-nodes", max_nodes),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if (
        isinstance(gpu_memory_utilization, bool)
        or not isinstance(gpu_memory_utilization, (int, float))
        or not 0 < gpu_memory_utilization <= 1
    ):
        raise ValueError(
            f"--gpu-memory-utilization must be a number in (0, 1], not {gpu_memory_utilization!r}"
        )
    sku, memory = gpu_memory(gpu)
    arch = architecture(config)
    limit = arch["max_position"]
    if isinstance(limit, int) and context > limit:
        raise ValueError(
            f"--context {context} is above the model's max_position_embeddings ({limit}); "
            f"pass --context {limit} or less"
        )
    quant = quantization(config, dtype)
    if kv_dtype is None:
        kv_dtype = quant["dtype"] if quant["dtype"] in ("bf16", "fp16") else quant["base"]
    elif kv_dtype not in KV_DTYPES:
        raise ValueError(f"--kv-dtype {kv_dtype!r} is not known; use one of {', '.join(KV_DTYPES)}")
    params = parameters(arch)
    wts = weights(params, quant)
    kv_token, kv_how = kv_per_token(arch, kv_dtype)
    tokens = context * concurrency
    budget = memory * gpu_memory_utilization
    candidates = tp_candidates(arch, gpus_per_node)
    if tensor_parallel_size is not None:
        if tensor_parallel_size not in candidates:
            raise ValueError(
                f"tensor_parallel_size {tensor_parallel_size} is not usable here; use one of {candidates}"
            )
        layouts = [(tensor_parallel_size, pipeline_parallel_size or 1)]
    else:
        layouts = [(tp, 1) for tp in candidates]
        layouts += [
            (candidates[-1], pp)
            for pp in range(2, min(max_nodes * gpus_per_node // candidates[-1], arch["layers"]) + 1)
        ]
    tried = []
    for tp, pp in layouts:
        tried.append(per_gpu(arch, params, wts, kv_token, tokens, concurrency, tp, pp))
        if tried[-1]["need"] <= budget:
            break
    chosen = tried[-1]
    fits = chosen["need"] <= budget
    gpus = chosen["tp"] * chosen["pp"]
    nodes = math.ceil(gpus / gpus_per_node)
    free = budget - chosen["need"] + chosen["kv"]
    kv_seq = chosen["kv"] / concurrency
    max_conc = max(0, int(free // kv_seq)) if kv_seq else 0
    figures = _figures(locals())
    problems = [] if fits else [_not_fit(locals())]
    return {
        "model": {
            key: arch[key]
            for key in ("model_type", "layers", "hidden", "heads", "kv_heads", "head_dim", "vocab")
        },
        "gpu": {
            "sku": sku,
            "memory_bytes": memory,
            "memory_source": baselines.MEMORY_SOURCE,
            "gpus_per_node": gpus_per_node,
        },
        "request": {
            "context": context,
            "concurrency": concurrency,
            "dtype": quant["dtype"],
            "kv_dtype": kv_dtype,
            "gpu_memory_utilization": gpu_memory_utilization,
            "max_nodes": max_nodes,
        },
        "figures": figures,
        "fits": fits,
        "tensor_parallel_size": chosen["tp"],
        "pipeline_parallel_size": chosen["pp"],
        "gpus": gpus,
        "nodes": nodes,
        "max_concurrency": max_conc,
        "tried": [{k: t[k] for k in ("tp", "pp", "need", "how")} for t in tried],
        "problems": problems,
    }


def _figure(value, unit, text, how):
    return {"value": value, "unit": unit, "text": text, "how": how}


def _figures(v):
    """Every figure of the report, in reading order, from ``plan``'s local variables ``v``."""
    params, wts, chosen, quant, arch = v["params"], v["wts"], v["chosen"], v["quant"], v["arch"]
    tp, pp, budget = chosen["tp"], chosen["pp"], v["budget"]
    figs = {"parameters": _figure(params["total"], "parameters", count_text(params["total"]), params["how"])}
    if "active_how" in params:
        active = params["active"]
        figs["active_parameters"] = _figure(active, "parameters", count_text(active), params["active_how"])
    figs["weights"] = _figure(
        wts["total"], "bytes", gb_text(wts["total"]), f"{wts['how']} ({quant['source']})"
    )
    figs["kv_per_token"] = _figure(v["kv_token"], "bytes", kib_text(v["kv_token"]), v["kv_how"])
    kv_all = v["kv_token"] * v["tokens"]
    figs["kv_cache"] = _figure(
        kv_all,
        "bytes",
        gb_text(kv_all),
        f"{kib_text(v['kv_token'])} x {v['context']} context x {v['concurrency']} sequences "
        f"({v['tokens']} tokens) = {gb_text(kv_all)}",
    )
    act = chosen["activations"]
    figs["activations_per_gpu"] = _figure(
        act,
        "bytes",
        gb_text(act),
        f"{BATCH_TOKENS} batched tokens x 2 B x ({HIDDEN_BUFFERS} x {arch['hidden']} hidden + widest MLP "
        f"output / TP {tp}) + {v['concurrency']} sequences x {arch['vocab']} vocab x {LOGIT_BYTES} B "
        "fp32 logits (estimate)",
    )
    figs["runtime_reserve_per_gpu"] = _figure(
        RUNTIME_RESERVE_BYTES,
        "bytes",
        gb_text(RUNTIME_RESERVE_BYTES),
        "CUDA context ~0.5 GiB + CUDA graphs ~1 GiB + NCCL buffers ~0.5 GiB (rule of thumb)",
    )
    figs["budget_per_gpu"] = _figure(
        budget,
        "bytes",
        gb_text(budget),
        f"{v['sku']} {gb_text(v['memory'])} ({baselines.MEMORY_SOURCE}) x {v['gpu_memory_utilization']:g} "
        "gpu_memory_utilization",
    )
    figs["need_per_gpu"] = _figure(chosen["need"], "bytes", gb_text(chosen["need"]), chosen["how"])
    steps = "; ".join(f"TP {t['tp']} x PP {t['pp']} needs {gb_text(t['need'])}" for t in v["tried"])
    kv_rule = "" if arch["mla"] else f", dividing or a multiple of {arch['kv_heads']} KV heads"
    figs["tensor_parallel_size"] = _figure(
        tp,
        "GPUs",
        str(tp),
        f"smallest of {v['candidates']} (powers of two <= {v['gpus_per_node']} GPUs per node dividing "
        f"{arch['heads']} heads{kv_rule}) where need {'<=' if v['fits'] else '>'} budget {gb_text(budget)}; "
        f"{steps}",
    )
    figs["pipeline_parallel_size"] = _figure(
        pp,
        "stages",
        str(pp),
        "one node holds it (TP only)"
        if pp == 1
        else f"one node at TP {tp} does not hold it: {pp} pipeline stages of about {arch['layers'] // pp} "
        "layers, one per node",
    )
    figs["gpus"] = _figure(v["gpus"], "GPUs", str(v["gpus"]), f"TP {tp} x PP {pp}")
    figs["nodes"] = _figure(
        v["nodes"], "nodes", str(v["nodes"]), f"{v['gpus']} GPUs / {v['gpus_per_node']} per node, rounded up"
    )
    figs["max_concurrency"] = _figure(
        v["max_conc"],
        "sequences",
        str(v["max_conc"]),
        f"(budget {gb_text(budget)} - need {gb_text(chosen['need'])} + requested KV "
        f"{gb_text(chosen['kv'])}) / "
        f"{gb_text(v['kv_seq'])} KV per {v['context']}-token sequence per GPU, rounded down",
    )
    return figs


def _not_fit(v):
    chosen, budget = v["chosen"], v["budget"]
    layout = f"TP {chosen['tp']} x PP {chosen['pp']} ({v['gpus']} GPUs, {v['nodes']} node(s))"
    searched = (
        "the layout asked for"
        if v["tensor_parallel_size"] is not None
        else f"the largest layout --max-nodes {v['max_nodes']} allows"
    )
    return (
        f"{v['sku']} x {v['gpus']} cannot serve the model at context {v['context']} x {v['concurrency']} "
        f"sequences: at {layout}, {searched}, one GPU needs {gb_text(chosen['need'])} ({chosen['how']}) but "
        f"has {gb_text(budget)} ({gb_text(v['memory'])} x {v['gpu_memory_utilization']:g}). Lower "
        "--context or --concurrency, quantize (--dtype fp8|int4, --kv-dtype fp8) or add GPUs/nodes"
    )


def plan_problems(
    config,
    gpu,
    gpus_per_node=8,
    context=8192,
    concurrency=16,
    dtype=None,
    kv_dtype=None,
    gpu_memory_utilization=0.90,
    max_nodes=DEFAULT_MAX_NODES,
    tensor_parallel_size=None,
    pipeline_parallel_size=None,
):
    """Problems (strings with the plan's numbers) that stop ``config`` being served on ``gpu``; [] when
    it fits. Bad input is a problem too, never an exception. Parameters: as ``plan``."""
    try:
        report = plan(
            config,
            gpu,
            gpus_per_node=gpus_per_node,
            context=context,
            concurrency=concurrency,
            dtype=dtype,
            kv_dtype=kv_dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            max_nodes=max_nodes,
            tensor_parallel_size=tensor_parallel_size,
            pipeline_parallel_size=pipeline_parallel_size,
        )
    except (ValueError, TypeError) as exc:
        return [f"cannot size the model: {exc}"]
    return report["problems"]
