# Copyright: gpufleet developers
# Apache-2.0
"""The compatibility matrix's data: GPU architectures, CUDA toolkit -> minimum driver, cuDNN, NCCL,
TensorRT-LLM and Debian's own packages, each row citing NVIDIA's (or Debian's) document.

Controller code (plugin_utils), stdlib only. The rules that read these tables live in ``compat``,
which re-exports them; nothing here computes anything.

Sources (each table row cites its own; documents named here once):

- [RN] "CUDA Toolkit 13.2 Update 2 - Release Notes", section 2.2 "CUDA Driver", Table 2 "CUDA
  Toolkit and Minimum Required Driver Version for CUDA Minor Version Compatibility" and Table 3
  "CUDA Toolkit and Corresponding Driver Versions", and section 2.6.2 "Deprecated Architectures",
  https://docs.nvidia.com/cuda/archive/13.2.2/cuda-toolkit-release-notes/index.html
- [DCD] "NVIDIA Data Center Drivers", section "CUDA Toolkit, Driver, and Architecture Matrix",
  https://docs.nvidia.com/datacenter/tesla/drivers/cuda-toolkit-driver-and-architecture-matrix.html
- [KM] "NVIDIA Driver Installation Guide", section "Kernel Modules",
  https://docs.nvidia.com/datacenter/tesla/driver-installation-guide/kernel-modules.html
- [OPEN] NVIDIA Technical Blog, "NVIDIA Transitions Fully Towards Open-Source GPU Kernel Modules"
  (July 2024), section "Supported GPUs",
  https://developer.nvidia.com/blog/nvidia-transitions-fully-towards-open-source-gpu-kernel-modules/
- [CUDNN x.y.z] "cuDNN Support Matrix" of that release, table "Supported NVIDIA Hardware and CUDA
  Version" (https://docs.nvidia.com/deeplearning/cudnn/ ... /support-matrix), URL per row.
- [PYPI] the PyPI simple index (``pip index versions <name>``), read 2026-11.
- [TRTLLM-RN] TensorRT-LLM ``docs/source/release-notes.md``, "Infrastructure Changes" of each
  release, https://github.com/NVIDIA/TensorRT-LLM/blob/main/docs/source/release-notes.md
- [DEB] packages.debian.org, bookworm, https://packages.debian.org/bookworm/nvidia-cuda-toolkit
- [TORCH-PYPI] the torch wheels on PyPI (https://pypi.org/project/torch/), read 2026-12-01 with pip
  itself (``pip install --dry-run --no-deps --report`` reads the wheel's METADATA only;
  ``--python-version X --only-binary=:all:`` for which cpXY wheels exist): Requires-Python and the
  ``nvidia-*`` / ``cuda-toolkit`` pins of the Linux x86_64 wheel.
- [TORCH-PV] "Installing previous versions of PyTorch", https://pytorch.org/get-started/previous-versions/
  (the CUDA variants of each release on download.pytorch.org; PyPI carries one of them).
"""

from __future__ import annotations

