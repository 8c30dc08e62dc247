#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: serve_facts
short_description: Gather what a host serves and whether it is ready, directly and through its front
version_added: 0.1.0
description:
  - Reads the serving state the P(gpufleet.cluster.llm_serve#role) role records in O(state_dir) - per model
    C(NAME.json) (C(current), C(previous), C(ports)) and the golden answer of its current version,
    C(NAME/VERSION.golden.json) (C(prompt), C(max_tokens), C(answer)).
  - For each model's current version, runs the readiness checks of M(gpufleet.cluster.serve_ready) once
    against C(127.0.0.1:PORT) - C(/v1/models) lists the model, a one-token completion, and the golden
    prompt decoded greedily, compared with the recorded answer when one is recorded.
  - Sends the front (its address and audit log read from O(front_conf); https when its C(listen) line says
    C(ssl)) one C(GET /v1/models) without an API key and returns its status, its C(X-Request-Id) and the
    audit log's line with that C(request_id).
  - Reads the node's probe key (O(probe_key), which the role makes root-only) and, with it as a
    bearer token (the C(Authorization) header), asks the front C(GET /v1/models) (status,
    C(X-Request-Id), the audit line - which must name the key C(gpufleet-probe), never hold the key)
    and runs the readiness checks again through the front (one token and the golden prompt, each
    naming the model).
  - With O(measure_tokens) above 0, times one greedy completion of up to that many tokens per model
    through the front with the probe key - tokens from the answer's C(usage.completion_tokens), divided
    by the request's wall time.
  - The probe key is read on the host only; it is never returned, logged or put on a command line.
  - Judges nothing - C(gpufleet verify)'s serving checks do. With no state file there is nothing to ask
    and RV(ansible_facts.gpufleet_serving.configured) is false.
  - Changes nothing on the host; the front writes an audit line for each request.
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
    description: Seconds one request to an engine may take (the front's C(GET /v1/models) gets at most 10).
    type: int
    default: 30
  probe_key:
    description:
      - The file holding the node's probe key (one word), which the P(gpufleet.cluster.llm_serve#role) role
        creates and registers in the front's keys file as C(gpufleet-probe).
      - Default C(probe.key) in the directory of O(front_conf).
      - Missing or unreadable - nothing is asked through the front with a key, and
        RV(ansible_facts.gpufleet_serving.front.probe_key_error) says why.
    type: path
  measure_tokens:
    description:
      - Tokens of the greedy completion timed per model through the front; 0 measures nothing.
      - Only for a version that is ready through the front.
    type: int
    default: 0
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
            readiness checks on C(127.0.0.1:PORT), each C({name, ok, detail}); absent without a current
            version and port), C(front_ready) (the readiness checks through the front with the probe key;
            absent without the key or the front) and C(tokens) (with O(measure_tokens): C(max_tokens),
            C(tokens), C(wall_s), C(tokens_per_s), C(error)).
          type: dict
          sample:
            tiny-llama:
              current: "1"
              port: 8101
              ready: [{"name": "models", "ok": true, "detail": "/v1/models lists tiny-llama"}]
              front_ready: [{"name": "generate", "ok": true, "detail": "one token generated (' Paris')"}]
              tokens: {"max_tokens": 32, "tokens": 32, "wall_s": 0.41, "tokens_per_s": 78.049, "error": null}
        front:
          description: >-
            Null without models; else C(conf), C(url), C(tls), C(audit_log), C(error) (no configuration
            or no C(listen) line), C(refusal) - C(url), C(status), C(request_id), C(audit) (the audit
            line, or null), C(audit_log), C(error) -, C(probe_key) (the key file's path),
            C(probe_key_error) (why it could not be read) and C(probe) - the same as C(refusal) for the
            request with the probe key, plus C(audit_has_key) (whether its audit line holds the key's
            text).
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
            probe_key=dict(type="path", no_log=False),
            measure_tokens=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["timeout"] < 1:
        module.fail_json(msg=f"timeout must be 1 or more seconds, got {p['timeout']}")
    if p["measure_tokens"] < 0:
        module.fail_json(msg=f"measure_tokens must be 0 (measure nothing) or more, got {p['measure_tokens']}")
    facts = collect(
        p["state_dir"],
        p["front_conf"],
        timeout=p["timeout"],
        probe_key=p["probe_key"],
        measure_tokens=p["measure_tokens"],
    )
    module.exit_json(changed=False, ansible_facts={"gpufleet_serving": facts})


if __name__ == "__main__":
    main()
