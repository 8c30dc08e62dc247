# Copyright: gpufleet developers
# Apache-2.0
"""Rolling upgrade filters (playbooks/upgrade.yml): batches, drain backends and their status output,
the per-host state record, resuming and the undrain rule. The knowledge lives in
plugin_utils/rollout.py (node states: plugin_utils/scheduler.py); each filter has the name of the
function it exposes and its own documentation (``<name>.yml`` next to this file)."""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import rollout


class FilterModule:
    def filters(self):
        return {
            "rollout_batches": rollout.rollout_batches,
            "drain_commands": rollout.drain_commands,
            "drain_status": rollout.drain_status,
            "rollout_drain_decision": rollout.rollout_drain_decision,
            "rollout_record": rollout.rollout_record,
            "rollout_resume_plan": rollout.rollout_resume_plan,
            "rollout_should_undrain": rollout.rollout_should_undrain,
            "rollout_verify_problem": rollout.rollout_verify_problem,
        }
