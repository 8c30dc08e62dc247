# Copyright: gpufleet developers
# Apache-2.0
"""How a CUDA toolkit is laid out on a host, per source, written once.

Every installed toolkit gets a home at ``/usr/local/cuda-X.Y`` (NVIDIA's own layout), and the
default one is selected with the ``cuda`` alternative at ``/usr/local/cuda`` -- the same link
NVIDIA's ``cuda-toolkit-X-Y`` packages register in their postinst, so several versions live side
by side and ``update-alternatives --config cuda`` switches them. Debian's ``nvidia-cuda-toolkit``
spreads the toolkit over /usr (nvcc and its host-compiler wrapper in /usr/lib/nvidia-cuda-toolkit/bin,
headers in /usr/include, libraries in the multiarch directory); its home is a directory of links
into those places, so CUDA_HOME-based builds (CMake FindCUDAToolkit, nccl-tests) work unchanged.

Controller code (plugin_utils): runs in filters and the CLI, never on managed hosts. Which versions exist and
what they need from the driver is the compatibility matrix's business (``compat``).
"""

from __future__ import annotations

import re

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import compat

SOURCES = ("debian", "cuda_repo")
HOME = "/usr/local/cuda-{version}"
LINK = "/usr/local/cuda"
ALTERNATIVE = "cuda"

# NVIDIA CUDA repository directory names (developer.download.nvidia.com/compute/cuda/repos/<dir>/),
# as listed in the CUDA Installation Guide for Linux, "Network Repo Installation" per distribution.
CUDA_REPO_DIRS = {
    ("Debian", "12"): "debian12",
    ("Ubuntu", "22"): "ubuntu2204",
    ("Ubuntu", "24"): "ubuntu2404",
    ("RedHat", "8"): "rhel8",
    ("RedHat", "9"): "rhel9",
    ("Rocky", "8"): "rhel8",
    ("Rocky", "9"): "rhel9",
    ("AlmaLinux", "8"): "rhel8",
    ("AlmaLinux", "9"): "rhel9",
}
MULTIARCH = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}


def resolve_source(source, distribution):
    if source and source != "auto":
        return source
    return "debian" if distribution == "Debian" else "cuda_repo"


def _debian_cuda(major):
    row = compat.DEBIAN_CUDA.get(str(major))
    return row["cuda"] if row else None


def _sort(versions):
    return sorted(set(versions), key=lambda v: compat.parse_cuda(v) or (0, 0))


def cuda_toolkit_plan(source, distribution, major, versions, default, driver_branch="", arch="x86_64"):
    """What to install: {source, versions, default, homes: [{version, home, packages, links,
    priority}], problems}. Empty ``versions`` = Debian's own version (debian source) or the newest
    CUDA the driver branch supports (cuda_repo). Empty ``default`` = the newest listed."""
    problems = []
    source = resolve_source(source, distribution)
    versions = [str(v) for v in (versions or [])]
    if source not in SOURCES:
        problems.append(f"cuda_toolkit_source '{source}' is unknown; use one of: auto, {', '.join(SOURCES)}")
        return {
            "source": source,
            "versions": versions,
            "default": "",
            "homes": [],
            "repo_dir": "",
            "problems": problems,
        }
    bad = [v for v in versions if not re.fullmatch(r"\d+\.\d+", v)]
    for v in bad:
        problems.append(f"cuda_toolkit_versions entry '{v}' is not a CUDA version; write it as '12.4'")
    versions = [v for v in versions if v not in bad]
    debian = _debian_cuda(major) if distribution == "Debian" else None
    if source == "debian":
        if distribution != "Debian":
            problems.append(
                f"cuda_toolkit_source 'debian' installs Debian's nvidia-cuda-toolkit and cannot install on "
                f"{distribution}; set cuda_toolkit_source: cuda_repo (or auto)"
            )
        elif not debian:
            problems.append(
                f"Debian {major} packages no CUDA toolkit gpufleet knows; set cuda_toolkit_source: cuda_repo"
            )
        else:
            versions = versions or [debian]
            for v in versions:
                if v != debian:
                    problems.append(
                        f"cuda_toolkit_versions names {v}, but Debian {major} packages only CUDA {debian} "
                        f"(nvidia-cuda-toolkit); set cuda_toolkit_versions: ['{debian}'], or "
                        "cuda_toolkit_source: cuda_repo for NVIDIA's packages"
                    )
    elif not versions:
        best = compat.max_cuda_for_driver(str(driver_branch)) if driver_branch else None
        if best:
            versions = [best]
        else:
            problems.append(
                "cuda_toolkit_versions is empty and no driver branch is known to choose one from; "
                "set cuda_toolkit_versions (e.g. ['12.4'])"
            )
    if (CUDA_REPO_DIRS.get((distribution, str(major))) is None) and source == "cuda_repo":
        problems.append(
            f"NVIDIA's CUDA repository has no directory gpufleet knows for {distribution} {major}; "
            "set cuda_toolkit_source: debian (Debian) or use a supported OS"
        )
    versions = _sort(versions)
    default = str(default or (versions[-1] if versions else ""))
    if default and versions and default not in versions:
        problems.append(
            f"cuda_toolkit_default {default} is not one of cuda_toolkit_versions ({', '.join(versions)}); "
            "set it to one of them or leave it empty for the newest"
        )
    homes = []
    libdir = f"/usr/lib/{MULTIARCH.get(arch, 'x86_64-linux-gnu')}"
    for v in versions:
        major_minor = compat.parse_cuda(v) or (0, 0)
        home = {
            "version": v,
            "home": HOME.format(version=v),
            # update-alternatives priority: higher versions win when nothing is selected.
            "priority": major_minor[0] * 100 + major_minor[1],
        }
        if source == "debian":
            home["packages"] = ["nvidia-cuda-toolkit"]
            home["links"] = {
                "bin": "/usr/lib/nvidia-cuda-toolkit/bin",
                "include": "/usr/include",
                "lib64": libdir,
                "nvvm": "/usr/lib/nvidia-cuda-toolkit",
            }
        else:
            home["packages"] = [f"cuda-toolkit-{v.replace('.', '-')}"]
            home["links"] = {}
        homes.append(home)
    return {
        "source": source,
        "versions": versions,
        "default": default,
        "homes": homes,
        "repo_dir": cuda_repo_dir(distribution, major),
        "problems": problems,
    }