# --------------------------------------------------------------------------------------------
# 1. GPU architectures.
#
# compute_capabilities, min_cuda ("First CUDA Toolkit Support"), the last CUDA major and
# max_branch ("Last Driver Support") come from [DCD] "CUDA Toolkit, Driver, and Architecture
# Matrix". max_cuda "12.9" is the newest 12.x in CUDA_MIN_DRIVER: [DCD] says "CUDA 12.x" and [RN]
# 2.6.2 says offline compilation for Maxwell, Pascal and Volta was removed in CUDA 13.0.
# min_branch is derived, not quoted: the branch of the Table 3 [RN] minimum driver of the
# architecture's first CUDA toolkit (CUDA 8.0.44 >= 367.48, 9.0.76 >= 384.81, 10.0.130 >= 410.48,
# 11.0.2 GA >= 450.51.05, 11.8 GA >= 520.61.05, 12.8 GA >= 570.26). It is therefore strict: a
# data center branch that drove early samples (e.g. R515 and H100 PCIe) may be older.
# open_supported / open_required: [KM] "open ... only for Turing and newer architectures",
# proprietary "required for ... Maxwell, Pascal, or Volta"; [OPEN] "Supported GPUs": "For
# cutting-edge platforms such as NVIDIA Grace Hopper or NVIDIA Blackwell, you must use the
# open-source GPU kernel modules" (Grace Hopper is a product of the Hopper architecture, so it is
# matched by GPU name in OPEN_REQUIRED_NAMES, not by architecture).
# --------------------------------------------------------------------------------------------
ARCHITECTURES = {
    # [DCD]: Pascal | 6.0 6.1 | CUDA 8.0 | CUDA 12.x | R580
    "Pascal": {
        "compute_capability": "6.0",
        "compute_capabilities": ("6.0", "6.1"),
        "min_cuda": "8.0",
        "max_cuda": "12.9",
        "min_branch": 367,
        "max_branch": 580,
        "open_supported": False,
        "open_required": False,
    },
    # [DCD]: Volta | 7.0 | CUDA 9.0 | CUDA 12.x | R580
    "Volta": {
        "compute_capability": "7.0",
        "compute_capabilities": ("7.0",),
        "min_cuda": "9.0",
        "max_cuda": "12.9",
        "min_branch": 384,
        "max_branch": 580,
        "open_supported": False,
        "open_required": False,
    },
    # [DCD]: Turing | 7.5 | CUDA 10.0 | Ongoing | Ongoing
    "Turing": {
        "compute_capability": "7.5",
        "compute_capabilities": ("7.5",),
        "min_cuda": "10.0",
        "max_cuda": None,
        "min_branch": 410,
        "max_branch": None,
        "open_supported": True,
        "open_required": False,
    },
    # [DCD]: NVIDIA Ampere architecture | 8.0 8.6 | CUDA 11.0 | Ongoing | Ongoing
    "Ampere": {
        "compute_capability": "8.0",
        "compute_capabilities": ("8.0", "8.6"),
        "min_cuda": "11.0",
        "max_cuda": None,
        "min_branch": 450,
        "max_branch": None,
        "open_supported": True,
        "open_required": False,
    },
    # [DCD]: Ada | 8.9 | CUDA 11.8 | Ongoing | Ongoing
    "Ada Lovelace": {
        "compute_capability": "8.9",
        "compute_capabilities": ("8.9",),
        "min_cuda": "11.8",
        "max_cuda": None,
        "min_branch": 520,
        "max_branch": None,
        "open_supported": True,
        "open_required": False,
    },
    # [DCD]: Hopper | 9.0 | CUDA 11.8 | Ongoing | Ongoing
    "Hopper": {
        "compute_capability": "9.0",
        "compute_capabilities": ("9.0",),
        "min_cuda": "11.8",
        "max_cuda": None,
        "min_branch": 520,
        "max_branch": None,
        "open_supported": True,
        "open_required": False,
    },
    # [DCD]: Blackwell | 10.0 12.0 | CUDA 12.8 | Ongoing | Ongoing; [OPEN]: open modules required
    "Blackwell": {
        "compute_capability": "10.0",
        "compute_capabilities": ("10.0", "12.0"),
        "min_cuda": "12.8",
        "max_cuda": None,
        "min_branch": 570,
        "max_branch": None,
        "open_supported": True,
        "open_required": True,
    },
}

# [OPEN] "Supported GPUs": Grace Hopper must use the open modules (GH200 names as gpu_arch.py has them).
OPEN_REQUIRED_NAMES = ("GH200",)

