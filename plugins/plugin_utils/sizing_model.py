# Copyright: gpufleet developers
# Apache-2.0
"""What a model is made of, from its Hugging Face ``config.json``: shape, parameters, weight bytes by
dtype or quantization, KV cache per token. Controller code (plugin_utils), stdlib only; the layout
search and the report are in ``sizing.py``. Functions raise ValueError (only) on bad input, with a
message naming the config key or option to fix.
"""

from __future__ import annotations

# Bytes per weight (before group scales) and per KV element.
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}
KV_DTYPES = ("bf16", "fp16", "fp8")
TORCH_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "bf16"}  # vLLM serves fp32 as 16-bit

# int4/int8 without a quantization_config (--dtype int4): AWQ/GPTQ's usual group of 128 weights per
# fp16 scale and packed zero point.
DEFAULT_GROUP_SIZE = 128
SCALE_BYTES = 2  # AWQ/GPTQ scales are fp16


def _num(value, key, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"config.json: {key} must be an integer >= {minimum}, not {value!r}")
    return value


def _get(config, key, default=None, minimum=1):
    value = config.get(key, default)
    if value is None:
        raise ValueError(f"config.json has no {key}: is this a decoder-only language model's config?")
    return _num(value, key, minimum)


def architecture(config):
    """The shape of the model in ``config`` (a config.json dict), normalised across families."""
    if not isinstance(config, dict):
        raise ValueError("config.json must hold a JSON object")
    if "num_hidden_layers" not in config and isinstance(config.get("text_config"), dict):
        config = {**config["text_config"], "quantization_config": config.get("quantization_config")}
    hidden = _get(config, "hidden_size")
    heads = _get(config, "num_attention_heads")
    arch = {
        "model_type": str(config.get("model_type") or "unknown"),
        "layers": _get(config, "num_hidden_layers"),
        "hidden": hidden,
        "heads": heads,
        "kv_heads": _get(config, "num_key_value_heads", heads),
        "head_dim": _get(config, "head_dim", hidden // heads),
        "intermediate": _get(config, "intermediate_size"),
        "vocab": _get(config, "vocab_size"),
        "tied": bool(config.get("tie_word_embeddings", False)),
        "max_position": config.get("max_position_embeddings"),
        "bias": bool(config.get("attention_bias")) or config.get("model_type") == "qwen2",
        "mla": None,
        "moe": None,
    }
    if config.get("kv_lora_rank"):
        arch["mla"] = {
            "q_lora_rank": _get(config, "q_lora_rank", 0, minimum=0),
            "kv_lora_rank": _get(config, "kv_lora_rank"),
            "qk_nope": _get(config, "qk_nope_head_dim"),
            "qk_rope": _get(config, "qk_rope_head_dim"),
            "v_head": _get(config, "v_head_dim"),
        }
    routed = config.get("n_routed_experts") or config.get("num_local_experts") or config.get("num_experts")
    if routed:
        moe_layers = _moe_layers(config, arch["layers"])
        shared_size = config.get("shared_expert_intermediate_size")
        arch["moe"] = {
            "routed": _num(routed, "n_routed_experts"),
            "top_k": _get(config, "num_experts_per_tok"),
            "expert_intermediate": _get(config, "moe_intermediate_size", arch["intermediate"]),
            "shared": _get(config, "n_shared_experts", 1 if shared_size else 0, minimum=0),
            "shared_intermediate": _num(shared_size, "shared_expert_intermediate_size")
            if shared_size
            else _get(config, "moe_intermediate_size", arch["intermediate"]),
            "layers": moe_layers,
        }
    return arch


def _moe_layers(config, layers):
    """Indices of the mixture-of-experts layers (DeepSeek: from first_k_dense_replace, every
    moe_layer_freq; Qwen-MoE: every decoder_sparse_step, less mlp_only_layers; Mixtral: all)."""
    first = _get(config, "first_k_dense_replace", 0, minimum=0)
    every = _get(config, "moe_layer_freq", 1) if "n_routed_experts" in config else 1
    step = _get(config, "decoder_sparse_step", 1)
    dense = set(config.get("mlp_only_layers") or [])
    return [
        i for i in range(layers) if i >= first and i % every == 0 and (i + 1) % step == 0 and i not in dense
    ]


def _attention_params(arch):
    """(linear, other) parameters of one layer's attention; other = its norms."""
    h, n = arch["hidden"], arch["heads"]
    mla = arch["mla"]
    if mla:
        qk = mla["qk_nope"] + mla["qk_rope"]
        q_lora = mla["q_lora_rank"]
        q = h * q_lora + q_lora * n * qk if q_lora else h * n * qk
        kv = h * (mla["kv_lora_rank"] + mla["qk_rope"]) + mla["kv_lora_rank"] * n * (
            mla["qk_nope"] + mla["v_head"]
        )
        return q + kv + n * mla["v_head"] * h, q_lora + mla["kv_lora_rank"]
    d, kv_heads = arch["head_dim"], arch["kv_heads"]
    linear = h * n * d * 2 + h * kv_heads * d * 2
    return linear + ((n + 2 * kv_heads) * d if arch["bias"] else 0), 0


def parameters(arch):
    """Parameter counts: ``embed``, ``lm_head``, per-layer ``attention``/``mlp`` (dense layer) and
    ``moe`` (a mixture-of-experts layer) as (linear, other), ``total``, ``active`` and ``how``."""
    h, layers, vocab = arch["hidden"], arch["layers"], arch["vocab"]
    attn_linear, attn_other = _attention_params(arch)
    norms = 2 * h + attn_other
    dense_mlp = 3 * h * arch["intermediate"]  # gated MLP: gate, up and down projections
    moe = arch["moe"]
    n_moe = len(moe["layers"]) if moe else 0
    n_dense = layers - n_moe
    embed = vocab * h
    lm_head = 0 if arch["tied"] else vocab * h
    dense_layer = (attn_linear + dense_mlp, norms)
    total = embed + lm_head + h + n_dense * sum(dense_layer)
    active = total
    counts = {
        "embed": embed,
        "lm_head": lm_head,
        "dense_layer": dense_layer,
        "n_dense": n_dense,
        "n_moe": n_moe,
    }
    parts = [
        f"embeddings {vocab} x {h} ({count_text(embed)})",
        f"{n_dense} layers x (attention {count_text(attn_linear)} + MLP 3 x {h} x {arch['intermediate']} "
        f"({count_text(dense_mlp)}) + norms)",
    ]
    if moe:
        expert = 3 * h * moe["expert_intermediate"]
        shared = moe["shared"] * 3 * h * moe["shared_intermediate"]
        router = h * moe["routed"]
        moe_layer = (attn_linear + moe["routed"] * expert + shared, norms + router)
        counts["moe_layer"] = moe_layer
        total += n_moe * sum(moe_layer)
        active += n_moe * (attn_linear + moe["top_k"] * expert + shared + norms + router)
        parts.append(
            f"{n_moe} MoE layers x (attention {count_text(attn_linear)} + {moe['routed']} experts "
            f"x 3 x {h} x "
            f"{moe['expert_intermediate']} ({count_text(expert)} each) + {moe['shared']} shared expert(s) "
            f"({count_text(shared)}) + router)"
        )
    if lm_head:
        parts.append(f"lm_head {vocab} x {h} ({count_text(lm_head)})")
    else:
        parts.append("lm_head tied to the embeddings")
    counts.update(total=total, active=active, how=" + ".join(parts))
    if moe:
        counts["active_how"] = (
            f"as the total, but {moe['top_k']} of {moe['routed']} routed experts per token in each of the "
            f"{n_moe} MoE layers"
        )
    return counts


def quantization(config, dtype=None):
    """How weights are stored: ``dtype``, ``bytes`` per quantized (linear-layer) weight including
    scales, ``base`` (the 16-bit dtype of everything else), ``how`` and ``source``."""
    if "num_hidden_layers" not in config and isinstance(config.get("text_config"), dict):
        config = {**config["text_config"], **config}
    base = TORCH_DTYPES.get(str(config.get("torch_dtype") or "bfloat16"), "bf16")
    qc = config.get("quantization_config") or {}
    if not isinstance(qc, dict):
        raise ValueError("config.json: quantization_config must be an object")
    method = str(qc.get("quant_method") or "").lower()
    if dtype is not None:
        if dtype not in DTYPE_BYTES:
            raise ValueError(f"--dtype {dtype!r} is not known; use one of {', '.join(DTYPE_BYTES)}")
        group = qc.get("group_size") if method in ("awq", "gptq") else DEFAULT_GROUP_SIZE
        source = "--dtype" + (f" (instead of the checkpoint's {method})" if method else "")
        if dtype in ("bf16", "fp16"):
            return _quant(dtype, 2, dtype, f"2 B ({dtype})", source)
        if dtype in ("fp8", "int8"):
            return _quant(dtype, 1, base, f"1 B ({dtype}, per-channel or per-tensor scales ignored)", source)
        return _grouped(4, group, base, source)
    if method in ("awq", "gptq"):
        bits = qc.get("bits", qc.get("w_bit", 4))
        if bits not in (4, 8):
            raise ValueError(
                f"quantization_config: {method} with {bits!r} bits is not supported; pass --dtype"
            )
        return _grouped(
            bits, qc.get("group_size", qc.get("q_group_size")), base, f"quantization_config ({method})"
        )
    if method == "fp8":
        block = qc.get("weight_block_size")
        if isinstance(block, list) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block):
            area = block[0] * block[1]
            return _quant(
                "fp8",
                1 + 4 / area,
                base,
                f"1 B (fp8) + 4 B fp32 scale per {block[0]} x {block[1]} block",
                "quantization_config (fp8)",
            )
        return _quant("fp8", 1, base, "1 B (fp8)", "quantization_config (fp8)")
    if method:
        raise ValueError(
            f"quantization_config: quant_method {method!r} is not known; pass --dtype to size it"
        )
    return _quant(base, 2, base, f"2 B ({base})", f"config.json torch_dtype {config.get('torch_dtype')}")


