"""Issue 18: benchmark probes you can trust, through the very check ``gpufleet verify`` runs.

``checks/test_probes.test_probe`` is called with a host whose ``run`` executes the real probe command
(the base64 program, ``timeout``, the interpreter) here, with ``sys.executable`` as the probe runtime:

- class 2 (CUDA usable = driver's GPUs): a fake ``torch`` package on PYTHONPATH that warns and raises
  exactly what PyTorch prints for CUDA error 802 (the recorded-style fixture
  tests/fixtures/probes/torch-cuda-init-error-802.txt; see PROVENANCE.md there);
- nccl-tests: the test double of ``all_reduce_perf`` printing a recorded report (tests/fixtures/probes);
- the kernel log written during a run: recordings from tests/fixtures/diagnose.

Host states (nvidia-smi facts) are CONSTRUCTED in the shape ``gpu_facts`` returns.
"""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import baselines
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core as health
from conftest import FIXTURES
from test_probes import fake_all_reduce_perf

from gpufleet.verify import probes, probing
from gpufleet.verify.checks import test_probes as check_module
from gpufleet.verify.probes import h2d, sustained

FAKE_TORCH = """
import os, warnings
__version__ = "2.7.0+cu126"
version = type("version", (), {"cuda": "12.6"})
_LINES = open(os.environ["FAKE_TORCH_FIXTURE"], encoding="utf-8").read().splitlines()
_WARNING = next(l.split(": ", 1)[1] for l in _LINES if l.startswith("warning: "))
_ERROR = next(l.split("RuntimeError: ", 1)[1] for l in _LINES if l.startswith("exception: "))


class cuda:
    @staticmethod
    def is_available():
        warnings.warn(_WARNING, UserWarning)
        return False

    @staticmethod
    def device_count():
        return 0

    @staticmethod
    def init():
        raise RuntimeError(_ERROR)
"""


class LocalHost:
    """A testinfra-like host: runs commands here; the kernel log is a recording (or unreadable)."""

    def __init__(self, env=None, kernel_log=None, probe_output=None):
        self.env = env or {}
        self.kernel_log = kernel_log
        self.probe_output = probe_output  # (rc, stdout, stderr) instead of running the program
        self.commands = []

    def run(self, command):
        self.commands.append(command)
        if command.startswith("journalctl -k"):
            ok = self.kernel_log is not None
            return SimpleNamespace(rc=0 if ok else 1, stdout=self.kernel_log or "", stderr="")
        if self.probe_output is not None and "gpufleet-probe" in command:
            rc, out, err = self.probe_output
            return SimpleNamespace(rc=rc, stdout=out, stderr=err)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(self.env)
        proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=120)
        return SimpleNamespace(rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)

    def probe_command(self):
        return next(c for c in self.commands if "gpufleet-probe" in c)