# --------------------------------------------------------------------------------------------
# 2. CUDA toolkit -> minimum Linux x86_64 driver: [RN] Table 3, "Toolkit Driver Version", the GA
# row of each release. There never was a CUDA 12.7.
# --------------------------------------------------------------------------------------------
CUDA_MIN_DRIVER = {
    "11.0": "450.51.05",  # [RN] Table 3: CUDA 11.0.2 GA >= 450.51.05 (11.0.1 RC: >= 450.36.06)
    "11.1": "455.23",  # [RN] Table 3: CUDA 11.1 GA >= 455.23
    "11.2": "460.27.03",  # [RN] Table 3: CUDA 11.2.0 GA >= 460.27.03
    "11.3": "465.19.01",  # [RN] Table 3: CUDA 11.3.0 GA >= 465.19.01
    "11.4": "470.42.01",  # [RN] Table 3: CUDA 11.4.0 GA >= 470.42.01
    "11.5": "495.29.05",  # [RN] Table 3: CUDA 11.5 GA >= 495.29.05
    "11.6": "510.39.01",  # [RN] Table 3: CUDA 11.6 GA >= 510.39.01
    "11.7": "515.43.04",  # [RN] Table 3: CUDA 11.7 GA >= 515.43.04
    "11.8": "520.61.05",  # [RN] Table 3: CUDA 11.8 GA >= 520.61.05
    "12.0": "525.60.13",  # [RN] Table 3: CUDA 12.0 GA >= 525.60.13
    "12.1": "530.30.02",  # [RN] Table 3: CUDA 12.1 GA >= 530.30.02
    "12.2": "535.54.03",  # [RN] Table 3: CUDA 12.2 GA >= 535.54.03
    "12.3": "545.23.06",  # [RN] Table 3: CUDA 12.3 GA >= 545.23.06
    "12.4": "550.54.14",  # [RN] Table 3: CUDA 12.4 GA >= 550.54.14
    "12.5": "555.42.02",  # [RN] Table 3: CUDA 12.5 GA >= 555.42.02
    "12.6": "560.28.03",  # [RN] Table 3: CUDA 12.6 GA >= 560.28.03
    "12.8": "570.26",  # [RN] Table 3: CUDA 12.8 GA >= 570.26
    "12.9": "575.51.03",  # [RN] Table 3: CUDA 12.9 GA >= 575.51.03
    "13.0": "580.65.06",  # [RN] Table 3: CUDA 13.0 GA >= 580.65.06
    "13.1": "590.44.01",  # [RN] Table 3: CUDA 13.1 GA >= 590.44.01
    "13.2": "595.45.04",  # [RN] Table 3: CUDA 13.2 GA >= 595.45.04
}

# [RN] Table 2 (minor version compatibility): an explanatory note only, never used to pass a check.
CUDA_MINOR_COMPAT = {
    "11": "450.80.02",  # [RN] Table 2: 11.x >= 450 (< 525); footnote ***: 450.80.02 for all of 11.x
    "12": "525.60.13",  # [RN] Table 2: 12.x >= 525 (< 580); Table 3: CUDA 12.0 GA >= 525.60.13
    "13": "580",  # [RN] Table 2: 13.x >= 580 (N/A upper bound)
}

