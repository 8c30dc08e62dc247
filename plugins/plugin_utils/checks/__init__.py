# Copyright: gpufleet developers
# Apache-2.0
"""Host health checks (controller code), gpud / azurehpc-health-checks style.

``core``: the result type, suggested actions, the verdict fold and the GPU preamble; one module per
check family (``gpu``, ``gpu_memory``, ``kernel_log``, ``fabric``, ``software``, ``host``); and
``registry``, where every check is declared once with the inputs it needs.
"""
