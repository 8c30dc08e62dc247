#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: trtllm_engine
short_description: Build a TensorRT-LLM engine (legacy flow) once per GPU, driver, versions, weights, args
version_added: 0.1.0
description:
  - Builds the TensorRT engine of a model version with TensorRT-LLM's legacy flow, the model family's
    C(convert_checkpoint.py) (O(convert_script)) then C(trtllm-build), both from the serving environment
    O(env), into a cache directory O(cache_dir), and returns the engine directory to serve with
    C(trtllm-serve ENGINE_DIR --tokenizer MODEL_DIR --backend tensorrt).
  - An engine runs only on the GPU model and TensorRT version it was built with, so each is filed under
    a key, the sha256 of the canonical JSON of what it depends on - the GPU model (nvidia-smi's product
    name), the driver version, the TensorRT-LLM and TensorRT versions installed in O(env), the sha256 of
    the model version's signed manifest, O(tensor_parallel_size), the sha256 of O(convert_script), and
    O(convert_args) and O(build_args) (the order options are given in does not matter). The inputs are
    written next to the engine as C(key.json).
  - When the key's directory is already in the cache and complete, nothing is built (RV(changed=false)).
    A build runs in a temporary directory under O(cache_dir) and is moved into place by one rename, the
    marker C(.gpufleet-complete) written last; a failed build is removed, and the directory of one that
    was killed (C(.gpufleet-build-*)) is removed by the next run. A key directory without the marker is
    not the cache's and is never replaced.
author:
  - gpufleet developers
options:
  model_dir:
    description:
      - The model version's directory in the model store (C(STORE/models/NAME/versions/VERSION)); its
        manifest copy C(.gpufleet-model.json) gives the weights' digest.
    type: path
    required: true
  env:
    description:
      - The python_runtime environment with TensorRT-LLM; C(bin/python) and C(bin/trtllm-build) are run
        from it.
    type: path
    required: true
  convert_script:
    description:
      - The model family's checkpoint converter, e.g. C(examples/models/core/llama/convert_checkpoint.py)
        of the TensorRT-LLM release installed in O(env), run with O(env)'s python.
    type: path
    required: true
  tensor_parallel_size:
    description:
      - GPUs the engine is split over (C(--tp_size) of the converter); the host must have as many.
    type: int
    default: 1
  convert_args:
    description:
      - More converter options, each option name to its value (V(dtype) to V(bfloat16)); V(true) is a
        bare flag, V(false) or null leaves the option out, a list gives several values. C(model_dir),
        C(output_dir) and C(tp_size) are set by the module.
    type: dict
    default: {}
  build_args:
    description:
      - C(trtllm-build) options, as O(convert_args) (such as V(max_batch_size), V(gemm_plugin),
        V(max_seq_len)). C(checkpoint_dir) and C(output_dir) are set by the module.
    type: dict
    default: {}
  cache_dir:
    description:
      - The engine cache; one directory per key.
    type: path
    default: /var/lib/gpufleet/trtllm-engines
  nvidia_smi_path:
    description:
      - Path of C(nvidia-smi), as in M(gpufleet.cluster.gpu_facts); looked up on E(PATH) when not set.
    type: path
  timeout:
    description:
      - Seconds each build command may run (C(timeout) from coreutils); V(0) waits however long it takes
        (a large model builds for many minutes).
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    description: >-
      Computes the key and reports whether a build would happen (RV(changed)) and which leftovers would be
      removed; builds and removes nothing.
  diff_mode:
    support: none
    description: An engine is binary; RV(key_inputs) says what it is built from.
notes:
  - Needs the NVIDIA driver and the GPUs, since the key holds the GPU model and the driver version and
    the build itself runs on the GPU.
  - The logic lives in the collection's C(trtllm_engine) module util; the GPUs are read by the code of
    M(gpufleet.cluster.gpu_facts).
  - To clear the cache, remove O(cache_dir)'s entries (C(rm -rf CACHE/KEY)) while no engine serves from them.