# --------------------------------------------------------------------------------------------
# 3. cuDNN, keyed by release "X.Y.Z". "cuda": CUDA versions per CUDA major from the release's
# support matrix; "min_driver" per major (same table); "apt": the NVIDIA CUDA repository package
# version (libcudnn8=<apt>-1+cuda<apt_cuda>, libcudnn9-cuda-<major>=<apt>-1) where a use of exactly
# that string was found, else None; "pip": wheel version per major on PyPI ([PYPI]:
# nvidia-cudnn-cu12 8.8.0.121 .. 9.28.0.42; nvidia-cudnn-cu13 from 9.12.0.46 -- the first cuDNN
# with a CUDA 13 wheel). The apt and PyPI fourth components can differ (9.15.0.58 vs 9.15.0.57),
# so each is recorded only as seen.
# --------------------------------------------------------------------------------------------
_CUDA_11_0_TO_8 = ("11.0", "11.1", "11.2", "11.3", "11.4", "11.5", "11.6", "11.7", "11.8")
_CUDA_12_0_TO_9 = ("12.0", "12.1", "12.2", "12.3", "12.4", "12.5", "12.6", "12.8", "12.9")
CUDNN = {
    # [CUDNN 8.9.6] https://docs.nvidia.com/deeplearning/cudnn/archives/cudnn-896/support-matrix
    # "cuDNN 8.9.6 for CUDA 12.x: 12.2, 12.1, 12.0, >=525.60.13"; "for CUDA 11.x: 11.8 .. 11.0,
    # >= 450.80.02". apt: NVIDIA CUDA image env "NV_CUDNN_PACKAGE=libcudnn8=8.9.6.50-1+cuda11.8" and
    # "libcudnn8=8.9.6.50-1+cuda12.2"; [PYPI] nvidia-cudnn-cu12 8.9.6.50.
    "8.9.6": {
        "cuda": {"11": _CUDA_11_0_TO_8, "12": ("12.0", "12.1", "12.2")},
        "min_driver": {"11": "450.80.02", "12": "525.60.13"},
        "apt": "8.9.6.50",
        "apt_cuda": {"11": "11.8", "12": "12.2"},
        "pip": {"11": "8.9.6.50", "12": "8.9.6.50"},
    },
    # [CUDNN 9.0.0] https://docs.nvidia.com/deeplearning/cudnn/backend/v9.0.0/reference/support-matrix.html
    # "for CUDA 12.x: 12.3 / 12.2, 12.1, 12.0, >=525.60.13"; "for CUDA 11.x: 11.8 / 11.7 .. 11.4"
    # (the lower 11.x rows were not legible in the copy read). [PYPI] nvidia-cudnn-cu12 9.0.0.312.
    "9.0.0": {
        "cuda": {"11": ("11.4", "11.5", "11.6", "11.7", "11.8"), "12": ("12.0", "12.1", "12.2", "12.3")},
        "min_driver": {"11": "450.80.02", "12": "525.60.13"},
        "apt": None,
        "apt_cuda": {},
        "pip": {"12": "9.0.0.312"},
    },
    # [CUDNN 9.5.1] https://docs.nvidia.com/deeplearning/cudnn/backend/v9.5.1/reference/support-matrix.html
    # "for CUDA 12.x: 12.6 .. 12.0, >=525.60.13"; "for CUDA 11.x: 11.8, >= 450.80.02".
    # apt: "libcudnn9-cuda-12=9.5.1.17-1"; [PYPI] nvidia-cudnn-cu12 9.5.1.17.
    "9.5.1": {
        "cuda": {"11": ("11.8",), "12": ("12.0", "12.1", "12.2", "12.3", "12.4", "12.5", "12.6")},
        "min_driver": {"11": "450.80.02", "12": "525.60.13"},
        "apt": "9.5.1.17",
        "apt_cuda": {},
        "pip": {"11": "9.5.1.17", "12": "9.5.1.17"},
    },
    # [CUDNN 9.10.2] https://docs.nvidia.com/deeplearning/cudnn/latest/support-matrix/index.html (as
    # stored): "for CUDA 12.x: 12.9 .. 12.0, >=525.60.13" (Blackwell rows: 12.8/12.9, >=570.26);
    # "for CUDA 11.x: 11.8, >= 450.80.02". apt: "libcudnn9-cuda-12=9.10.2.21-1"; [PYPI] 9.10.2.21.
    # cu11 wheels ([PYPI-CU11]): `pip index versions nvidia-cudnn-cu11` on 2026-11-21 listed 9.10.2.21
    # (newest), 9.5.1.17 and 8.9.6.50 among others.
    "9.10.2": {
        "cuda": {"11": ("11.8",), "12": _CUDA_12_0_TO_9},
        "min_driver": {"11": "450.80.02", "12": "525.60.13"},
        "apt": "9.10.2.21",
        "apt_cuda": {},
        "pip": {"11": "9.10.2.21", "12": "9.10.2.21"},
    },
    # [CUDNN 9.17.0] https://docs.nvidia.com/deeplearning/sdk/cudnn-support-matrix/index.html (as
    # stored): "for CUDA 13.x: 13.1, 13.0, >=580.65.06"; "for CUDA 12.x: 12.9 .. 12.0, >=525.60.13";
    # no CUDA 11.x build; compute capability 7.5 and newer only. [PYPI] nvidia-cudnn-cu12 and
    # nvidia-cudnn-cu13 9.17.0.29; no apt use of 9.17.0.x was found (9.17.1.4-1 was), so apt is None.
    "9.17.0": {
        "cuda": {"12": _CUDA_12_0_TO_9, "13": ("13.0", "13.1")},
        "min_driver": {"12": "525.60.13", "13": "580.65.06"},
        "apt": None,
        "apt_cuda": {},
        "pip": {"12": "9.17.0.29", "13": "9.17.0.29"},
    },
}

