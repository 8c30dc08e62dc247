"""gpufleet.cluster.verify_collect: the module's contract in-process on this machine (no GPU, no
InfiniBand): every part read once, the same facts the single-purpose modules return, commands run,
nothing changed; bad options refused before anything runs."""

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.modules import (
    gpu_facts,
    ib_facts,
    serve_facts,
    verify_collect,
)
from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401


def run(module, expect=AnsibleExitJson, check_mode=False, **args):
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(expect) as exc:
        module.main()
    return exc.value.args[0]


@pytest.fixture
def roots(tmp_path):
    """Empty PCI and serving roots (this machine's own are read for InfiniBand and the network)."""
    pci = tmp_path / "pci"
    pci.mkdir()
    (tmp_path / "serve").mkdir()
    return {"sysfs_pci_root": str(pci), "serve_state_dir": str(tmp_path / "serve")}


def test_one_call_returns_what_the_fact_modules_return_and_runs_the_commands(roots, tmp_path):
    out = run(
        verify_collect,
        commands={"hello": "printf '%s' \"$LANG\"", "fails": "echo no >&2; exit 4"},
        command_timeouts={"fails": 5},
        **roots,
    )
    assert out["changed"] is False and out["errors"] == {}
    gpus = run(gpu_facts, sysfs_pci_root=roots["sysfs_pci_root"])["ansible_facts"]["gpufleet_gpus"]
    assert out["gpus"] == gpus and out["gpus"]["gpu_count"] == 0
    assert out["ib"] == run(ib_facts)["ansible_facts"]["gpufleet_ib"]
    serving = run(serve_facts, state_dir=roots["serve_state_dir"])["ansible_facts"]["gpufleet_serving"]
    assert out["serving"] == serving
    assert "lo" in out["network"]["ansible_interfaces"]
    assert out["commands"] == {
        "hello": {"rc": 0, "stdout": "C", "stderr": ""},
        "fails": {"rc": 4, "stdout": "", "stderr": "no\n"},
    }
    assert out["services"]["units"] == []  # none named, nothing served


def test_check_mode_reads_the_same(roots):
    normal = run(verify_collect, commands={"a": "echo a"}, **roots)
    checked = run(verify_collect, check_mode=True, commands={"a": "echo a"}, **roots)
    for key in ("gpus", "ib", "serving", "commands", "errors"):
        assert checked[key] == normal[key], key


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"command_timeout": -1}, "command_timeout must be 0 or more seconds, got -1"),
        ({"commands": {"a": ["ls"]}}, "commands: a must be a shell command (a string), got list"),
        (
            {"commands": {"a": "true"}, "command_timeouts": {"b": 5}},
            "command_timeouts: b is not a name in commands",
        ),
        (
            {"commands": {"a": "true"}, "command_timeouts": {"a": -5}},
            "command_timeouts: a must be 0 or more seconds",
        ),
        ({"counter_interval": 3601}, "counter_interval must be 0 to 3600 seconds, got 3601"),
        ({"serve_timeout": 0}, "serve_timeout must be 1 or more seconds, got 0"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(args, message):
    out = run(verify_collect, AnsibleFailJson, **args)
    assert out["msg"].startswith(message)
