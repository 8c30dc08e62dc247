"""gpufleet.cluster.trtllm_engine run in-process against FakeTrtllmHost (trtllm_double.py): real
commands (fake convert_checkpoint and trtllm-build scripts, a fake nvidia-smi printing a recorded
report), a real cache directory under tmp_path."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.module_utils import trtllm_engine as te
from ansible_collections.gpufleet.cluster.plugins.modules import trtllm_engine
from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401
from trtllm_double import SMI, FakeTrtllmHost, key_dirs


@pytest.fixture
def host(tmp_path, monkeypatch):
    return FakeTrtllmHost(tmp_path, monkeypatch)


def run(args, check=False):
    if check:
        args = {**args, "_ansible_check_mode": True}
    with patch_module_args(args), pytest.raises(AnsibleExitJson) as exc:
        trtllm_engine.main()
    return exc.value.args[0]


def fail(args):
    with patch_module_args(args), pytest.raises(AnsibleFailJson) as exc:
        trtllm_engine.main()
    return exc.value.args[0]


BUILD_ARGS = {"max_batch_size": 8, "gemm_plugin": "auto", "--max_seq_len": "4096"}


def test_first_run_builds_into_the_keys_directory_and_writes_why(host):
    result = run(host.args(build_args=BUILD_ARGS, convert_args={"dtype": "bfloat16"}))
    assert result["changed"] is True and result["built"] is True
    assert host.ran() == ["convert", "trtllm-build"]
    entry = host.cache / result["key"]
    assert result["engine_dir"] == str(entry / "engine")
    assert sorted(os.listdir(entry)) == [".gpufleet-complete", "engine", "key.json"]  # checkpoint gone
    assert sorted(os.listdir(entry / "engine")) == ["config.json", "rank0.engine"]
    record = json.loads((entry / "key.json").read_text())
    assert record["key"] == result["key"] == te.cache_key(record["inputs"])
    inputs = record["inputs"]
    assert (inputs["gpu_model"], inputs["driver_version"]) == ("Tesla T4", "515.105.01")  # the report's
    assert (inputs["tensorrt_llm_version"], inputs["tensorrt_version"]) == ("1.2.1", "10.13.2.6")
    assert inputs["build_args"] == [
        ["gemm_plugin", ["auto"]],
        ["max_batch_size", ["8"]],
        ["max_seq_len", ["4096"]],
    ]
    built_with = json.loads((entry / "engine" / "config.json").read_text())["build_args"]
    assert built_with[-6:] == ["--gemm_plugin", "auto", "--max_batch_size", "8", "--max_seq_len", "4096"]
    # nothing of the build is left beside the entry
    assert [n for n in host.entries() if n.startswith(".gpufleet-build-")] == []


def test_second_run_with_the_key_present_builds_nothing(host):
    first = run(host.args(build_args=BUILD_ARGS))
    reordered = dict(reversed(list(BUILD_ARGS.items())))
    second = run(host.args(build_args=reordered))
    assert second["changed"] is False and second["built"] is False and second["commands"] == []
    assert second["key"] == first["key"] and second["engine_dir"] == first["engine_dir"]
    assert host.ran() == ["convert", "trtllm-build"]  # from the first run only


@pytest.mark.parametrize(
    "change",
    [
        lambda h: h.smi_report.write_text((SMI / "a100-sxm4-80gb-mig.xml").read_text()),
        lambda h: h.smi_report.write_text(h.smi_report.read_text().replace("515.105.01", "535.261.03")),
        lambda h: h.set_versions("1.2.2", "10.13.2.6"),
        lambda h: h.set_versions("1.2.1", "10.14.1.48"),
        lambda h: h.set_manifest({"name": "m", "version": "1", "files": ["other weights"]}),
    ],
    ids=["gpu-model", "driver", "tensorrt-llm", "tensorrt", "manifest"],
)
def test_a_changed_host_or_model_gets_its_own_engine(host, change):
    first = run(host.args())
    change(host)
    second = run(host.args())
    assert second["built"] is True and second["key"] != first["key"]
    assert key_dirs(host.cache) == sorted([first["key"], second["key"]])  # the old engine stays


def test_a_failing_build_caches_nothing_and_says_which_command_failed(host, monkeypatch):
    monkeypatch.setenv("FAKE_TRTLLM_BUILD_FAIL", "1")
    result = fail(host.args())
    assert result["msg"].startswith("trtllm-build exited with status 3; nothing was cached")
    assert "fake_env/bin/trtllm-build --checkpoint_dir" in result["msg"]
    assert "out of memory while building the engine" in result["msg"]  # the output's tail
    assert host.entries() == [".gpufleet-lock"]  # no entry, no half engine, no build directory
    monkeypatch.delenv("FAKE_TRTLLM_BUILD_FAIL")
    assert run(host.args())["built"] is True


# The module in its own process (as Ansible runs it), killed with SIGKILL in the middle of trtllm-build.
MODULE_PROCESS = """
import json, sys
sys.path.insert(0, sys.argv[1])
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.modules import trtllm_engine
with patch_module_args(json.loads(sys.argv[2])):
    trtllm_engine.main()
