"""Test doubles of a TensorRT-LLM host for the trtllm_engine module: scripts written into tmp_path.

- ``fake_env/bin/python``: runs this test's Python (the module's version probe then reads package
  metadata for real, from ``fake_site``: dist-info directories of tensorrt_llm and tensorrt);
- ``fake_convert_checkpoint.py``: writes a checkpoint (config.json, rank0.safetensors);
- ``fake_env/bin/trtllm-build``: writes an engine (config.json, rank0.engine) from the checkpoint;
  with ``FAKE_TRTLLM_BUILD_FAIL`` set it prints an error and exits 3, writing half an engine first;
  with ``FAKE_TRTLLM_BUILD_HANG`` (a path) it writes half an engine, creates that path and sleeps;
- ``fake_nvidia_smi``: prints a recorded ``nvidia-smi -q -x`` report.

Every command appends its argv to ``calls.log``, so a test sees what ran.
"""

import json
import sys
from pathlib import Path

from conftest import FIXTURES

SMI = FIXTURES / "nvidia_smi"

CONVERT = """\
import json, os, sys
with open(os.environ["FAKE_TRTLLM_CALLS"], "a") as log:
    log.write(json.dumps(["convert"] + sys.argv[1:]) + "\\n")
args = sys.argv[1:]
out = args[args.index("--output_dir") + 1]
os.makedirs(out)
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump({"argv": args}, f)
with open(os.path.join(out, "rank0.safetensors"), "w") as f:
    f.write("weights")
"""

BUILD = """\
import json, os, sys
with open(os.environ["FAKE_TRTLLM_CALLS"], "a") as log:
    log.write(json.dumps(["trtllm-build"] + sys.argv[1:]) + "\\n")
args = sys.argv[1:]
ckpt, out = args[args.index("--checkpoint_dir") + 1], args[args.index("--output_dir") + 1]
assert os.path.isfile(os.path.join(ckpt, "config.json")), "no checkpoint"
os.makedirs(out)
with open(os.path.join(out, "rank0.engine"), "w") as f:
    f.write("half an engine")
if os.environ.get("FAKE_TRTLLM_BUILD_HANG"):
    open(os.environ["FAKE_TRTLLM_BUILD_HANG"], "w").close()
    import time
    time.sleep(120)
if os.environ.get("FAKE_TRTLLM_BUILD_FAIL"):
    print("[TRT] building layer 1 of 32")
    print("[TRT] [E] out of memory while building the engine", file=sys.stderr)
    sys.exit(3)
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump({"build_args": args}, f)
"""


def _script(path, text):
    path.write_text(text)
    path.chmod(0o755)
    return path


class FakeTrtllmHost:
    def __init__(self, tmp_path, monkeypatch, smi="tesla-t4.xml"):
        self.root = tmp_path
        self.env = tmp_path / "fake_env"
        (self.env / "bin").mkdir(parents=True)
        _script(self.env / "bin" / "python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        _script(self.env / "bin" / "trtllm-build", f"#!{sys.executable}\n{BUILD}")
        self.convert = _script(tmp_path / "fake_convert_checkpoint.py", CONVERT)
        self.smi_report = tmp_path / "nvidia-smi.xml"
        self.smi_report.write_text((SMI / smi).read_text())
        self.nvidia_smi = _script(tmp_path / "fake_nvidia_smi", f'#!/bin/sh\ncat "{self.smi_report}"\n')
        self.site = tmp_path / "fake_site"
        self.set_versions("1.2.1", "10.13.2.6")
        monkeypatch.setenv("PYTHONPATH", str(self.site))
        self.calls = tmp_path / "calls.log"
        monkeypatch.setenv("FAKE_TRTLLM_CALLS", str(self.calls))
        self.model = tmp_path / "store" / "models" / "m" / "versions" / "1"
        self.model.mkdir(parents=True)
        self.set_manifest({"name": "m", "version": "1", "files": []})
        (self.model / "config.json").write_text("{}")
        self.cache = tmp_path / "cache"

    def set_versions(self, trtllm, trt):
        for name, version in (("tensorrt_llm", trtllm), ("tensorrt", trt)):
            for old in self.site.glob(f"{name}-*.dist-info") if self.site.exists() else ():
                (old / "METADATA").unlink()
                old.rmdir()
            info = self.site / f"{name}-{version}.dist-info"
            info.mkdir(parents=True)
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")

    def set_manifest(self, manifest):
        (self.model / ".gpufleet-model.json").write_text(json.dumps(manifest, sort_keys=True) + "\n")

    def ran(self):
        if not self.calls.exists():
            return []
        return [json.loads(line)[0] for line in self.calls.read_text().splitlines()]

    def args(self, **extra):
        return {
            "model_dir": str(self.model),
            "env": str(self.env),
            "convert_script": str(self.convert),
            "cache_dir": str(self.cache),
            "nvidia_smi_path": str(self.nvidia_smi),
            **extra,
        }

    def entries(self):
        return sorted(p.name for p in self.cache.iterdir()) if self.cache.exists() else []


def key_dirs(cache):
    return sorted(p.name for p in Path(cache).iterdir() if len(p.name) == 64)