# --------------------------------------------------------------------------------------------
# 4. NCCL, keyed by release. "apt": CUDA versions X.Y for which an NVIDIA CUDA repository package
# libnccl2=<version>-1+cudaX.Y was found in use (not the full list NVIDIA publishes); "pip": CUDA
# majors with a wheel on PyPI ([PYPI]: nvidia-nccl-cu12 2.16.2 .. 2.32.3, nvidia-nccl-cu13 from
# 2.27.7; [PYPI-CU11]: `pip index versions nvidia-nccl-cu11` on 2026-11-21 listed 2.21.5, 2.20.5,
# 2.19.3, 2.18.3, 2.16.5 ... 2.13.4). The minimum CUDA per NCCL release is not stated in the
# NCCL release notes read, so it is not recorded.
# --------------------------------------------------------------------------------------------
NCCL = {
    "2.18.3": {"apt": (), "pip": ("11", "12")},  # [PYPI] nvidia-nccl-cu11/-cu12 2.18.3
    "2.19.3": {"apt": (), "pip": ("11", "12")},  # [PYPI] nvidia-nccl-cu11/-cu12 2.19.3
    "2.20.5": {"apt": (), "pip": ("11", "12")},  # [PYPI] nvidia-nccl-cu11/-cu12 2.20.5
    # [PYPI] 2.21.5; apt "libnccl2=2.21.5-1+cuda12.4" (CUDA image env), "libnccl2=2.21.5-1+cuda12.2"
    # [PYPI-CU11] nvidia-nccl-cu11 2.21.5 (the last cu11 wheel).
    "2.21.5": {"apt": ("12.2", "12.4"), "pip": ("11", "12")},
    "2.23.4": {"apt": ("12.6",), "pip": ("12",)},  # [PYPI]; CUDA image env libnccl2=2.23.4-1+cuda12.6
    "2.25.1": {"apt": ("12.8",), "pip": ("12",)},  # [PYPI]; apt libnccl2=2.25.1-1+cuda12.8
    "2.26.2": {"apt": ("12.8",), "pip": ("12",)},  # [PYPI]; apt libnccl2=2.26.2-1+cuda12.8
    "2.27.3": {"apt": (), "pip": ("12",)},  # [TORCH-PYPI] torch 2.8.0 requires nvidia-nccl-cu12==2.27.3
    # [PYPI]; tensorrtllm_backend Dockerfile.triton.trt_llm_backend "NCCL_VER=2.27.5-1+cuda12.9"
    "2.27.5": {"apt": ("12.9",), "pip": ("12",)},
    # [PYPI] cu12 and cu13; apt libnccl2=2.27.7-1+cuda12.9 and libnccl2=2.27.7-1+cuda13.0
    "2.27.7": {"apt": ("12.9", "13.0"), "pip": ("12", "13")},
    "2.28.7": {"apt": ("13.0",), "pip": ("12", "13")},  # [PYPI]; apt libnccl2=2.28.7-1+cuda13.0
    "2.28.9": {"apt": (), "pip": ("12", "13")},  # [PYPI]
    "2.29.7": {"apt": (), "pip": ("12", "13")},  # [PYPI]
    "2.30.7": {"apt": (), "pip": ("12", "13")},  # [PYPI]
    "2.31.2": {"apt": (), "pip": ("12", "13")},  # [PYPI]
    "2.32.3": {"apt": (), "pip": ("12", "13")},  # [PYPI]
}

