"""module_utils/verify_state.py: what verify_collect reads of a host in one call. The fact parts are
test doubles where their own modules' tests cover them (gpu_facts, ib_facts, serve_facts); commands,
systemctl and the network facts run for real on this machine where that is cheap."""

import os

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.module_utils import serve_state, verify_state


class ModuleDouble:
    """The AnsibleModule methods verify_state calls: ``timeout`` at a fixed path, and run_command
    recorded and answered from ``answers`` ({command text: (rc, out, err)})."""

    def __init__(self, answers=None, timeout_bin="/usr/bin/timeout"):
        self.answers, self.timeout_bin, self.calls = answers or {}, timeout_bin, []

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return self.timeout_bin if name == "timeout" else None

    def run_command(self, argv, **kwargs):
        self.calls.append((list(argv), kwargs))
        return self.answers.get(argv[-1], (0, "", ""))


def raises(exc):
    def gather():
        raise exc

    return gather


SERVED = {"configured": True, "models": {"tiny": {"current": "2"}, "bad name": {"current": "1"}}}


def test_each_command_runs_in_sh_with_the_c_locale_its_own_time_limit_and_no_ansible_expansion():
    module = ModuleDouble({"cat /proc/meminfo": (0, "MemTotal: 1 kB\n", ""), "exit 3": (3, "", "why\n")})
    out = verify_state.collect(
        module,
        [],
        {"meminfo": "cat /proc/meminfo", "docker": "exit 3"},
        command_timeout=60,
        command_timeouts={"docker": 30},
    )
    assert out["commands"] == {
        "meminfo": {"rc": 0, "stdout": "MemTotal: 1 kB\n", "stderr": ""},
        "docker": {"rc": 3, "stdout": "", "stderr": "why\n"},
    }
    argvs = {argv[-1]: argv for argv, _kwargs in module.calls}
    assert argvs["exit 3"] == ["/usr/bin/timeout", "-k", "5", "30", "/bin/sh", "-c", "exit 3"]
    assert argvs["cat /proc/meminfo"][:4] == ["/usr/bin/timeout", "-k", "5", "60"]
    for _argv, kwargs in module.calls:
        # no GPU part here: the commands are told no GPUs are ready and no nvidia-smi was found
        assert kwargs["environ_update"] == {
            "LANG": "C", "LC_ALL": "C", "GPUFLEET_GPUS_READY": "", "GPUFLEET_NVIDIA_SMI": "",
        }  # fmt: skip
        assert kwargs["expand_user_and_vars"] is False
    assert set(out["timings"]) == {"services", "commands"}


def test_the_commands_are_told_what_the_gpu_part_found():
    module = ModuleDouble({"true": (0, "", "")})
    gpus = {"gpu_count": 8, "driver_loaded": True, "nvidia_smi_path": "/opt/nv/bin/nvidia-smi"}
    verify_state.collect(module, [("gpus", lambda: gpus)], {"t": "true"})
    ((_argv, kwargs),) = [call for call in module.calls if call[0][-1] == "true"]
    assert kwargs["environ_update"]["GPUFLEET_GPUS_READY"] == "1"
    assert kwargs["environ_update"]["GPUFLEET_NVIDIA_SMI"] == "/opt/nv/bin/nvidia-smi"
    assert verify_state.command_environ({**gpus, "driver_loaded": False})["GPUFLEET_GPUS_READY"] == ""
    assert verify_state.command_environ(None) == {"GPUFLEET_GPUS_READY": "", "GPUFLEET_NVIDIA_SMI": ""}


def test_without_coreutils_timeout_or_with_limit_0_the_command_runs_unwrapped():
    module = ModuleDouble(timeout_bin=None)
    verify_state.collect(module, [], {"a": "true"})
    assert module.calls[0][0] == ["/bin/sh", "-c", "true"]
    module = ModuleDouble()
    verify_state.collect(module, [], {"a": "true"}, command_timeout=0)
    assert module.calls[0][0] == ["/bin/sh", "-c", "true"]


def test_a_failing_part_is_an_error_under_its_name_and_the_rest_is_still_read():
    module = ModuleDouble()
    parts = [
        ("gpus", raises(OSError("nvidia-smi: Input/output error"))),
        ("ib", lambda: {"present": False}),
        ("network", raises(RuntimeError("constructed"))),
        ("serving", lambda: None),
    ]
    out = verify_state.collect(module, parts, {"a": "true"})
    assert out["gpus"] is None and out["network"] is None
    assert out["ib"] == {"present": False} and out["serving"] is None
    assert out["errors"] == {
        "gpus": "gpus facts failed: OSError: nvidia-smi: Input/output error",
        "network": "network facts failed: RuntimeError: constructed",
    }
    assert out["commands"]["a"]["rc"] == 0
    assert set(out["timings"]) == {"gpus", "ib", "network", "serving", "services", "commands"}


def test_systemctl_is_asked_about_the_named_units_and_the_served_ones_in_one_command():
    module = ModuleDouble()
    out = verify_state.collect(module, [("serving", lambda: SERVED)], services=["docker", "a b"])
    # the invalid model name is left out (the serving_units check reports it)
    units = sorted(["docker", "a b", "gpufleet-serve-tiny-2.service", serve_state.FRONT_UNIT])
    assert out["services"]["units"] == units
    ((argv, _kwargs),) = module.calls
    assert (
        argv[-1]
        == "systemctl is-active "
        + " ".join(["'a b'", "docker", serve_state.FRONT_UNIT, "gpufleet-serve-tiny-2.service"])
        + "; true"
    )


def test_no_units_no_systemctl():
    module = ModuleDouble()
    out = verify_state.collect(module, [("serving", raises(ValueError("x")))])
    assert out["services"] == {"units": [], "rc": 0, "stdout": "", "stderr": ""}
    assert module.calls == []


# --- for real on this machine ---------------------------------------------------------------------


@pytest.fixture
def module():
    with patch_module_args({}):
        return AnsibleModule(argument_spec={}, supports_check_mode=True)


def test_run_shell_keeps_template_braces_lets_the_shell_expand_and_replaces_bad_bytes(module):
    out = verify_state.run_shell(module, "printf '%s %s ' '{{json .}}' \"$0\"; printf 'a\\377b'", 10)
    assert out == {"rc": 0, "stdout": "{{json .}} /bin/sh a\ufffdb", "stderr": ""}
    assert verify_state.run_shell(module, "echo $LANG", 10)["stdout"] == "C\n"


def test_run_shell_stops_a_command_at_its_time_limit(module):
    out = verify_state.run_shell(module, "sleep 30", 1)
    assert out["rc"] == 124


def test_network_facts_are_setups_network_subset(module):
    facts = verify_state.network_facts(module)
    assert all(key.startswith("ansible_") for key in facts if key not in ("gather_subset", "module_setup"))
    assert "lo" in facts["ansible_interfaces"]
    assert facts["gather_subset"] == list(verify_state.NETWORK_SUBSET)
    if os.path.exists("/proc/net/route"):
        assert "ansible_default_ipv4" in facts
