#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_facts
short_description: Gather facts about a host's InfiniBand and RoCE adapters
version_added: 0.1.0
description:
  - Reads the kernel's RDMA devices from sysfs (C(/sys/class/infiniband)) and returns, per device, its
    GUIDs, firmware and board, and per port the state, physical state, rate, link layer (InfiniBand or
    Ethernet for RoCE), LIDs, port GUID, the net interfaces bound to it and its GIDs with their types.
  - Reads each port's error counters under C(ports/<n>/counters/) (C(symbol_error), C(link_downed),
    C(link_error_recovery), C(port_rcv_errors) and the others of the kernel's sysfs ABI that exist).
    With O(counter_interval) it reads the whole tree twice that many seconds apart and returns, per
    port, the second read's counters and their increase over the interval, so that a check can judge
    errors by their rate of change rather than by totals accumulated since boot.
  - Optionally also runs C(ibstat) (infiniband-diags) and returns its parsed report next to the sysfs view.
  - A host without InfiniBand (no C(/sys/class/infiniband), e.g. a kernel built without
    C(CONFIG_INFINIBAND), or no adapter) is not an error; it reports
    RV(ansible_facts.gpufleet_ib.present=false) and RV(ansible_facts.gpufleet_ib.hca_count=0).
  - Read-only; never reports a change.
author:
  - gpufleet developers
options:
  sysfs_root:
    description:
      - Directory listing RDMA devices, one sub-directory per device, as the kernel's sysfs does.
    type: path
    default: /sys/class/infiniband
  net_root:
    description:
      - Directory listing net interfaces, as C(/sys/class/net); used to find the interfaces of a port
        when the kernel has no C(gid_attrs/ndevs) entries for it (InfiniBand ports and their IPoIB
        interfaces).
    type: path
    default: /sys/class/net
  ibstat:
    description:
      - Also run C(ibstat) when it is installed and return its parsed output in
        RV(ansible_facts.gpufleet_ib.ibstat). An absent C(ibstat) is not an error.
    type: bool
    default: false
  counter_interval:
    description:
      - Seconds between two reads of the error counters. V(0) reads once (counters reported, no
        increase); a positive value reads twice and returns the increase in each port's
        C(counter_deltas) in RV(ansible_facts.gpufleet_ib.devices) and the measured interval in
        RV(ansible_facts.gpufleet_ib.counter_interval_s). At most 3600.
    type: int
    default: 0
  timeout:
    description:
      - Seconds to wait for C(ibstat). Uses C(timeout) from coreutils when available; V(0) waits forever.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
    description: Can run in check_mode and return the same facts; it changes nothing either way.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
  facts:
    support: full
    description: Returns the facts in RV(ansible_facts.gpufleet_ib).
notes:
  - Parsing lives in the collection's C(infiniband) module utils, which the C(gpufleet) command and the
    verification checks share.
  - GUIDs are returned in one form, C(0x) and 16 lower-case hex digits, whether sysfs (C(c470:bd03:00cf:4964))
    or ibstat (C(0xc470bd0300cf4964)) printed them.
seealso:
  - name: Linux kernel sysfs ABI for InfiniBand
    description: The files this module reads.
    link: https://www.kernel.org/doc/Documentation/ABI/stable/sysfs-class-infiniband
"""

EXAMPLES = r"""
- name: Gather InfiniBand facts
  gpufleet.cluster.ib_facts:

- name: Require two active InfiniBand ports
  ansible.builtin.assert:
    that:
      - ansible_facts['gpufleet_ib']['ib_active']
      - ansible_facts['gpufleet_ib']['active_ports'] | length >= 2
    fail_msg: "active ports: {{ ansible_facts['gpufleet_ib']['active_ports'] }}"

- name: Read the error counters twice, 5 seconds apart (their increase is in counter_deltas)
  gpufleet.cluster.ib_facts:
    counter_interval: 5

- name: Compare with what ibstat says
  gpufleet.cluster.ib_facts:
    ibstat: true
    timeout: 10
