"""Bundle profiles: what a site needs, as YAML, validated with messages that say what to fix."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gpufleet.bundle import BundleBuildError

PROFILE_SCHEMA = 1
# Targets a bundle can be built for: the lab image of that OS resolves apt dependencies, so the
# result matches the target's base system. Python/platform describe the wheels the nodes can load.
TARGETS = {
    "debian-12": {
        "arches": {"amd64": "x86_64"},
        "python": "3.11",
        "glibc": "2.36",
        "components": ["main", "contrib", "non-free", "non-free-firmware"],
    },
}
KNOWN_ROLES = (
    "bundle_server",
    "offline_repo",
    "preflight",
    "nvidia_driver",
    "cuda_toolkit",
    "nccl",
    "infiniband",
    "monitoring",
    "model_store",
    "python_runtime",
    "container_runtime",
    "llm_serve",
)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}$")
APT_PKG_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")
WHEEL_REQ_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?\s*((==|>=|<=|~=|!=|<|>)\s*[A-Za-z0-9.*+!_-]+\s*,?\s*)*$"
)
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")

TOP_KEYS = {"schema", "name", "description", "target", "roles", "apt", "wheels", "images", "files", "models"}
TARGET_KEYS = {"os", "arch", "python"}
APT_KEYS = {"components", "packages", "pins", "debs"}
PIN_KEYS = {"packages", "version"}
# An APT preferences "Package:" pattern (a name or a glob) and a "Pin: version" value (a glob allowed).
APT_PIN_PKG_RE = re.compile(r"^[a-z0-9*][a-z0-9+.*-]*$")
APT_PIN_VERSION_RE = re.compile(r"^[A-Za-z0-9.+~:*-]+$")
WHEEL_KEYS = {"packages", "platform", "python", "files"}
FILE_KEYS = {"name", "url", "path", "sha256", "purpose", "size"}
IMAGE_KEYS = {"name", "purpose"}


def manylinux_platforms(glibc: str, machine: str) -> list[str]:
    """Every manylinux tag a system with this glibc can load, newest first (pip does not expand
    ``manylinux_2_36`` to the older ``manylinux2014`` aliases by itself)."""
    if not glibc:
        return []
    minor = int(glibc.split(".")[1])
    tags = [f"manylinux_2_{m}_{machine}" for m in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    return tags + [f"{name}_{machine}" for m, name in legacy.items() if m <= minor]


def _unknown(where: str, data: dict, allowed: set[str], problems: list[str]) -> None:
    for key in sorted(set(data) - allowed):
        problems.append(f"{where}: unknown key '{key}' (allowed: {', '.join(sorted(allowed))})")


def _str_list(where: str, value, pattern: re.Pattern, what: str, problems: list[str]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{where}: must be a list of {what}")
        return []
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not pattern.match(item.strip()):
            problems.append(f"{where}[{i}]: {item!r} is not a valid {what}")
            continue
        if item.strip() in out:
            problems.append(f"{where}[{i}]: {item!r} is listed twice")
            continue
        out.append(item.strip())
    return out


def validate(data, source: str = "profile", base_dir: Path | None = None) -> dict:
    """Return the normalized profile, or raise BundleBuildError listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise BundleBuildError(f"{source}: a bundle profile is a YAML mapping (name, target, apt, ...)")
    _unknown("profile", data, TOP_KEYS, problems)
    schema = data.get("schema", PROFILE_SCHEMA)
    if schema != PROFILE_SCHEMA:
        problems.append(f"schema: {schema!r} is not supported (this gpufleet reads schema {PROFILE_SCHEMA})")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.append(
            f"name: {name!r} must be lower-case letters, digits, '.', '_' or '-' "
            "(it names the bundle and its directory on the bastion)"
        )
    target = data.get("target") or {}
    if not isinstance(target, dict):
        problems.append("target: must be a mapping with os, arch (and optionally python)")
        target = {}
    _unknown("target", target, TARGET_KEYS, problems)
    os_name = target.get("os")
    spec = TARGETS.get(os_name)
    if spec is None:
        problems.append(f"target.os: {os_name!r} is not a supported target; supported: {', '.join(TARGETS)}")
        spec = {"arches": {}, "python": "", "glibc": "", "components": []}
    arch = target.get("arch", "amd64")
    if spec["arches"] and arch not in spec["arches"]:
        problems.append(
            f"target.arch: {arch!r} is not supported for {os_name}; supported: {', '.join(spec['arches'])}"
        )
    python = str(target.get("python", spec["python"]))
    if spec["python"] and python != spec["python"]:
        problems.append(f"target.python: {os_name} ships Python {spec['python']}, not {python}")
    roles = data.get("roles") or []
    if not isinstance(roles, list):
        problems.append("roles: must be a list of role names")
        roles = []
    for r in roles:
        if r not in KNOWN_ROLES:
            problems.append(f"roles: unknown role {r!r}; known: {', '.join(KNOWN_ROLES)}")

    apt = data.get("apt") or {}
    if not isinstance(apt, dict):
        problems.append("apt: must be a mapping with packages (and optionally components)")
        apt = {}
    _unknown("apt", apt, APT_KEYS, problems)
    components = apt.get("components", spec["components"])
    if not isinstance(components, list) or not all(isinstance(c, str) and c for c in components):
        problems.append("apt.components: must be a list such as [main, contrib, non-free]")
        components = []
    apt_packages = _str_list("apt.packages", apt.get("packages"), APT_PKG_RE, "Debian package name", problems)
    apt_pins = _pins(apt.get("pins"), problems)

    wheels = data.get("wheels") or {}
    if not isinstance(wheels, dict):
        problems.append("wheels: must be a mapping with packages or files (and optionally platform, python)")
        wheels = {}
    _unknown("wheels", wheels, WHEEL_KEYS, problems)
    wheel_packages = _str_list(
        "wheels.packages", wheels.get("packages"), WHEEL_REQ_RE, "pip requirement", problems
    )
    machine = spec["arches"].get(arch, "x86_64")
    platform = wheels.get("platform") or manylinux_platforms(spec["glibc"], machine)
    if isinstance(platform, str):
        platform = [platform]
    wheel_python = str(wheels.get("python", python))
    from gpufleet.bundle import local_wheels

    wheel_files, more_platforms = local_wheels.validate(
        wheels.get("files"), base_dir, wheel_python, platform, machine, problems
    )
    platform = [*platform, *(p for p in more_platforms if p not in platform)]

    images = []
    for i, item in enumerate(data.get("images") or []):
        entry = {"name": item} if isinstance(item, str) else item
        if not isinstance(entry, dict):
            problems.append(f"images[{i}]: must be an image name or a mapping with name")
            continue
        _unknown(f"images[{i}]", entry, IMAGE_KEYS, problems)
        iname = entry.get("name")
        if not isinstance(iname, str) or not IMAGE_RE.match(iname):
            problems.append(f"images[{i}].name: {iname!r} is not an image reference")
            continue
        images.append({"name": iname, "purpose": str(entry.get("purpose", "container image"))})

    files = pinned_files("files", data.get("files"), base_dir, problems)
    debs = pinned_files(
        "apt.debs",
        apt.get("debs"),
        base_dir,
        problems,
        suffix=".deb",
        purpose="package carried as a .deb file",
    )

    from gpufleet.bundle import models as bundle_models

    models = bundle_models.validate(data.get("models"), base_dir, problems)

    if (
        not (apt_packages or debs or wheel_packages or wheel_files or images or files or models)
        and not problems
    ):
        problems.append(
            "the profile lists nothing to bundle: add apt.packages, apt.debs, wheels.packages, wheels.files, "
            "images, files or models"
        )
    if problems:
        raise BundleBuildError(f"{source} is not a valid bundle profile:\n  - " + "\n  - ".join(problems))
    return {
        "schema": PROFILE_SCHEMA,
        "name": name,
        "description": str(data.get("description", "")),
        "target": {"os": os_name, "arch": arch, "python": python},
        "roles": list(roles),
        "apt": {"components": list(components), "packages": apt_packages, "pins": apt_pins, "debs": debs},
        "wheels": {
            "packages": wheel_packages,
            "files": wheel_files,
            "platform": platform,
            "python": wheel_python,
        },
        "images": images,
        "files": files,
        "models": models,
    }


