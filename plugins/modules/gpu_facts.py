#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Gather facts about a host's NVIDIA GPUs, driver and NVSwitches
version_added: 0.1.0
description:
  - Runs C(nvidia-smi -q -x) and returns the driver and CUDA versions and, per GPU, name, UUID, PCI bus id,
    architecture, MIG and ECC mode, ECC error counters, retired pages / remapped rows, PCIe link,
    clock event (throttle) reasons, memory, power and temperature.
  - When C(nvidia-smi) is absent or fails (no driver yet, driver not loaded, version mismatch, hang), falls
    back to the PCI bus in sysfs, so a fresh host still reports its GPUs and their architecture; the
    failure text is returned in RV(ansible_facts.gpufleet_gpus.driver_error).
  - A host without any GPU is not an error; it reports RV(ansible_facts.gpufleet_gpus.gpu_count=0).
  - Read-only; never reports a change.
author:
  - gpufleet developers
options:
  nvidia_smi_path:
    description:
      - Path of the C(nvidia-smi) binary.
      - When not set, C(nvidia-smi) is looked up on E(PATH) and in the usual system directories.
      - A path that does not exist is treated like an absent C(nvidia-smi), with a warning.
    type: path
  sysfs_pci_root:
    description:
      - Directory listing PCI devices, one sub-directory per bus id, as the kernel's sysfs does.
    type: path
    default: /sys/bus/pci/devices
  timeout:
    description:
      - Seconds to wait for C(nvidia-smi) before giving up on it (a GPU that fell off the bus can make it
        hang). Uses C(timeout) from coreutils when available; V(0) waits forever.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: Can run in check_mode and return the same facts; it changes nothing either way.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
  facts:
    support: full
    description: Returns the facts in RV(ansible_facts.gpufleet_gpus).
notes:
  - Parsing lives in the collection's C(nvidia_smi), C(pci) and C(gpu_arch) module utils, which the
    C(gpufleet) command and the verification checks share.
  - The architecture of a GPU comes from C(nvidia-smi) when it reports one, else from its PCI device id;
    ids the table does not list are reported as V(unknown), never guessed.
seealso:
  - name: nvidia-smi documentation
    description: The XML report this module parses.
    link: https://docs.nvidia.com/deploy/nvidia-smi/index.html
"""

EXAMPLES = r"""
- name: Gather GPU facts
  gpufleet.cluster.gpu_facts:

- name: Show what the host has
  ansible.builtin.debug:
    msg: >-
      {{ ansible_facts['gpufleet_gpus']['gpu_count'] }} GPU(s)
      {{ ansible_facts['gpufleet_gpus']['architectures'] | join(', ') }},
      driver {{ ansible_facts['gpufleet_gpus']['driver_version'] | default('not loaded', true) }}

- name: Use a driver installed outside PATH and give nvidia-smi more time
  gpufleet.cluster.gpu_facts:
    nvidia_smi_path: /opt/nvidia/bin/nvidia-smi
    timeout: 120

