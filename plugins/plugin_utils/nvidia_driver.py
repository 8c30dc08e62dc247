# Copyright: gpufleet developers
# Apache-2.0
"""NVIDIA driver knowledge, written once: supported OSes, install sources and their package
names, version pinning and the decision whether a host needs a
module load, a reboot, or nothing.

Controller code (plugin_utils): runs in filters and the CLI, never on managed hosts. The ``gpufleet.cluster``
filters expose these functions to roles; the CLI imports them directly.
"""

from __future__ import annotations

import re

from ansible_collections.gpufleet.cluster.plugins.module_utils.versions import DRIVER_VERSION, version_key

# Distribution (ansible_facts['distribution']) -> supported versions, as ansible reports them
# (distribution_major_version for Debian/RHEL-likes, distribution_version for Ubuntu).
SUPPORTED_OS = {
    "Debian": ("12",),
    "Ubuntu": ("22.04", "24.04"),
    "RedHat": ("8", "9"),
    "Rocky": ("8", "9"),
    "AlmaLinux": ("8", "9"),
}
RHEL_LIKE = ("RedHat", "Rocky", "AlmaLinux")

# Install source -> distributions it can serve.
SOURCES = {
    "debian": ("Debian",),
    "ubuntu": ("Ubuntu",),
    "cuda_repo": ("Ubuntu", *RHEL_LIKE),
    "rhel_module": RHEL_LIKE,
}
DEFAULT_SOURCE = {"Debian": "debian", "Ubuntu": "ubuntu", **{d: "rhel_module" for d in RHEL_LIKE}}
FLAVORS = ("proprietary", "open")

# Packages named once per source. {branch} is the driver branch ("535"). Sources:
# Debian: packages.debian.org, src:nvidia-graphics-drivers (bookworm, non-free);
# Ubuntu: "NVIDIA drivers installation" in the Ubuntu Server docs (-server = ERD/LTSB branches);
# NVIDIA CUDA repo: NVIDIA Driver Installation Guide (Ubuntu "nvidia-open"/"cuda-drivers-<branch>",
# RHEL "dnf module install nvidia-driver:<branch>-dkms|<branch>-open").
_DEBIAN = {
    "proprietary": ["nvidia-kernel-dkms"],
    "open": ["nvidia-open-kernel-dkms"],
    # Headless compute stack (no X server): management library, CUDA driver, tools, GSP firmware.
    # All built from src:nvidia-graphics-drivers, so they carry the driver version and are pinned to it.
    "userspace": ["nvidia-smi", "libcuda1", "libnvidia-ml1", "firmware-nvidia-gsp"],
    "desktop": ["nvidia-driver"],
    # Separate source packages (contrib) with their own version numbers (bookworm: nvidia-modprobe
    # 535.161.07-1~deb12u1 / 535.309.01-0+deb12u1, nvidia-persistenced 535.171.04-1~deb12u1), so
    # never installed as "=<driver version>".
    "tools": ["nvidia-modprobe"],
    "persistenced": ["nvidia-persistenced"],
    "dkms_module": {"proprietary": "nvidia-current", "open": "nvidia-current-open"},
}


def _branch_ok(branch):
    return bool(re.fullmatch(r"\d{3}", str(branch or "")))