def pinned_files(
    key: str, value, base_dir: Path | None, problems: list[str], suffix: str = "", purpose: str = "file"
) -> list[dict]:
    """``files`` and ``apt.debs``: [{name, url | path, sha256, purpose}], each pinned by sha256.
    ``suffix``: the ending every name must have (``.deb``); ``purpose``: the default purpose."""
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{key}: must be a list of mappings with name, url or path, and sha256")
        return []
    out: list[dict] = []
    seen = set()
    for i, entry in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a mapping with name, url or path, and sha256")
            continue
        _unknown(where, entry, FILE_KEYS, problems)
        fname = entry.get("name")
        if not isinstance(fname, str) or not FILE_NAME_RE.match(fname) or not fname.endswith(suffix):
            problems.append(
                f"{where}.name: {fname!r} must be a plain file name (letters, digits, '._+-')"
                + (f" ending in {suffix}" if suffix else "")
            )
            continue
        if fname in seen:
            problems.append(f"{where}.name: {fname!r} is listed twice")
        seen.add(fname)
        url, path = entry.get("url"), entry.get("path")
        if bool(url) == bool(path):
            problems.append(f"{where} ({fname}): give exactly one of url or path")
            continue
        sha = str(entry.get("sha256", "")).lower()
        if not SHA256_RE.match(sha):
            problems.append(
                f"{where} ({fname}): sha256 pin missing or malformed; every file needs one "
                f"(compute it with 'sha256sum FILE' from a trusted copy)"
            )
            continue
        item = {"name": fname, "sha256": sha, "purpose": str(entry.get("purpose", purpose))}
        if url:
            if not isinstance(url, str) or not re.match(r"^(https?|file)://", url):
                problems.append(f"{where} ({fname}): url must be http://, https:// or file://")
                continue
            item["url"] = url
        else:
            p = Path(str(path)).expanduser()
            if not p.is_absolute() and base_dir is not None:
                p = base_dir / p
            item["path"] = str(p)
        out.append(item)
    return out


