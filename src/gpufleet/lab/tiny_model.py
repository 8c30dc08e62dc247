"""The lab's model: a tiny Llama-architecture checkpoint made here, with seeded random weights.

No GPU, no model hub and no weights file in the repository: ``gpufleet lab tiny-model DIR`` writes a
complete Hugging Face style model directory (``config.json``, ``generation_config.json``, two
safetensors shards with their index, a word-level ``tokenizer.json``) that the model store, the bundle
and the serving roles treat exactly as they treat a 140 GB model. The bytes depend only on the seed,
so the lab bundle built from it is reproducible; a file whose content is already right is not
rewritten (its mtime stays, so ``gpufleet model add`` does not hash it again).
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

from gpufleet._io import write_atomic

SEED = 20261202
# Llama layout, small enough to make in a second (about 1.25 M parameters, 2.5 MB in float16).
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "vocab_size": 1024,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
}
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]


def tensor_shapes(cfg: dict = CONFIG) -> list[tuple[str, list[int]]]:
    """(name, shape) of every weight, in the order Hugging Face's Llama names them."""
    h, inter, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    q = cfg["num_attention_heads"] * cfg["head_dim"]
    out = [("model.embed_tokens.weight", [vocab, h])]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", [h]),
            (p + "self_attn.q_proj.weight", [q, h]),
            (p + "self_attn.k_proj.weight", [kv, h]),
            (p + "self_attn.v_proj.weight", [kv, h]),
            (p + "self_attn.o_proj.weight", [h, q]),
            (p + "post_attention_layernorm.weight", [h]),
            (p + "mlp.gate_proj.weight", [inter, h]),
            (p + "mlp.up_proj.weight", [inter, h]),
            (p + "mlp.down_proj.weight", [h, inter]),
        ]
    out += [("model.norm.weight", [h]), ("lm_head.weight", [vocab, h])]
    return out


def _values(rng: random.Random, name: str, count: int) -> bytes:
    if name.endswith("norm.weight"):
        return struct.pack(f"<{count}e", *([1.0] * count))
    # small normal weights, as an initialised model has (std 0.02)
    return struct.pack(f"<{count}e", *(rng.gauss(0.0, 0.02) for _ in range(count)))


def safetensors_bytes(tensors: list[tuple[str, list[int], bytes]]) -> bytes:
    """One safetensors file: an 8-byte little-endian header length, the JSON header, the data."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, data in tensors:
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw + b"".join(d for _n, _s, d in tensors)


def tokenizer() -> dict:
    words = SPECIAL + [f"w{i}" for i in range(CONFIG["vocab_size"] - len(SPECIAL))]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": w,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, w in enumerate(SPECIAL)
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordLevel", "vocab": {w: i for i, w in enumerate(words)}, "unk_token": "<unk>"},
    }


def files(seed: int = SEED, shards: int = 2) -> dict[str, bytes]:
    """Every file of the model directory, by relative path."""
    rng = random.Random(seed)  # noqa: S311 - reproducible weights, not secrets
    shapes = tensor_shapes()
    tensors = []
    for name, shape in shapes:
        count = 1
        for d in shape:
            count *= d
        tensors.append((name, shape, _values(rng, name, count)))
    per = -(-len(tensors) // shards)
    out: dict[str, bytes] = {}
    weight_map = {}
    total = 0
    for k in range(shards):
        part = tensors[k * per : (k + 1) * per]
        fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        out[fname] = safetensors_bytes(part)
        for name, _shape, data in part:
            weight_map[name] = fname
            total += len(data)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    out["model.safetensors.index.json"] = (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()
    out["config.json"] = (json.dumps(CONFIG, indent=2) + "\n").encode()
    gen = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "do_sample": False}
    out["generation_config.json"] = (json.dumps(gen, indent=2) + "\n").encode()
    out["tokenizer.json"] = (json.dumps(tokenizer(), indent=1) + "\n").encode()
    tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"}
    tok_cfg.update({"unk_token": "<unk>", "pad_token": "<pad>", "model_max_length": 512})
    out["tokenizer_config.json"] = (json.dumps(tok_cfg, indent=2) + "\n").encode()
    return out


def write(directory: str | Path, seed: int = SEED) -> dict:
    """Write the model into ``directory``; files already right are left alone.

    Returns ``{"path", "files", "bytes", "written"}``. Refuses a directory holding other files, so
    it never mixes the lab model into someone's model."""
    directory = Path(directory)
    wanted = files(seed)
    if directory.is_dir():
        extra = sorted(p.name for p in directory.iterdir() if p.name not in wanted)
        if extra:
            from gpufleet.errors import GpufleetError

            raise GpufleetError(
                f"{directory} holds files that are not the lab model's ({', '.join(extra[:5])}); "
                "give an empty or new directory (nothing was written)"
            )
    directory.mkdir(parents=True, exist_ok=True)
    written = 0
    for rel, data in wanted.items():
        path = directory / rel
        try:
            same = path.read_bytes() == data
        except OSError:
            same = False
        if not same:
            write_atomic(path, data)
            written += 1
    return {
        "path": str(directory),
        "files": len(wanted),
        "bytes": sum(len(d) for d in wanted.values()),
        "written": written,
    }
