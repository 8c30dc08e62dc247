#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: verify_collect
short_description: Read in one call everything gpufleet verify judges of a host
version_added: 0.1.0
description:
  - Gathers, in one module run, what C(gpufleet verify) reads of a host - each a module call of its
    own before, and each module call costs the controller a whole C(ansible) process.
  - The GPU facts of M(gpufleet.cluster.gpu_facts) (the same code), the InfiniBand facts of
    M(gpufleet.cluster.ib_facts) (the same code, with O(counter_interval)), the network facts
    C(ansible.builtin.setup) returns with C(gather_subset=!all,!min,network) (Ansible's own fact
    collector), and the serving facts of M(gpufleet.cluster.serve_facts) (the same code).
  - Asks C(systemctl is-active) about O(services) and the units of what the host serves (each model's
    current version and the front, from the serving state just read).
  - Runs each of O(commands) with C(/bin/sh -c), the C locale and its own time limit, and returns
    each command's exit status and output, whole.
  - A part that fails is recorded in RV(errors) and returned as V(null); the others are still read.
    Judges nothing - C(gpufleet verify)'s checks do.
  - Changes nothing on the host unless a command in O(commands) does; the serving part sends the
    front one request without a key and, with the node's probe key, the readiness requests (and the
    timed completion of O(serve_measure_tokens)), which the front audits (as M(gpufleet.cluster.serve_facts)).
author:
  - gpufleet developers
