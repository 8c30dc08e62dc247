"""PyTorch in the compatibility matrix (issue 18, "a probe runtime gpufleet provisions"): the rows,
the driver rule (own minimum or CUDA minor version compatibility), ``choose_torch`` and every
``torch_problems`` message; and the nccl role's ``nccl_probe_torch`` option wired to them."""

import pytest
import yaml
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import compat, compat_torch
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import nccl_tuning as nt
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.compat import (
    NCCL,
    max_cuda_for_driver,
    parse_cuda,
)
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.compat_matrix import TORCH
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.compat_torch import (
    choose_torch,
    runs_cuda_runtime,
    torch_problems,
)
from conftest import REPO

NCCL_ROLE = REPO / "roles" / "nccl"
NO_IB = {"present": False, "hca_count": 0, "devices": []}
ETH = [{"name": "eth0", "active": True, "ipv4": "172.18.0.2", "type": "ether", "default_route": True}]


def load(path):
    return yaml.safe_load(path.read_text())


# ---------------------------------------------------------------- rows


@pytest.mark.parametrize("release", sorted(TORCH))
def test_torch_row_shape(release):
    row = TORCH[release]
    assert set(row) == {"cuda", "python", "nccl", "cudnn"}
    cuda = parse_cuda(row["cuda"])
    assert cuda and cuda[0] in (12, 13)
    low, high = (tuple(int(p) for p in v.split(".")) for v in row["python"])
    assert (3, 8) <= low <= high
    # the pinned NCCL wheel is for the wheel's own CUDA major, and the matrix knows that release
    name, version = row["nccl"].split("==")
    assert name == f"nvidia-nccl-cu{cuda[0]}"
    assert str(cuda[0]) in NCCL[version]["pip"]
    assert row["cudnn"].startswith(f"nvidia-cudnn-cu{cuda[0]}==")


# ---------------------------------------------------------------- the driver rule


def test_a_cuda_12_runtime_runs_on_r535_through_minor_version_compatibility():
    assert max_cuda_for_driver("535") == "12.2"  # strict toolkit rule: no CUDA 12.8 toolkit on R535
    assert runs_cuda_runtime("535", "12.8")
    assert runs_cuda_runtime("535.261.03", "12.8")
    assert runs_cuda_runtime("525.60.13", "12.8")
    assert not runs_cuda_runtime("520.61.05", "12.0")  # below the 12.x floor


def test_a_cuda_13_runtime_needs_r580():
    assert not runs_cuda_runtime("575.51.03", "13.0")
    assert not runs_cuda_runtime("570", "13.0")
    assert runs_cuda_runtime("580", "13.0")
    assert runs_cuda_runtime("580.65.06", "13.0")
    assert runs_cuda_runtime("580", "12.8")  # newer drivers run older runtimes


def test_unknown_inputs_run_nothing():
    assert not runs_cuda_runtime("", "12.8")
    assert not runs_cuda_runtime("535", "twelve")


# ---------------------------------------------------------------- choose_torch


@pytest.mark.parametrize(
    ("driver", "expected"),
    [
        ("535", "2.10.0"),
        ("535.261.03", "2.10.0"),
        ("550", "2.10.0"),
        ("570", "2.10.0"),
        ("575.51.03", "2.10.0"),
        ("580", "2.14.1"),
        ("580.65.06", "2.14.1"),
    ],
)
def test_choose_torch_for_a_driver(driver, expected):
    assert choose_torch(driver, "3.11") == expected
    # the newest of all that fit: every newer release is refused for this driver
    newer = [r for r in TORCH if compat._version_key(r) > compat._version_key(expected)]
    assert all(torch_problems(r, driver, "3.11") for r in newer)


def test_choose_torch_follows_the_python():
    assert choose_torch("550", "3.9") == "2.8.0"  # 2.9 dropped Python 3.9
    assert choose_torch("580", "3.9") == "2.8.0"
    assert choose_torch("550", "3.8.18") == "2.4.1"
    assert choose_torch("550", "3.15") is None  # no release has a cp315 wheel
    assert choose_torch("550", "3.7") is None


