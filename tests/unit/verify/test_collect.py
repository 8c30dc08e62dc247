"""gpufleet.verify.collect: one module call reads the host (verify_collect), the commands that depend on
what it reads guard themselves on the host, and the state is built from recorded outputs the same
way, key by key (fake_testinfra.FakeHost: the module's host code on a shell double)."""

import json

import fake_testinfra
import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import serve_state
from fake_testinfra import Out

from gpufleet.verify import collect

FACT_FILES = (
    "=== /etc/ansible/facts.d/gpufleet_cuda_toolkit.fact\n"
    + json.dumps({"default": "12.4"})
    + "\n=== /etc/ansible/facts.d/gpufleet_nccl.fact\n"
    + json.dumps({"library": "/usr/lib/libnccl.so.2", "venv": "/opt/v"})
    + "\n"
)
GPUS = {"gpu_count": 2, "driver_loaded": True, "nvidia_smi_path": "/usr/bin/nvidia-smi", "gpus": []}
IB = {"present": False, "counter_interval_s": None}
NETWORK = {"ansible_interfaces": ["lo", "eth0"], "ansible_default_ipv4": {"interface": "eth0"}}
SERVING = {"configured": True, "models": {"tiny": {"current": "2"}}, "front": None}
# Recorded answers, by a word of the command (first match wins: the guarded commands first, their
# guards name the fact files and journalctl).
ANSWERS = [
    ("nvlink -s", Out(stdout="Link 0: 26.562 GB/s\n")),
    ("query-compute-apps", Out(stdout="")),
    ("readlink", Out(stdout="/usr/local/cuda-12.4\n")),
    ("nvcc", Out(stdout="Cuda compilation tools, release 12.4\n")),
    ("ncclGetVersion", Out(stdout="22105\n")),
    ("dmesg", Out(rc=1, stderr="dmesg: read kernel buffer failed: Operation not permitted")),
    ("facts.d", Out(stdout=FACT_FILES)),
    ("dpkg-query", Out(stdout="ii \tnvidia-driver\t535-1\nrc \tnvidia-old\t1\n")),
    ("/proc/modules", Out(stdout="nvidia 1 0 - Live 0x0\n")),
    ("journalctl", Out(stdout="2026-11-02T10:00:00+0000 h kernel: NVRM: Xid 79\n")),
    ("systemctl is-active", Out(stdout="active\ninactive\nactive\nactive\nactive\nfailed\n")),
    ("nccl.conf", Out(stdout="NCCL_IB_HCA=mlx5\n")),
    ("command -v docker", Out(rc=1, stderr="Cannot connect to the Docker daemon")),
    ("gpufleet-cdi", Out(rc=124, stderr="timed out")),
    ("df -P", Out(stdout="Filesystem 1M-blocks Used Available Capacity Mounted on\n")),
    ("meminfo", Out(stdout="MemTotal: 1 kB\n")),
]
# The state those answers make (collect_s aside).
EXPECTED = {
    "errors": {"docker_info": "Cannot connect to the Docker daemon", "cdi": "timed out"},
    "gpus": GPUS,
    "ib": IB,
    "network": {"interfaces": ["lo", "eth0"], "default_ipv4": {"interface": "eth0"}},
    "local_facts": {
        "gpufleet_cuda_toolkit": {"default": "12.4"},
        "gpufleet_nccl": {"library": "/usr/lib/libnccl.so.2", "venv": "/opt/v"},
    },
    "packages": {"nvidia-driver": "535-1"},
    "lsmod": "nvidia 1 0 - Live 0x0\n",
    "xid_window_hours": 6,
    "kernel_log": "2026-11-02T10:00:00+0000 h kernel: NVRM: Xid 79\n",
    "nvlink": "Link 0: 26.562 GB/s\n",
    "gpu_processes": "",
    "services": {
        "docker": "active",
        serve_state.FRONT_UNIT: "inactive",
        "gpufleet-serve-tiny-2.service": "active",
        "nvidia-dcgm": "active",
        "nvidia-fabricmanager": "active",
        "nvidia-persistenced": "failed",
    },
    "nccl_conf": "NCCL_IB_HCA=mlx5\n",
    "docker_info": "",
    "df": "Filesystem 1M-blocks Used Available Capacity Mounted on\n",
    "meminfo": "MemTotal: 1 kB\n",
    "nvcc": "Cuda compilation tools, release 12.4\n",
    "cuda_link": "/usr/local/cuda-12.4",
    "nccl_loaded": 22105,
    "nccl_error": None,
    "cdi": None,
    "serving": SERVING,
}
HOSTVARS = {"gpufleet_verify_xid_window_hours": 6}


