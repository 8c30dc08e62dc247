# Copyright: gpufleet developers
# Apache-2.0
"""Host checks that decide whether the GPU stack may be installed at all: Secure Boot, free disk
for what will be installed, and kernel headers. Pure functions over facts the preflight role
gathers; each problem names the variable (or the action) that fixes it.

Controller code (plugin_utils): runs in filters and the CLI, never on managed hosts. Version compatibility
lives in ``compat``; this module only adds the host-level rules and the disk sizes of what the roles install.
"""

from __future__ import annotations

# Secure Boot state is the last byte of this EFI variable (4 attribute bytes, then 1 data byte).
# Source: UEFI Specification 2.10, section 3.3 "Globally Defined Variables" (SecureBoot, EFI global
# variable GUID 8be4df61-93ca-11d2-aa0d-00e098032b8c); the kernel exposes it in efivarfs.
SECURE_BOOT_EFIVAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"

# What each component needs on disk, in MiB: download (APT cache / pip cache, freed later by
# "apt-get clean") plus installed size, rounded up. Measured on the lab (Debian 12) where the
# component installs there; otherwise from the package metadata named in the comment.
DISK_MIB = {
    # nvidia-kernel-dkms + userspace + linux-headers-amd64 + DKMS build tree, measured in the lab:
    # ~250 MiB downloaded, ~700 MiB installed.
    "nvidia_driver": 1024,
    # Debian nvidia-cuda-toolkit 11.8 with dependencies: 1.6 GiB downloaded, ~4.6 GiB installed
    # (measured in the lab, apt-get install --no-install-recommends).
    "cuda_toolkit_debian": 6400,
    # NVIDIA cuda-toolkit-X-Y meta package: ~3 GiB download, ~7 GiB installed (Installed-Size of
    # cuda-toolkit-12-4 and its dependencies in NVIDIA's Ubuntu 22.04 repository).
    "cuda_toolkit_cuda_repo": 10240,
    # nvidia-cudnn-cu12 9.x wheel ~700 MiB, unpacked ~1 GiB (PyPI file sizes); apt libcudnn9 similar.
    "cudnn": 2048,
    # nvidia-nccl-cu12 2.21.5 wheel 180 MiB (measured download), unpacked ~250 MiB.
    "nccl": 512,
    # rdma-core, infiniband-diags, ibverbs-utils, perftest: ~10 MiB (measured in the lab).
    "infiniband": 64,
}


def secure_boot_state(efivar_bytes=None, mokutil_output=None):
    """'enabled', 'disabled' or 'unknown' (no EFI, or nothing readable).

    ``efivar_bytes`` is the content of the SecureBoot EFI variable (bytes or a list of ints);
    ``mokutil_output`` the text of ``mokutil --sb-state`` ("SecureBoot enabled").
    """
    if efivar_bytes:
        data = bytes(efivar_bytes) if not isinstance(efivar_bytes, bytes | bytearray) else efivar_bytes
        if len(data) >= 5:
            return "enabled" if data[4] == 1 else "disabled"
    text = (mokutil_output or "").lower()
    if "secureboot enabled" in text:
        return "enabled"
    if "secureboot disabled" in text:
        return "disabled"
    return "unknown"


def secure_boot_problems(state, modules_signed):
    """Secure Boot on + unsigned DKMS modules = a driver that installs and then refuses to load."""
    if state != "enabled" or modules_signed:
        return []
    return [
        "Secure Boot is enabled, so the kernel refuses unsigned modules and the DKMS-built nvidia "
        "module would not load. Either enroll DKMS's signing key (dkms creates /var/lib/dkms/mok.pub; "
        "run 'mokutil --import /var/lib/dkms/mok.pub', reboot and confirm the enrollment in the MOK "
        "manager; DKMS then signs every module it builds) and set preflight_secure_boot_signed: true, "
        "or disable Secure Boot in the firmware"
    ]


def disk_needed_mib(components):
    """MiB needed for the components about to be installed (names as in ``DISK_MIB``)."""
    return sum(DISK_MIB.get(c, 0) for c in components)


def disk_problems(components, free_by_mount, reserve_mib=1024):
    """``free_by_mount``: {mount point: free MiB} for / (and /var, /usr, /opt when separate).

    Everything installs under /usr, /var and /opt; on one root file system that is all one
    number. With separate mounts the need is checked against the smallest of them, which can
    only over-ask, never let an install run out of space half way.
    """
    if reserve_mib is not None and int(reserve_mib) < 0:
        return []
    need = disk_needed_mib(components) + reserve_mib
    relevant = {m: f for m, f in free_by_mount.items() if m in ("/", "/usr", "/var", "/opt")}
    if not relevant:
        return [
            "could not read the free disk of /, /usr, /var or /opt (df -Pm gave nothing); check that df "
            "works on the host, or set preflight_disk_reserve_mib: -1 to skip this check"
        ]
    mount, free = min(relevant.items(), key=lambda kv: kv[1])
    if free >= need:
        return []
    parts = ", ".join(f"{c} {DISK_MIB.get(c, 0)} MiB" for c in components)
    return [
        f"not enough free disk on {mount}: {free} MiB free, {need} MiB needed ({parts}, plus "
        f"{reserve_mib} MiB reserve); free space, or skip components (gpufleet_install_cuda_toolkit, "
        "gpufleet_install_nccl, ...), or lower preflight_disk_reserve_mib"
    ]


def parse_df(text):
    """``df -Pm PATH...`` (POSIX format, MiB blocks) -> {mount point: free MiB}.

    Used instead of Ansible's mount facts, which leave out the root file system of a container
    (an overlay) and so would let preflight pass without checking anything."""
    out = {}
    for line in (text or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) < 6 or not fields[3].isdigit():
            continue
        out[" ".join(fields[5:])] = int(fields[3])
    return out


def free_by_mount(mounts):
    """Ansible's ``ansible_facts['mounts']`` -> {mount point: free MiB}."""
    out = {}
    for m in mounts or ():
        try:
            out[m["mount"]] = int(m["size_available"]) // (1024 * 1024)
        except (KeyError, TypeError, ValueError):
            continue
    return out


def preflight_report(problems, host):
    """The one failure message preflight prints: every problem, numbered, and that nothing changed."""
    lines = [f"preflight failed on {host}: {len(problems)} problem(s); nothing was changed."]
    lines += [f"  {n}. {p}" for n, p in enumerate(problems, 1)]
    return "\n".join(lines)