def gpu_state(n=8, name="NVIDIA H100 80GB HBM3", nvswitches=4, mig=False, numa=None, facts=None):
    gpus = [
        {
            "index": i,
            "name": name,
            "pci_bus_id": f"00000000:{0x18 + i:02X}:00.0",
            "numa_node": (numa[i] if numa else (0 if i < n // 2 else 1)),
            "mig_mode": {"current": mig, "pending": mig},
        }
        for i in range(n)
    ]
    return {
        "gpus": {
            "gpu_count": n,
            "source": "nvidia-smi",
            "driver_loaded": True,
            "gpus": gpus,
            "nvswitch_count": nvswitches,
        },
        "local_facts": facts or {},
    }


def run_check(probe, host, state, hostvars=None, tier="full"):
    recorded = []

    def record(res, *, title, tier, kind, started):
        recorded.append(res)
        return res

    request = SimpleNamespace(config=SimpleNamespace(getoption=lambda name: tier))
    hv = {"gpufleet_verify_probe_retries": 0, **(hostvars or {})}
    check_module.test_probe(probe, host, state, hv, {}, record, request)
    (res,) = recorded
    return res


def failed(probe, error, stderr=""):
    """What a probe program prints when it fails: exit 1 and its one JSON line."""
    return (1, json.dumps({"probe": probe, "ok": False, "error": error}) + "\n", stderr)


def verdict(*results):
    return health.verdict(list(results))["verdict"]


# ---- class 1: the probe runtime, found by recorded facts -----------------------------------------


GPU_PROBES = [n for n, m in probes.PROBES.items() if m["needs_gpu"] and m["tier"] == "full"]


@pytest.mark.parametrize("probe", [*GPU_PROBES, "sustained"])
def test_host_without_gpu_skips_every_probe_never_passes(probe):
    host = LocalHost()
    state = {"gpus": {"gpu_count": 0, "gpus": [], "in_container": True}, "local_facts": {}}
    res = run_check(probe, host, state, tier="burnin")
    assert res["status"] == "skip" and res["summary"].startswith("no GPU present")
    assert host.commands == []  # nothing was run


@pytest.mark.parametrize("probe", GPU_PROBES)
def test_gpu_host_whose_venv_has_no_torch_is_not_verified_with_the_remedy(probe):
    facts = {"gpufleet_nccl": {"venv": "/opt/gpufleet/venv", "torch": "", "nccl_tests": ""}}
    host = LocalHost()
    res = run_check(probe, host, gpu_state(facts=facts))
    assert res["status"] == "unverified"
    assert "/opt/gpufleet/venv/bin/python has no PyTorch" in res["summary"]
    # the remedy names the role option that provisions it, and the override
    assert "with the nccl role (nccl_probe_torch: true" in res["summary"]
    assert "gpufleet_verify_python" in res["summary"]
    if probe == "allreduce":
        assert "nccl_tests: true" in res["summary"]
    assert host.commands == []  # known from the fact: nothing guessed, nothing run
    # the host is neither healthy nor degraded for a missing package
    assert verdict(health.result("ecc", health.PASS, "ok"), res) == health.UNVERIFIED


def test_gpu_host_without_any_recorded_runtime_is_not_verified():
    res = run_check("gemm", LocalHost(), gpu_state())
    assert res["status"] == "unverified"
    assert "no probe runtime recorded" in res["summary"] and "gpufleet_nccl.fact" in res["summary"]
    assert "nccl_probe_torch: true" in res["summary"]


def test_torch_not_importable_in_the_runtime_is_not_verified(tmp_path):
    """gpufleet_verify_python given (torch unknown): the real probe program says torch is missing."""
    if subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0:
        pytest.skip("torch is importable here")
    host = LocalHost()
    res = run_check("gemm", host, gpu_state(), {"gpufleet_verify_python": sys.executable})
    assert res["status"] == "unverified" and "torch not importable" in res["summary"]
    assert "--expect-gpus 8" in host.probe_command()


def test_allreduce_runs_the_nccl_tests_binary_the_role_recorded(tmp_path):
    binary = fake_all_reduce_perf(tmp_path, FIXTURES / "probes" / "all_reduce_perf-h100-2x8-wrong-layout.txt")
    facts = {"gpufleet_nccl": {"venv": "", "torch": "", "nccl_tests": str(binary)}}
    host = LocalHost()
    # no PyTorch anywhere: nccl-tests mode needs only the standard library (the host's python3 here)
    res = run_check(
        "allreduce", host, gpu_state(nvswitches=0, facts=facts), {"gpufleet_verify_python": sys.executable}
    )
    command = host.probe_command()
    assert f"--nccl-tests {binary} --gpus 8" in command
    assert (tmp_path / "argv").read_text().split() == ["-b", "8", "-e", "8G", "-f", "2", "-g", "8"]
    # judged as a ring over 8 H100 (no NVSwitch): 338.82 of 370 GB/s
    assert res["status"] == "pass" and res["measured"] == 338.82 and res["expected"] == 370
    assert res["summary"].startswith("8 GPUs, ring: ")


def test_runtime_from_the_fact_and_override():
    fact = {
        "gpufleet_nccl": {"venv": "/opt/v", "torch": "2.7.0", "nccl_tests": "/opt/t/build/all_reduce_perf"}
    }
    runtime = probing.probe_runtime({}, fact)
    assert runtime == {
        "python": "/opt/v/bin/python",
        "torch": "2.7.0",
        "nccl_tests": "/opt/t/build/all_reduce_perf",
        "source": "/etc/ansible/facts.d/gpufleet_nccl.fact (venv)",
    }
    assert probing.missing_runtime("gemm", runtime) is None
    old = probing.probe_runtime(
        {}, {"gpufleet_nccl": {"venv": "/opt/v"}}
    )  # a fact from before torch was recorded
    assert old["torch"] is None and probing.missing_runtime("gemm", old) is None  # the probe will say
    mine = probing.probe_runtime({"gpufleet_verify_python": "/srv/py"}, fact)
    assert mine["python"] == "/srv/py" and mine["source"] == "gpufleet_verify_python"
    assert probing.missing_runtime("inference", probing.probe_runtime({}, {})) is None  # stdlib only


# ---- class 2: CUDA usable = the driver's GPUs --------------------------------------------------


@pytest.fixture
def torch_802(tmp_path):
    pkg = tmp_path / "fake-torch" / "torch"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAKE_TORCH)
    return {
        "PYTHONPATH": str(pkg.parent),
        "FAKE_TORCH_FIXTURE": str(FIXTURES / "probes" / "torch-cuda-init-error-802.txt"),
    }


@pytest.mark.parametrize("probe", ["gemm", "membw", "h2d", "allreduce", "sustained"])
def test_cuda_error_802_fails_with_cudas_text_and_the_fabric_remedy(probe, torch_802):
    host = LocalHost(env=torch_802)
    res = run_check(probe, host, gpu_state(), {"gpufleet_verify_python": sys.executable}, tier="burnin")
    assert res["status"] == "fail", res
    assert "CUDA initialised 0 of the 8 GPU(s) nvidia-smi lists" in res["summary"]
    assert "Error 802: system not yet initialized" in res["summary"]
    assert res["action"] == health.REBOOT and "nvidia-fabricmanager" in res["summary"]
    assert "cause: cuda_init" in res["summary"]


def test_without_expected_gpus_no_device_is_only_unavailable(tmp_path, torch_802):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(torch_802)
    path = tmp_path / "gemm.py"
    path.write_text(probes.script_text("gemm"))
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, timeout=60)
    data = json.loads(proc.stdout.splitlines()[-1])
    assert proc.returncode == 3 and data["unavailable"] is True
    assert "Error 802" in data["reason"]  # the CUDA error is kept even then


