# Copyright: gpufleet developers
# Apache-2.0
"""The inputs digest of the GPU stack's receipt (gpufleet apply --fast). The knowledge lives in
plugins/plugin_utils/stack_receipt.py; the filter has its own documentation (``<name>.yml``)."""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import stack_receipt


class FilterModule:
    def filters(self):
        return {"stack_receipt_inputs": stack_receipt.stack_receipt_inputs}
