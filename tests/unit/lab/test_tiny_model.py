"""The lab's tiny model is a valid, reproducible Hugging Face style checkpoint, and its GGUF is the
same model (weights, hyperparameters, vocabulary) in llama.cpp's layout.

llama.cpp itself running the GGUF is tested in test_tiny_model_llama_cpp.py (needs llama-cpp-python)."""

from __future__ import annotations

import hashlib
import json
import struct

import gguf
import numpy as np
import pytest

from gpufleet.errors import GpufleetError
from gpufleet.lab import tiny_model


def _header(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), len(raw) - 8 - n


def test_shards_are_valid_safetensors_covering_every_weight(tmp_path):
    tiny_model.write(tmp_path)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    seen = {}
    for shard in sorted(set(index["weight_map"].values())):
        header, data_len = _header(tmp_path / shard)
        header.pop("__metadata__")
        end = 0
        for name, spec in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
            start, stop = spec["data_offsets"]
            assert start == end, f"{shard}: {name} does not follow the previous tensor"
            count = 1
            for d in spec["shape"]:
                count *= d
            assert stop - start == 2 * count and spec["dtype"] == "F16"
            end = stop
            seen[name] = shard
        assert end == data_len, f"{shard}: data section is not exactly the tensors"
    assert seen == index["weight_map"]
    assert set(seen) == {name for name, _shape in tiny_model.tensor_shapes()}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "llama" and config["vocab_size"] == len(
        json.loads((tmp_path / "tokenizer.json").read_text())["model"]["vocab"]
    )