# ---- class 3 and 4: baselines by configuration; inference never passes without one --------------


def attempt(value, **data):
    return {"status": "ok", "value": value, "reason": "", "stderr_tail": "", "data": {"value": value, **data}}


def test_healthy_4_gpu_h200_ring_passes_and_8_gpu_nvls_uses_its_own_row():
    state = gpu_state(n=4, name="NVIDIA H200", nvswitches=0)
    config = baselines.allreduce_config(4, probing.allreduce_interconnect(state["gpus"]))
    res = probing.judge_probe("allreduce", [attempt(363.0)], "H200", {}, "py", config=config)
    assert res["status"] == "pass" and res["expected"] == 363 and res["summary"].startswith("4 GPUs, ring")
    full = gpu_state(n=8, name="NVIDIA H200", nvswitches=4)
    assert probing.allreduce_interconnect(full["gpus"]) == "nvls"
    assert probing.allreduce_interconnect(full["gpus"], {"NCCL_NVLS_ENABLE": "0"}) == "ring"
    nvls = baselines.allreduce_config(8, "nvls")
    assert (
        probing.judge_probe("allreduce", [attempt(363.0)], "H200", {}, "py", config=nvls)["status"] == "fail"
    )


def test_inference_without_a_baseline_is_measured_not_judged_never_a_pass():
    data = {"params": {"model": "tiny-double"}}
    res = probing.judge_probe("inference", [attempt(812.5, **data)], "H100 SXM", {}, "py")
    assert res["status"] == "skip" and res["measured"] == 812.5
    assert res["summary"].startswith("measured 812.5 tokens/s, not judged")
    table = {"tiny-double": {"H100 SXM": {"expected": 1000}}}
    judged = probing.judge_probe(
        "inference", [attempt(812.5, **data)], "H100 SXM", {}, "py", inference_baselines=table
    )
    assert judged["status"] == "warn" and judged["expected"] == 1000.0