def driver_problems(distribution, version, major, source, flavor, branch, pinned_version, nvswitch_count=0):
    """Every problem with the requested driver setup, each naming the variable to change.

    ``version`` is ansible's distribution_version, ``major`` its major version. Returns a list
    of messages (empty when fine); the role fails with all of them at once.
    """
    problems = []
    supported = SUPPORTED_OS.get(distribution)
    os_key = version if distribution == "Ubuntu" else major
    if supported is None or os_key not in supported:
        listing = "; ".join(f"{d} {', '.join(v)}" for d, v in SUPPORTED_OS.items())
        problems.append(f"unsupported OS {distribution} {version}: nvidia_driver supports {listing}")
        return problems
    resolved = DEFAULT_SOURCE[distribution] if source == "auto" else source
    if resolved not in SOURCES:
        problems.append(f"nvidia_driver_source '{source}' is unknown; use one of: auto, {', '.join(SOURCES)}")
    elif distribution not in SOURCES[resolved]:
        can = [s for s, dists in SOURCES.items() if distribution in dists]
        problems.append(
            f"nvidia_driver_source '{resolved}' cannot install on {distribution}; "
            f"set nvidia_driver_source to one of: {', '.join(can)}"
        )
    if flavor not in FLAVORS:
        problems.append(f"nvidia_driver_flavor '{flavor}' is unknown; use one of: {', '.join(FLAVORS)}")
    if not _branch_ok(branch):
        problems.append(f"nvidia_driver_branch '{branch}' is not a driver branch; set a number such as '535'")
    if pinned_version and not DRIVER_VERSION.fullmatch(str(pinned_version)):
        problems.append(
            f"nvidia_driver_version '{pinned_version}' is not a driver version; use e.g. '535.261.03' or ''"
        )
    elif pinned_version and _branch_ok(branch) and str(pinned_version).split(".")[0] != str(branch):
        problems.append(
            f"nvidia_driver_version '{pinned_version}' is not on branch {branch}; "
            f"set nvidia_driver_branch: '{str(pinned_version).split('.')[0]}' or pick a {branch}.x version"
        )
    if nvswitch_count and resolved == "debian":
        problems.append(
            # cuda_repo is not offered on Debian (SOURCES), so it must not be suggested here.
            f"{nvswitch_count} NVSwitch device(s) found: they need NVIDIA Fabric Manager, which no "
            "Debian source provides; set nvidia_driver_fabricmanager: false to skip it, or use Ubuntu "
            "or a RHEL-family OS, where the ubuntu, cuda_repo and rhel_module sources install it"
        )
    return problems


def resolve_source(source, distribution):
    return DEFAULT_SOURCE.get(distribution, "debian") if source == "auto" else source


def driver_plan(source, distribution, flavor, branch, headless=True, persistenced=True, fabricmanager=False):
    """What to install for a source: packages (unversioned), the DKMS module name, the RHEL
    module stream, the fabric manager package and the apt pin pattern."""
    branch = str(branch)
    source = resolve_source(source, distribution)
    plan = {
        "source": source,
        "packages": [],
        "versioned": [],
        "dkms_module": "nvidia",
        "module_stream": None,
        "fabricmanager_package": None,
        "fabricmanager_service": "nvidia-fabricmanager",
        "peermem_module": "nvidia-peermem",
        "persistenced_service": "nvidia-persistenced",
        "pin_packages": [],
    }
    if source == "debian":
        kernel = _DEBIAN[flavor]
        userspace = _DEBIAN["userspace"] if headless else _DEBIAN["desktop"] + _DEBIAN["userspace"]
        plan["versioned"] = kernel + userspace
        plan["packages"] = (
            plan["versioned"] + _DEBIAN["tools"] + (_DEBIAN["persistenced"] if persistenced else [])
        )
        plan["dkms_module"] = _DEBIAN["dkms_module"][flavor]
        # Debian's dkms.conf renames every module to "$PACKAGE_NAME-<name>": nvidia-current-peermem,
        # nvidia-current-open-peermem.
        plan["peermem_module"] = plan["dkms_module"] + "-peermem"
        # Every binary package built from src:nvidia-graphics-drivers carries the driver version.
        plan["pin_packages"] = [
            "nvidia-*",
            "libnvidia-*",
            "libcuda1",
            "libcudadebugger1",
            "firmware-nvidia-gsp",
            "xserver-xorg-video-nvidia",
            "libgl1-nvidia-glvnd-glx",
            "libegl-nvidia0",
            "libglx-nvidia0",
            "libgles-nvidia1",
            "libgles-nvidia2",
            "libnvcuvid1",
            "libnvoptix1",
            "libnvidia-encode1",
        ]
    elif source == "ubuntu":
        suffix = "-open" if flavor == "open" else ""
        plan["versioned"] = []
        plan["packages"] = (
            [f"nvidia-headless-{branch}-server{suffix}", f"nvidia-utils-{branch}-server"]
            if headless
            else [f"nvidia-driver-{branch}-server{suffix}"]
        )
        plan["dkms_module"] = "nvidia"
        plan["pin_packages"] = [f"*-{branch}-server*"]
        if fabricmanager:
            plan["fabricmanager_package"] = f"nvidia-fabricmanager-{branch}"
    elif source == "cuda_repo" and distribution == "Ubuntu":
        plan["packages"] = [f"nvidia-open-{branch}" if flavor == "open" else f"cuda-drivers-{branch}"]
        plan["pin_packages"] = ["nvidia-*", "libnvidia-*", "cuda-drivers*"]
        if fabricmanager:
            plan["fabricmanager_package"] = f"nvidia-fabricmanager-{branch}"
    else:  # RHEL family: cuda_repo and rhel_module both use the nvidia-driver module streams
        plan["module_stream"] = (
            f"nvidia-driver:{branch}-open" if flavor == "open" else f"nvidia-driver:{branch}-dkms"
        )
        plan["packages"] = ["@" + plan["module_stream"]]
        if fabricmanager:
            plan["fabricmanager_package"] = "nvidia-fabric-manager"
    return plan


