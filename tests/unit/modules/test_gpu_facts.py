"""gpufleet.cluster.gpu_facts driven with recorded nvidia-smi output and a fake sysfs tree.

community.general's unit-test pattern: exit_json/fail_json raise, run_command/get_bin_path are
replaced, module arguments come from ansible-core 2.19's ``patch_module_args``.
"""

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.module_utils import host_facts
from ansible_collections.gpufleet.cluster.plugins.modules import gpu_facts
from conftest import FIXTURES
from fake_sysfs import add_pci_device, hgx_h100
from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401

SMI = FIXTURES / "nvidia_smi"
NVIDIA_SMI = "/usr/bin/nvidia-smi"
TIMEOUT = "/usr/bin/timeout"
DRIVER_NOT_LOADED = (SMI / "driver-not-loaded.txt").read_text(encoding="utf-8")


@pytest.fixture
def sysfs(tmp_path):
    root = tmp_path / "sys" / "bus" / "pci" / "devices"
    root.mkdir(parents=True)
    return root


class Host:
    """The pieces of a host the module touches: binaries on PATH, nvidia-smi's answer, containers."""

    def __init__(self, monkeypatch, *, bins=None, result=None, container=(False, None)):
        self.bins = {"nvidia-smi": NVIDIA_SMI, "timeout": TIMEOUT} if bins is None else bins
        self.result = result
        self.calls = []
        self.check_modes = []
        host = self

        def get_bin_path(_module, name, required=False, opt_dirs=None):
            return host.bins.get(name)

        def run_command(_module, args, **kwargs):
            host.calls.append((list(args), kwargs))
            host.check_modes.append(_module.check_mode)
            return host.result

        monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", get_bin_path)
        monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
        monkeypatch.setattr(host_facts, "detect_container", lambda: container)

    def run(self, **args):
        with patch_module_args(args), pytest.raises(AnsibleExitJson) as exc:
            gpu_facts.main()
        result = exc.value.args[0]
        assert result["changed"] is False
        return result["ansible_facts"]["gpufleet_gpus"]


def smi_ok(name):
    return 0, (SMI / name).read_text(encoding="utf-8"), ""


# --- nvidia-smi answers ------------------------------------------------------------------------


def test_a100_mig_from_nvidia_smi(monkeypatch, sysfs):
    add_pci_device(
        sysfs,
        "0000:01:00.0",
        0x10DE,
        0x20B2,
        0x030200,
        driver="nvidia",
        numa_node=1,
        link=("16.0 GT/s PCIe", 16, "16.0 GT/s PCIe", 16),
    )
    host = Host(monkeypatch, result=smi_ok("a100-sxm4-80gb-mig.xml"))
    facts = host.run(sysfs_pci_root=str(sysfs))

    assert host.calls == [
        (
            [TIMEOUT, "-k", "5", "60", NVIDIA_SMI, "-q", "-x"],
            {"environ_update": {"LANG": "C", "LC_ALL": "C"}},
        )
    ]
    assert facts["source"] == "nvidia-smi"
    assert facts["driver_loaded"] is True
    assert facts["driver_version"] == "535.54.03"
    assert facts["cuda_version"] == "12.2"
    assert facts["driver_error"] is None
    assert facts["nvidia_smi_path"] == NVIDIA_SMI
    assert facts["gpu_count"] == 1
    assert facts["pci_gpu_count"] == 1
    assert facts["architectures"] == ["Ampere"]
    assert facts["nvswitch_count"] == 0
    assert facts["in_container"] is False
    gpu = facts["gpus"][0]
    assert gpu["uuid"] == "GPU-513536b6-7d19-9063-b049-1e69664bb298"
    assert gpu["pci_bus_id"] == "0000:01:00.0"
    assert gpu["driver"] == "nvidia"
    assert gpu["numa_node"] == 1  # from sysfs, matched by bus id
    assert gpu["mig_mode"] == {"current": True, "pending": True}
    assert gpu["mig_device_count"] == 4
    assert gpu["ecc_errors"]["aggregate"] == {"correctable": 0, "uncorrectable": 0}
    assert gpu["pcie"] == {"gen_current": 4, "gen_max": 4, "width_current": 16, "width_max": 16}


