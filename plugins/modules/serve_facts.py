#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: serve_facts
short_description: Gather what a host serves, whether it is ready, and how its front refuses a keyless request
version_added: 0.1.0
description:
  - Reads the serving state the P(gpufleet.cluster.llm_serve#role) role records in O(state_dir) - per model
    C(NAME.json) (C(current), C(previous), C(ports)) and the golden answer of its current version,
    C(NAME/VERSION.golden.json) (C(prompt), C(max_tokens), C(answer)).
  - For each model's current version, runs the readiness checks of M(gpufleet.cluster.serve_ready) once
    against C(127.0.0.1:PORT) - C(/v1/models) lists the model, a one-token completion, and the golden
    prompt decoded greedily, compared with the recorded answer when one is recorded.
  - Sends the front (its address and audit log read from O(front_conf)) one C(GET /v1/models) without an
    API key and returns its status, its C(X-Request-Id) and the audit log's line with that
    C(request_id).
  - Judges nothing - C(gpufleet verify)'s serving checks do. With no state file there is nothing to ask
    and RV(ansible_facts.gpufleet_serving.configured) is false.
  - Changes nothing on the host; the front writes one audit line for the refused request.
author:
  - gpufleet developers
options:
  state_dir:
    description: Where the llm_serve role records each model's serving state.
    type: path
    default: /var/lib/gpufleet/serve
  front_conf:
    description: The front's nginx configuration (its C(listen) line and its C(gpufleet_audit) C(access_log)).
    type: path
    default: /etc/gpufleet/front/nginx.conf
  timeout:
    description: Seconds one request to an engine may take (the front's refusal gets at most 10).
    type: int
    default: 30
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
"""

EXAMPLES = r"""
- name: What this node serves, and whether it is ready
  gpufleet.cluster.serve_facts:

- name: Show the current version of each model
  ansible.builtin.debug:
    msg: "{{ ansible_facts.gpufleet_serving.models | dict2items | map(attribute='value.current') }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to ansible_facts.
  returned: always
  type: complex
  contains:
    gpufleet_serving:
      description: The host's serving state, readiness and front.
      returned: always
      type: complex
      contains:
        configured:
          description: Whether any model's state is recorded in O(state_dir).
          type: bool
          sample: true
        state_dir:
          description: O(state_dir).
          type: str
        models:
          description: >-
            Per model name - C(current), C(previous), C(ports), C(port) (the current version's),
            C(state_file), C(error) (the state file could not be read), C(golden_file), C(golden) (the
            recorded C(prompt), C(max_tokens), C(answer), or null), C(golden_error), and C(ready) (the
            readiness checks, each C({name, ok, detail}); absent without a current version and port).
          type: dict
          sample:
            tiny-llama:
              current: "1"
              port: 8101
              ready: [{"name": "models", "ok": true, "detail": "/v1/models lists tiny-llama"}]
        front:
          description: >-
            Null without models; else C(conf), C(url), C(tls), C(audit_log), C(error) (no configuration
            or no C(listen) line) and C(refusal) - C(url), C(status), C(request_id), C(audit) (the audit
            line, or null), C(audit_log), C(error).
          type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpufleet.cluster.plugins.module_utils.serve_state import collect


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state_dir=dict(type="path", default="/var/lib/gpufleet/serve"),
            front_conf=dict(type="path", default="/etc/gpufleet/front/nginx.conf"),
            timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["timeout"] < 1:
        module.fail_json(msg=f"timeout must be 1 or more seconds, got {p['timeout']}")
    facts = collect(p["state_dir"], p["front_conf"], timeout=p["timeout"])
    module.exit_json(changed=False, ansible_facts={"gpufleet_serving": facts})


if __name__ == "__main__":
    main()