def _pins(value, problems: list[str]) -> list[dict]:
    """apt.pins: [{packages: [patterns], version: V}], resolved the way the roles' APT pins hold
    them on the hosts (Pin-Priority 1001), so the bundle carries the pinned versions, not the newest."""
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append("apt.pins: must be a list of {packages: [...], version: ...}")
        return []
    out = []
    for i, pin in enumerate(value):
        where = f"apt.pins[{i}]"
        if not isinstance(pin, dict):
            problems.append(f"{where}: must be a mapping with packages and version")
            continue
        _unknown(where, pin, PIN_KEYS, problems)
        pkgs = _str_list(
            f"{where}.packages", pin.get("packages"), APT_PIN_PKG_RE, "package name or glob", problems
        )
        version = str(pin.get("version", "")).strip()
        if not APT_PIN_VERSION_RE.match(version):
            problems.append(
                f"{where}.version: {pin.get('version')!r} is not an APT version "
                "(e.g. '535.261.03-1' or '535.261.03*')"
            )
            continue
        if not pkgs:
            problems.append(f"{where}.packages: name at least one package (globs such as 'nvidia-*' allowed)")
            continue
        out.append({"packages": pkgs, "version": version})
    return out


def load(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise BundleBuildError(
            f"profile {p} does not exist; profiles live in bundles/*.yml (see docs/bundles.md)"
        )
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise BundleBuildError(f"profile {p} is not valid YAML: {exc}") from None
    return validate(data, source=f"profile {p}", base_dir=p.resolve().parent)