class RecordedHost(fake_testinfra.FakeHost):
    def __init__(self, parts=None, module_error=None, answers=ANSWERS):
        parts = {"gpus": GPUS, "ib": IB, "network": NETWORK, "serving": SERVING} if parts is None else parts
        super().__init__(parts=parts, module_error=module_error)
        self.answers = answers

    def shell(self, cmd):
        for word, out in self.answers:
            if word in cmd:
                return out
        raise AssertionError(f"no recorded answer for {cmd}")


def state_of(host, **kwargs):
    state = collect.collect(host, HOSTVARS, services=["nvidia-dcgm"], **kwargs)
    assert list(state) == list(collect.STATE_KEYS)
    assert isinstance(state.pop("collect_s"), float)
    return state


def test_one_module_call_reads_the_host_and_the_state_is_built_from_its_answers():
    host = RecordedHost()
    assert state_of(host) == EXPECTED
    assert [name for name, _args in host.modules] == [collect.MODULE]
    # over the connection: the reach probe alone; the rest is the module's one call
    assert host.remote == [f"echo {collect.REACH_MARKER}"]
    assert set(host.args()["commands"]) == {
        "local_facts", "packages", "lsmod", "kernel_log", "nccl_conf", "docker_info", "cdi", "df", "meminfo",
        "nvlink", "gpu_processes", "cuda_link", "nvcc", "nccl_loaded", "dmesg",
    }  # fmt: skip
    assert "--since '-6h'" in host.args()["commands"]["kernel_log"]
    # the commands were told what the GPU part found
    assert host.module_environ[-1]["GPUFLEET_GPUS_READY"] == "1"
    assert host.module_environ[-1]["GPUFLEET_NVIDIA_SMI"] == "/usr/bin/nvidia-smi"


def test_without_gpus_the_gpu_commands_are_told_so_and_their_output_is_not_read():
    """A host whose GPU part found no loaded driver: the commands get an empty GPUFLEET_GPUS_READY (the
    guard exits 3 on the host) and whatever came back is not taken for NVLink or process output."""
    host = RecordedHost(parts={"gpus": {**GPUS, "driver_loaded": False}, "ib": IB, "network": NETWORK,
                               "serving": SERVING})  # fmt: skip
    state = state_of(host)
    assert host.module_environ[-1]["GPUFLEET_GPUS_READY"] == ""
    assert state["nvlink"] is None and state["gpu_processes"] is None and "nvlink" not in state["errors"]


def test_commands_and_host_values_are_passed_as_unsafe_json():
    """ansible --args reads JSON whole; {{ }} in a command (docker's --format) must not be templated."""
    host = RecordedHost()
    collect.collect(host, {"gpufleet_sysfs_pci_root": "/srv/{{x}}"}, services=[], ib_counter_interval=5)
    ((_name, text),) = host.modules
    raw = json.loads(text)
    assert raw["commands"]["docker_info"] == {"__ansible_unsafe": collect.DOCKER_INFO_COMMAND}
    assert raw["sysfs_pci_root"] == {"__ansible_unsafe": "/srv/{{x}}"}
    assert raw["counter_interval"] == 5 and raw["command_timeouts"] == {"docker_info": 30, "cdi": 30}
    assert host.args()["services"] == sorted(collect.BASE_SERVICES)


def test_without_a_journal_the_ring_buffer_is_read_instead():
    answers = [
        *(a for a in ANSWERS if a[0] != "journalctl"),
        ("journalctl", Out(rc=1, stderr="No journal files were found.")),
    ]
    state = state_of(RecordedHost(answers=answers))
    assert state["kernel_log"] is None
    assert state["errors"]["kernel_log"] == (
        "No journal files were found. / dmesg: read kernel buffer failed: Operation not permitted"
    )


@pytest.mark.parametrize("part", ["gpus", "ib", "network", "serving"])
def test_a_part_that_fails_on_the_host_is_an_error_under_its_key(part):
    parts = {"gpus": GPUS, "ib": IB, "network": NETWORK, "serving": SERVING}
    parts[part] = OSError("constructed")
    state = state_of(RecordedHost(parts=parts))
    assert state["errors"][part] == f"{part} facts failed: OSError: constructed"
    assert state[part] == ({} if part == "network" else None)
    assert state["meminfo"] == EXPECTED["meminfo"]  # the rest is still read