def test_p100_and_t4_generations(monkeypatch, sysfs):
    facts = Host(monkeypatch, result=smi_ok("tesla-p100-pcie-16gb.xml")).run(sysfs_pci_root=str(sysfs))
    assert facts["driver_version"] == "510.47.03"
    assert facts["architectures"] == ["Pascal"]
    assert facts["gpus"][0]["ecc_errors"]["aggregate"]["correctable"] == 3
    assert facts["gpus"][0]["clocks_event_reasons_active"] == ["gpu_idle"]
    # sysfs shows no GPU (a container's view, say): nvidia-smi still implies the nvidia driver.
    assert facts["pci_gpu_count"] == 0
    assert facts["gpus"][0]["driver"] == "nvidia"
    assert facts["gpus"][0]["numa_node"] is None

    facts = Host(monkeypatch, result=smi_ok("tesla-t4.xml")).run(sysfs_pci_root=str(sysfs))
    assert facts["driver_version"] == "515.105.01"
    assert facts["cuda_version"] == "11.7"
    assert facts["architectures"] == ["Turing"]
    assert facts["gpus"][0]["uuid"] == "GPU-d37e67a5-91dd-3774-a5cb-99096249601a"
    assert facts["gpus"][0]["pcie"]["width_current"] == 8


def test_architecture_filled_from_device_id_when_nvidia_smi_omits_it(monkeypatch, sysfs):
    xml = (
        "<nvidia_smi_log><driver_version>550.54.15</driver_version><gpu id='00000000:19:00.0'>"
        "<product_name>NVIDIA H100 80GB HBM3</product_name><pci><pci_device_id>233010DE</pci_device_id>"
        "</pci></gpu></nvidia_smi_log>"
    )  # constructed, not recorded: a report without <product_architecture>
    facts = Host(monkeypatch, result=(0, xml, "")).run(sysfs_pci_root=str(sysfs))
    assert facts["gpus"][0]["architecture"] == "Hopper"
    assert facts["architectures"] == ["Hopper"]


# --- nvidia-smi fails or is absent: PCI fallback -------------------------------------------------


def test_driver_not_loaded_falls_back_to_pci(monkeypatch, sysfs):
    hgx_h100(sysfs, driver=None)
    host = Host(monkeypatch, result=(9, DRIVER_NOT_LOADED, ""))
    facts = host.run(sysfs_pci_root=str(sysfs))

    assert len(host.calls) == 1
    assert facts["source"] == "pci"
    assert facts["driver_loaded"] is False
    assert facts["driver_version"] is None
    assert facts["cuda_version"] is None
    assert facts["driver_error"] == (
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running."
    )
    assert facts["gpu_count"] == 8
    assert facts["pci_gpu_count"] == 8
    assert facts["architectures"] == ["Hopper"]
    assert facts["nvswitch_count"] == 4
    assert facts["nvswitches"][0] == {
        "pci_bus_id": "0000:05:00.0",
        "device_id": "0x22a3",
        "name": "NVSwitch (H100 generation)",
        "driver": None,
    }
    gpu = facts["gpus"][0]
    assert gpu["index"] == 0
    assert gpu["name"] == "H100 SXM5 80GB"
    assert gpu["uuid"] is None
    assert gpu["pci_bus_id"] == "0000:18:00.0"
    assert gpu["device_id"] == "0x2330"
    assert gpu["subsystem_device_id"] == "0x16c1"
    assert gpu["driver"] is None
    assert gpu["pcie"]["gen_current"] == 5
    assert [g["index"] for g in facts["gpus"]] == list(range(8))


def test_version_mismatch_with_driver_bound(monkeypatch, sysfs):
    hgx_h100(sysfs, driver="nvidia")
    message = "Failed to initialize NVML: Driver/library version mismatch"
    facts = Host(monkeypatch, result=(18, message + "\n", "")).run(sysfs_pci_root=str(sysfs))
    assert facts["source"] == "pci"
    assert facts["driver_loaded"] is True  # the kernel module is bound, user space disagrees
    assert facts["driver_error"] == message


def test_nvidia_smi_absent_and_no_gpu(monkeypatch, sysfs):
    add_pci_device(sysfs, "0000:00:00.0", 0x8086, 0x09A2, 0x060000)
    host = Host(monkeypatch, bins={"timeout": TIMEOUT})
    facts = host.run(sysfs_pci_root=str(sysfs))
    assert host.calls == []
    assert facts == {
        "source": "pci",
        "driver_loaded": False,
        "driver_version": None,
        "cuda_version": None,
        "driver_error": None,
        "attached_gpus": None,
        "nvidia_smi_path": None,
        "gpu_count": 0,
        "pci_gpu_count": 0,
        "gpus": [],
        "architectures": [],
        "nvswitch_count": 0,
        "nvswitches": [],
        "in_container": False,
    }


