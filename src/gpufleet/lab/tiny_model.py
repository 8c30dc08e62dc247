"""The lab's model: a tiny Llama-architecture checkpoint made here, with seeded random weights.

No GPU, no model hub and no weights file in the repository: ``gpufleet lab tiny-model DIR`` writes a
complete Hugging Face style model directory (``config.json``, ``generation_config.json``, two
safetensors shards with their index, a byte-level BPE ``tokenizer.json``) and the same model as one
GGUF file (:data:`GGUF_FILE`), which llama.cpp loads: the model store, the bundle and the serving
roles treat the directory exactly as they treat a 140 GB model, and the lab's CPU engine (llama.cpp's
server) serves the GGUF. The bytes depend only on the seed, so the lab bundle built from it is
reproducible; a file whose content is already right is not rewritten (its mtime stays, so ``gpufleet
model add`` does not hash it again).

The GGUF is written with llama.cpp's own ``gguf`` package (writer, architecture keys, tensor name
map), with the conventions of llama.cpp's Hugging Face converter for Llama checkpoints: float16
matrices, float32 norms, and the rows of ``q_proj``/``k_proj`` regrouped per head from Hugging Face's
rotate-half order into the interleaved pairs llama.cpp's rope rotates (:func:`rope_interleave`).
The tokenizer is one both Hugging Face ``tokenizers`` and llama.cpp run alike: GPT-2's byte-level
BPE (every byte a token, a few merges), with llama.cpp's ``gpt-2`` pre-tokenizer, which splits text
with the same expression as ``tokenizers``' ``ByteLevel``.
"""

from __future__ import annotations

import itertools
import json
import random
import string
import struct
import tempfile
from pathlib import Path

import gguf
import numpy as np

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
# The model's name in bundles/lab.yml (and so in the model store and the serving front).
NAME = "tiny-llama"
GGUF_FILE = f"{NAME}-f16.gguf"
# Words whose spellings become merges (then letter pairs fill the vocabulary), so that common text is
# not all single bytes; fixed, so the vocabulary (and every file) stays the same from run to run.
MERGE_WORDS = (
    *("the", "of", "and", "to", "in", "is", "it", "that", "for", "on", "with", "as", "at", "by", "be"),
    *("this", "are", "from", "or", "an", "not", "was", "all", "one", "can", "hello", "world", "model"),
    *("serve", "fleet", "node", "gpu", "llama", "token", "test", "lab"),
)


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


def byte_symbols() -> list[str]:
    """GPT-2's byte-level alphabet: the character that stands for each byte 0..255 in the vocabulary.

    Printable Latin-1 bytes stand for themselves; the others (controls, space, DEL, NBSP, soft
    hyphen) take the characters from U+0100 upwards in byte order, so a space is ``Ġ``."""
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    out, extra = [], 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(0x100 + extra))
            extra += 1
    return out


def _merge_candidates():
    """Pairs to merge, best first: each word of MERGE_WORDS spelled left to right after a space (so
    " the" becomes one token), then alone, then every pair of lowercase letters."""
    symbols = byte_symbols()
    spellings = [[symbols[b] for b in word.encode()] for word in MERGE_WORDS]
    for spelled in [[symbols[ord(" ")], *s] for s in spellings] + spellings:
        left = spelled[0]
        for right in spelled[1:]:
            yield left, right
            left += right
    yield from itertools.product(string.ascii_lowercase, repeat=2)


def vocabulary(cfg: dict = CONFIG) -> tuple[list[str], list[str]]:
    """(tokens by id, merges by rank): the special tokens at their ids, the 256 byte symbols, then one
    token per merge until ``vocab_size``. Every token is text both engines decode alike: llama.cpp
    decodes a padding token (type "unused") to nothing, Hugging Face to its name."""
    tokens = [*SPECIAL, *byte_symbols()]
    merges: list[str] = []
    known = set(tokens)
    for left, right in _merge_candidates():
        if len(tokens) == cfg["vocab_size"]:
            break
        if left + right not in known:
            merges.append(f"{left} {right}")
            tokens.append(left + right)
            known.add(left + right)
    if len(tokens) != cfg["vocab_size"]:
        raise ValueError(f"{len(tokens)} tokens cannot fill a vocabulary of {cfg['vocab_size']}")
    return tokens, merges