options:
  commands:
    description:
      - >-
        Shell commands to run, by name (C({name: command})). Each runs with C(/bin/sh -c) and
        C(LANG=C LC_ALL=C), under coreutils C(timeout) when the host has it.
      - >-
        The commands run after the facts are read and are told what the GPU part found:
        C(GPUFLEET_GPUS_READY) is V(1) when GPUs were found with their driver loaded (empty otherwise),
        C(GPUFLEET_NVIDIA_SMI) is the path of the C(nvidia-smi) that was found (empty when none).
      - >-
        Mark each command unsafe so that Ansible does not read C({{ }}) in it as a template - in YAML
        with C(!unsafe), in the JSON arguments of the ad hoc C(ansible) command as
        C({"__ansible_unsafe": "the command"}).
    type: dict
    default: {}
  command_timeout:
    description: Seconds each command may run unless O(command_timeouts) names it; V(0) waits forever.
    type: int
    default: 60
  command_timeouts:
    description: Seconds per command name, for the commands that need another limit than O(command_timeout).
    type: dict
    default: {}
  services:
    description:
      - Systemd units to ask C(systemctl is-active) about, besides the units of what the host serves.
    type: list
    elements: str
    default: []
  nvidia_smi_path:
    description: Path of C(nvidia-smi) (as M(gpufleet.cluster.gpu_facts)); looked up when not set.
    type: path
  sysfs_pci_root:
    description: Directory listing PCI devices (as M(gpufleet.cluster.gpu_facts)).
    type: path
    default: /sys/bus/pci/devices
  counter_interval:
    description:
      - Seconds between two reads of the InfiniBand error counters (as M(gpufleet.cluster.ib_facts)); V(0)
        reads them once. At most 3600.
    type: int
    default: 0
  serve_state_dir:
    description: >-
      Where the llm_serve role records each model's serving state (as M(gpufleet.cluster.serve_facts)).
    type: path
    default: /var/lib/gpufleet/serve
  front_conf:
    description: The front's nginx configuration (as M(gpufleet.cluster.serve_facts)).
    type: path
    default: /etc/gpufleet/front/nginx.conf
  serve_timeout:
    description: >-
      Seconds one request to an engine may take (as O(gpufleet.cluster.serve_facts#module:timeout)).
    type: int
    default: 30
  serve_measure_tokens:
    description: >-
      Tokens of the greedy completion timed per served model through the front with the node's probe key
      (as O(gpufleet.cluster.serve_facts#module:measure_tokens)); V(0) measures nothing.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    description: Only reads (unless a command in O(commands) writes); runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
notes:
  - The code of every part is the collection's module utils - C(host_facts), C(serve_state),
    C(verify_state) - which the single-purpose fact modules run too.
seealso:
  - module: gpufleet.cluster.gpu_facts
  - module: gpufleet.cluster.ib_facts
  - module: gpufleet.cluster.serve_facts
"""

EXAMPLES = r"""
- name: Read a host as gpufleet verify does, with two commands
  gpufleet.cluster.verify_collect:
    services: [nvidia-persistenced, docker]
    commands:
      meminfo: cat /proc/meminfo
      kernel_log: journalctl -k -o short-iso --no-pager --since -24h
    command_timeouts:
      kernel_log: 120
  register: verify_state

- name: Show the GPU count and whether docker answered
  ansible.builtin.debug:
    msg: >-
      {{ verify_state.gpus.gpu_count }} GPU(s),
      kernel log read: {{ verify_state.commands.kernel_log.rc == 0 }}
"""

RETURN = r"""
gpus:
  description: >-
    What M(gpufleet.cluster.gpu_facts) returns as C(ansible_facts.gpufleet_gpus); V(null) when that part
    failed (RV(errors.gpus) says why).
  returned: always
  type: dict
  sample: {"source": "pci", "gpu_count": 0, "driver_loaded": false, "gpus": []}
ib:
  description: >-
    What M(gpufleet.cluster.ib_facts) returns as C(ansible_facts.gpufleet_ib) with O(counter_interval);
    V(null) when that part failed.
  returned: always
  type: dict
  sample: {"source": "sysfs", "present": false, "hca_count": 0, "counter_interval_s": null}
network:
  description: >-
    The facts C(ansible.builtin.setup) returns with C(gather_subset=!all,!min,network), keys prefixed
    C(ansible_) as setup prefixes them; V(null) when that part failed.
  returned: always
  type: dict
  sample: {"ansible_interfaces": ["lo", "eth0"], "ansible_default_ipv4": {"interface": "eth0"}}
serving:
  description: >-
    What M(gpufleet.cluster.serve_facts) returns as C(ansible_facts.gpufleet_serving); V(null) when that
    part failed.
  returned: always
  type: dict
  sample: {"configured": false, "state_dir": /var/lib/gpufleet/serve, "models": {}, "front": null}
services:
  description: >-
    C(systemctl is-active) over O(services) and the served units - C(units) (sorted; its output has one
    word per unit, in this order), C(rc), C(stdout), C(stderr). No units, no command (C(rc) 0, no output).
  returned: always
  type: dict
  sample:
    {"units": ["docker", "gpufleet-front.service"], "rc": 0, "stdout": "active\ninactive\n", "stderr": ""}
commands:
  description: Per name in O(commands) - C(rc) (124 when it ran out of time), C(stdout), C(stderr), whole.
  returned: always
  type: dict
  sample: {"meminfo": {"rc": 0, "stdout": "MemTotal:       24567892 kB\n", "stderr": ""}}
errors:
  description: Per part (C(gpus), C(ib), C(network), C(serving)) that failed, why.
  returned: always
  type: dict
  sample: {"ib": "ib facts failed: PermissionError: [Errno 13] Permission denied: '/sys/class/infiniband'"}
timings:
  description: Seconds each part, the C(systemctl) query (C(services)) and all O(commands) together took.
  returned: always
  type: dict
  sample: {"gpus": 0.012, "ib": 0.001, "network": 0.21, "serving": 0.0, "services": 0.02, "commands": 0.4}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpufleet.cluster.plugins.module_utils.host_facts import (
    MAX_COUNTER_INTERVAL,
    PCI_ROOT,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.serve_state import FRONT_CONF, STATE_DIR
from ansible_collections.gpufleet.cluster.plugins.module_utils.verify_state import (
    COMMAND_TIMEOUT,
    collect,
    gatherers,
)


def _bad_options(p):
    """Why the options cannot be used, or None."""
    if p["command_timeout"] < 0:
        return f"command_timeout must be 0 or more seconds, got {p['command_timeout']}"
    for name, command in p["commands"].items():
        if not isinstance(command, str):
            return f"commands: {name} must be a shell command (a string), got {type(command).__name__}"
    for name, seconds in p["command_timeouts"].items():
        if name not in p["commands"]:
            return f"command_timeouts: {name} is not a name in commands"
        if not str(seconds).isdigit():
            return f"command_timeouts: {name} must be 0 or more seconds, got {seconds!r}"
    if not 0 <= p["counter_interval"] <= MAX_COUNTER_INTERVAL:
        return f"counter_interval must be 0 to {MAX_COUNTER_INTERVAL} seconds, got {p['counter_interval']}"
    if p["serve_timeout"] < 1:
        return f"serve_timeout must be 1 or more seconds, got {p['serve_timeout']}"
    if p["serve_measure_tokens"] < 0:
        return f"serve_measure_tokens must be 0 (measure nothing) or more, got {p['serve_measure_tokens']}"
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            commands=dict(type="dict", default={}),
            command_timeout=dict(type="int", default=COMMAND_TIMEOUT),
            command_timeouts=dict(type="dict", default={}),
            services=dict(type="list", elements="str", default=[]),
            nvidia_smi_path=dict(type="path"),
            sysfs_pci_root=dict(type="path", default=PCI_ROOT),
            counter_interval=dict(type="int", default=0),
            serve_state_dir=dict(type="path", default=STATE_DIR),
            front_conf=dict(type="path", default=FRONT_CONF),
            serve_timeout=dict(type="int", default=30),
            serve_measure_tokens=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    problem = _bad_options(p)
    if problem:
        module.fail_json(msg=problem)
    out = collect(
        module,
        gatherers(module, p),
        p["commands"],
        p["services"],
        p["command_timeout"],
        {name: int(seconds) for name, seconds in p["command_timeouts"].items()},
    )
    module.exit_json(changed=False, **out)


if __name__ == "__main__":
    main()
