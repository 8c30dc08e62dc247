# Copyright: gpufleet developers
# Apache-2.0
"""The GPU software compatibility matrix, written once: GPU architecture <-> driver branch <-> CUDA
toolkit <-> cuDNN <-> NCCL <-> TensorRT-LLM, as data plus pure functions.

Controller code (plugin_utils): runs in filters and the CLI, never on managed hosts. Preflight calls
``stack_problems`` before anything is installed; every message names the variable to change
(``nvidia_driver_branch``, ``nvidia_driver_version``, ``nvidia_driver_flavor``, ``cuda_toolkit_versions``,
``cuda_toolkit_default``, ``cuda_toolkit_cudnn_version``, ``nccl_version``, ``trtllm_version``,
``nccl_probe_torch_version``). No function
raises on bad input: garbage in gives a problem message or None, never an exception.

The checks are strict: a CUDA toolkit is accepted only on a driver at or above its own minimum
(Table 3 of the CUDA release notes). CUDA minor version compatibility (``CUDA_MINOR_COMPAT``) is
quoted in messages as an explanation, never used to pass a toolkit; it is used for one thing only:
applications that bring their own CUDA runtime (the PyTorch wheels: ``compat_torch``).

Sources: the tables and the documents they cite are in ``compat_matrix``.
"""

from __future__ import annotations

import re

from ansible_collections.gpufleet.cluster.plugins.plugin_utils.compat_matrix import (
    ARCHITECTURES,
    CUDA_MIN_DRIVER,
    CUDA_MINOR_COMPAT,
    CUDNN,
    NCCL,
    OPEN_REQUIRED_NAMES,
    TENSORRT_LLM,
    TRTLLM_ARCH_FIRST,
    TRTLLM_ARCH_LAST,
)

# Re-exported: ``cuda_toolkit`` and the tests read Debian's own packages as ``compat.DEBIAN_CUDA``.
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.compat_matrix import DEBIAN_CUDA as DEBIAN_CUDA

UNKNOWN = "unknown"

# Variable names the messages refer to (fixed: roles and the CLI use exactly these).
VAR_BRANCH = "nvidia_driver_branch"
VAR_DRIVER_VERSION = "nvidia_driver_version"
VAR_FLAVOR = "nvidia_driver_flavor"
VAR_CUDA_VERSIONS = "cuda_toolkit_versions"
VAR_CUDA_DEFAULT = "cuda_toolkit_default"
VAR_CUDNN = "cuda_toolkit_cudnn_version"
VAR_NCCL = "nccl_version"
VAR_TRTLLM = "trtllm_version"
VAR_TORCH = "nccl_probe_torch_version"

SOURCES = ("cuda_repo", "pip")


# ------------------------------------------------------------------ parsing helpers


def _text(value):
    if value is None or isinstance(value, bool):
        return ""
    return str(value).strip()


def parse_cuda(v):
    """``"12.4"`` / ``"12.4.1"`` / ``"cuda12.4"`` -> ``(12, 4)``; anything else -> None."""
    m = re.fullmatch(r"(?:cuda[-_ ]?)?(\d{1,2})\.(\d{1,2})(?:\.\d+)*", _text(v).lower())
    return (int(m.group(1)), int(m.group(2))) if m else None


def _cuda_str(parsed):
    return f"{parsed[0]}.{parsed[1]}"


def driver_key(v):
    """``"535.261.03"`` -> ``(535, 261, 3)``, ``"535"`` -> ``(535,)``; unparseable -> ``()``."""
    text = _text(v)
    if text.lower().startswith("r"):
        text = text[1:]
    if not re.fullmatch(r"\d+(\.\d+)*", text):
        return ()
    return tuple(int(p) for p in text.split("."))


def _branch(v):
    key = driver_key(v)
    return key[0] if key and 100 <= key[0] <= 9999 else None


def _version_key(v):
    return tuple(int(p) for p in re.findall(r"\d+", _text(v)))


def _as_list(values):
    if values is None:
        return []
    if isinstance(values, str):
        return [p.strip() for p in values.split(",") if p.strip()]
    if isinstance(values, (list, tuple, set, frozenset)):
        return [v for v in values if _text(v)]
    return [values]


def _cuda_list(values):
    """Parsed, de-duplicated CUDA versions of a list (bad entries dropped)."""
    out = []
    for v in _as_list(values):
        parsed = parse_cuda(v)
        if parsed and parsed not in out:
            out.append(parsed)
    return out


