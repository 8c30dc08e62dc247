"""The builder records each wheel's dependencies in the bundle (``requires``), from pip's resolution
report: a recorded report of torch and its dependencies (tests/fixtures/bundle), markers evaluated
for the profile's target, extras left out."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gpufleet.bundle import artifacts, build

REPORT = Path(__file__).resolve().parents[2] / "fixtures" / "bundle" / "pip-report-torch.json"


@pytest.fixture
def recorded_pip(monkeypatch):
    calls = []

    def fake_pip(*args, quiet=True):
        calls.append(args)
        shutil.copyfile(REPORT, args[args.index("--report") + 1])
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(artifacts, "_pip", fake_pip)
    return calls


def resolved(platform="manylinux_2_28_x86_64", python="3.11"):
    return {
        w["name"]: w
        for w in artifacts.resolve_wheels(
            {"python": python, "platform": [platform], "packages": ["torch==2.5.1"]}
        )
    }


def test_requires_lists_the_resolved_dependencies_the_target_needs(recorded_pip):
    wheels = resolved()
    assert wheels["torch"]["requires"] == [
        "filelock",
        "nvidia-cudnn-cu12",
        "sympy",
        "triton",
        "typing-extensions",
    ]
    assert wheels["nvidia-cudnn-cu12"]["requires"] == ["nvidia-cublas-cu12"]
    assert wheels["sympy"]["requires"] == ["mpmath"]
    assert wheels["nvidia-cublas-cu12"]["requires"] == []
    assert wheels["typing_extensions"]["requires"] == []  # no Requires-Dist at all


def test_extra_only_requirements_are_left_out(recorded_pip):
    wheels = resolved()
    # triton's "torch; extra == 'tests'" names a resolved wheel, but only for an extra.
    assert wheels["triton"]["requires"] == ["filelock"]
    assert wheels["mpmath"]["requires"] == []


def test_markers_are_evaluated_for_the_profile_target(recorded_pip):
    wheels = resolved(platform="manylinux_2_28_aarch64")
    # cuDNN and triton are pinned for Linux x86_64 only: not dependencies on an aarch64 target.
    assert wheels["torch"]["requires"] == ["filelock", "sympy", "typing-extensions"]
    wheels = resolved(python="3.13")
    assert "triton" not in wheels["torch"]["requires"]  # python_version < "3.13"


def test_make_manifest_writes_requires_on_wheel_entries(recorded_pip, tmp_path):
    wheels = list(resolved().values())
    out = tmp_path / "bundle"
    (out / "wheels").mkdir(parents=True)
    for w in wheels:
        (out / "wheels" / w["file"]).write_bytes(b"PK\x03\x04" + w["name"].encode())
    (out / "wheels" / "requirements.txt").write_text(artifacts.requirements_text(wheels))
    prof = {
        "name": "lab",
        "target": {"os": "debian-12", "arch": "amd64", "python": "3.11"},
        "roles": ["nccl"],
        "apt": {"packages": []},
        "images": [],
        "files": [],
    }
    manifest = build.make_manifest(out, prof, "A" * 40, 0, [], wheels, {})
    by_path = {e["path"]: e for e in manifest["files"]}
    torch = by_path["wheels/torch-2.5.1-cp311-cp311-manylinux1_x86_64.whl"]
    assert torch["kind"] == "wheel"
    assert torch["requires"] == ["filelock", "nvidia-cudnn-cu12", "sympy", "triton", "typing-extensions"]
    assert "requires" not in by_path["wheels/requirements.txt"]
    assert all("requires" in e for e in manifest["files"] if e["kind"] == "wheel")
    json.dumps(manifest)  # the manifest stays plain JSON