def test_same_seed_same_bytes_and_a_second_write_touches_nothing(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    tiny_model.write(a)
    tiny_model.write(b)
    for p in a.iterdir():
        assert hashlib.sha256(p.read_bytes()).digest() == hashlib.sha256((b / p.name).read_bytes()).digest()
    mtimes = {p.name: p.stat().st_mtime_ns for p in a.iterdir()}
    assert tiny_model.write(a)["written"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in a.iterdir()} == mtimes
    other = tiny_model.files(seed=1)
    assert other["config.json"] == tiny_model.files()["config.json"]
    assert other["model-00001-of-00002.safetensors"] != tiny_model.files()["model-00001-of-00002.safetensors"]


def test_a_damaged_file_is_rewritten(tmp_path):
    tiny_model.write(tmp_path)
    shard = tmp_path / "model-00002-of-00002.safetensors"
    good = shard.read_bytes()
    shard.write_bytes(good[:-10])
    assert tiny_model.write(tmp_path)["written"] == 1
    assert shard.read_bytes() == good


def test_refuses_a_directory_with_other_files(tmp_path):
    (tmp_path / "mine.bin").write_bytes(b"keep")
    with pytest.raises(GpufleetError, match=r"mine\.bin.*nothing was written"):
        tiny_model.write(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.bin"]


# Hugging Face Llama tensor -> llama.cpp's name for it (llama.cpp's src/llama-arch.cpp, LLM_ARCH_LLAMA)
GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _gguf_name(hf_name):
    if hf_name in GGUF_NAMES:
        return GGUF_NAMES[hf_name]
    _model, _layers, layer, rest = hf_name.split(".", 3)
    return f"blk.{layer}.{LAYER_NAMES[rest.removesuffix('.weight')]}.weight"


def _safetensors_weights(directory):
    weights = {}
    for shard in sorted(directory.glob("*.safetensors")):
        header, _ = _header(shard)
        header.pop("__metadata__")
        raw = shard.read_bytes()
        base = 8 + struct.unpack("<Q", raw[:8])[0]
        for name, spec in header.items():
            start, stop = spec["data_offsets"]
            weights[name] = np.frombuffer(raw[base + start : base + stop], dtype="<f2").reshape(spec["shape"])
    return weights


def _hf_rows(weight, n_head):
    """Hugging Face's row order back from llama.cpp's rope layout, stated row by row: within each
    head of d rows, GGUF row 2i is HF row i and GGUF row 2i + 1 is HF row d/2 + i."""
    d = weight.shape[0] // n_head
    order = np.empty(weight.shape[0], dtype=int)
    for h in range(n_head):
        for i in range(d // 2):
            order[h * d + i] = h * d + 2 * i
            order[h * d + d // 2 + i] = h * d + 2 * i + 1
    return weight[order]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-llama")
    tiny_model.write(directory)
    return directory


@pytest.fixture(scope="module")
def reader(model_dir):
    return gguf.GGUFReader(model_dir / tiny_model.GGUF_FILE)


def _field(reader, key):
    field = reader.fields[key]
    return field.contents()


def test_gguf_tensors_are_the_safetensors_weights(model_dir, reader):
    cfg = tiny_model.CONFIG
    weights = _safetensors_weights(model_dir)
    tensors = {t.name: t for t in reader.tensors}
    assert set(tensors) == {_gguf_name(n) for n in weights}
    for hf_name, hf in weights.items():
        t = tensors[_gguf_name(hf_name)]
        got = np.asarray(t.data).reshape(hf.shape)
        if hf.ndim == 1:
            # norms in float32, as llama.cpp's converter stores them: the float16 values exactly
            assert t.tensor_type == gguf.GGMLQuantizationType.F32
            assert np.array_equal(got, hf.astype(np.float32)), hf_name
            continue
        assert t.tensor_type == gguf.GGMLQuantizationType.F16, hf_name
        if hf_name.endswith("q_proj.weight"):
            assert not np.array_equal(got, hf), "q_proj rows are regrouped for llama.cpp's rope"
            got = _hf_rows(got, cfg["num_attention_heads"])
        elif hf_name.endswith("k_proj.weight"):
            assert not np.array_equal(got, hf), "k_proj rows are regrouped for llama.cpp's rope"
            got = _hf_rows(got, cfg["num_key_value_heads"])
        assert got.tobytes() == hf.tobytes(), hf_name


def test_gguf_metadata_is_the_config(reader):
    cfg = tiny_model.CONFIG
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "general.file_type") == gguf.LlamaFileType.MOSTLY_F16
    expected = {
        "llama.context_length": cfg["max_position_embeddings"],
        "llama.embedding_length": cfg["hidden_size"],
        "llama.block_count": cfg["num_hidden_layers"],
        "llama.feed_forward_length": cfg["intermediate_size"],
        "llama.attention.head_count": cfg["num_attention_heads"],
        "llama.attention.head_count_kv": cfg["num_key_value_heads"],
        "llama.attention.key_length": cfg["head_dim"],
        "llama.attention.value_length": cfg["head_dim"],
        "llama.rope.dimension_count": cfg["head_dim"],
        "llama.vocab_size": cfg["vocab_size"],
    }
    assert {key: _field(reader, key) for key in expected} == expected
    assert _field(reader, "llama.rope.freq_base") == pytest.approx(cfg["rope_theta"])
    assert _field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(cfg["rms_norm_eps"])


def test_tokenizer_json_and_the_gguf_vocabulary_agree(model_dir, reader):
    cfg = tiny_model.CONFIG
    tok = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    by_id = sorted(vocab, key=vocab.get)
    assert [vocab[t] for t in by_id] == list(range(cfg["vocab_size"]))
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "gpt-2"
    assert _field(reader, "tokenizer.ggml.tokens") == by_id
    assert _field(reader, "tokenizer.ggml.merges") == tok["model"]["merges"]
    # byte-level: all 256 byte symbols are tokens, so no text is ever unknown
    assert tok["model"]["type"] == "BPE" and tok["pre_tokenizer"]["type"] == "ByteLevel"
    assert tok["decoder"]["type"] == "ByteLevel" and not tok["model"]["byte_fallback"]
    assert len({t for t in by_id if len(t) == 1}) == 256
    special = {a["content"]: a["id"] for a in tok["added_tokens"]}
    assert special == {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    types = _field(reader, "tokenizer.ggml.token_type")
    assert [i for i, t in enumerate(types) if t == gguf.TokenType.CONTROL] == sorted(special.values())
    assert set(types) == {gguf.TokenType.CONTROL, gguf.TokenType.NORMAL}  # no unused ids: both decode alike
    ids = {k: _field(reader, f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "padding", "unknown")}
    assert ids == {
        "bos": cfg["bos_token_id"],
        "eos": cfg["eos_token_id"],
        "padding": cfg["pad_token_id"],
        "unknown": special["<unk>"],
    }
    # both put <s> first and nothing last
    assert _field(reader, "tokenizer.ggml.add_bos_token") is True
    assert _field(reader, "tokenizer.ggml.add_eos_token") is False
    single = tok["post_processor"]["single"]
    assert single == [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]
