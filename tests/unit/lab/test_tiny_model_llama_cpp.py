"""llama.cpp runs the lab's tiny model GGUF as the model the safetensors hold.

Needs llama-cpp-python and tokenizers, which the project's venv does not carry (llama-cpp-python is
a source build): without them this file is skipped, with the reason, never passed. Run it with an
environment that has them, the gpufleet sources on the path:

    PYTHONPATH=src VENV/bin/python -m pytest -p no:cacheprovider tests/unit/lab/test_tiny_model_llama_cpp.py

(that environment also needs gguf and pytest).
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed in this environment")
tokenizers = pytest.importorskip("tokenizers", reason="tokenizers is not installed in this environment")

from gpufleet.lab import tiny_model  # noqa: E402 - after the skips, so a missing engine is said first

CFG = tiny_model.CONFIG
PROMPTS = [
    "Hello world, the fleet serves the model on every gpu node.",
    "  two  spaces\tand a tab\n\nnew lines 12345 1,000.5!? it's we'll they've",
    "naïve café — 日本語 😀 ÿ\x7f",
    "",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-llama")
    tiny_model.write(directory)
    return directory


@pytest.fixture(scope="module")
def llm(model_dir):
    return llama_cpp.Llama(
        model_path=str(model_dir / tiny_model.GGUF_FILE),
        n_ctx=CFG["max_position_embeddings"],
        n_threads=2,
        logits_all=True,
        verbose=False,
    )


def _weights(directory):
    out = {}
    for shard in sorted(directory.glob("*.safetensors")):
        raw = shard.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        header.pop("__metadata__")
        for name, spec in header.items():
            start, stop = spec["data_offsets"]
            data = np.frombuffer(raw[8 + n + start : 8 + n + stop], dtype="<f2")
            out[name] = data.reshape(spec["shape"]).astype(np.float32)
    return out


def _hf_llama_logits(w, ids):
    """Hugging Face LlamaForCausalLM's forward pass, in numpy, on the safetensors weights:
    RMSNorm, rope by rotating half of each head, grouped-query causal attention, SwiGLU."""
    t, heads, kv, d = len(ids), CFG["num_attention_heads"], CFG["num_key_value_heads"], CFG["head_dim"]

    def norm(x, weight):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + CFG["rms_norm_eps"]) * weight

    angles = np.outer(np.arange(t), 1.0 / CFG["rope_theta"] ** (np.arange(0, d, 2) / d))
    angles = np.concatenate([angles, angles], -1)[:, None]
    cos, sin = np.cos(angles), np.sin(angles)

    def rope(x):
        return x * cos + np.concatenate([-x[..., d // 2 :], x[..., : d // 2]], -1) * sin

    x = w["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((t, t), -np.inf), 1)
    for i in range(CFG["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = norm(x, w[p + "input_layernorm.weight"])
        q = rope((h @ w[p + "self_attn.q_proj.weight"].T).reshape(t, heads, d))
        k = rope((h @ w[p + "self_attn.k_proj.weight"].T).reshape(t, kv, d)).repeat(heads // kv, 1)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(t, kv, d).repeat(heads // kv, 1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(d) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", s, v).reshape(t, heads * d) @ w[p + "self_attn.o_proj.weight"].T
        h = norm(x, w[p + "post_attention_layernorm.weight"])
        gate, up = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
    return norm(x, w["model.norm.weight"]) @ w["lm_head.weight"].T


def test_the_byte_alphabet_is_gpt2s():
    assert sorted(tiny_model.byte_symbols()) == sorted(tokenizers.pre_tokenizers.ByteLevel.alphabet())


@pytest.mark.parametrize("text", PROMPTS)
def test_llama_cpp_tokenizes_and_decodes_as_tokenizers_does(model_dir, llm, text):
    hf = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = hf.encode(text).ids
    assert llm.tokenize(text.encode(), add_bos=True) == ids
    assert ids[0] == CFG["bos_token_id"]
    assert llm.detokenize(ids[1:]) == text.encode() == hf.decode(ids).encode()


def test_llama_cpp_computes_what_the_safetensors_model_computes(model_dir, llm):
    ids = llm.tokenize(PROMPTS[0].encode(), add_bos=True)
    llm.reset()
    llm.eval(ids)
    got = np.array(llm.scores[: len(ids)])
    want = _hf_llama_logits(_weights(model_dir), np.array(ids))
    # measured: 5e-4 (float16 weights, float16 KV cache); without the q/k row regrouping: 2e-2
    assert np.abs(got - want).max() < 5e-3
    assert (got.argmax(-1) == want.argmax(-1)).all()


def test_greedy_generation_is_repeatable_and_what_the_reference_generates(model_dir, llm):
    def complete():
        return llm.create_completion(PROMPTS[0], max_tokens=8, temperature=0.0, repeat_penalty=1.0)

    first, second = complete(), complete()
    assert first["choices"][0]["text"] == second["choices"][0]["text"] != ""
    assert first["usage"]["completion_tokens"] == 8
    ids = llm.tokenize(PROMPTS[0].encode(), add_bos=True)
    w, want = _weights(model_dir), list(ids)
    for _ in range(8):
        want.append(int(_hf_llama_logits(w, np.array(want))[-1].argmax()))
    assert first["choices"][0]["text"] == llm.detokenize(want[len(ids) :]).decode("utf-8", errors="ignore")
