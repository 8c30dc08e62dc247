"""Container detection and the assembly of the gpufleet_gpus fact."""

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils.gpu_inventory import (
    build_facts,
    detect_container,
    output_tail,
)


def test_bare_host_is_not_a_container(tmp_path):
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "environ").write_bytes(b"HOME=/\0TERM=linux\0")
    assert detect_container(str(tmp_path)) == (False, None)


def test_unreadable_proc_is_not_a_container(tmp_path):
    assert detect_container(str(tmp_path)) == (False, None)


@pytest.mark.parametrize(
    ("path", "content", "evidence"),
    [
        (".dockerenv", b"", "/.dockerenv"),
        ("run/.containerenv", b"engine=podman\n", "/run/.containerenv"),
        ("run/systemd/container", b"docker\n", "/run/systemd/container=docker"),
        ("proc/1/environ", b"PATH=/bin\0container=lxc\0", "/proc/1/environ container=lxc"),
    ],
)
def test_container_markers(tmp_path, path, content, evidence):
    target = tmp_path / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    assert detect_container(str(tmp_path)) == (True, evidence)


def test_output_tail():
    assert output_tail("", "  \n") is None
    assert output_tail("err\n", "out\n") == "err\nout"
    assert output_tail("x" * 5000, max_chars=10) == "x" * 10


def test_build_facts_defaults_is_an_honest_empty_host():
    facts = build_facts()
    assert facts["gpu_count"] == 0
    assert facts["gpus"] == []
    assert facts["source"] == "pci"
    assert facts["driver_loaded"] is False
    assert facts["architectures"] == []


def test_unknown_architecture_is_listed_as_unknown():
    pci_gpu = {
        "kind": "gpu",
        "pci_bus_id": "0000:01:00.0",
        "device_id": "0x2684",
        "name": None,
        "architecture": "unknown",
        "driver": None,
        "numa_node": None,
        "pcie": {},
    }
    facts = build_facts(None, [pci_gpu])
    assert facts["architectures"] == ["unknown"]
    assert facts["gpus"][0]["name"] is None
    assert "kind" not in facts["gpus"][0]