def _known_cuda():
    return sorted((parse_cuda(k) for k in CUDA_MIN_DRIVER), key=lambda p: p)


def cuda_min_driver(cuda):
    """Minimum driver version string for a CUDA toolkit ``"X.Y"`` ([RN] Table 3), or None."""
    parsed = parse_cuda(cuda)
    return CUDA_MIN_DRIVER.get(_cuda_str(parsed)) if parsed else None


def cuda_min_branch(cuda):
    """Driver branch (int) of a CUDA toolkit's minimum driver, or None."""
    return _branch(cuda_min_driver(cuda))


def max_cuda_for_driver(branch_or_version):
    """Highest CUDA ``"X.Y"`` in CUDA_MIN_DRIVER that a driver supports (strict), or None.

    A full driver version (``"535.261.03"``) supports a CUDA release when it is at least that
    release's minimum driver ([RN] Table 3). A bare branch (``"535"``, ``535``, ``"R535"``) supports
    a CUDA release when that release's minimum driver belongs to this branch or an older one: a
    branch's first production driver is the one its CUDA toolkit shipped with (R535 <-> 535.54.03,
    CUDA 12.2), so ``535 -> "12.2"``, ``550 -> "12.4"``, ``580 -> "13.0"``. Newer CUDA releases are
    not granted through minor version compatibility.
    """
    key = driver_key(branch_or_version)
    if not key:
        return None
    best = None
    for parsed in _known_cuda():
        minimum = driver_key(CUDA_MIN_DRIVER[_cuda_str(parsed)])
        ok = key[0] >= minimum[0] if len(key) == 1 else key >= minimum
        if ok:
            best = parsed
    return _cuda_str(best) if best else None


# ------------------------------------------------------------------ architectures


def _names_by_arch(architectures, gpu_names):
    archs = [_text(a) for a in _as_list(architectures)]
    names = [_text(n) for n in _as_list(gpu_names)]
    by_arch = {}
    for i, arch in enumerate(archs):
        bucket = by_arch.setdefault(arch, [])
        if len(names) == len(archs) and names[i] and names[i] not in bucket:
            bucket.append(names[i])
    return by_arch


def _found(names):
    return f"found: {', '.join(names)}" if names else "found on this host"


def arch_problems(architectures, branch, flavor, gpu_names=()):
    """Driver branch / flavor problems for the GPU architectures found on a host.

    ``architectures`` is a list of architecture names (one per GPU, or de-duplicated);
    ``gpu_names``, when given with the same length, names the GPU of each entry for the message.
    ``"unknown"`` and architectures not in ARCHITECTURES are ignored. Returns a list of messages.
    """
    problems = []
    by_arch = _names_by_arch(architectures, gpu_names)
    b = _branch(branch)
    flavor = _text(flavor).lower()
    for arch, names in by_arch.items():
        row = ARCHITECTURES.get(arch)
        if row is None:
            continue
        found = _found(names)
        if b is not None and b < row["min_branch"]:
            problems.append(
                f"driver branch {b} does not support {arch} GPUs ({found}); "
                f"set {VAR_BRANCH} to {row['min_branch']} or newer"
            )
        if b is not None and row["max_branch"] is not None and b > row["max_branch"]:
            problems.append(
                f"driver branch {b} no longer supports {arch} GPUs ({found}): R{row['max_branch']} is "
                f"the last branch for them; set {VAR_BRANCH} to {row['max_branch']} or older"
            )
        if flavor == "open" and not row["open_supported"]:
            problems.append(
                f"{VAR_FLAVOR} 'open' cannot drive {arch} GPUs ({found}): the open kernel modules "
                f"support Turing and newer only; set {VAR_FLAVOR} to proprietary"
            )
        if flavor == "proprietary" and row["open_required"]:
            problems.append(
                f"{VAR_FLAVOR} 'proprietary' cannot drive {arch} GPUs ({found}): they require the open "
                f"kernel modules; set {VAR_FLAVOR} to open"
            )
    if flavor == "proprietary":
        required = []
        for names in by_arch.values():
            required += [n for n in names if any(m in n.upper() for m in OPEN_REQUIRED_NAMES)]
        if required and not any(ARCHITECTURES.get(a, {}).get("open_required") for a in by_arch):
            problems.append(
                f"{VAR_FLAVOR} 'proprietary' cannot drive Grace Hopper GPUs (found: {', '.join(required)}): "
                f"they require the open kernel modules; set {VAR_FLAVOR} to open"
            )
    return problems