"""

RETURN = r"""
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    gpufleet_ib:
      description: The host's RDMA (InfiniBand and RoCE) adapters.
      returned: always
      type: dict
      contains:
        source:
          description: Where the device list came from; always V(sysfs).
          type: str
          sample: sysfs
        present:
          description: Whether the host has at least one RDMA device.
          type: bool
          sample: true
        kernel_support:
          description: Whether the sysfs directory exists at all (the kernel has InfiniBand support loaded).
          type: bool
          sample: true
        in_container:
          description: >-
            Whether the host is a container (/.dockerenv, /run/.containerenv, /run/systemd/container or
            C(container=) in PID 1's environment).
          type: bool
          sample: false
        hca_count:
          description: Number of RDMA devices.
          type: int
          sample: 1
        port_count:
          description: Number of ports over all devices.
          type: int
          sample: 1
        active_ports:
          description: Ports in state C(ACTIVE), as C(device:port).
          type: list
          elements: str
          sample: ["mlx5_0:1"]
        ib_active:
          description: Whether an InfiniBand (link layer C(InfiniBand)) port is active.
          type: bool
          sample: true
        roce_active:
          description: Whether a RoCE (link layer C(Ethernet)) port is active.
          type: bool
          sample: false
        devices:
          description: One entry per device, sorted by name.
          type: list
          elements: dict
          sample:
            - name: mlx5_0
              node_type: CA
              node_guid: "0xc470bd0300cf4964"
              sys_image_guid: "0xc470bd0300cf4964"
              fw_ver: 28.40.1000
              hw_ver: "0"
              hca_type: MT4129
              board_id: MT_0000000834
              ports:
                - port: 1
                  state: ACTIVE
                  state_code: 4
                  phys_state: LinkUp
                  phys_state_code: 5
                  rate_gbps: 200.0
                  rate: 200 Gb/sec (4X HDR)
                  link_layer: InfiniBand
                  lid: 48
                  sm_lid: 48
                  lmc: 0
                  port_guid: "0xc470bd0300cf4964"
                  netdevs: [ib0]
                  gids:
                    - {index: 0, gid: "fe80:0000:0000:0000:c470:bd03:00cf:4964", type: IB, ndev: null}
                  counters: {symbol_error: 0, link_downed: 1, link_error_recovery: 0}
                  counter_deltas: {symbol_error: 0, link_downed: 0, link_error_recovery: 0}
        counter_interval_s:
          description: >-
            Seconds measured between the two reads of the error counters when O(counter_interval) asked
            for two; V(null) after one read (each port's C(counter_deltas) is then V(null) too).
            A counter lower in the second read than in the first was reset in between; its second
            value is taken as the increase.
          type: float
          sample: 5.002
        ibstat:
          description: >-
            C(ibstat)'s report parsed into the same shape as RV(ansible_facts.gpufleet_ib.devices)
            (C(board_id), C(netdevs) and C(gids) are not in it); V(null) when not asked for or not installed.
          type: list
          elements: dict
          sample: null
        ibstat_error:
          description: >-
            C(ibstat)'s error lines, whole, when it failed (what it printed before failing is still
            in RV(ansible_facts.gpufleet_ib.ibstat)), or why it gave nothing (timed out); V(null) otherwise.
          type: str
          sample: "ibpanic: [2137592] main: stat of IB device 'mthca0' failed: No such file or directory"
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpufleet.cluster.plugins.module_utils.host_facts import IB_ROOT, NET_ROOT, gather_ib


def main():
    module = AnsibleModule(
        argument_spec=dict(
            sysfs_root=dict(type="path", default=IB_ROOT),
            net_root=dict(type="path", default=NET_ROOT),
            ibstat=dict(type="bool", default=False),
            counter_interval=dict(type="int", default=0),
            timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        facts = gather_ib(
            module, p["sysfs_root"], p["net_root"], p["ibstat"], p["counter_interval"], p["timeout"]
        )
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, ansible_facts={"gpufleet_ib": facts})


if __name__ == "__main__":
    main()