# ---- class 5: host<->device bound to the GPU's NUMA node, both directions judged ----------------


def test_h2d_is_told_each_gpus_numa_node_and_runs_in_pci_order(torch_802):
    host = LocalHost(
        probe_output=(3, '{"probe": "h2d", "ok": false, "unavailable": true, "reason": "x"}\n', "")
    )
    run_check("h2d", host, gpu_state(), {"gpufleet_verify_python": sys.executable})
    command = host.probe_command()
    assert "--numa-nodes 0:0,1:0,2:0,3:0,4:1,5:1,6:1,7:1" in command
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in command


def test_h2d_judges_device_to_host_too():
    good_both = attempt(55.0, d2h_min=54.0, params={"numa_bound": True})
    assert probing.judge_probe("h2d", [good_both], "H100 SXM", {}, "py")["status"] == "pass"
    slow_d2h = probing.judge_probe(
        "h2d", [attempt(55.0, d2h_min=30.0, params={"numa_bound": True})], "H100 SXM", {}, "py"
    )
    assert slow_d2h["status"] == "fail" and slow_d2h["measured"] == 30.0
    assert (
        "device->host: measured 30 GB/s" in slow_d2h["summary"]
        and "bound to each GPU's NUMA node" in slow_d2h["summary"]
    )


