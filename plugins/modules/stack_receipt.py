#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0
"""Check or record the GPU stack's receipt (gpufleet apply --fast)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: stack_receipt
short_description: Check or record what a full site.yml run left on a host (gpufleet apply --fast)
description:
  - With O(state=record), written at the end of a full, successful C(site.yml) run with
    C(gpufleet_fast_path), stores a fingerprint of everything the GPU-stack roles manage, with the
    run's settings digest O(inputs).
  - With O(state=check), compares the host now with its receipt and returns RV(converged). A
    receipt that no longer holds is removed (not in check mode), so a full run that a fault cuts
    short leaves none behind and the next run is full again.
  - The fingerprint covers every package with version and state, every file and directory under
    the paths the roles write to (type, mode, owner, size, mtime, link target), the enabled and
    active state of the units the roles manage, the NVIDIA/RDMA kernel modules loaded, the kernel
    and the boot. Python bytecode caches are ignored.
version_added: 0.4.0
author: gpufleet developers
options:
  state:
    description: C(check) the receipt, C(record) a new one, or remove it (C(absent)).
    type: str
    choices: [check, record, absent]
    default: check
  inputs:
    description:
      - Digest of the run's settings and the collection's content, computed on the controller; a
        receipt recorded with other inputs does not hold. Required for O(state=check) and
        O(state=record).
    type: str
  paths:
    description: Managed paths beyond the roles' defaults (settings that move a file or directory).
    type: list
    elements: str
    default: []
  receipt:
    description: Where the receipt is kept.
    type: path
    default: /var/lib/gpufleet/stack-receipt.json
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Compare the host with the receipt of its last full run
  gpufleet.cluster.stack_receipt:
    inputs: "{{ inputs_digest }}"
    paths: [/etc/nccl.conf]
  register: receipt
"""

RETURN = r"""
converged:
  description: True when the receipt holds (nothing it covers changed).
  returned: O(state=check)
  type: bool
reasons:
  description: Why the receipt does not hold, one phrase each; empty when it holds.
  returned: always
  type: list
  elements: str
  sample: ["changed under /etc/nccl.conf", "packages changed: nvidia-driver"]
msg:
  description: One sentence saying what was found or done.
  returned: always
  type: str
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpufleet.cluster.plugins.module_utils import stack_receipt as sr
from ansible_collections.gpufleet.cluster.plugins.module_utils.host_files import write_atomically


def _read(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["check", "record", "absent"], "default": "check"},
            "inputs": {"type": "str"},
            "paths": {"type": "list", "elements": "str", "default": []},
            "receipt": {"type": "path", "default": sr.RECEIPT},
        },
        required_if=[("state", "check", ["inputs"]), ("state", "record", ["inputs"])],
        supports_check_mode=True,
    )
    state, path, paths = module.params["state"], module.params["receipt"], module.params["paths"]
    existing = _read(path)
    if state == "absent":
        if existing is not None and not module.check_mode:
            os.unlink(path)
        gone = existing is not None
        msg = "receipt removed" if gone else "no receipt"
        module.exit_json(changed=gone, reasons=[], msg=msg)
    if state == "record":
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            text = sr.render(module.params["inputs"], paths, when)
        except ValueError as exc:
            module.fail_json(msg=f"cannot record the receipt: {exc}", reasons=[])
        if not module.check_mode:
            write_atomically(path, text)
        module.exit_json(changed=True, reasons=[], msg=f"receipt recorded in {path}")
    try:
        converged, reasons = sr.check(existing, module.params["inputs"], paths)
    except ValueError as exc:
        converged, reasons = False, [str(exc)]
    removed = not converged and existing is not None
    if removed and not module.check_mode:
        os.unlink(path)
    msg = "the receipt holds" if converged else "full run: " + "; ".join(reasons)
    module.exit_json(changed=removed, converged=converged, reasons=reasons, msg=msg)


if __name__ == "__main__":
    main()
