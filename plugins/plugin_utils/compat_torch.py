# Copyright: gpufleet developers
# Apache-2.0
"""PyTorch for the probe runtime, chosen and checked against the compatibility matrix.

Controller code (plugin_utils), split from ``compat`` (which keeps the driver, CUDA, cuDNN, NCCL and
TensorRT-LLM rules); the nccl role reaches it through the ``choose_torch`` and ``torch_problems``
filters and ``nccl_tuning`` through ``torch_nccl``. Sources: ``TORCH`` and ``CUDA_MINOR_COMPAT`` in
``compat_matrix``. No function raises on bad input.
"""

from __future__ import annotations

import re

from ansible_collections.gpufleet.cluster.plugins.plugin_utils.compat import (
    VAR_NCCL,
    VAR_TORCH,
    _as_list,
    _text,
    _version_key,
    driver_key,
    max_cuda_for_driver,
    parse_cuda,
)
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.compat_matrix import (
    ARCHITECTURES,
    CUDA_MINOR_COMPAT,
    TORCH,
)

# ------------------------------------------------------------------ PyTorch (the probes' runtime)
#
# A torch wheel brings its own CUDA runtime and libraries as wheels (nvidia-cuda-runtime-cu12,
# nvidia-cublas-cu12, ... or cuda-toolkit[cudart,...] for CUDA 13: [TORCH-PYPI] in compat_matrix),
# so the CUDA toolkit installed on the host does not matter to it: only the driver, the Python and
# the GPU architectures do.


def runs_cuda_runtime(driver, cuda):
    """Whether a driver (branch ``"535"`` or version ``"535.261.03"``) runs an application that
    brings its own CUDA runtime ``cuda`` (``"12.8"``).

    Yes at or above that release's minimum driver ([RN] Table 3, as ``max_cuda_for_driver``), and
    through CUDA minor version compatibility ([RN] Table 2, ``CUDA_MINOR_COMPAT``): a 12.x runtime
    runs on any driver >= 525.60.13, a 13.x one on any driver >= 580; what it leaves out is JIT
    compilation of PTX newer than the driver, which the torch wheels do not need on the GPUs they
    carry compiled code for (the architecture check in ``torch_problems``). Never used for toolkits.
    """
    parsed = parse_cuda(cuda)
    key = driver_key(driver)
    if not parsed or not key:
        return False
    limit = max_cuda_for_driver(driver)
    if limit and parse_cuda(limit) >= parsed:
        return True
    floor = CUDA_MINOR_COMPAT.get(str(parsed[0]))
    if not floor:
        return False
    floor_key = driver_key(floor)
    return key[0] >= floor_key[0] if len(key) == 1 else key >= floor_key


def _python_key(v):
    m = re.fullmatch(r"(?:python|py|cp)?\s*(\d+)\.(\d+)(?:\.\d+)*\S*", _text(v).lower())
    return (int(m.group(1)), int(m.group(2))) if m else None


def _torch_misfits(row, driver, python, architectures):
    """What keeps one torch release from this host: a list of short reasons (empty: it fits).
    An empty ``driver`` / ``python`` is not checked."""
    reasons = []
    cuda = row["cuda"]
    if _text(driver) and not runs_cuda_runtime(driver, cuda):
        compat = CUDA_MINOR_COMPAT.get(str(parse_cuda(cuda)[0]), "?")
        reasons.append(
            f"its CUDA {cuda} runtime needs driver {compat} or newer, the host has {_text(driver)}"
        )
    py = _python_key(python)
    low, high = (_python_key(v) for v in row["python"])
    if _text(python) and (py is None or not low <= py <= high):
        reasons.append(
            f"it has wheels for Python {row['python'][0]} to {row['python'][1]}, the venv has {_text(python)}"
        )
    for arch in dict.fromkeys(_text(a) for a in _as_list(architectures)):
        arch_row = ARCHITECTURES.get(arch)
        if arch_row is None:
            continue
        first = parse_cuda(arch_row["min_cuda"])
        last = parse_cuda(arch_row["max_cuda"]) if arch_row["max_cuda"] else None
        if parse_cuda(cuda) < first or (last and parse_cuda(cuda) > last):
            span = f"CUDA {arch_row['min_cuda']}" + (f" to {arch_row['max_cuda']}" if last else " or newer")
            reasons.append(f"its CUDA {cuda} runtime has no code for {arch} GPUs (they need {span})")
    return reasons


