"""playbooks/upgrade.yml runs its per-host steps in the order of rollout.STEPS (the plan a resumed run
follows), and serving is stopped with the llm_serve role's stop and started again with its start
unless a hook is set."""

import re

import yaml
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import rollout
from conftest import REPO

DUE = re.compile(r"^'(\w+)' in __upgrade_plan\['due'\]$")


def host_tasks():
    plays = yaml.safe_load((REPO / "playbooks" / "upgrade.yml").read_text())
    rolling = next(p for p in plays if p["name"] == "Rolling upgrade")
    return next(t for t in rolling["tasks"] if t["name"] == "Upgrade this host")["block"]


def step_of(task):
    match = DUE.match(str(task.get("when", "")))
    return match.group(1) if match else None


def test_the_playbook_runs_the_steps_in_the_order_resume_plans_them():
    steps = [s for s in (step_of(t) for t in host_tasks()) if s]
    assert steps == [s for s in rollout.STEPS if s != "connect"]


def included_roles(step):
    block = next(t for t in host_tasks() if step_of(t) == step)["block"]
    return [
        (
            t["ansible.builtin.include_role"]["name"],
            t["ansible.builtin.include_role"]["tasks_from"],
            t["when"],
        )
        for t in block
        if "ansible.builtin.include_role" in t
    ]


def test_serving_is_stopped_and_started_by_llm_serve_unless_a_hook_is_set():
    assert included_roles("stop_serving") == [
        (
            "gpufleet.cluster.llm_serve",
            "stop",
            "gpufleet_upgrade_stop_serving_tasks | default('') | length == 0",
        )
    ]
    assert included_roles("start_serving") == [
        (
            "gpufleet.cluster.llm_serve",
            "start",
            "gpufleet_upgrade_start_serving_tasks | default('') | length == 0",
        )
    ]
