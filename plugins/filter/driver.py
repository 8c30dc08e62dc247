# Copyright: gpufleet developers
# Apache-2.0
"""NVIDIA driver filters: input checks, package plans, version pinning, ``dkms status`` and the
load/reboot decision. The knowledge lives in plugin_utils/nvidia_driver.py
(``dkms status``: module_utils/pkg_recovery.py); each filter has the
name of the function it exposes and its own documentation (``<name>.yml`` next to this file)."""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.module_utils import pkg_recovery
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import nvidia_driver


def driver_problems(facts, source, flavor, branch, version, nvswitch_count=0):
    """``ansible_facts`` -> the distribution arguments of nvidia_driver.driver_problems."""
    return nvidia_driver.driver_problems(
        facts.get("distribution"),
        facts.get("distribution_version"),
        facts.get("distribution_major_version"),
        source,
        flavor,
        branch,
        version,
        nvswitch_count,
    )


class FilterModule:
    def filters(self):
        return {
            "driver_problems": driver_problems,
            "driver_plan": nvidia_driver.driver_plan,
            "driver_version_match": nvidia_driver.driver_version_match,
            "driver_version_problem": nvidia_driver.driver_version_problem,
            "parse_dkms_status": pkg_recovery.parse_dkms_status,
            "dkms_missing_kernels": pkg_recovery.dkms_missing_kernels,
            "activation_plan": nvidia_driver.activation_plan,
            "upstream_version": nvidia_driver.upstream_version,
        }