def choose_torch(driver, python, architectures=()):
    """Newest PyTorch release in ``TORCH`` whose PyPI wheel runs on this driver (``runs_cuda_runtime``),
    has a wheel for this Python (``"3.11"``) and carries code for these GPU architectures; None when
    none does or the driver is unknown."""
    if not driver_key(driver):
        return None
    fits = [r for r, row in TORCH.items() if not _torch_misfits(row, driver, python, architectures)]
    return max(fits, key=_version_key) if fits else None


def _wheel_base(spec):
    """``"nvidia-nccl-cu12==2.27.5"`` -> (``"nvidia-nccl"``, ``"nvidia-nccl-cu12"``, ``"2.27.5"``)."""
    name, _sep, version = _text(spec).partition("==")
    name = name.strip().lower().replace("_", "-")
    return re.sub(r"-cu\d+$", "", name), name, version.strip()


def torch_nccl(torch_version, cuda):
    """The NCCL release (``"2.27.5"``) the wheel of torch ``torch_version`` pins, when that wheel is for
    CUDA ``cuda``'s major; else None. The nccl role installs it instead of its own choice when both go
    into one venv (``nccl_probe_torch``), so pip never swaps one NCCL for the other."""
    row = TORCH.get(_text(torch_version))
    parsed = parse_cuda(cuda)
    if row is None or parsed is None:
        return None
    _base, name, version = _wheel_base(row["nccl"])
    return version if name == f"nvidia-nccl-cu{parsed[0]}" else None


_SHARED_WHEEL_FIX = {
    "nvidia-nccl": "set {var} to {version} and nccl_cuda to a CUDA {major}.x version",
    "nvidia-cudnn": "set cuda_toolkit_cudnn_version to {version}, or cuda_toolkit_venv to another venv",
}


def torch_problems(version, driver, python, architectures=(), wheels=()):
    """Problems with the PyTorch release for the probe runtime (``nccl_probe_torch_version``).

    ``version`` empty means the matrix's choice (``choose_torch``): a problem only when nothing
    fits. ``driver`` is the host's driver version or branch, ``python`` the venv's ``"3.11"``
    (either empty: not checked for a pinned release). ``wheels`` are the other pinned wheels going
    into the same venv (``["nvidia-nccl-cu12==2.27.7"]``): torch pins its NCCL and cuDNN wheels
    exactly, so a different version there would be replaced on every run.
    """
    text = _text(version)
    where = f"driver {_text(driver) or 'unknown'}, Python {_text(python) or 'unknown'}"
    if not text:
        if not driver_key(driver):
            return [
                f"no NVIDIA driver is known on this host to choose PyTorch for: run the nvidia_driver role "
                f"first (or load the driver), or set {VAR_TORCH}"
            ]
        text = choose_torch(driver, python, architectures) or ""
        if not text:
            return [
                f"no PyTorch release in the compatibility matrix runs here ({where}; known: "
                f"{', '.join(TORCH)}); set {VAR_TORCH}, or upgrade the driver or the venv's Python"
            ]
    row = TORCH.get(text)
    if row is None:
        return [
            f"{VAR_TORCH} {text} is not in the compatibility matrix; known: {', '.join(TORCH)}; set "
            f"{VAR_TORCH} to one of them or leave it empty to let the matrix choose"
        ]
    problems = []
    misfits = _torch_misfits(row, driver, python, architectures)
    if misfits:
        pick = choose_torch(driver, python, architectures)
        problems.append(
            f"{VAR_TORCH} {text} cannot run here: {'; '.join(misfits)}; set {VAR_TORCH} to "
            f"{pick or 'a release that fits (none does: upgrade the driver or the Python)'} "
            f"or leave it empty to let the matrix choose"
        )
    for spec in _as_list(wheels):
        base, name, wanted = _wheel_base(spec)
        for pin in (row["nccl"], row["cudnn"]):
            pin_base, pin_name, pin_version = _wheel_base(pin)
            if base != pin_base or (name, wanted) == (pin_name, pin_version):
                continue
            fix = _SHARED_WHEEL_FIX.get(base, "install it elsewhere").format(
                var=VAR_NCCL, version=pin_version, major=pin_name.rsplit("cu", 1)[-1]
            )
            problems.append(
                f"{VAR_TORCH} {text} pins {pin} in the same venv, where {_text(spec)} is to be installed "
                f"(each run would replace the other's library); {fix}, or pick a torch release that "
                f"pins {_text(spec)}"
            )
    return problems
