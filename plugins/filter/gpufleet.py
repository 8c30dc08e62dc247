# Copyright: gpufleet developers
# Apache-2.0
"""Filters that expose gpufleet's module_utils knowledge to roles and playbooks."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.gpufleet.cluster.plugins.module_utils import bundle
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import (
    apt_sources,
    compat,
    cuda_toolkit,
    nccl_tuning,
    nvidia_driver,
    preflight,
)

DOCUMENTATION = r"""
name: gpufleet
short_description: gpufleet knowledge as filters
description:
  - C(debian_mirror), C(driver_problems), C(driver_plan), C(driver_version_match), C(driver_version_problem),
    C(dkms_status), C(dkms_missing_kernels), C(driver_activation), C(upstream_version).
  - C(cuda_toolkit_plan), C(cuda_home_links), C(nvcc_release), C(cuda_hello_results), C(cuda_problems).
  - C(nccl_role_plan), C(nccl_interfaces), C(nccl_conf_text), C(nccl_values), C(nccl_hca_problems).
  - C(cudnn_plan), C(stack_problems), C(secure_boot_state), C(secure_boot_problems), C(disk_problems),
    C(preflight_report).
  - C(pgp_fingerprint).
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


def cuda_toolkit_plan(source, distribution, major, versions, default, driver_branch="", arch="x86_64"):
    return cuda_toolkit.toolkit_plan(source, distribution, major, versions, default, driver_branch, arch)


def cuda_problems(versions, default, branch, driver_version="", architectures=()):
    return compat.cuda_problems(versions, default, branch, driver_version, architectures)


def nccl_role_plan(
    source, distribution, version, cuda, ib, interfaces, peermem=False, topo_file="", overrides=None
):
    return nccl_tuning.role_plan(
        source, distribution, version, cuda, ib, interfaces, peermem, topo_file, overrides
    )


def nccl_conf_text(settings):
    return nccl_tuning.render(settings)


def cudnn_plan(source, distribution, version, cuda):
    return cuda_toolkit.cudnn_plan(source, distribution, version, cuda)


def stack_problems(inputs):
    return compat.stack_problems(inputs)


def secure_boot_state(efivar_b64="", mokutil_output=""):
    import base64

    raw = base64.b64decode(efivar_b64) if efivar_b64 else None
    return preflight.secure_boot_state(raw, mokutil_output)


def disk_problems(components, df_output, reserve_mib=1024):
    """``df_output``: the text of ``df -Pm / /usr /var /opt`` on the host."""
    return preflight.disk_problems(components, preflight.parse_df(df_output), reserve_mib)


def cuda_home_links(homes):
    return cuda_toolkit.home_links(homes)


def nvcc_release(text):
    return cuda_toolkit.nvcc_release(text)


def cuda_hello_results(runs, gpus):
    return cuda_toolkit.hello_results(runs, gpus)


def nccl_interfaces(facts):
    return nccl_tuning.interfaces_from_facts(facts)


def nccl_values(settings):
    return nccl_tuning.values(settings)


def nccl_hca_problems(ib, requested):
    return nccl_tuning.hca_problems(ib, requested)


def secure_boot_problems(state, modules_signed):
    return preflight.secure_boot_problems(state, modules_signed)


def preflight_report(problems, host):
    return preflight.report(problems, host)


def pgp_fingerprint(key):
    """Fingerprint of the primary key in an OpenPGP public key: armored text (a lookup('file') of a
    .asc), binary bytes, or the base64 of the binary key (what ansible.builtin.slurp returns)."""
    if isinstance(key, str) and "-----BEGIN PGP " not in key:
        import base64
        import binascii

        try:
            key = base64.b64decode("".join(key.split()), validate=True)
        except (binascii.Error, ValueError):
            raise AnsibleFilterError(
                "pgp_fingerprint expects an armored OpenPGP key (-----BEGIN PGP PUBLIC KEY BLOCK-----) "
                "or the base64 of a binary one (slurp's content)"
            ) from None
    try:
        return bundle.pgp_fingerprint(key)
    except bundle.BundleError as exc:
        raise AnsibleFilterError(f"pgp_fingerprint: {exc}") from None


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
            "cuda_toolkit_plan": cuda_toolkit_plan,
            "cuda_home_links": cuda_home_links,
            "nvcc_release": nvcc_release,
            "cuda_hello_results": cuda_hello_results,
            "cuda_problems": cuda_problems,
            "nccl_role_plan": nccl_role_plan,
            "nccl_interfaces": nccl_interfaces,
            "nccl_conf_text": nccl_conf_text,
            "nccl_values": nccl_values,
            "nccl_hca_problems": nccl_hca_problems,
            "cudnn_plan": cudnn_plan,
            "stack_problems": stack_problems,
            "secure_boot_state": secure_boot_state,
            "secure_boot_problems": secure_boot_problems,
            "disk_problems": disk_problems,
            "preflight_report": preflight_report,
            "pgp_fingerprint": pgp_fingerprint,
        }
