# Copyright: gpufleet developers
# Apache-2.0
"""Python runtime filters: the python_runtime role's checked list of named environments, the problems
with their directories on a host and the local fact it writes. The rules live in
plugin_utils/python_runtime.py; each filter has the name of the function it exposes and its own
documentation (``<name>.yml`` next to this file)."""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import python_runtime


class FilterModule:
    def filters(self):
        return {
            "python_runtime_plan": python_runtime.python_runtime_plan,
            "python_runtime_dir_problems": python_runtime.python_runtime_dir_problems,
            "python_runtime_fact": python_runtime.python_runtime_fact,
        }