def test_numa_binding_helpers(tmp_path):
    assert h2d.parse_numa_nodes("0:0, 4:1") == {0: 0, 4: 1}
    with pytest.raises(Exception, match="index:node"):
        h2d.parse_numa_nodes("0-1")
    assert h2d.parse_cpulist("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    allowed = sorted(os.sched_getaffinity(0))
    node = tmp_path / "node1"
    node.mkdir()
    (node / "cpulist").write_text(f"{allowed[0]}\n")
    try:
        assert h2d.bind_to_node(1, sysfs=str(tmp_path)) == {allowed[0]}
        assert os.sched_getaffinity(0) == {allowed[0]}
    finally:
        os.sched_setaffinity(0, set(allowed))
    assert h2d.bind_to_node(7, sysfs=str(tmp_path)) is None  # no such node: measured unbound, said so
    assert h2d.bind_to_node(None) is None


# ---- class 6: sustained burn-in, timeouts from the requested duration -------------------------


def test_burnin_timeout_derives_from_the_requested_duration():
    result = {
        "probe": "sustained",
        "ok": True,
        "metric": "sustained_bf16_tflops",
        "unit": "TFLOPS",
        "value": 700.0,
    }
    host = LocalHost(probe_output=(0, json.dumps(result) + "\n", ""))
    hostvars = {"gpufleet_verify_python": sys.executable, "gpufleet_verify_burnin_seconds": 1800}
    res = run_check("sustained", host, gpu_state(), hostvars, tier="burnin")
    command = host.probe_command()
    assert "--seconds 1800 " in command + " "
    timeout = int(command.split("timeout -k 10 ")[1].split()[0])
    assert timeout >= 1800 + probes.STARTUP_MARGIN_S + 8 * probes.PER_GPU_MARGIN_S
    # judged on its own row: 700 of 794 TFLOPS is a pass under sustained ratios, a warn as a burst
    assert res["status"] == "pass" and res["expected"] == 794
    assert "sustained" in res["source"]
    assert baselines.judge("H100 SXM", "bf16_tflops", 700.0)["status"] == "warn"


def test_burst_gemm_in_burnin_cannot_time_out_before_its_budget():
    host = LocalHost(probe_output=(124, "", "still measuring"))
    res = run_check("gemm", host, gpu_state(), {"gpufleet_verify_python": sys.executable}, tier="burnin")
    command = host.probe_command()
    seconds = float(command.split("--seconds ")[1].split()[0])
    timeout = int(command.split("timeout -k 10 ")[1].split()[0])
    assert timeout - seconds >= probes.STARTUP_MARGIN_S + 8 * probes.PER_GPU_MARGIN_S
    assert "--thorough" in command
    assert res["status"] == "fail" and res["action"] == health.RESET_GPU and "timed out" in res["summary"]


def test_sustained_windows_separate_the_burst_from_the_settled_figure():
    # a GPU that starts at 790 TFLOPS and throttles to ~640 once hot
    windows = [790, 780, 760, 720, 660, 645, 640, 640, 638, 641]
    got = sustained.summarize_windows(windows)
    assert got["first"] == 790 and got["sustained"] == 640 and got["windows"] == 10
    assert got["drop_pct"] == pytest.approx(18.99, abs=0.01)
    assert baselines.judge("H100 SXM", "sustained_bf16_tflops", got["sustained"])["status"] == "warn"
    with pytest.raises(Exception, match="no window measured"):
        sustained.summarize_windows([None, 0])


def test_mig_gpus_skip_with_the_reason():
    host = LocalHost()
    res = run_check("gemm", host, gpu_state(mig=True), {"gpufleet_verify_python": sys.executable})
    assert res["status"] == "skip" and "MIG mode on GPU 0" in res["summary"] and host.commands == []


def test_single_gpu_allreduce_skips():
    res = run_check("allreduce", LocalHost(), gpu_state(n=1), {"gpufleet_verify_python": sys.executable})
    assert res["status"] == "skip" and "at least 2 GPUs" in res["summary"]


# ---- class 7: remedies by cause ---------------------------------------------------------------


def test_cuda_ecc_during_a_probe_takes_xid_48s_action():
    out = failed("gemm", "AcceleratorError: CUDA error: uncorrectable ECC error encountered", "Traceback ...")
    res = run_check(
        "gemm", LocalHost(probe_output=out), gpu_state(), {"gpufleet_verify_python": sys.executable}
    )
    assert res["status"] == "fail" and res["action"] == health.RESET_GPU and "cause: ecc" in res["summary"]


def test_xid_logged_while_the_probe_ran_decides_the_action():
    log = (FIXTURES / "diagnose" / "fallen-off-bus-no-xid" / "kernel.log").read_text()
    host = LocalHost(
        probe_output=failed("membw", "RuntimeError: CUDA error: unspecified launch failure"), kernel_log=log
    )
    res = run_check("membw", host, gpu_state(), {"gpufleet_verify_python": sys.executable})
    assert res["action"] == health.ISOLATE and "cause: xid" in res["summary"]
    assert any(c.startswith("journalctl -k -o short-iso --no-pager --since @") for c in host.commands)


def test_nccl_transport_error_points_at_the_fabric():
    out = failed(
        "allreduce", "DistBackendError: NCCL error: remote process exited or there was a network error"
    )
    hostvars = {"gpufleet_verify_python": sys.executable}
    res = run_check("allreduce", LocalHost(probe_output=out), gpu_state(), hostvars)
    assert (
        res["status"] == "fail"
        and res["action"] == health.REBOOT
        and "cause: nccl_transport" in res["summary"]
    )


def test_out_of_memory_is_not_verified_pointing_at_leftover_processes():
    out = failed("gemm", "OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB")
    res = run_check(
        "gemm", LocalHost(probe_output=out), gpu_state(), {"gpufleet_verify_python": sys.executable}
    )
    assert (
        res["status"] == "unverified"
        and "gpu_processes" in res["summary"]
        and res["action"] == health.MONITOR
    )