"""


def test_a_killed_build_leaves_no_entry_and_the_next_run_cleans_it_and_builds(host, monkeypatch):
    users = host.cache / "my-notes"
    users.mkdir(parents=True)
    started = host.root / "build-started"
    monkeypatch.setenv("FAKE_TRTLLM_BUILD_HANG", str(started))
    collections = str(Path(te.__file__).parents[5])  # the directory holding ansible_collections/
    proc = subprocess.Popen(
        [sys.executable, "-c", MODULE_PROCESS, collections, json.dumps(host.args())],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the fake trtllm-build never started"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    [leftover] = [p for p in host.cache.iterdir() if p.name.startswith(".gpufleet-build-")]
    assert (leftover / "engine" / "rank0.engine").exists() and key_dirs(host.cache) == []  # half, unkeyed
    monkeypatch.delenv("FAKE_TRTLLM_BUILD_HANG")
    result = run(host.args())
    assert result["built"] is True and result["removed"] == [str(leftover)]
    assert not leftover.exists() and users.is_dir()  # only gpufleet's own names are cleaned
    assert host.entries() == [".gpufleet-lock", result["key"], "my-notes"]


def test_check_mode_reports_a_build_and_builds_nothing(host):
    planned = run(host.args(build_args=BUILD_ARGS), check=True)
    assert planned["changed"] is True and planned["built"] is True
    assert [argv[0] for argv in planned["commands"]] == [
        str(host.env / "bin/python"),
        str(host.env / "bin/trtllm-build"),
    ]
    assert host.ran() == [] and not host.cache.exists()
    run(host.args(build_args=BUILD_ARGS))
    again = run(host.args(build_args=BUILD_ARGS), check=True)
    assert again["changed"] is False and again["key"] == planned["key"]


def test_a_key_directory_that_is_not_the_caches_is_refused_never_replaced(host):
    planned = run(host.args(), check=True)
    foreign = host.cache / planned["key"]
    foreign.mkdir(parents=True)
    (foreign / "mine.txt").write_text("an operator's file")
    result = fail(host.args())
    assert "is not a complete engine of this cache" in result["msg"] and "move it away" in result["msg"]
    assert (foreign / "mine.txt").read_text() == "an operator's file" and host.ran() == []


def test_an_environment_without_tensorrt_llm_is_refused_before_building(host):
    for info in host.site.glob("tensorrt_llm-*.dist-info"):
        (info / "METADATA").unlink()
        info.rmdir()
    result = fail(host.args())
    assert "tensorrt_llm not installed in the environment" in result["msg"] and host.ran() == []


def test_no_gpu_is_refused_with_nvidia_smis_reason(host):
    host.nvidia_smi.write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate' >&2\nexit 9\n"
    )
    result = fail(host.args())
    assert "nvidia-smi did not report one" in result["msg"] and "could not communicate" in result["msg"]
    assert host.ran() == []
