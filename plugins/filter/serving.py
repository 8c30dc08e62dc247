# Copyright: gpufleet developers
# Apache-2.0
"""Serving filters: whether a model fits the GPUs it is meant to be served on, how an engine is started
and which version runs on which port in a rollout. The sizing arithmetic lives in
plugin_utils/sizing.py (``gpufleet plan`` prints the same figures), the engines and versions in
plugin_utils/serving_engine.py; each filter has the name of the function it exposes and its own
documentation (``<name>.yml`` next to this file)."""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import serving_engine, sizing


class FilterModule:
    def filters(self):
        return {
            "plan_problems": sizing.plan_problems,
            "engine_command": serving_engine.engine_command,
            "version_switch": serving_engine.version_switch,
            "split_problems": serving_engine.split_problems,
            "front_route": serving_engine.front_route,
            "model_problems": serving_engine.model_problems,
            "serving_models": serving_engine.serving_models,
            "unit_name": serving_engine.unit_name,
            "serving_stop_plan": serving_engine.serving_stop_plan,
            "serving_start_plan": serving_engine.serving_start_plan,
        }
