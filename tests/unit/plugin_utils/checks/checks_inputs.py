"""Recorded inputs the health check tests share (tests of plugins/plugin_utils/checks/).

Inputs and where they come from (tests/fixtures/health/PROVENANCE.md for the files there):

- nvidia-smi -q -x reports: tests/fixtures/nvidia_smi (P100, T4, A100 MIG; recorded by other
  projects), parsed with nvidia_smi.parse_nvidia_smi_xml + gpu_inventory.build_facts.
- XID lines: the recorded kernel log lines of test_xid.py, imported from there.
- InfiniBand: tests/fixtures/infiniband (ibstat reports and sysfs trees).
- df -P -m, /proc/meminfo, docker info, Ansible network facts: recorded on the build machine.
- nvidia-smi nvlink -s: excerpts of recorded output quoted in NVIDIA/nccl-tests#228 and
  Azure/azhpc-diagnostics#73.

Bad variants derived from a recorded input say "derived from X, edited: ..." where they are made;
inputs with no recording at all say "constructed".
"""

import importlib
import json
import sys
from pathlib import Path

from ansible_collections.gpufleet.cluster.plugins.module_utils.gpu_inventory import build_facts
from ansible_collections.gpufleet.cluster.plugins.module_utils.infiniband import (
    parse_ibstat,
    summarize,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.nvidia_smi import parse_nvidia_smi_xml
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import nccl_tuning
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core
from conftest import FIXTURES

# Recorded inputs that live with the tests of their parsers (nvcc output, kernel log lines).
_UNIT = Path(__file__).resolve().parents[2]


def _test_module(name):
    if name not in sys.modules:
        sys.path.insert(0, str(next(_UNIT.rglob(f"{name}.py")).parent))
    return importlib.import_module(name)


NVCC_118 = _test_module("test_cuda_toolkit").NVCC_118
_xid = _test_module("test_xid")
GPUD_13, GPUD_119, HYPERION, MLENG_63, OGKM_79 = (
    _xid.GPUD_13,
    _xid.GPUD_119,
    _xid.HYPERION,
    _xid.MLENG_63,
    _xid.OGKM_79,
)

SMI = FIXTURES / "nvidia_smi"
IB = FIXTURES / "infiniband"
HEALTH = FIXTURES / "health"


def smi(name, **kwargs):
    return build_facts(parse_nvidia_smi_xml((SMI / name).read_text()), **kwargs)


def p100():
    return smi("tesla-p100-pcie-16gb.xml")


def t4():
    return smi("tesla-t4.xml")


def a100():
    return smi("a100-sxm4-80gb-mig.xml")


def no_gpu(in_container=False):
    return build_facts(in_container=in_container)


def driver_not_loaded():
    """A host whose GPU is on PCI but nvidia-smi fails (driver-not-loaded.txt is the recorded text)."""
    pci_gpu = {
        "kind": "gpu",
        "pci_bus_id": "0000:00:1e.0",
        "device_id": "0x1eb8",  # the T4 of tesla-t4.xml
        "name": "Tesla T4",
        "architecture": "Turing",
        "driver": None,
        "numa_node": None,
        "pcie": None,
    }
    return build_facts(None, [pci_gpu], driver_error=(SMI / "driver-not-loaded.txt").read_text())


def ib_active():
    return {"present": True, **summarize(parse_ibstat((IB / "ibstat-connectx3-active.txt").read_text()))}


def ib_initializing():
    return {
        "present": True,
        **summarize(parse_ibstat((IB / "ibstat-connectx4-initializing.txt").read_text())),
    }


def ib_none():
    return {"present": False, **summarize([])}


def interfaces():
    return nccl_tuning.interfaces_from_facts(json.loads((HEALTH / "ansible-network-facts.json").read_text()))


def assert_result(res, check, status):
    assert res["check"] == check
    assert res["status"] == status, res["summary"]
    assert res["status"] in core.STATUSES
    assert "\n" not in res["summary"]
    if status in (core.PASS, core.SKIP):
        assert res["action"] is None
    else:
        assert res["action"] in core.ACTIONS
    return res
