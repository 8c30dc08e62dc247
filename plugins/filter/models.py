# Copyright: gpufleet developers
# Apache-2.0
"""Model filters: where each model version of the model_store role comes from. The rules live in
plugin_utils/model_sources.py; each filter has its own documentation (``<name>.yml`` next to this file)."""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import model_sources


class FilterModule:
    def filters(self):
        return {"model_sources": model_sources.model_sources, "model_peers": model_sources.model_peers}
