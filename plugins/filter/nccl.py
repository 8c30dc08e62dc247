# Copyright: gpufleet developers
# Apache-2.0
"""NCCL filters: the nccl role's plan, the interfaces it tunes for, the nccl.conf it writes and the
PyTorch release it installs for the benchmark probes (``nccl_probe_torch``). The knowledge lives in
plugin_utils/nccl_tuning.py and plugin_utils/compat_torch.py; each filter has the name of the function it
exposes and its own documentation (``<name>.yml`` next to this file)."""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import compat_torch, nccl_tuning


class FilterModule:
    def filters(self):
        return {
            "nccl_role_plan": nccl_tuning.nccl_role_plan,
            "interfaces_from_facts": nccl_tuning.interfaces_from_facts,
            "nccl_conf_text": nccl_tuning.nccl_conf_text,
            "nccl_values": nccl_tuning.nccl_values,
            "choose_torch": compat_torch.choose_torch,
            "torch_problems": compat_torch.torch_problems,
        }