# ------------------------------------------------------------------ CUDA


def _known_listing():
    return ", ".join(CUDA_MIN_DRIVER)


def cuda_problems(versions, default, branch, driver_version="", architectures=()):
    """Problems with the CUDA toolkits requested for a host.

    ``versions`` is ``cuda_toolkit_versions`` (``["12.4", ...]``), ``default`` is
    ``cuda_toolkit_default`` (empty: no check), ``branch`` / ``driver_version`` the driver to be
    installed (``driver_version`` wins when it is a full version on that branch).
    """
    problems = []
    raw = _as_list(versions)
    newest = _known_cuda()[-1]
    b = _branch(branch)
    pinned = driver_key(driver_version)
    use_pinned = len(pinned) > 1 and (b is None or pinned[0] == b)
    driver = _text(driver_version) if use_pinned else (str(b) if b is not None else "")
    limit = max_cuda_for_driver(driver) if driver else None
    parsed_ok = []
    for v in raw:
        parsed = parse_cuda(v)
        if parsed is None:
            problems.append(
                f"{VAR_CUDA_VERSIONS} entry '{_text(v)}' is not a CUDA version; "
                "use major.minor such as '12.4'"
            )
            continue
        name = _cuda_str(parsed)
        if name not in CUDA_MIN_DRIVER:
            if parsed > newest:
                problems.append(
                    f"{VAR_CUDA_VERSIONS} names {name}, which is newer than this compatibility matrix "
                    f"knows (newest: {_cuda_str(newest)}); known: {_known_listing()}"
                )
            else:
                problems.append(
                    f"{VAR_CUDA_VERSIONS} names {name}, which NVIDIA never released; "
                    f"known: {_known_listing()}"
                )
            continue
        parsed_ok.append(parsed)
        if not driver:
            continue
        if limit is None or parse_cuda(limit) < parsed:
            need = CUDA_MIN_DRIVER[name]
            need_branch = _branch(need)
            what = f"{VAR_DRIVER_VERSION} {driver}" if use_pinned else f"{VAR_BRANCH} {driver}"
            fix = (
                f"set {VAR_DRIVER_VERSION} to {need} or newer"
                if use_pinned and pinned[0] == need_branch
                else f"raise {VAR_BRANCH} to {need_branch} or newer"
            )
            supports = f"supports CUDA up to {limit}" if limit else "supports none of the known CUDA releases"
            message = (
                f"{VAR_CUDA_VERSIONS} names {name}, which needs driver {need} or newer (branch "
                f"{need_branch}); {what} {supports}; {fix}, or pick CUDA <= {limit or 'none'} in "
                f"{VAR_CUDA_VERSIONS}"
            )
            compat = CUDA_MINOR_COMPAT.get(str(parsed[0]))
            if (
                compat
                and driver_key(driver) >= driver_key(compat)
                and parsed[0] == _driver_cuda_major(driver)
            ):
                message += (
                    f" (CUDA minor version compatibility would run {name} applications on it with "
                    f"limited features; this check is strict)"
                )
            problems.append(message)
    default_text = _text(default)
    if default_text:
        parsed_default = parse_cuda(default_text)
        listed = [_cuda_str(p) for p in _cuda_list(raw)]
        if parsed_default is None or _cuda_str(parsed_default) not in listed:
            problems.append(
                f"{VAR_CUDA_DEFAULT} {default_text} is not in {VAR_CUDA_VERSIONS} "
                f"({', '.join(listed) or 'empty'}); add it there or set {VAR_CUDA_DEFAULT} to one of them"
            )
    for arch in dict.fromkeys(_text(a) for a in _as_list(architectures)):
        row = ARCHITECTURES.get(arch)
        if row is None:
            continue
        low, high = parse_cuda(row["min_cuda"]), parse_cuda(row["max_cuda"]) if row["max_cuda"] else None
        for parsed in parsed_ok:
            if parsed < low:
                problems.append(
                    f"{VAR_CUDA_VERSIONS} names {_cuda_str(parsed)}, which cannot compile for {arch} GPUs "
                    f"(compute capability {row['compute_capability']} needs CUDA {row['min_cuda']} "
                    "or newer); "
                    f"pick CUDA {row['min_cuda']} or newer in {VAR_CUDA_VERSIONS}"
                )
            elif high is not None and parsed > high:
                problems.append(
                    f"{VAR_CUDA_VERSIONS} names {_cuda_str(parsed)}, which cannot compile for {arch} GPUs "
                    f"(CUDA 13.0 removed offline compilation for them; last: CUDA {row['max_cuda']}); "
                    f"pick CUDA {row['max_cuda']} or older in {VAR_CUDA_VERSIONS}"
                )
    return problems