def test_choose_torch_follows_the_gpus():
    # CUDA 13 has no code for Volta ([DCD]: last CUDA 12.x), so a V100 on R580 stays on CUDA 12
    assert choose_torch("580", "3.11", ["Volta"]) == "2.10.0"
    assert choose_torch("580", "3.11", ["Hopper"]) == "2.14.1"
    # Blackwell needs CUDA 12.8 or newer: not the cu124/cu126 wheels
    assert choose_torch("570", "3.9", ["Blackwell"]) == "2.8.0"
    assert torch_problems("2.6.0", "570", "3.11", ["Blackwell"])


def test_choose_torch_without_a_driver_or_below_r525():
    assert choose_torch("", "3.11") is None
    assert choose_torch(None, "3.11") is None
    assert choose_torch("520", "3.11") is None


# ---------------------------------------------------------------- torch_problems


def test_the_choice_has_no_problem():
    assert torch_problems("", "550", "3.11") == []
    assert torch_problems("2.10.0", "550.54.15", "3.11", ["Hopper"]) == []


def test_a_release_the_driver_cannot_run():
    (problem,) = torch_problems("2.14.1", "535.261.03", "3.11")
    assert problem.startswith("nccl_probe_torch_version 2.14.1 cannot run here")
    assert "CUDA 13.0 runtime needs driver 580 or newer, the host has 535.261.03" in problem
    assert "set nccl_probe_torch_version to 2.10.0" in problem


def test_a_release_without_a_wheel_for_the_python():
    (problem,) = torch_problems("2.10.0", "550", "3.9")
    assert "wheels for Python 3.10 to 3.14, the venv has 3.9" in problem
    assert "set nccl_probe_torch_version to 2.8.0" in problem


def test_a_release_without_code_for_the_gpus():
    (problem,) = torch_problems("2.14.1", "580", "3.11", ["Volta"])
    assert "no code for Volta GPUs" in problem and "set nccl_probe_torch_version to 2.10.0" in problem


def test_an_unknown_release():
    (problem,) = torch_problems("2.3.0", "550", "3.11")
    assert "nccl_probe_torch_version 2.3.0 is not in the compatibility matrix" in problem
    assert "2.10.0" in problem and "leave it empty" in problem


def test_nothing_fits():
    (problem,) = torch_problems("", "550", "3.15")
    assert problem.startswith("no PyTorch release in the compatibility matrix runs here")
    assert "(driver 550, Python 3.15; known: 2.4.1" in problem
    assert "set nccl_probe_torch_version" in problem


def test_no_driver_known_for_the_matrix_choice():
    (problem,) = torch_problems("", "", "3.11")
    assert "no NVIDIA driver is known" in problem and "nvidia_driver role" in problem
    # a pinned release is not refused for an unknown driver (nothing to check it against)
    assert torch_problems("2.10.0", "", "3.11") == []


def test_wheels_torch_pins_differently_in_the_same_venv():
    problems = torch_problems(
        "2.10.0", "550", "3.11", wheels=["nvidia-nccl-cu12==2.27.7", "nvidia-cudnn-cu12==9.17.0.29"]
    )
    nccl, cudnn = problems
    assert "pins nvidia-nccl-cu12==2.27.5 in the same venv, where nvidia-nccl-cu12==2.27.7" in nccl
    assert "set nccl_version to 2.27.5 and nccl_cuda to a CUDA 12.x version" in nccl
    assert "set cuda_toolkit_cudnn_version to 9.10.2.21, or cuda_toolkit_venv to another venv" in cudnn
    # the same library for another CUDA major lands on the same files: refused too (the lab's cu11 wheels)
    (cu11,) = torch_problems("2.10.0", "550", "3.11", wheels=["nvidia-nccl-cu11==2.21.5"])
    assert "nvidia-nccl-cu11==2.21.5" in cu11
    # the pinned versions themselves, and unrelated wheels, are fine
    assert torch_problems("2.10.0", "550", "3.11", wheels=["nvidia-nccl-cu12==2.27.5", "numpy==2.2.6"]) == []


# ---------------------------------------------------------------- NCCL follows torch's pin


def test_torch_nccl_is_the_pinned_wheel_for_the_same_cuda_major():
    assert compat_torch.torch_nccl("2.10.0", "12.8") == "2.27.5"
    assert compat_torch.torch_nccl("2.8.0", "12.4") == "2.27.3"
    assert compat_torch.torch_nccl("2.14.1", "13.0") == "2.30.7"
    assert compat_torch.torch_nccl("2.10.0", "11.8") is None  # a cu11 NCCL wheel: torch cannot share it
    assert compat_torch.torch_nccl("", "12.8") is None