- name: Fail when a GPU is visible on the bus but the driver cannot talk to it
  ansible.builtin.assert:
    that:
      - ansible_facts['gpufleet_gpus']['pci_gpu_count'] == 0
        or ansible_facts['gpufleet_gpus']['source'] == 'nvidia-smi'
    fail_msg: "{{ ansible_facts['gpufleet_gpus']['driver_error'] }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    gpufleet_gpus:
      description: The host's NVIDIA GPUs, driver and NVSwitches.
      returned: always
      type: dict
      contains:
        source:
          description: Where the GPU list came from, V(nvidia-smi) or V(pci) (the fallback).
          type: str
          sample: nvidia-smi
        driver_loaded:
          description: >-
            V(true) when nvidia-smi answered, or when at least one GPU is bound to the C(nvidia) kernel
            driver.
          type: bool
          sample: true
        driver_version:
          description: NVIDIA driver version, V(null) when nvidia-smi did not answer.
          type: str
          sample: 535.54.03
        cuda_version:
          description: Highest CUDA version the driver supports, V(null) when nvidia-smi did not answer.
          type: str
          sample: "12.2"
        driver_error:
          description: >-
            Tail of nvidia-smi's output when it exists but failed, timed out or printed unparseable XML;
            V(null) otherwise.
          type: str
          sample: >-
            NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.
            Make sure that the latest NVIDIA driver is installed and running.
        nvidia_smi_path:
          description: The nvidia-smi used, V(null) when none was found.
          type: str
          sample: /usr/bin/nvidia-smi
        gpu_count:
          description: Number of entries in RV(ansible_facts.gpufleet_gpus.gpus).
          type: int
          sample: 8
        attached_gpus:
          description: >-
            The GPU count nvidia-smi reports as attached (V(null) without nvidia-smi). Above
            RV(ansible_facts.gpufleet_gpus.gpu_count): GPUs nvidia-smi could not query.
          type: int
          sample: 8
        pci_gpu_count:
          description: >-
            NVIDIA GPUs visible on the PCI bus. With nvidia-smi as the source, a count above
            RV(ansible_facts.gpufleet_gpus.gpu_count) means a GPU the driver does not see.
          type: int
          sample: 8
        gpus:
          description: >-
            One entry per GPU in nvidia-smi index order (PCI bus order for the fallback). Every entry has
            C(index), C(name), C(uuid), C(pci_bus_id), C(device_id), C(architecture), C(driver), C(numa_node)
            and C(pcie); entries from nvidia-smi add the rest shown in the sample.
          type: list
          elements: dict
          sample:
            - index: 0
              minor_number: 1
              name: NVIDIA A100-SXM4-80GB
              brand: NVIDIA
              architecture: Ampere
              uuid: GPU-513536b6-7d19-9063-b049-1e69664bb298
              serial: "1650522003820"
              vbios_version: 92.00.36.00.02
              pci_bus_id: "0000:01:00.0"
              device_id: "0x20b2"
              driver: nvidia
              numa_node: 0
              persistence_mode: false
              mig_mode: {current: true, pending: true}
              mig_device_count: 4
              ecc_mode: {current: true, pending: true}
              ecc_errors:
                volatile: {correctable: 0, uncorrectable: 0}
                aggregate: {correctable: 0, uncorrectable: 0}
              retired_pages: null
              remapped_rows: null
              pcie: {gen_current: 4, gen_max: 4, width_current: 16, width_max: 16}
              clocks_event_reasons: {gpu_idle: false, sw_power_cap: false, hw_slowdown: false}
              clocks_event_reasons_active: []
              memory: {total_mib: 81920, used_mib: 50}
              power: {draw_w: 67.03, limit_w: 500.0}
              temperature_c: 27
              memory_temperature_c: 44
        architectures:
          description: Sorted unique architectures of the GPUs (V(unknown) for a device id not in the table).
          type: list
          elements: str
          sample: [Ampere]
        nvswitch_count:
          description: NVSwitch bridges on the PCI bus (HGX / DGX baseboards).
          type: int
          sample: 4
        nvswitches:
          description: The NVSwitches, each with C(pci_bus_id), C(device_id), C(name) and C(driver).
          type: list
          elements: dict
          sample:
            - pci_bus_id: "0000:07:00.0"
              device_id: "0x22a3"
              name: NVSwitch (H100 generation)
              driver: nvidia-nvswitch
        in_container:
          description: >-
            Whether the host is a container (/.dockerenv, /run/.containerenv, /run/systemd/container or
            C(container=) in PID 1's environment); containers cannot load kernel modules.
          type: bool
          sample: false
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpufleet.cluster.plugins.module_utils.host_facts import PCI_ROOT, gather_gpus


def main():
    module = AnsibleModule(
        argument_spec=dict(
            nvidia_smi_path=dict(type="path"),
            sysfs_pci_root=dict(type="path", default=PCI_ROOT),
            timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        facts = gather_gpus(module, p["nvidia_smi_path"], p["sysfs_pci_root"], p["timeout"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, ansible_facts={"gpufleet_gpus": facts})


if __name__ == "__main__":
    main()