def _driver_cuda_major(driver):
    """CUDA major whose minor-compatibility range ([RN] Table 2) contains this driver."""
    key = driver_key(driver)
    major = None
    for m, minimum in sorted(CUDA_MINOR_COMPAT.items(), key=lambda kv: int(kv[0])):
        if key and key >= driver_key(minimum):
            major = int(m)
    return major


# ------------------------------------------------------------------ cuDNN


def _split_build(value):
    """``"8.9.6.50-1+cuda12.2"`` -> (``"8.9.6.50"``, (12, 2)); ``"9.10.2"`` -> (``"9.10.2"``, None)."""
    text = _text(value)
    m = re.search(r"[+~]cuda(\d+)(?:\.(\d+))?$", text)
    build = None
    if m:
        build = (int(m.group(1)), int(m.group(2)) if m.group(2) else None)
        text = text[: m.start()]
    text = re.sub(r"-\d+$", "", text)
    return text, build


def _release_key(value, parts):
    text, build = _split_build(value)
    nums = re.fullmatch(r"\d+(\.\d+)*", text) and text.split(".")
    if not nums or len(nums) < parts:
        return None, build
    return ".".join(str(int(n)) for n in nums[:parts]), build


def _majors(parsed_list):
    return {str(p[0]) for p in parsed_list}


def cudnn_problems(cudnn_version, cuda_versions):
    """cuDNN release unknown to the matrix, or built for no CUDA toolkit in ``cuda_toolkit_versions``.

    ``cudnn_version`` may be ``"9.10.2"``, ``"9.10.2.21"`` or an apt version with its CUDA build
    (``"8.9.6.50-1+cuda12.2"``); empty means "let the matrix choose" and gives no problem.
    """
    if not _text(cudnn_version):
        return []
    series, build = _release_key(cudnn_version, 3)
    row = CUDNN.get(series) if series else None
    if row is None:
        return [
            f"{VAR_CUDNN} {_text(cudnn_version)} is not in the compatibility matrix; known: "
            f"{', '.join(CUDNN)}; set {VAR_CUDNN} to one of them or leave it empty to let the matrix choose"
        ]
    installed = _cuda_list(cuda_versions)
    if not installed:
        return []
    have = ", ".join(_cuda_str(p) for p in installed)
    if build is not None and str(build[0]) not in _majors(installed):
        pick = choose_cudnn(_cuda_str(installed[-1]))
        return [
            f"{VAR_CUDNN} {_text(cudnn_version)} is built for CUDA {build[0]}.x, but "
            f"{VAR_CUDA_VERSIONS} has {have}; set {VAR_CUDNN} to a build for CUDA "
            f"{installed[-1][0]}.x (e.g. {pick or 'none known'}) or add a CUDA {build[0]}.x toolkit"
        ]
    supported = {m: set(vs) for m, vs in row["cuda"].items()}
    if any(_cuda_str(p) in supported.get(str(p[0]), ()) for p in installed):
        return []
    lists = "; ".join(f"CUDA {m}.x: {', '.join(vs)}" for m, vs in row["cuda"].items())
    if not (_majors(installed) & set(supported)):
        pick = choose_cudnn(_cuda_str(installed[-1]))
        return [
            f"{VAR_CUDNN} {series} is built for CUDA {'/'.join(m + '.x' for m in supported)} only, but "
            f"{VAR_CUDA_VERSIONS} has {have}; set {VAR_CUDNN} to {pick or 'a release for that CUDA major'} "
            f"or add a toolkit it supports ({lists})"
        ]
    pick = choose_cudnn(_cuda_str(installed[-1]))
    return [
        f"{VAR_CUDNN} {series} supports {lists}, not {have} in {VAR_CUDA_VERSIONS}; set {VAR_CUDNN} to "
        f"{pick or 'another release'} or pick a CUDA toolkit it supports"
    ]


def _cudnn_has(row, parsed, source):
    major = str(parsed[0])
    if _cuda_str(parsed) not in row["cuda"].get(major, ()):
        return False
    if source == "cuda_repo":
        return bool(row["apt"])
    if source == "pip":
        return major in row["pip"]
    return True