def tokenizer() -> dict:
    """tokenizer.json for Hugging Face ``tokenizers``: byte-level BPE; ``<s>`` is put first, as
    llama.cpp does for this model (``tokenizer.ggml.add_bos_token``)."""
    tokens, merges = vocabulary()
    bos = SPECIAL[CONFIG["bos_token_id"]]
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
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
        "pre_tokenizer": {"type": "ByteLevel", **byte_level},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": bos, "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {bos: {"id": bos, "ids": [CONFIG["bos_token_id"]], "tokens": [bos]}},
        },
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {w: i for i, w in enumerate(tokens)},
            "merges": merges,
        },
    }


def rope_interleave(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a ``q_proj``/``k_proj`` weight in the order llama.cpp's rope expects.

    Hugging Face's Llama rotates the two halves of each head (dimension i with i + d/2); llama.cpp's
    rotates adjacent pairs (2i with 2i + 1). Within each head, row i of the first half goes to 2i
    and row i of the second half to 2i + 1, so both compute the same attention. ``n_head`` is the
    number of heads the rows belong to (the key/value heads for ``k_proj``)."""
    half = weight.shape[0] // n_head // 2
    return weight.reshape(n_head, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def gguf_bytes(tensors: list[tuple[str, list[int], bytes]], cfg: dict = CONFIG) -> bytes:
    """The model as one GGUF file (architecture ``llama``, file type F16), written by ``gguf``."""
    arch = gguf.MODEL_ARCH.LLAMA
    names = gguf.get_tensor_name_map(arch, cfg["num_hidden_layers"])
    tokens, merges = vocabulary(cfg)
    with tempfile.TemporaryDirectory(prefix="gpufleet-gguf-") as tmp:
        path = Path(tmp) / GGUF_FILE
        writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch])
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(NAME)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_vocab_size(cfg["vocab_size"])
        writer.add_context_length(cfg["max_position_embeddings"])
        writer.add_embedding_length(cfg["hidden_size"])
        writer.add_block_count(cfg["num_hidden_layers"])
        writer.add_feed_forward_length(cfg["intermediate_size"])
        writer.add_head_count(cfg["num_attention_heads"])
        writer.add_head_count_kv(cfg["num_key_value_heads"])
        writer.add_key_length(cfg["head_dim"])
        writer.add_value_length(cfg["head_dim"])
        writer.add_rope_dimension_count(cfg["head_dim"])
        writer.add_rope_freq_base(cfg["rope_theta"])
        writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")
        writer.add_token_list(tokens)
        types = [gguf.TokenType.CONTROL] * len(SPECIAL)
        writer.add_token_types(types + [gguf.TokenType.NORMAL] * (len(tokens) - len(SPECIAL)))
        writer.add_token_merges(merges)
        writer.add_bos_token_id(cfg["bos_token_id"])
        writer.add_eos_token_id(cfg["eos_token_id"])
        writer.add_pad_token_id(cfg["pad_token_id"])
        writer.add_unk_token_id(SPECIAL.index("<unk>"))
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)
        for name, shape, data in tensors:
            weight = np.frombuffer(data, dtype="<f2").reshape(shape)
            if name.endswith("self_attn.q_proj.weight"):
                weight = rope_interleave(weight, cfg["num_attention_heads"])
            elif name.endswith("self_attn.k_proj.weight"):
                weight = rope_interleave(weight, cfg["num_key_value_heads"])
            if len(shape) == 1:
                weight = weight.astype(np.float32)  # as llama.cpp's converter stores norms: exact
            gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise ValueError(f"{name}: no GGUF name for this tensor")
            writer.add_tensor(gguf_name, np.ascontiguousarray(weight))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()


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
    out["tokenizer.json"] = (json.dumps(tokenizer(), indent=1, ensure_ascii=False) + "\n").encode()
    tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"}
    tok_cfg.update({"unk_token": "<unk>", "pad_token": "<pad>", "model_max_length": 512})
    out["tokenizer_config.json"] = (json.dumps(tok_cfg, indent=2) + "\n").encode()
    out[GGUF_FILE] = gguf_bytes(tensors)
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
