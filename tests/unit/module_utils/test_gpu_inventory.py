"""The assembly of the gpufleet_gpus fact."""

from ansible_collections.gpufleet.cluster.plugins.module_utils.gpu_inventory import build_facts


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
