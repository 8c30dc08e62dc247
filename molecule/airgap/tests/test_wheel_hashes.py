"""Offline, the cuDNN and NCCL wheels are installed from requirements pinned to the hashes of the
bundle's signed manifest (bundle_wheel_requirements + pip --require-hashes), and what pip installed
is exactly what those requirements name."""

import json
import re

import pytest

testinfra_hosts = ["ansible://gpu_nodes"]

VENV = "/opt/gpufleet/venv"
LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) --hash=sha256:[0-9a-f]{64}$")


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def frozen(host):
    pins = {}
    for line in host.check_output(f"{VENV}/bin/pip freeze --all").splitlines():
        name, sep, version = line.partition("==")
        if sep:
            pins[normalize(name)] = version.strip()
    return pins


@pytest.mark.parametrize(
    ("role", "fact_file", "wanted"),
    [
        ("nccl", "gpufleet_nccl.fact", lambda fact: fact["packages"]),
        ("cuda_toolkit", "gpufleet_cuda_toolkit.fact", lambda fact: fact["cudnn"]["packages"]),
    ],
)
def test_requirements_pin_every_installed_wheel_by_hash(host, role, fact_file, wanted):
    req = host.file(f"{VENV}/gpufleet-{role}-requirements.txt")
    assert req.exists, f"{req.path} missing: the {role} role did not pin its wheels offline"
    assert req.mode == 0o644
    lines = [ln for ln in req.content_string.splitlines() if ln and not ln.startswith("#")]
    assert lines, f"{req.path} names no wheel"
    assert all(LINE.match(ln) for ln in lines), lines
    listed = {normalize(m.group(1)): m.group(2) for m in map(LINE.match, lines)}
    # The role's own wheel is in the file, at the version the role chose.
    fact = json.loads(host.file(f"/etc/ansible/facts.d/{fact_file}").content_string)
    for spec in wanted(fact):
        name, _, version = spec.partition("==")
        assert listed[normalize(name)] == version
    # Every pinned wheel is installed in the venv at exactly that version.
    pins = frozen(host)
    assert {name: pins.get(name) for name in listed} == listed