def test_the_nccl_plan_takes_the_wheel_torch_pins_so_preflight_passes():
    plain = nt.nccl_role_plan("pip", "Debian", "", "12.8", NO_IB, ETH)
    assert plain["version"] == "2.32.3"  # the matrix's newest cu12 wheel
    plan = nt.nccl_role_plan("pip", "Debian", "", "12.8", NO_IB, ETH, torch="2.10.0")
    assert plan["problems"] == [] and plan["packages"] == ["nvidia-nccl-cu12==2.27.5"]
    assert "NCCL 2.27.5: the wheel PyTorch 2.10.0 pins (nccl_probe_torch)" in plan["notes"]
    assert torch_problems("2.10.0", "550", "3.11", wheels=plan["packages"]) == []
    # an explicit nccl_version wins, and preflight then says what to set
    pinned = nt.nccl_role_plan("pip", "Debian", "2.27.7", "12.8", NO_IB, ETH, torch="2.10.0")
    assert pinned["version"] == "2.27.7" and torch_problems(
        "2.10.0", "550", "3.11", wheels=pinned["packages"]
    )
    # NVIDIA's packages are not in the venv: the matrix choice stands
    assert (
        nt.nccl_role_plan("cuda_repo", "Ubuntu", "", "12.8", NO_IB, ETH, torch="2.10.0")["version"]
        == "2.26.2"
    )


# ---------------------------------------------------------------- the nccl role option


def test_the_role_option_is_declared_off_by_default():
    defaults = load(NCCL_ROLE / "defaults" / "main.yml")
    assert defaults["nccl_probe_torch"] is False
    assert defaults["nccl_probe_torch_version"] == ""
    options = load(NCCL_ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert options["nccl_probe_torch"]["type"] == "bool" and options["nccl_probe_torch"]["default"] is False
    assert options["nccl_probe_torch_version"]["default"] == ""


def _task(path, name_start):
    return next(t for t in load(path) if t["name"].startswith(name_start))


def test_the_role_installs_the_planned_torch_into_the_venv_only_when_asked():
    task = _task(NCCL_ROLE / "tasks" / "install.yml", "Install PyTorch")
    pip = task["ansible.builtin.pip"]
    # Online by name; offline from requirements pinned to the signed manifest (test_offline_wheels.py).
    assert pip["name"] == "{{ omit if __nccl_offline | bool else 'torch==' ~ __nccl_torch_plan['version'] }}"
    pin = _task(NCCL_ROLE / "tasks" / "install.yml", "Pin PyTorch")[
        "gpufleet.cluster.bundle_wheel_requirements"
    ]
    assert pin["packages"] == ["torch=={{ __nccl_torch_plan['version'] }}"]
    assert pip["virtualenv"] == "{{ nccl_venv }}"
    assert task["when"] == "nccl_probe_torch | bool"
    assert "gpufleet.cluster.choose_torch" in str(
        _task(NCCL_ROLE / "tasks" / "set_vars.yml", "Choose PyTorch")
    )
    assert "gpufleet.cluster.torch_problems" in str(
        _task(NCCL_ROLE / "tasks" / "set_vars.yml", "Check the PyTorch")
    )
    # NCCL is planned knowing the torch release (its pinned wheel)
    assert "__nccl_torch_version" in str(_task(NCCL_ROLE / "tasks" / "set_vars.yml", "Plan NCCL"))
    # preflight stops on its problems before anything is installed
    (check,) = [t for t in load(NCCL_ROLE / "tasks" / "preflight.yml") if "set_fact" in str(t)][:1]
    assert "__nccl_torch_plan['problems'] if nccl_probe_torch | bool" in str(check)


def test_no_lab_inventory_scenario_or_bundle_turns_it_on():
    # make test downloads nothing new: no torch in the lab bundle, the option off everywhere
    for top in ("inventories", "molecule", "group_vars", "bundles", "playbooks"):
        for path in (REPO / top).rglob("*.yml"):
            text = path.read_text()
            assert "nccl_probe_torch: true" not in text, path
            assert "torch==" not in text, path
