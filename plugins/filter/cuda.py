# Copyright: gpufleet developers
# Apache-2.0
"""CUDA toolkit and cuDNN filters: plans, toolkit homes, ``nvcc`` output, hello-program results
and the compatibility matrix's CUDA checks. The knowledge lives in plugin_utils/cuda_toolkit.py
and plugin_utils/compat.py; each filter has the name of the function it exposes and its own
documentation (``<name>.yml`` next to this file)."""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import compat, cuda_toolkit


class FilterModule:
    def filters(self):
        return {
            "cuda_toolkit_plan": cuda_toolkit.cuda_toolkit_plan,
            "cudnn_plan": cuda_toolkit.cudnn_plan,
            "cuda_home_links": cuda_toolkit.cuda_home_links,
            "nvcc_release": cuda_toolkit.nvcc_release,
            "cuda_hello_results": cuda_toolkit.cuda_hello_results,
            "cuda_problems": compat.cuda_problems,
        }
