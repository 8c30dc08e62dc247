"""Local wheels a bundle carries: the profile's ``wheels.files``, wheels the site built itself or got
from elsewhere than the index (an engine compiled for the site's CPUs, a TensorRT-LLM wheel from
NVIDIA's bundle, whose PyPI package is only a stub).

Each is copied into the wheelhouse and hash-pinned in the signed manifest like a downloaded wheel;
its dependencies are resolved from the index for the profile's target like the other wheels (it is a
direct-reference requirement, ``NAME[EXTRAS] @ file:///PATH``, in the same ``pip install --dry-run
--report``). Its file name must say it fits the target (PEP 427 tags); a wheel built locally is
tagged ``linux_<machine>``, which ``--platform manylinux...`` rejects, so that tag joins the target's
platforms when a local wheel carries it.
"""

from __future__ import annotations

import os
import re
import zipfile
from email.parser import HeaderParser
from pathlib import Path

from packaging import tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from gpufleet.bundle import BundleBuildError

ENTRY_KEYS = {"path", "extras"}
EXTRA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
EXAMPLE = "{path: wheels/NAME-VERSION-py3-none-linux_x86_64.whl, extras: [server]}"


def local_platform(machine: str) -> str:
    """The platform tag of a wheel built on this kind of machine (``linux_x86_64``)."""
    return f"linux_{machine}"


def target_tags(python: str, platforms: list[str], machine: str) -> set[tags.Tag]:
    """Every tag a CPython ``python`` (``"3.11"``) on ``platforms`` or ``linux_<machine>`` loads, as
    pip computes them for ``--python-version/--implementation cp/--abi cpXY/--platform``."""
    major, minor = (int(x) for x in python.split(".")[:2])
    interpreter = f"cp{major}{minor}"
    plats = [*platforms, local_platform(machine)]
    return set(tags.cpython_tags((major, minor), abis=[interpreter], platforms=plats)) | set(
        tags.compatible_tags((major, minor), interpreter=interpreter, platforms=plats)
    )


def _extras(where: str, value, problems: list[str]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, str) and EXTRA_RE.match(x) for x in value):
        problems.append(f"{where}.extras: {value!r} must be a list of extra names, e.g. [server]")
        return []
    return sorted({canonicalize_name(x) for x in value})


def validate(
    value, base_dir: Path | None, python: str, platforms: list[str], machine: str, problems: list[str]
) -> tuple[list[dict], list[str]]:
    """(entries, platforms to add) of ``wheels.files``; every problem is appended to ``problems``.

    An entry is a path (relative to the profile's directory) or ``{path, extras}``; normalized to
    ``{path, file, name, version, extras}``. Only the file name is read here (name, version, tags);
    the file itself is checked by ``check`` before the build resolves anything."""
    if value is None:
        return [], []
    if not isinstance(value, list):
        problems.append(f"wheels.files: must be a list of wheel paths or mappings like {EXAMPLE}")
        return [], []
    try:
        supported = target_tags(python, platforms, machine)
    except ValueError:  # target.python is reported on its own
        supported = None
    out, seen, extra_platforms = [], {}, []
    for i, entry in enumerate(value):
        where = f"wheels.files[{i}]"
        entry = {"path": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a wheel path or a mapping like {EXAMPLE}")
            continue
        for key in sorted(set(entry) - ENTRY_KEYS):
            problems.append(f"{where}: unknown key '{key}' (allowed: {', '.join(sorted(ENTRY_KEYS))})")
        path = entry.get("path")
        if not isinstance(path, str) or not path.strip():
            problems.append(f"{where}.path: the wheel's path is required, e.g. {EXAMPLE}")
            continue
        p = Path(path.strip()).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        try:
            name, version, _build, wheel_tags = parse_wheel_filename(p.name)
        except InvalidWheelFilename:
            problems.append(
                f"{where} ({path}): {p.name!r} is not a wheel's file name "
                "(NAME-VERSION-PYTHON-ABI-PLATFORM.whl, PEP 427); give the .whl file as pip or "
                "'pip wheel' named it"
            )
            continue
        where = f"{where} ({p.name})"
        extras = _extras(where, entry.get("extras"), problems)
        if name in seen:
            problems.append(
                f"{where}: {name} is already carried by wheels.files[{seen[name]}]; keep one of them"
            )
            continue
        seen[name] = i
        if supported is not None and not wheel_tags & supported:
            loads = f"{platforms[0] if platforms else '?'} or {local_platform(machine)}"
            problems.append(
                f"{where}: it is tagged {', '.join(sorted(map(str, wheel_tags)))}, which the target cannot "
                f"load (CPython {python} on {loads}); build or get the wheel for Python {python} on Linux "
                f"{machine}"
            )
            continue
        if any(t.platform == local_platform(machine) for t in wheel_tags) and not extra_platforms:
            extra_platforms.append(local_platform(machine))
        out.append(
            {
                "path": os.path.normpath(p),
                "file": p.name,
                "name": name,
                "version": str(version),
                "extras": extras,
            }
        )
    return out, extra_platforms


def requirement(entry: dict) -> str:
    """The pip requirement of a local wheel: a direct reference to its file, with its extras."""
    extras = f"[{','.join(entry['extras'])}]" if entry["extras"] else ""
    return f"{entry['name']}{extras} @ {Path(entry['path']).as_uri()}"


def _metadata(path: Path) -> tuple[str, str]:
    """(Name, Version) of the wheel's ``*.dist-info/METADATA``; BundleBuildError when it is not a wheel."""
    if not zipfile.is_zipfile(path):
        raise BundleBuildError(f"wheels.files: {path} is not a wheel (not a zip archive)")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        dist_info = {
            n.split("/", 1)[0] for n in names if re.fullmatch(r"[^/]+\.dist-info/(METADATA|WHEEL)", n)
        }
        found = [d for d in dist_info if {f"{d}/METADATA", f"{d}/WHEEL"} <= set(names)]
        if len(found) != 1:
            raise BundleBuildError(
                f"wheels.files: {path} is not a wheel (it needs exactly one NAME-VERSION.dist-info with "
                "METADATA and WHEEL)"
            )
        meta = HeaderParser().parsestr(zf.read(f"{found[0]}/METADATA").decode("utf-8", "replace"))
    return meta.get("Name", ""), meta.get("Version", "")


def check(entries: list[dict]) -> None:
    """Fail, naming the entry, before anything is resolved or downloaded: a local wheel that is missing,
    that is not a wheel, or whose metadata says another name or version than its file name."""
    for entry in entries:
        path = Path(entry["path"])
        if not path.is_file():
            raise BundleBuildError(
                f"wheels.files: {entry['file']}: {path} does not exist (build or copy the wheel there first)"
            )
        name, version = _metadata(path)
        try:
            same = canonicalize_name(name) == entry["name"] and Version(version) == Version(entry["version"])
        except ValueError:
            same = False
        if not same:
            raise BundleBuildError(
                f"wheels.files: {path} is named for {entry['name']} {entry['version']} but its METADATA says "
                f"{name or '?'} {version or '?'}; give the wheel its own file name"
            )