def _quant(dtype, nbytes, base, how, source):
    return {"dtype": dtype, "bytes": nbytes, "base": base, "how": how, "source": source}


def _grouped(bits, group, base, source):
    group = DEFAULT_GROUP_SIZE if group is None else group
    if isinstance(group, bool) or not isinstance(group, int) or (group < 1 and group != -1):
        raise ValueError(f"quantization_config: group_size must be a positive integer or -1, not {group!r}")
    weight = bits / 8
    if group == -1:  # one scale per output channel: negligible
        return _quant(f"int{bits}", weight, base, f"{weight:g} B (int{bits}, per-channel scales)", source)
    extra = (SCALE_BYTES + weight) / group
    how = (
        f"{weight:g} B (int{bits}) + ({SCALE_BYTES} B fp16 scale + {weight:g} B zero point) / "
        f"{group}-weight group"
    )
    return _quant(f"int{bits}", weight + extra, base, how, source)


def weights(params, quant):
    """Weight bytes: ``total``, per ``dense_layer``/``moe_layer``, ``embed``, ``lm_head``, ``how``."""
    q, base = quant["bytes"], DTYPE_BYTES[quant["base"]]

    def layer(pair):
        linear, other = pair
        return linear * q + other * base

    out = {
        "embed": params["embed"] * base,
        "lm_head": params["lm_head"] * base,
        "dense_layer": layer(params["dense_layer"]),
    }
    total = out["embed"] + out["lm_head"] + params["n_dense"] * out["dense_layer"]
    quantized = params["n_dense"] * params["dense_layer"][0]
    if "moe_layer" in params:
        out["moe_layer"] = layer(params["moe_layer"])
        total += params["n_moe"] * out["moe_layer"]
        quantized += params["n_moe"] * params["moe_layer"][0]
    out["total"] = total
    rest = params["total"] - quantized
    if q == base:
        out["how"] = f"{count_text(params['total'])} parameters x {quant['how']}"
    else:
        out["how"] = (
            f"{count_text(quantized)} linear-layer weights x {quant['how']} + {count_text(rest)} others "
            f"(embeddings, lm_head, norms, routers) x {base} B ({quant['base']})"
        )
    out["how"] += f" = {gb_text(total)}"
    return out


def kv_per_token(arch, kv_dtype):
    """(bytes of KV cache per token for the whole model, how)."""
    nbytes = DTYPE_BYTES[kv_dtype]
    mla = arch["mla"]
    if mla:
        width = mla["kv_lora_rank"] + mla["qk_rope"]
        total = arch["layers"] * width * nbytes
        how = (
            f"MLA latent: {arch['layers']} layers x ({mla['kv_lora_rank']} kv_lora_rank + {mla['qk_rope']} "
            f"qk_rope_head_dim) x {nbytes:g} B ({kv_dtype})"
        )
    else:
        total = 2 * arch["layers"] * arch["kv_heads"] * arch["head_dim"] * nbytes
        how = (
            f"2 (K and V) x {arch['layers']} layers x {arch['kv_heads']} KV heads x {arch['head_dim']} "
            "head dim x "
            f"{nbytes:g} B ({kv_dtype})"
        )
    return total, f"{how} = {kib_text(total)}/token"


def count_text(n):
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def gb_text(n):
    return f"{n / 1e9:.2f} GB"


def kib_text(n):
    return f"{n / 1024:g} KiB"