def choose_cudnn(cuda, source=None):
    """Newest cuDNN release (``"X.Y.Z"``) whose support matrix lists CUDA ``cuda``; with ``source``
    (``"cuda_repo"`` / ``"pip"``) only releases with a recorded package there. None when none."""
    parsed = parse_cuda(cuda)
    if not parsed:
        return None
    fits = [s for s, row in CUDNN.items() if _cudnn_has(row, parsed, source)]
    return max(fits, key=_version_key) if fits else None


def cudnn_packages(cudnn_version, cuda, source):
    """Package specs for one cuDNN release and CUDA toolkit: apt names with NVIDIA's repository
    versions (``source="cuda_repo"``) or ``wheel==version`` (``source="pip"``). ``[]`` when the
    matrix has no recorded package for that combination."""
    series, _build = _release_key(cudnn_version, 3)
    row = CUDNN.get(series) if series else None
    parsed = parse_cuda(cuda)
    if row is None or parsed is None or str(parsed[0]) not in row["cuda"]:
        return []
    major = str(parsed[0])
    if source == "pip":
        version = row["pip"].get(major)
        return [f"nvidia-cudnn-cu{major}=={version}"] if version else []
    if source != "cuda_repo" or not row["apt"]:
        return []
    if series.startswith("8."):
        build = row["apt_cuda"].get(major)
        if not build:
            return []
        return [f"libcudnn8={row['apt']}-1+cuda{build}", f"libcudnn8-dev={row['apt']}-1+cuda{build}"]
    return [f"libcudnn9-cuda-{major}={row['apt']}-1", f"libcudnn9-dev-cuda-{major}={row['apt']}-1"]


# ------------------------------------------------------------------ NCCL


def _nccl_majors(row):
    return set(row["pip"]) | {a.split(".")[0] for a in row["apt"]}


def nccl_problems(nccl_version, cuda_versions):
    """NCCL release unknown to the matrix, or with no build for any CUDA major in
    ``cuda_toolkit_versions``. Accepts ``"2.21.5"`` or an apt version ``"2.21.5-1+cuda12.4"``."""
    if not _text(nccl_version):
        return []
    release, build = _release_key(nccl_version, 3)
    row = NCCL.get(release) if release else None
    if row is None:
        return [
            f"{VAR_NCCL} {_text(nccl_version)} is not in the compatibility matrix; known: {', '.join(NCCL)}; "
            f"set {VAR_NCCL} to one of them or leave it empty to let the matrix choose"
        ]
    installed = _cuda_list(cuda_versions)
    if not installed:
        return []
    have = ", ".join(_cuda_str(p) for p in installed)
    majors = {str(build[0])} if build else _nccl_majors(row)
    if majors & _majors(installed):
        return []
    pick = choose_nccl(_cuda_str(installed[-1]), source="pip") or choose_nccl(_cuda_str(installed[-1]))
    return [
        f"{VAR_NCCL} {_text(nccl_version)} has builds for CUDA {'/'.join(sorted(m + '.x' for m in majors))} "
        f"only, but {VAR_CUDA_VERSIONS} has {have}; "
        f"set {VAR_NCCL} to {pick or 'a release for that CUDA major'} "
        f"or add a CUDA {'/'.join(sorted(majors))}.x toolkit"
    ]


def _nccl_apt_build(row, parsed):
    """The recorded apt build (``"12.4"``) for CUDA ``parsed``: the newest of the same major whose
    minor is not newer than the toolkit's."""
    same = [parse_cuda(a) for a in row["apt"] if parse_cuda(a)[0] == parsed[0] and parse_cuda(a) <= parsed]
    return _cuda_str(max(same)) if same else None


def choose_nccl(cuda, source="cuda_repo"):
    """Newest NCCL release with a build for CUDA ``cuda``: an apt build for the same major no newer
    than the toolkit (``source="cuda_repo"``), or a wheel for the major (``source="pip"``)."""
    parsed = parse_cuda(cuda)
    if not parsed:
        return None
    if source == "pip":
        fits = [r for r, row in NCCL.items() if str(parsed[0]) in row["pip"]]
    else:
        fits = [r for r, row in NCCL.items() if _nccl_apt_build(row, parsed)]
    return max(fits, key=_version_key) if fits else None