def upstream_version(package_version):
    """'535.261.03-1' / '1:535.261.03-0ubuntu1' / '535.309.01-0+deb12u1' -> '535.261.03'."""
    v = str(package_version).split(":", 1)[-1]
    return v.split("-", 1)[0]


def match_version(pinned, available):
    """The newest package version in ``available`` whose upstream part equals ``pinned``
    (or, when ``pinned`` is empty, the newest overall). None when nothing matches."""
    candidates = [a for a in available if not pinned or upstream_version(a) == str(pinned)]
    if not candidates:
        return None
    return max(candidates, key=version_key)


def on_branch(branch, available):
    return [a for a in available if upstream_version(a).split(".")[0] == str(branch)]


def driver_version_match(available, pinned, branch):
    """The package version to install (newest on ``branch`` matching ``pinned``), or None."""
    return match_version(pinned, on_branch(branch, available))


def driver_version_problem(available, pinned, branch, package):
    """'' when ``available`` has what is asked for, else a message listing what it has."""
    if driver_version_match(available, pinned, branch):
        return ""
    # nvidia_driver_version takes the upstream part only ('535.261.03', not '535.261.03-1'): name
    # both, so the value to set can be copied from the message.
    have = (
        ", ".join(f"{upstream_version(v)} ({v})" for v in sorted(set(available), key=version_key))
        or "nothing"
    )
    wanted = f"nvidia_driver_version '{pinned}'" if pinned else f"nvidia_driver_branch '{branch}'"
    return (
        f"{wanted} is not available from the configured source: {package} has {have}; "
        "set nvidia_driver_version (and nvidia_driver_branch) to one of those upstream versions"
    )


def activation_plan(
    in_container,
    installed_version,
    loaded_version,
    nouveau_loaded,
    reboot_allowed,
    gpu_count=0,
):
    """What to do after installing: 'none', 'load', 'reboot' or 'reboot_required' (not allowed).

    A reboot is proposed only when the kernel module really changed underneath a loaded one
    (driver/library mismatch until reboot), or nouveau holds the GPUs; never in a container.
    """
    if in_container:
        return {
            "action": "none",
            "reason": "container: kernel modules cannot be loaded here; the module is built and "
            "loads on a real host",
        }
    if not installed_version:
        return {"action": "none", "reason": "no NVIDIA kernel module is installed for the running kernel"}
    need_reboot = None
    if loaded_version and loaded_version != installed_version:
        need_reboot = f"loaded module {loaded_version} differs from installed {installed_version}"
    elif not loaded_version and nouveau_loaded:
        need_reboot = "nouveau is loaded and holds the GPUs; it is blacklisted now"
    if need_reboot:
        if reboot_allowed:
            return {"action": "reboot", "reason": need_reboot}
        return {
            "action": "reboot_required",
            "reason": need_reboot
            + "; reboot is disabled (nvidia_driver_reboot: false): reboot the host yourself",
        }
    if not loaded_version:
        if gpu_count:
            return {"action": "load", "reason": f"module {installed_version} installed, not loaded yet"}
        return {"action": "none", "reason": "no NVIDIA GPU on this host; module left unloaded"}
    return {"action": "none", "reason": f"module {loaded_version} loaded and current"}