# --------------------------------------------------------------------------------------------
# 5. TensorRT-LLM, keyed by release series "X.Y". "cuda" / "tensorrt": the "dependent CUDA
# version" / "dependent TensorRT version" of [TRTLLM-RN] "Infrastructure Changes"; where a release
# lists no change, the previous value carries over (noted). 1.1 is left out: its notes name only
# the base image (pytorch:25.10) and no CUDA or TensorRT version was confirmed.
# --------------------------------------------------------------------------------------------
TENSORRT_LLM = {
    "0.12": {"cuda": "12.5.1", "tensorrt": "10.3.0"},  # [TRTLLM-RN] 0.12.0
    "0.13": {"cuda": "12.5.1", "tensorrt": "10.4.0"},  # [TRTLLM-RN] 0.13.0
    "0.14": {"cuda": "12.5.1", "tensorrt": "10.4.0"},  # [TRTLLM-RN] 0.14.0: only ModelOpt changed
    "0.15": {"cuda": "12.6.2", "tensorrt": "10.6"},  # [TRTLLM-RN] 0.15.0
    "0.16": {"cuda": "12.6.3", "tensorrt": "10.7"},  # [TRTLLM-RN] 0.16.0
    "0.17": {"cuda": "12.8.0", "tensorrt": "10.8.0"},  # [TRTLLM-RN] 0.17.0
    "0.18": {"cuda": "12.8.1", "tensorrt": "10.9"},  # [TRTLLM-RN] 0.18.0 (0.18.1/0.18.2: no change)
    "0.19": {"cuda": "12.8.1", "tensorrt": "10.9"},  # [TRTLLM-RN] 0.19.0: only ModelOpt changed
    "0.20": {"cuda": "12.9.0", "tensorrt": "10.10.0"},  # [TRTLLM-RN] 0.20.0
    "0.21": {"cuda": "12.9.0", "tensorrt": "10.11"},  # [TRTLLM-RN] 0.21.0 (TensorRT 10.11; CUDA kept)
    # [TRTLLM-RN] 1.0: base image pytorch:25.06; triton-inference-server/tensorrtllm_backend
    # Dockerfile.triton.trt_llm_backend for the 1.0.0 submodule (PR #801/#803): TRT_VER=10.11.0.33,
    # NVRTC_VER=12.9.86-1.
    "1.0": {"cuda": "12.9", "tensorrt": "10.11"},
    # TensorRT-LLM "Installing on Linux via pip" for the 1.2 wheel (built with PyTorch 2.9.1, as the
    # 1.2 release notes say): "Install CUDA Toolkit 13.1"; torch cu130 "to align with the CUDA
    # version used for building TensorRT LLM wheels". TensorRT version not confirmed.
    "1.2": {"cuda": "13.1", "tensorrt": None},
}

# [TRTLLM-RN] 0.17.0 "Added support for B200"; 0.15.0 "NVIDIA Volta GPU support is removed in this
# and future releases" (0.14.0: deprecated).
TRTLLM_ARCH_FIRST = {"Blackwell": "0.17"}
TRTLLM_ARCH_LAST = {"Volta": "0.14"}

# --------------------------------------------------------------------------------------------
# 6. Debian's own packages. [DEB]: bookworm non-free src:nvidia-cuda-toolkit 11.8.0-5~deb12u1
# (binary nvidia-cuda-toolkit 11.8.89~11.8.0-5~deb12u1); nvidia-cudnn 8.5.0.96~cuda11.7 is an
# "install script": it downloads cuDNN from NVIDIA at install time, so it is useless offline.
# --------------------------------------------------------------------------------------------
DEBIAN_CUDA = {
    "12": {
        "cuda": "11.8",
        "package": "nvidia-cuda-toolkit",
        "version": "11.8.89~11.8.0-5~deb12u1",
        "cudnn": "8.5.0",
        "cudnn_package": "nvidia-cudnn",
        "cudnn_package_version": "8.5.0.96~cuda11.7",
        "cudnn_is_downloader": True,
    },
}

