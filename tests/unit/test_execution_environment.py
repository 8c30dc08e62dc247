"""execution-environment.yml, the AWX/AAP execution environment (ansible-builder 3): its shape; its
Python requirements equal to pyproject.toml's runtime dependencies (written once there, checked here);
the versions in its file names equal to galaxy.yml's and pyproject.toml's; and `ansible-builder
create` making a build context that carries the collection built from this tree and the requirements."""

import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

EE_FILE = REPO / "execution-environment.yml"
# What the EE installs otherwise than from requirements.txt: ansible-core and ansible-runner through
# its own keys; ansible (the community package) not at all: its collections come from Galaxy.
NOT_IN_REQUIREMENTS = {"ansible-core", "ansible-runner", "ansible"}


def load_ee() -> dict:
    return yaml.safe_load(EE_FILE.read_text(encoding="utf-8"))


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def galaxy() -> dict:
    return yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))


def requirement(line: str) -> tuple[str, str]:
    """(normalized name, specifier) of a PEP 508 line: ``PyYAML>=6`` and ``pyyaml >= 6`` are equal."""
    req = Requirement(line)
    return canonicalize_name(req.name), str(req.specifier)


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def tarball_name() -> str:
    meta = galaxy()
    return f"{meta['namespace']}-{meta['name']}-{meta['version']}.tar.gz"


def wheel_name() -> str:
    project = pyproject()["project"]
    return f"{project['name']}-{project['version']}-py3-none-any.whl"


def test_ee_is_version_3_with_what_awx_needs():
    ee = load_ee()
    assert ee["version"] == 3
    base = ee["images"]["base_image"]["name"]
    assert base and "$" not in base and "{{" not in base  # a plain default, no variable to fill in
    deps = ee["dependencies"]
    assert {"ansible_core", "ansible_runner", "galaxy", "python", "system"} <= set(deps)
    assert deps["python"] == "requirements.txt" and (REPO / deps["python"]).is_file()
    assert deps["system"] == "bindep.txt" and (REPO / deps["system"]).is_file()


def test_python_requirements_are_pyprojects_runtime_dependencies():
    runtime = dict(requirement(line) for line in pyproject()["project"]["dependencies"])
    deps = load_ee()["dependencies"]
    assert requirement(deps["ansible_core"]["package_pip"]) == ("ansible-core", runtime["ansible-core"])
    assert requirement(deps["ansible_runner"]["package_pip"]) == ("ansible-runner", runtime["ansible-runner"])
    listed = [requirement(line) for line in requirement_lines(REPO / deps["python"])]
    assert len(listed) == len(dict(listed)), "a requirement is listed twice"
    expected = {name: spec for name, spec in runtime.items() if name not in NOT_IN_REQUIREMENTS}
    assert dict(listed) == expected


def test_the_collection_and_the_wheel_are_this_trees_versions():
    ee = load_ee()
    (collection,) = ee["dependencies"]["galaxy"]["collections"]
    assert collection == {"name": f"collections/{tarball_name()}", "type": "file"}
    assert ee["additional_build_files"] == [
        {"src": f"dist/{tarball_name()}", "dest": "collections"},
        {"src": f"dist/{wheel_name()}", "dest": "wheels"},
    ]
    assert any(
        f"/tmp/gpufleet-wheels/{wheel_name()}" in step
        for step in ee["additional_build_steps"]["append_final"]
    )
    assert f"gpufleet-ee:{galaxy()['version']}" in ee["options"]["tags"]


def test_bindep_names_gpg_and_the_ssh_client_for_rpm_and_deb():
    entries = {tuple(line.split(maxsplit=1)) for line in requirement_lines(REPO / "bindep.txt")}
    assert entries == {
        ("gnupg2", "[platform:rpm]"),
        ("gnupg", "[platform:dpkg]"),
        ("openssh-clients", "[platform:rpm]"),
        ("openssh-client", "[platform:dpkg]"),
    }


def _tool(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found next to {sys.executable} or on PATH")
    return found


def test_ansible_builder_create_carries_the_collection_and_the_requirements(tmp_path):
    pytest.importorskip(
        "ansible_builder", reason="ansible-builder is not installed (pip install -e '.[dev]')"
    )
    # The EE file with its requirement files, and dist/ as `make ee` fills it: the collection really
    # built from this tree (its name must be the one the EE names); the wheel only as a stand-in file
    # (building it is pip's business, and its name is checked above).
    work = tmp_path / "ee"
    work.mkdir()
    for name in ("execution-environment.yml", "requirements.txt", "bindep.txt"):
        shutil.copy(REPO / name, work / name)
    dist = work / "dist"
    subprocess.run(
        [_tool("ansible-galaxy"), "collection", "build", str(REPO), "--output-path", str(dist)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert [p.name for p in dist.iterdir()] == [tarball_name()]
    (dist / wheel_name()).write_bytes(b"stand-in")

    context = tmp_path / "context"
    done = subprocess.run(
        [sys.executable, "-m", "ansible_builder", "create", "--file", str(work / "execution-environment.yml"),
         "--context", str(context), "--output-filename", "Containerfile"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr

    build = context / "_build"
    tarball = build / "collections" / tarball_name()
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "MANIFEST.json" in names and "roles/nvidia_driver/tasks/main.yml" in names
    assert "plugins/action/verify_fleet.py" in names and "playbooks/site.yml" in names
    assert not [n for n in names if n.split("/")[0] in {"tests", "molecule", "src", ".venv", "context"}]
    assert (build / "wheels" / wheel_name()).is_file()
    assert yaml.safe_load((build / "requirements.yml").read_text()) == {
        "collections": [{"name": f"collections/{tarball_name()}", "type": "file"}]
    }
    assert requirement_lines(build / "requirements.txt") == requirement_lines(REPO / "requirements.txt")
    assert requirement_lines(build / "bindep.txt") == requirement_lines(REPO / "bindep.txt")

    ee = load_ee()
    deps = ee["dependencies"]
    containerfile = (context / "Containerfile").read_text()
    assert f'ARG EE_BASE_IMAGE="{ee["images"]["base_image"]["name"]}"' in containerfile
    assert "ansible-galaxy collection install" in containerfile
    refs = f"{deps['ansible_core']['package_pip']} {deps['ansible_runner']['package_pip']}"
    assert f'ARG ANSIBLE_INSTALL_REFS="{refs}"' in containerfile
    assert "COPY _build/wheels/ /tmp/gpufleet-wheels/" in containerfile
    assert f"pip install --no-cache-dir --no-deps /tmp/gpufleet-wheels/{wheel_name()}" in containerfile
