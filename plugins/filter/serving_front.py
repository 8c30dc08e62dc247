# Copyright: gpufleet developers
# Apache-2.0
"""Serving front filters: the API keys of the llm_serve role's front, checked and hashed on the
controller, and its routes. The rules live in plugin_utils/serving_front.py; each filter has the name
of the function it exposes and its own documentation (``<name>.yml`` next to this file)."""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import serving_front


class FilterModule:
    def filters(self):
        return {
            "front_key_problems": serving_front.front_key_problems,
            "front_keys": serving_front.front_keys,
            "front_routes": serving_front.front_routes,
        }
