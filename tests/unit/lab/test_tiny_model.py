"""The lab's tiny model is a valid, reproducible Hugging Face style checkpoint."""

from __future__ import annotations

import hashlib
import json
import struct

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