# --------------------------------------------------------------------------------------------
# 7. PyTorch, keyed by release: the default Linux x86_64 wheel on PyPI (``pip install torch==X``),
# the newest patch release of each series whose pins were read ([TORCH-PYPI]).
# "cuda": the CUDA runtime it is built with and brings along as wheels (nvidia-cuda-runtime-cu12 /
# cuda-toolkit[cudart] pin); "python": the oldest and newest CPython with a cpXY wheel; "nccl" /
# "cudnn": the NCCL and cuDNN wheels it pins exactly (they share its venv, so nothing else may
# install another version of them there). Left out: 2.13.0, whose ``torch==2.13.0`` also matches
# the 2.13.0+cpu wheel PyPI carries (pip picked that one), and 2.15.0 (no cp311 wheel to read).
# Other CUDA variants (cu118, cu126, cu130, ... [TORCH-PV]) live on download.pytorch.org only.
# --------------------------------------------------------------------------------------------
TORCH = {
    # nvidia-cuda-runtime-cu12==12.1.105, nvidia-nccl-cu12==2.20.5, nvidia-cudnn-cu12==9.1.0.70;
    # Requires-Python >=3.8.0, no cp313 wheel
    "2.4.1": {
        "cuda": "12.1",
        "python": ("3.8", "3.12"),
        "nccl": "nvidia-nccl-cu12==2.20.5",
        "cudnn": "nvidia-cudnn-cu12==9.1.0.70",
    },
    # nvidia-cuda-runtime-cu12==12.4.127, nccl 2.21.5, cudnn 9.1.0.70; cp313 wheel, no cp38 wheel
    "2.5.1": {
        "cuda": "12.4",
        "python": ("3.9", "3.13"),
        "nccl": "nvidia-nccl-cu12==2.21.5",
        "cudnn": "nvidia-cudnn-cu12==9.1.0.70",
    },
    # nvidia-cuda-runtime-cu12==12.4.127, nccl 2.21.5, cudnn 9.1.0.70; Requires-Python >=3.9.0
    "2.6.0": {
        "cuda": "12.4",
        "python": ("3.9", "3.13"),
        "nccl": "nvidia-nccl-cu12==2.21.5",
        "cudnn": "nvidia-cudnn-cu12==9.1.0.70",
    },
    # nvidia-cuda-runtime-cu12==12.6.77, nccl 2.26.2, cudnn 9.5.1.17; Requires-Python >=3.9.0
    "2.7.1": {
        "cuda": "12.6",
        "python": ("3.9", "3.13"),
        "nccl": "nvidia-nccl-cu12==2.26.2",
        "cudnn": "nvidia-cudnn-cu12==9.5.1.17",
    },
    # nvidia-cuda-runtime-cu12==12.8.90, nccl 2.27.3, cudnn 9.10.2.21; no cp314 wheel
    "2.8.0": {
        "cuda": "12.8",
        "python": ("3.9", "3.13"),
        "nccl": "nvidia-nccl-cu12==2.27.3",
        "cudnn": "nvidia-cudnn-cu12==9.10.2.21",
    },
    # nvidia-cuda-runtime-cu12==12.8.90, nccl 2.27.5, cudnn 9.10.2.21; Requires-Python >=3.10, cp314
    "2.9.1": {
        "cuda": "12.8",
        "python": ("3.10", "3.14"),
        "nccl": "nvidia-nccl-cu12==2.27.5",
        "cudnn": "nvidia-cudnn-cu12==9.10.2.21",
    },
    # nvidia-cuda-runtime-cu12==12.8.90, nccl 2.27.5, cudnn 9.10.2.21; Requires-Python >=3.10, cp314
    "2.10.0": {
        "cuda": "12.8",
        "python": ("3.10", "3.14"),
        "nccl": "nvidia-nccl-cu12==2.27.5",
        "cudnn": "nvidia-cudnn-cu12==9.10.2.21",
    },
    # cuda-toolkit[cudart,...]==13.0.2, nvidia-nccl-cu13==2.28.9, nvidia-cudnn-cu13==9.19.0.56; cp314
    "2.11.0": {
        "cuda": "13.0",
        "python": ("3.10", "3.14"),
        "nccl": "nvidia-nccl-cu13==2.28.9",
        "cudnn": "nvidia-cudnn-cu13==9.19.0.56",
    },
    # cuda-toolkit[cudart,...]==13.0.2, nvidia-nccl-cu13==2.29.7, nvidia-cudnn-cu13==9.20.0.48; cp314
    "2.12.1": {
        "cuda": "13.0",
        "python": ("3.10", "3.14"),
        "nccl": "nvidia-nccl-cu13==2.29.7",
        "cudnn": "nvidia-cudnn-cu13==9.20.0.48",
    },
    # cuda-toolkit[cudart,...]==13.0.3, nvidia-nccl-cu13==2.30.7, nvidia-cudnn-cu13==9.24.0.43; cp314,
    # no cp315 wheel
    "2.14.1": {
        "cuda": "13.0",
        "python": ("3.10", "3.14"),
        "nccl": "nvidia-nccl-cu13==2.30.7",
        "cudnn": "nvidia-cudnn-cu13==9.24.0.43",
    },
}
