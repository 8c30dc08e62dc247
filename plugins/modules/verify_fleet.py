#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0

# The work is done on the controller by the action plugin of the same name
# (plugins/action/verify_fleet.py), which calls gpufleet.verify.run; this file carries the documentation.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: verify_fleet
short_description: Verify every host of an inventory with gpufleet's health checks and probes
version_added: 0.1.0
description:
  - Runs C(gpufleet verify) from the controller through its Python API, C(gpufleet.verify.run) - the
    same checks, benchmark probes, per-SKU baselines and verdicts as the C(gpufleet verify) command.
  - Every host of O(inventory) (or those matching O(limit)) is verified in parallel over Ansible's own
    connection settings and judged V(healthy), V(degraded), V(unhealthy) or V(unreachable), with the
    failing checks and a suggested action.
  - Optionally drains the hosts from Slurm or Kubernetes first and returns the fit ones (healthy,
    degraded) to service afterwards; nodes an admin took out of service are never touched.
  - The task itself does not fail because a host is unhealthy; RV(exit_code) says so (V(1)), so a
    play can show the table first and then fail (see EXAMPLES). Bad input fails the task before
    anything is touched.
  - Needs the C(gpufleet) Python package in the Python that runs C(ansible-playbook).
author:
  - gpufleet developers
options:
  inventory:
    description:
      - Ansible inventory file or directory to verify, usually C({{ ansible_inventory_sources | first }}).
    type: path
    required: true
  limit:
    description:
      - Only hosts matching this Ansible pattern, usually C({{ ansible_limit | default(omit) }}).
    type: str
  tier:
    description:
      - V(quick) state checks (seconds); V(full) plus benchmark probes (minutes); V(burnin) longer
        probes, only on drained hosts (O(drain) or O(assume_drained)).
    type: str
    choices: [quick, full, burnin]
    default: quick
  jobs:
    description:
      - Hosts verified at once.
    type: int
    default: 8
  baselines:
    description:
      - YAML file of per-SKU baseline overrides, applied over each host's C(gpufleet_baselines).
    type: path
  host_timeout_s:
    description:
      - Seconds one host may take before it is reported unreachable (default per tier).
    type: int
  drain:
    description:
      - Drain the hosts from this scheduler before verifying and return the fit ones to service
        afterwards; unfit hosts stay drained.
    type: str
    choices: [slurm, kubernetes]
  drain_state:
    description:
      - File where gpufleet records what it drained (default C(/var/lib/gpufleet/drain-state.json)).
        Only with O(drain).
    type: path
  assume_drained:
    description:
      - The hosts are already out of service; allows O(tier=burnin) without O(drain).
    type: bool
    default: false
  json_report:
    description:
      - Write the JSON report to this file on the controller (atomically).
    type: path
  junit_report:
    description:
      - Write a JUnit XML report to this file on the controller (atomically).
    type: path
  prometheus_report:
    description:
      - Write a node_exporter textfile-collector file here on the controller (atomically).
    type: path
  verbose:
    description:
      - List every check in RV(table), not only the failing ones.
    type: bool
    default: false
attributes:
  action:
    support: full
    description: Runs on the controller as an action plugin; the checks reach each host over Ansible.
  check_mode:
    support: full
    description: Validates every input, reads the inventory and reports which hosts would be verified
      (and drained, and which reports written); connects to no host and drains nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Progress lines (each host's verdict as it comes in, draining) are shown with C(-v).
  - The command line over the same API is C(gpufleet verify); both are described in C(docs/verify.md).
"""

EXAMPLES = r"""
- name: Verify the fleet
  gpufleet.cluster.verify_fleet:
    inventory: "{{ ansible_inventory_sources | first }}"
    limit: "{{ ansible_limit | default(omit) }}"
    tier: full
    junit_report: /var/lib/gpufleet/reports/verify.junit.xml
  register: verify

- name: Show the verdicts
  ansible.builtin.debug:
    msg: "{{ verify.table_lines }}"

- name: Fail when a host is unhealthy or unreachable
  ansible.builtin.fail:
    msg: at least one host is unhealthy or unreachable
  when: verify.exit_code == 1

- name: Burn-in on Slurm nodes, drained first and returned to service when fit
  gpufleet.cluster.verify_fleet:
    inventory: inventories/site
    tier: burnin
    drain: slurm
"""

RETURN = r"""
exit_code:
  description: 1 when any host is unhealthy or unreachable, else 0 (as C(gpufleet verify)).
  returned: success, not in check mode
  type: int
  sample: 1
verdicts:
  description: The verdict of each host, in inventory order.
  returned: success, not in check mode
  type: dict
  sample: {"gpu01": "healthy", "gpu02": "unhealthy"}
summary:
  description: The number of hosts with each verdict.
  returned: success, not in check mode
  type: dict
  sample: {"healthy": 1, "degraded": 0, "unhealthy": 1, "unreachable": 0}
hosts:
  description: One entry per host - verdict, suggested action, failing and warning checks, error.
  returned: success, not in check mode
  type: list
  elements: dict
  sample:
    - {"host": "gpu02", "verdict": "unhealthy", "action": "ISOLATE", "failing": ["gpu_count"], "warning": [],
       "error": null}
table:
  description: The verdict table C(gpufleet verify) prints.
  returned: success, not in check mode
  type: str
table_lines:
  description: RV(table), one line per element (for M(ansible.builtin.debug)).
  returned: success, not in check mode
  type: list
  elements: str
reports:
  description: Report kind (V(json), V(junit), V(prometheus)) to the file written, or in check mode
    the file that would be written.
  returned: success
  type: dict
  sample: {"junit": "/var/lib/gpufleet/reports/verify.junit.xml"}
drain:
  description: With O(drain) - the scheduler, the nodes returned to service, those kept out, errors.
  returned: success, with O(drain), not in check mode
  type: dict
  sample: {"kind": "slurm", "undrained": ["gpu01"], "kept": ["gpu02"], "errors": {}}
would_verify:
  description: In check mode, the hosts that would be verified.
  returned: check mode
  type: list
  elements: str
  sample: ["gpu01", "gpu02"]
would_drain:
  description: In check mode with O(drain), inventory host to the scheduler node that would be drained.
  returned: check mode, with O(drain)
  type: dict
  sample: {"gpu01": "gpu01"}
"""