def nccl_packages(nccl_version, cuda, source):
    """``["libnccl2=2.21.5-1+cuda12.4", "libnccl-dev=..."]`` (cuda_repo) or
    ``["nvidia-nccl-cu12==2.21.5"]`` (pip); ``[]`` when the matrix records no such build."""
    release, _build = _release_key(nccl_version, 3)
    row = NCCL.get(release) if release else None
    parsed = parse_cuda(cuda)
    if row is None or parsed is None:
        return []
    if source == "pip":
        major = str(parsed[0])
        return [f"nvidia-nccl-cu{major}=={release}"] if major in row["pip"] else []
    if source != "cuda_repo":
        return []
    build = _nccl_apt_build(row, parsed)
    return [f"libnccl2={release}-1+cuda{build}", f"libnccl-dev={release}-1+cuda{build}"] if build else []


# ------------------------------------------------------------------ TensorRT-LLM


def _series(value):
    nums = re.findall(r"\d+", _text(value))
    return f"{int(nums[0])}.{int(nums[1])}" if len(nums) >= 2 else None


def trtllm_problems(trtllm_version, cuda_versions, architectures=()):
    """TensorRT-LLM release unknown, built for a CUDA no installed toolkit matches (same major,
    minor not older), or not supporting a GPU architecture on the host."""
    if not _text(trtllm_version):
        return []
    series = _series(trtllm_version)
    row = TENSORRT_LLM.get(series) if series else None
    if row is None:
        return [
            f"{VAR_TRTLLM} {_text(trtllm_version)} is not in the compatibility matrix; known series: "
            f"{', '.join(TENSORRT_LLM)}; set {VAR_TRTLLM} to one of them"
        ]
    problems = []
    need = parse_cuda(row["cuda"])
    installed = _cuda_list(cuda_versions)
    if installed and not any(p[0] == need[0] and p >= need for p in installed):
        same = [_text(s) for s, r in TENSORRT_LLM.items() if any(_fits(r, p) for p in installed)]
        problems.append(
            f"{VAR_TRTLLM} {_text(trtllm_version)} is built with CUDA {row['cuda']}, but "
            f"{VAR_CUDA_VERSIONS} has {', '.join(_cuda_str(p) for p in installed)}; add CUDA "
            f"{_cuda_str(need)} to {VAR_CUDA_VERSIONS} or set {VAR_TRTLLM} to a series built for it"
            + (f" ({', '.join(same)})" if same else "")
        )
    for arch in dict.fromkeys(_text(a) for a in _as_list(architectures)):
        first = TRTLLM_ARCH_FIRST.get(arch)
        last = TRTLLM_ARCH_LAST.get(arch)
        if first and _version_key(series) < _version_key(first):
            problems.append(
                f"{VAR_TRTLLM} {_text(trtllm_version)} does not support {arch} GPUs (added in {first}); "
                f"set {VAR_TRTLLM} to {first} or newer"
            )
        if last and _version_key(series) > _version_key(last):
            problems.append(
                f"{VAR_TRTLLM} {_text(trtllm_version)} does not support {arch} GPUs (last: {last}); "
                f"set {VAR_TRTLLM} to {last} or older"
            )
    return problems


def _fits(row, parsed):
    need = parse_cuda(row["cuda"])
    return parsed[0] == need[0] and parsed >= need


# ------------------------------------------------------------------ everything at once


def stack_problems(inputs):
    """All problems of a requested GPU software stack, in a stable order: driver inputs,
    architectures, CUDA, cuDNN, NCCL, TensorRT-LLM.

    ``inputs`` keys (all optional): architectures, gpu_names, driver_branch, driver_version,
    driver_flavor, cuda_versions, cuda_default, cudnn_version, nccl_version, trtllm_version.
    """
    if not isinstance(inputs, dict):
        return ["stack_problems needs a dict of inputs"]
    branch = inputs.get("driver_branch")
    problems = []
    if _text(branch) and _branch(branch) is None:
        problems.append(f"{VAR_BRANCH} '{_text(branch)}' is not a driver branch; set a number such as '535'")
    version = _text(inputs.get("driver_version"))
    if version and len(driver_key(version)) < 2:
        problems.append(
            f"{VAR_DRIVER_VERSION} '{version}' is not a driver version; use e.g. '535.261.03' or ''"
        )
    archs = inputs.get("architectures")
    cuda = inputs.get("cuda_versions")
    problems += arch_problems(archs, branch, inputs.get("driver_flavor"), inputs.get("gpu_names") or ())
    problems += cuda_problems(cuda, inputs.get("cuda_default"), branch, version, archs)
    problems += cudnn_problems(inputs.get("cudnn_version"), cuda)
    problems += nccl_problems(inputs.get("nccl_version"), cuda)
    problems += trtllm_problems(inputs.get("trtllm_version"), cuda, archs)
    return problems