seealso:
  - module: gpufleet.cluster.gpu_facts
  - name: TensorRT-LLM trtllm-build
    description: The legacy engine build command and its options.
    link: https://nvidia.github.io/TensorRT-LLM/commands/trtllm-build.html
"""

EXAMPLES = r"""
- name: Build (once) the engine of llama-3.1-8b version 2024-07-23
  gpufleet.cluster.trtllm_engine:
    model_dir: /var/lib/gpufleet/model-store/models/llama-3.1-8b/versions/2024-07-23
    env: /opt/gpufleet/envs/serve
    convert_script: /opt/gpufleet/trtllm-examples/models/core/llama/convert_checkpoint.py
    convert_args:
      dtype: bfloat16
    build_args:
      gemm_plugin: auto
      max_batch_size: 16
      max_seq_len: 8192
  register: engine

- name: Serve it
  ansible.builtin.debug:
    msg: trtllm-serve {{ engine.engine_dir }} --tokenizer {{ engine.model_dir }} --backend tensorrt

- name: Would a build happen? (nothing is built in check mode)
  gpufleet.cluster.trtllm_engine:
    model_dir: /var/lib/gpufleet/model-store/models/llama-3.1-8b/versions/2024-07-23
    env: /opt/gpufleet/envs/serve
    convert_script: /opt/gpufleet/trtllm-examples/models/core/llama/convert_checkpoint.py
    tensor_parallel_size: 2
  check_mode: true
  register: planned
"""

RETURN = r"""
key:
  description: The cache key, sha256 over the canonical JSON of RV(key_inputs).
  returned: always
  type: str
  sample: 9f2c4e0a7d3b1c5e8f6a2b4d0c9e7f1a3b5d7c9e1f3a5b7d9c0e2f4a6b8d0c1e
key_inputs:
  description: What the engine depends on, as written to C(key.json) in the entry.
  returned: always
  type: dict
  sample:
    format: gpufleet-trtllm-engine-key
    format_version: 1
    gpu_model: NVIDIA H100 80GB HBM3
    driver_version: 550.54.15
    tensorrt_llm_version: 1.2.1
    tensorrt_version: 10.13.2.6
    model_manifest_sha256: 3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855f
    tensor_parallel_size: 1
    convert_script_sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
    convert_args: [[dtype, [bfloat16]]]
    build_args: [[gemm_plugin, [auto]], [max_batch_size, ["16"]]]
entry_dir:
  description: The key's directory in the cache (C(engine/), C(key.json), C(.gpufleet-complete)).
  returned: always
  type: str
  sample: /var/lib/gpufleet/trtllm-engines/9f2c4e0a7d3b1c5e8f6a2b4d0c9e7f1a3b5d7c9e1f3a5b7d9c0e2f4a6b8d0c1e
engine_dir:
  description: The engine to serve (in check mode, where it would be).
  returned: always
  type: str
  sample: "/var/lib/gpufleet/trtllm-engines/9f2c4e0a7d3b1c5e8f6a2b4d0c9e7f1a3b5d7c9e1f3a5b7d9c0e2f4a6b8d0c1e\
    /engine"
model_dir:
  description: The model version directory (the tokenizer trtllm-serve reads).
  returned: always
  type: str
  sample: /var/lib/gpufleet/model-store/models/llama-3.1-8b/versions/2024-07-23
built:
  description: Whether an engine was built in this run (in check mode, whether one would be).
  returned: always
  type: bool
  sample: true
removed:
  description: Directories of builds that never finished, removed (in check mode, that would be removed).
  returned: always
  type: list
  elements: str
  sample: [/var/lib/gpufleet/trtllm-engines/.gpufleet-build-9f2c4e0a7d3b1c5e-k2j4h1]