def test_when_the_module_cannot_run_every_part_says_why_and_the_commands_run_over_the_connection():
    host = RecordedHost(module_error="MODULE FAILURE: /usr/bin/python3: not found")
    state = state_of(host)
    for part in collect.PARTS:
        assert state["errors"][part].startswith(f"{collect.MODULE} failed: MODULE FAILURE")
    assert (state["gpus"], state["ib"], state["network"], state["serving"]) == (None, None, {}, None)
    assert state["meminfo"] == EXPECTED["meminfo"] and state["kernel_log"] == EXPECTED["kernel_log"]
    # no serving state: only the named units are asked about
    assert sorted(state["services"]) == sorted({"nvidia-dcgm", *collect.BASE_SERVICES})


def test_the_arguments_reach_the_module_through_testinfra_and_ansible_as_written(tmp_path, monkeypatch):
    """For real, once: testinfra's host.ansible runs `ansible --args JSON` against this machine; the
    commands arrive verbatim ({{ }} untouched) and the module answers in one call."""
    import os
    import sys
    from pathlib import Path

    import testinfra

    repo = Path(__file__).resolve().parents[3]
    # this checkout's collection, and the ansible beside this Python
    monkeypatch.setenv("ANSIBLE_CONFIG", str(repo / "ansible.cfg"))
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(repo / ".collections"))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])

    inventory = tmp_path / "hosts"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    host = testinfra.get_host(f"ansible://localhost?ansible_inventory={inventory}")
    named = {"braces": "printf '%s' '{{json .}}'", "sh": "printf '%s' \"$0\""}
    args = collect.module_args({"gpufleet_sysfs_pci_root": str(tmp_path)}, [], 0, named, {})
    result = host.ansible(collect.MODULE, args, check=False)
    assert result["errors"] == {} and result["gpus"]["gpu_count"] == 0
    assert result["commands"]["sh"]["stdout"] == "/bin/sh"
    assert result["commands"]["braces"] == {"rc": 0, "stdout": "{{json .}}", "stderr": ""}


def _guarded(name, env, tmp_path):
    """One of the guarded commands run by a real /bin/sh with ``env`` (as the module runs it)."""
    import os
    import subprocess

    command = collect.dependent_commands()[name]
    return subprocess.run(["/bin/sh", "-c", command], env={**os.environ, **env}, capture_output=True,
                          text=True, check=False, cwd=tmp_path)  # fmt: skip


def test_the_gpu_commands_run_the_found_nvidia_smi_only_when_gpus_are_ready(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\necho "smi was asked: $*"\n')
    smi.chmod(0o755)
    off = _guarded("nvlink", {"GPUFLEET_GPUS_READY": "", "GPUFLEET_NVIDIA_SMI": str(smi)}, tmp_path)
    assert (off.returncode, off.stdout) == (collect.NOT_HERE, "")
    on = _guarded("nvlink", {"GPUFLEET_GPUS_READY": "1", "GPUFLEET_NVIDIA_SMI": str(smi)}, tmp_path)
    assert (on.returncode, on.stdout) == (0, "smi was asked: nvlink -s\n")
    apps = _guarded("gpu_processes", {"GPUFLEET_GPUS_READY": "1", "GPUFLEET_NVIDIA_SMI": str(smi)}, tmp_path)
    assert "--query-compute-apps=pid,process_name,used_memory" in apps.stdout


@pytest.mark.parametrize(
    ("fact", "rc", "said"),
    [
        ({"version": "2.21.5"}, collect.NOT_HERE, ""),  # no library recorded: nothing to load
        ({"library": "/nonexistent/libnccl.so.2"}, 1, "/nonexistent/libnccl.so.2"),  # a load error, whole
    ],
)
def test_the_nccl_command_loads_the_library_the_fact_names(tmp_path, fact, rc, said):
    """The program the nccl_loaded command runs (the fact file's path swapped for a temporary one)."""
    import subprocess
    import sys

    from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import software

    path = tmp_path / "gpufleet_nccl.fact"
    path.write_text(json.dumps(fact))
    argv = [sys.executable, "-c", collect._NCCL_LOADED, str(path), software.NCCL_VERSION_SNIPPET]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == rc and said in proc.stderr, proc.stderr
