# Copyright: gpufleet developers
# Apache-2.0
"""Serving filters: whether a model fits the GPUs it is meant to be served on. The sizing arithmetic
lives in plugin_utils/sizing.py (``gpufleet plan`` prints the same figures); each filter has the name
of the function it exposes and its own documentation (``<name>.yml`` next to this file)."""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import sizing


class FilterModule:
    def filters(self):
        return {"plan_problems": sizing.plan_problems}