commands:
  description: The commands run (in check mode, that would run), each an argv list.
  returned: always
  type: list
  elements: list
  sample:
    - [/opt/gpufleet/envs/serve/bin/python, convert_checkpoint.py, --model_dir, /models/m, --output_dir,
       /var/lib/gpufleet/trtllm-engines/.gpufleet-build-9f2c4e0a7d3b1c5e-k2j4h1/checkpoint, --tp_size, "1"]
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpufleet.cluster.plugins.module_utils import trtllm_engine as te
from ansible_collections.gpufleet.cluster.plugins.module_utils.host_facts import gather_gpus
from ansible_collections.gpufleet.cluster.plugins.module_utils.tool_run import C_LOCALE, output_tail

VERSION_PROBE_TIMEOUT = 120


def _runner(module, timeout):
    timeout_bin = module.get_bin_path("timeout") if timeout else None

    def run(argv, cwd):
        command = [timeout_bin, "-k", "30", str(timeout), *argv] if timeout_bin else list(argv)
        return module.run_command(command, cwd=cwd, environ_update=C_LOCALE)

    return run


def runtime_versions(module, env):
    python = os.path.join(env, "bin", "python")
    if not os.access(python, os.X_OK):
        raise te.TrtllmEngineError(f"{python} is not an executable: is {env} a python_runtime environment?")
    rc, out, err = _runner(module, VERSION_PROBE_TIMEOUT)([python, "-c", te.VERSION_PROBE], None)
    if rc != 0:
        raise te.TrtllmEngineError(
            f"the version probe of {env} failed (status {rc}): {output_tail(err, out) or 'no output'}"
        )
    return te.parse_runtime_versions(out, env)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            model_dir=dict(type="path", required=True),
            env=dict(type="path", required=True),
            convert_script=dict(type="path", required=True),
            tensor_parallel_size=dict(type="int", default=1),
            convert_args=dict(type="dict", default={}),
            build_args=dict(type="dict", default={}),
            cache_dir=dict(type="path", default=te.DEFAULT_CACHE),
            nvidia_smi_path=dict(type="path"),
            timeout=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    model_dir, env, cache = (os.path.normpath(p[k]) for k in ("model_dir", "env", "cache_dir"))
    try:
        if p["tensor_parallel_size"] < 1:
            raise te.TrtllmEngineError(f"tensor_parallel_size {p['tensor_parallel_size']}: must be 1 or more")
        if p["timeout"] < 0:
            raise te.TrtllmEngineError(f"timeout must be 0 or more seconds, got {p['timeout']}")
        gpu_model, driver = te.gpu_identity(
            gather_gpus(module, p["nvidia_smi_path"]), p["tensor_parallel_size"]
        )
        inputs = te.key_inputs(
            gpu_model, driver, runtime_versions(module, env), te.manifest_digest(model_dir),
            p["tensor_parallel_size"], te.file_sha256(p["convert_script"], "convert_script"),
            p["convert_args"], p["build_args"],
        )  # fmt: skip
        key = te.cache_key(inputs)
        entry = te.entry_dir(cache, key)
        result = dict(key=key, key_inputs=inputs, entry_dir=entry, engine_dir=os.path.join(entry, te.ENGINE),
                      model_dir=model_dir)  # fmt: skip
        if module.check_mode:
            would = not te.is_complete(cache, key)
            commands = te.build_commands(env, p["convert_script"], model_dir,
                                         os.path.join(cache, te.TEMP_PREFIX + "KEY"), inputs)  # fmt: skip
            module.exit_json(changed=would, built=would, removed=te.leftovers(cache),
                             commands=[argv for _, argv in commands] if would else [], **result)  # fmt: skip
        with te.locked(cache):
            done = te.build(cache, key, inputs, env, p["convert_script"], model_dir,
                            _runner(module, p["timeout"]), timeout=p["timeout"])  # fmt: skip
    except te.TrtllmEngineError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=done["built"] or bool(done["removed"]), **done, **result)


if __name__ == "__main__":
    main()