def cuda_repo_dir(distribution, major):
    return CUDA_REPO_DIRS.get((distribution, str(major)), "")


_NVCC = re.compile(r"release (\d+\.\d+), V(\d+\.\d+\.\d+)")


def nvcc_release(text):
    """``nvcc --version`` -> {"release": "11.8", "version": "11.8.89"} or None."""
    m = _NVCC.search(text or "")
    return {"release": m.group(1), "version": m.group(2)} if m else None


def hello_result(rc, stdout, stderr):
    """Outcome of running the compiled CUDA hello program: a GPU check, so no GPU is reported
    as exactly that, never as a pass."""
    text = f"{stdout}\n{stderr}".strip()
    if rc == 0 and "42" in (stdout or ""):
        return {"status": "pass", "detail": "kernel ran on the GPU and returned 42"}
    low = text.lower()
    if "no cuda-capable device" in low or "cudaerrornodevice" in low:
        return {"status": "no_gpu", "detail": "no CUDA-capable device is detected"}
    if "driver version is insufficient" in low:
        return {"status": "fail", "detail": "CUDA driver version is insufficient for the CUDA runtime"}
    return {"status": "fail", "detail": text[-300:] or f"exit {rc}"}


def cuda_home_links(homes):
    """Flat [{dest, src}] of the links that make up Debian-packaged toolkit homes."""
    return [
        {"dest": f"{h['home']}/{name}", "src": target}
        for h in homes or ()
        for name, target in sorted((h.get("links") or {}).items())
    ]


def cuda_hello_results(runs, gpus):
    """Ansible loop results of running hello-<version> (skipped where no GPU is usable) and the
    gpu_facts -> {version: {status, detail, summary}}."""
    gpus = gpus or {}
    out = {}
    for run in runs or ():
        version = ((run or {}).get("__cuda_toolkit_home") or {}).get("version", "?")
        if run.get("skipped"):
            if not gpus.get("gpu_count"):
                reason = "no GPU on this host"
            else:
                reason = (
                    f"driver not loaded ({(gpus.get('driver_error') or 'nvidia-smi failed').strip()[:120]})"
                )
            res = {"status": "no_gpu", "detail": f"compiled; not run: {reason}"}
        else:
            res = hello_result(run.get("rc", 1), run.get("stdout", ""), run.get("stderr", ""))
        res["summary"] = f"{version} {res['status']} ({res['detail']})"
        out[version] = res
    return out


def cudnn_plan(source, distribution, version, cuda):
    """{source, version, packages, problems} for the cuDNN part of the cuda_toolkit role. auto:
    the wheel on Debian (Debian's nvidia-cudnn downloads from NVIDIA at install time, useless
    offline), NVIDIA's packages elsewhere; empty version = the matrix's choice for ``cuda``."""
    source = "pip" if source == "auto" and distribution == "Debian" else source
    source = "cuda_repo" if source == "auto" else source
    problems = []
    version = str(version or "") or (compat.choose_cudnn(cuda, source) or "")
    if not version:
        problems.append(
            f"the compatibility matrix has no cuDNN for CUDA {cuda} from {source}; "
            "set cuda_toolkit_cudnn_version or cuda_toolkit_cudnn_source"
        )
        return {"source": source, "version": "", "packages": [], "problems": problems}
    problems += compat.cudnn_problems(version, [cuda])
    packages = compat.cudnn_packages(version, cuda, source)
    if not problems and not packages:
        problems.append(
            f"no {source} build of cuDNN {version} for CUDA {cuda} is known; set cuda_toolkit_cudnn_version "
            f"(e.g. {compat.choose_cudnn(cuda, source) or 'another release'}) or cuda_toolkit_cudnn_source"
        )
    return {"source": source, "version": version, "packages": packages, "problems": problems}
