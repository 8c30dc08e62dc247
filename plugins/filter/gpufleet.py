# Copyright: gpufleet developers
# Apache-2.0
"""Filters that expose gpufleet's module_utils knowledge to roles and playbooks."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.gpufleet.cluster.plugins.module_utils import apt_sources, nvidia_driver

DOCUMENTATION = r"""
name: gpufleet
short_description: gpufleet knowledge as filters
description:
  - C(debian_mirror), C(driver_problems), C(driver_plan), C(driver_version_match), C(driver_version_problem),
    C(dkms_status), C(dkms_missing_kernels), C(driver_activation), C(upstream_version).
author: gpufleet developers
"""


def debian_mirror(files, suite):
    """``{path: content}`` of APT source files -> the mirror URI serving ``suite``."""
    if not isinstance(files, dict):
        raise AnsibleFilterError("debian_mirror expects a dict of file name -> content")
    return apt_sources.debian_mirror(files, suite)


def driver_problems(facts, source, flavor, branch, version, nvswitch_count=0):
    return nvidia_driver.check_inputs(
        facts.get("distribution"),
        facts.get("distribution_version"),
        facts.get("distribution_major_version"),
        source,
        flavor,
        branch,
        version,
        nvswitch_count,
    )


def driver_plan(source, distribution, flavor, branch, headless=True, persistenced=True, fabricmanager=False):
    return nvidia_driver.driver_plan(
        source, distribution, flavor, branch, headless, persistenced, fabricmanager
    )


def driver_version_match(available, pinned, branch):
    """The package version to install (newest on ``branch`` matching ``pinned``), or None."""
    return nvidia_driver.match_version(pinned, nvidia_driver.on_branch(branch, available))


def driver_version_problem(available, pinned, branch, package):
    """'' when ``available`` has what is asked for, else a message listing what it has."""
    if driver_version_match(available, pinned, branch):
        return ""
    # nvidia_driver_version takes the upstream part only ('535.261.03', not '535.261.03-1'): name
    # both, so the value to set can be copied from the message.
    have = (
        ", ".join(
            f"{nvidia_driver.upstream_version(v)} ({v})"
            for v in sorted(set(available), key=nvidia_driver.version_key)
        )
        or "nothing"
    )
    wanted = f"nvidia_driver_version '{pinned}'" if pinned else f"nvidia_driver_branch '{branch}'"
    return (
        f"{wanted} is not available from the configured source: {package} has {have}; "
        "set nvidia_driver_version (and nvidia_driver_branch) to one of those upstream versions"
    )


def dkms_status(text):
    return nvidia_driver.parse_dkms_status(text)


def dkms_missing_kernels(rows, module, version, kernels):
    return nvidia_driver.dkms_missing_kernels(rows, module, version, kernels)


def driver_activation(in_container, installed, loaded, nouveau_loaded, reboot_allowed, gpu_count=0):
    return nvidia_driver.activation_plan(
        in_container, installed, loaded, nouveau_loaded, reboot_allowed, gpu_count
    )


def upstream_version(package_version):
    return nvidia_driver.upstream_version(package_version)


class FilterModule:
    def filters(self):
        return {
            "debian_mirror": debian_mirror,
            "driver_problems": driver_problems,
            "driver_plan": driver_plan,
            "driver_version_match": driver_version_match,
            "driver_version_problem": driver_version_problem,
            "dkms_status": dkms_status,
            "dkms_missing_kernels": dkms_missing_kernels,
            "driver_activation": driver_activation,
            "upstream_version": upstream_version,
        }