def test_fresh_host_without_nvidia_smi_still_reports_gpus(monkeypatch, sysfs):
    add_pci_device(sysfs, "0000:3b:00.0", 0x10DE, 0x1DB4, 0x030200)
    add_pci_device(sysfs, "0000:af:00.0", 0x10DE, 0x27B8, 0x030200)
    facts = Host(monkeypatch, bins={}).run(sysfs_pci_root=str(sysfs))
    assert facts["gpu_count"] == 2
    assert facts["architectures"] == ["Ada Lovelace", "Volta"]
    assert [g["name"] for g in facts["gpus"]] == ["Tesla V100 PCIe 16GB", "L4"]


def test_nvidia_smi_timeout(monkeypatch, sysfs):
    hgx_h100(sysfs)
    facts = Host(monkeypatch, result=(124, "", "")).run(sysfs_pci_root=str(sysfs), timeout=30)
    assert facts["source"] == "pci"
    assert facts["driver_error"] == "nvidia-smi did not answer within 30 seconds"
    assert facts["gpu_count"] == 8


def test_unparseable_output_is_a_driver_error(monkeypatch, sysfs):
    truncated = (SMI / "tesla-t4.xml").read_text(encoding="utf-8")[:3000]
    facts = Host(monkeypatch, result=(0, truncated, "")).run(sysfs_pci_root=str(sysfs))
    assert facts["source"] == "pci"
    assert facts["driver_error"].startswith("nvidia-smi output is not well-formed XML")


def test_timeout_zero_runs_nvidia_smi_directly(monkeypatch, sysfs):
    host = Host(monkeypatch, result=smi_ok("tesla-t4.xml"))
    host.run(sysfs_pci_root=str(sysfs), timeout=0)
    assert host.calls[0][0] == [NVIDIA_SMI, "-q", "-x"]


def test_explicit_path_that_does_not_exist(monkeypatch, sysfs, tmp_path):
    host = Host(monkeypatch, result=smi_ok("tesla-t4.xml"))
    facts = host.run(sysfs_pci_root=str(sysfs), nvidia_smi_path=str(tmp_path / "nvidia-smi"))
    assert host.calls == []
    assert facts["nvidia_smi_path"] is None
    assert facts["source"] == "pci"


def test_explicit_path_is_used(monkeypatch, sysfs, tmp_path):
    binary = tmp_path / "nvidia-smi"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    host = Host(monkeypatch, bins={}, result=smi_ok("tesla-t4.xml"))
    facts = host.run(sysfs_pci_root=str(sysfs), nvidia_smi_path=str(binary))
    assert host.calls[0][0] == [str(binary), "-q", "-x"]
    assert facts["nvidia_smi_path"] == str(binary)
    assert facts["source"] == "nvidia-smi"


def test_negative_timeout_fails(monkeypatch, sysfs):
    Host(monkeypatch, result=smi_ok("tesla-t4.xml"))
    with patch_module_args({"timeout": -1}), pytest.raises(AnsibleFailJson) as exc:
        gpu_facts.main()
    assert "timeout must be 0 or more" in exc.value.args[0]["msg"]


# --- check mode, containers, idempotency ---------------------------------------------------------


def test_check_mode_reports_the_same_facts(monkeypatch, sysfs):
    hgx_h100(sysfs, driver=None)
    normal = Host(monkeypatch, result=(9, DRIVER_NOT_LOADED, "")).run(sysfs_pci_root=str(sysfs))
    host = Host(monkeypatch, result=(9, DRIVER_NOT_LOADED, ""))
    checked = host.run(sysfs_pci_root=str(sysfs), _ansible_check_mode=True)
    assert checked == normal
    assert host.check_modes == [True]  # read-only: nvidia-smi runs in check mode too


def test_in_container_is_reported(monkeypatch, sysfs):
    facts = Host(monkeypatch, bins={}, container=(True, "/.dockerenv")).run(sysfs_pci_root=str(sysfs))
    assert facts["in_container"] is True
    assert facts["gpu_count"] == 0


def test_second_run_is_identical_and_unchanged(monkeypatch, sysfs):
    hgx_h100(sysfs)
    first = Host(monkeypatch, result=smi_ok("a100-sxm4-80gb-mig.xml")).run(sysfs_pci_root=str(sysfs))
    second = Host(monkeypatch, result=smi_ok("a100-sxm4-80gb-mig.xml")).run(sysfs_pci_root=str(sysfs))
    assert first == second
    # nvidia-smi sees 1 GPU but 8 are on the bus: the fact a health check needs.
    assert (first["gpu_count"], first["pci_gpu_count"]) == (1, 8)
