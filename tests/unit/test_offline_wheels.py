"""Offline, the cuda_toolkit, nccl and python_runtime roles install their wheels from requirements that
bundle_wheel_requirements pinned to the signed manifest's hashes (pip --require-hashes); online, by
name as before. The pip tasks' arguments are rendered here for both cases."""

import jinja2
import pytest
import yaml
from conftest import REPO

OMIT = "__omit_place_holder__"
TASKS = [
    ("cuda_toolkit", "cudnn.yml", "Install the cuDNN wheel", "__cuda_toolkit_cudnn_plan['packages']",
     "__cuda_toolkit_requirements", "Pin the cuDNN wheel"),
    ("nccl", "install.yml", "Install the NCCL wheel", "__nccl_plan['packages']", "__nccl_requirements",
     "Pin the NCCL wheel"),
    ("nccl", "install.yml", "Install PyTorch", "'torch==' ~ __nccl_torch_plan['version']",
     "__nccl_torch_requirements", "Pin PyTorch"),
    ("python_runtime", "install.yml", "Install each environment's wheels", "item['packages']",
     "item['requirements']", "Pin each environment's wheels"),
]  # fmt: skip


def expr(name):
    return "{{ " + name + " }}"


def task(role, file, start):
    tasks = yaml.safe_load((REPO / "roles" / role / "tasks" / file).read_text())
    return next(t for t in tasks if t["name"].startswith(start))


def render(args, offline):
    env = jinja2.Environment()
    env.filters["bool"] = lambda v: v if isinstance(v, bool) else str(v).lower() in ("true", "yes", "1")
    context = {
        "omit": OMIT,
        "__cuda_toolkit_offline": str(offline),
        "__nccl_offline": str(offline),
        "__python_runtime_offline": str(offline),
        "item": {"packages": ["torch==2.10.0"], "requirements": "/opt/envs/t/gpufleet-requirements.txt"},
        "__cuda_toolkit_cudnn_plan": {"packages": ["nvidia-cudnn-cu11==9.10.2.21"]},
        "__nccl_plan": {"packages": ["nvidia-nccl-cu11==2.21.5"]},
        "__nccl_torch_plan": {"version": "2.10.0"},
        "__cuda_toolkit_requirements": "/opt/gpufleet/venv/gpufleet-cuda_toolkit-requirements.txt",
        "__nccl_requirements": "/opt/gpufleet/venv/gpufleet-nccl-requirements.txt",
        "__nccl_torch_requirements": "/opt/gpufleet/venv/gpufleet-nccl-torch-requirements.txt",
    }
    return {
        key: env.from_string(value).render(context) if isinstance(value, str) else value
        for key, value in args.items()
        if key in ("name", "requirements", "extra_args")
    }


@pytest.mark.parametrize(("role", "file", "install", "packages", "requirements", "pin"), TASKS)
def test_offline_installs_from_hash_pinned_requirements(role, file, install, packages, requirements, pin):
    args = render(task(role, file, install)["ansible.builtin.pip"], offline=True)
    req = render({"name": expr(requirements)}, offline=True)["name"]
    assert args == {"name": OMIT, "requirements": req, "extra_args": "--require-hashes"}
    pinning = task(role, file, pin)
    module = pinning["gpufleet.cluster.bundle_wheel_requirements"]
    assert module["dest"] == expr(requirements)
    assert module["fingerprint"] == "{{ gpufleet_bundle_fingerprint | default('') }}"
    assert f"__{role}_offline | bool" in pinning["when"]
    # The pin task comes first: pip reads the file it writes.
    tasks = yaml.safe_load((REPO / "roles" / role / "tasks" / file).read_text())
    names = [t["name"] for t in tasks]
    assert names.index(pinning["name"]) < names.index(task(role, file, install)["name"])


@pytest.mark.parametrize(("role", "file", "install", "packages", "requirements", "pin"), TASKS)
def test_online_installs_by_name_as_before(role, file, install, packages, requirements, pin):
    args = render(task(role, file, install)["ansible.builtin.pip"], offline=False)
    assert args["requirements"] == OMIT and args["extra_args"] == OMIT
    assert args["name"] != OMIT
    assert args["name"] == render({"name": expr(packages)}, offline=False)["name"]
