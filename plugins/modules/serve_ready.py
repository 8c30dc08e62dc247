#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: serve_ready
short_description: Wait until a served model is ready - health, listed, generating, and answering as recorded
version_added: 0.1.0
description:
  - Repeats the readiness checks against an OpenAI-compatible engine (or the front before it) until all
    pass or O(wait) seconds are up. In order - the engine's health route (O(health_path), when the
    engine has one), C(/v1/models) listing O(model), a one-token completion, and, with O(golden), a
    golden prompt decoded greedily (temperature 0, a fixed seed) whose answer must equal
    O(golden.expect).
  - An engine's health route alone is not readiness (vLLM's C(/health) stays 200 after a GPU fault);
    the golden answer catches other weights, a changed tokenizer or a broken engine. A golden answer
    that differs is final - waiting does not change it.
  - Fails, with every check's result, when the model is not ready in time; the task changes nothing.
  - With O(golden.expect) omitted the answer is returned in RV(answer), to be recorded.
author:
  - gpufleet developers
options:
  url:
    description: Base URL of the engine or the front (C(http://127.0.0.1:8101)).
    type: str
    required: true
  model:
    description: The model's served name, as C(/v1/models) lists it.
    type: str
    required: true
  health_path:
    description: The engine's health route (vLLM and trtllm-serve have C(/health)); omit for none.
    type: str
  golden:
    description: The golden prompt; omit to skip that check.
    type: dict
    suboptions:
      prompt:
        description: The prompt (the llm_serve role's default is in C(plugin_utils/serving_engine.py)).
        type: str
        required: true
      max_tokens:
        description: Tokens to generate.
        type: int
        default: 8
      expect:
        description: The recorded answer; omitted, the answer is returned to be recorded.
        type: str
  api_key:
    description: A key for the front (sent as a bearer token); never logged.
    type: str
  unit:
    description:
      - The engine's systemd unit. When given, each round first asks systemd whether it still runs; a unit
        that is inactive or failed ends the wait at once (a restarted host, a stopped unit), saying so,
        instead of waiting out O(wait). One being restarted (C(activating)) is waited for.
    type: str
  wait:
    description: Seconds to keep trying.
    type: int
    default: 120
  interval:
    description: Seconds between rounds.
    type: float
    default: 2.0
  timeout:
    description: Seconds one request may take.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
"""

EXAMPLES = r"""
- name: Wait for version 2 of the model on its new port
  gpufleet.cluster.serve_ready:
    url: http://127.0.0.1:8102
    model: llama-3.1-8b
    health_path: /health
    golden:
      prompt: The capital of France is
      expect: " Paris. The capital of Germany is"
    wait: 600
"""

RETURN = r"""
ready:
  description: Whether every check passed.
  returned: always
  type: bool
checks:
  description: The last round's checks, each {name, ok, detail}.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "models", "ok": true, "detail": "/v1/models lists tiny-llama"}]
answer:
  description: The golden prompt's answer (with O(golden)).
  returned: when the golden check ran and passed
  type: str
waited:
  description: Seconds waited.
  returned: always
  type: float
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpufleet.cluster.plugins.module_utils.serve_probe import unit_stopped, wait_ready


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            model=dict(type="str", required=True),
            health_path=dict(type="str"),
            golden=dict(
                type="dict",
                options=dict(
                    prompt=dict(type="str", required=True),
                    max_tokens=dict(type="int", default=8),
                    expect=dict(type="str"),
                ),
            ),
            api_key=dict(type="str", no_log=True),
            unit=dict(type="str"),
            wait=dict(type="int", default=120),
            interval=dict(type="float", default=2.0),
            timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    p = module.params
    headers = {"Authorization": f"Bearer {p['api_key']}"} if p["api_key"] else None
    alive = None
    if p["unit"]:
        systemctl = module.get_bin_path("systemctl", required=True)

        def alive():
            rc, out, err = module.run_command([systemctl, "show", "-p", "ActiveState", "--value", p["unit"]])
            return unit_stopped(p["unit"], out.strip() if rc == 0 else f"unknown ({err.strip()})")

    ready, checks, waited, rounds = wait_ready(
        p["url"], p["model"], p["wait"], interval=p["interval"], health_path=p["health_path"],
        golden=p["golden"], headers=headers, timeout=p["timeout"], alive=alive,
    )  # fmt: skip
    result = dict(changed=False, ready=ready, checks=checks, waited=round(waited, 1))
    answer = next((c.get("answer") for c in checks if c["name"] == "golden" and c["ok"]), None)
    if answer is not None:
        result["answer"] = answer
    if not ready:
        failed = [c for c in checks if not c["ok"]]
        module.fail_json(
            msg=f"model {p['model']} at {p['url']} is not ready after {waited:.0f} s ({rounds} rounds): "
            + "; ".join(f"{c['name']}: {c['detail']}" for c in failed),
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
