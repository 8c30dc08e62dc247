# Copyright: gpufleet developers
# Apache-2.0
"""pip requirements with sha256 pins for wheels of a verified bundle manifest.

A node installs wheels from the bastion over HTTP; ``pip install --require-hashes -r FILE`` with the
lines made here refuses any wheel whose sha256 is not the one the signed manifest lists. The closure
of the requested wheels follows each wheel entry's ``requires`` (its dependencies in the bundle, as
``gpufleet bundle build`` resolved them), because ``--require-hashes`` needs every wheel pinned. A
specification with extras (``NAME[EXTRA]==VERSION``) also follows the entry's ``extras`` (each extra
the bundle carries complete: the names it adds, with the target's markers evaluated).

Host code: stdlib only, Python >= 3.8 (the ``bundle_wheel_requirements`` module ships it to nodes).
"""

from __future__ import annotations

import re

from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle import (
    BundleError,
    check_signature,
    load_manifest,
    signing_key_problem,
)

_OLD_BUNDLE = (
    "this bundle was built before gpufleet recorded wheel dependencies: rebuild it with "
    "`gpufleet bundle build`"
)


def normalize_name(name):
    """PEP 503 name: lower case, runs of '-', '_' and '.' as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


_SPEC = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?\s*(?:==\s*(?P<version>\S*))?"
)
_EXTRA = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _wheel_entries(manifest):
    """{normalized name: (name, version, sha256, requires, extras or None)} of the manifest's wheel
    entries; ``extras`` is None for a bundle built before gpufleet recorded them."""
    wheels = {}
    for entry in manifest.get("files", []):
        if entry.get("kind") != "wheel":
            continue
        if "requires" not in entry:
            raise BundleError(_OLD_BUNDLE)
        # Wheel file names are NAME-VERSION-...whl with '-' in NAME written as '_' (PEP 427).
        filename = entry["path"].rsplit("/", 1)[-1]
        parts = filename.split("-")
        if len(parts) < 5 or not filename.endswith(".whl"):
            raise BundleError(f"{entry['path']} is listed as a wheel but is not named NAME-VERSION-...whl")
        key = normalize_name(parts[0])
        extras = entry.get("extras")
        if extras is not None:
            extras = {normalize_name(x): [normalize_name(r) for r in names] for x, names in extras.items()}
        requires = [normalize_name(r) for r in entry["requires"]]
        wheels[key] = (key, parts[1], entry["sha256"].lower(), requires, extras)
    return wheels


def parse_wheel_spec(spec):
    """(PEP 503 name, version or None, sorted PEP 685 extras) of ``NAME``, ``NAME==VERSION``,
    ``NAME[EXTRA,...]`` or ``NAME[EXTRA,...]==VERSION``; BundleError when ``spec`` is none of them.
    The python_runtime role's checks (plugin_utils/python_runtime.py) use it too."""
    text = spec.strip() if isinstance(spec, str) else ""
    match = _SPEC.fullmatch(text)
    extras = []
    if match and match.group("extras") is not None:
        extras = [x.strip() for x in match.group("extras").split(",")]
    if (
        not match
        or (match.group("version") is not None and not match.group("version"))
        or not all(_EXTRA.fullmatch(x) for x in extras)
    ):
        raise BundleError(
            f"{spec!r} is not a wheel to install: write NAME, NAME==VERSION or NAME[EXTRA,...]==VERSION"
        )
    return (
        normalize_name(match.group("name")),
        match.group("version"),
        sorted({normalize_name(x) for x in extras}),
    )


def _extra_problem(spec, key, version, extra, recorded):
    if recorded is None:
        return (
            f"{spec} asks for the extra '{extra}', but this bundle was built before gpufleet recorded the "
            "dependencies of extras: rebuild it with `gpufleet bundle build`"
        )
    carried = ", ".join(sorted(recorded)) or "none"
    return (
        f"{spec} asks for the extra '{extra}', but the bundle does not carry the dependencies of "
        f"{key}[{extra}] (extras it carries complete: {carried}): put {key}[{extra}]=={version} in the "
        "bundle profile's wheels (wheels.packages, or extras on its wheels.files entry) and rebuild "
        "the bundle"
    )


def wheel_requirements(manifest, specs):
    """Lines ``name==version --hash=sha256:HEX`` (``name[extras]==...`` where extras were asked for),
    sorted, for ``specs`` and their dependencies.

    ``manifest`` is a bundle manifest already verified (signature and pinned key); ``specs`` are
    ``NAME`` or ``NAME==VERSION``, each optionally with ``[EXTRA,...]`` after the name. BundleError names
    a wheel the bundle lacks, a version other than the bundle's, an extra whose dependencies the bundle
    does not carry, or a bundle built before manifests listed wheel dependencies.
    """
    wheels = _wheel_entries(manifest)
    if not wheels:
        raise BundleError(
            "the bundle carries no wheels: add the packages to the bundle profile's wheels and rebuild it "
            "with `gpufleet bundle build`"
        )
    todo, asked = [], {}
    for spec in specs:
        key, version, extras = parse_wheel_spec(spec)
        if key not in wheels:
            raise BundleError(
                f"the bundle has no wheel {key} ({spec}): add it to the bundle profile's wheels and "
                "rebuild the bundle with `gpufleet bundle build`"
            )
        carried, recorded = wheels[key][1], wheels[key][4]
        if version is not None and carried != version:
            raise BundleError(
                f"{spec} was asked for but the bundle carries {key}=={carried}: put {key}=={version} "
                f"in the bundle profile's wheels and rebuild the bundle, or ask for {carried}"
            )
        for extra in extras:
            if recorded is None or extra not in recorded:
                raise BundleError(_extra_problem(spec, key, carried, extra, recorded))
            todo.extend(recorded[extra])
        asked.setdefault(key, set()).update(extras)
        todo.append(key)
    closure = set()
    while todo:
        key = todo.pop()
        if key in closure:
            continue
        if key not in wheels:
            raise BundleError(
                f"the bundle lists {key} as a dependency but carries no wheel for it: the bundle is "
                "inconsistent; rebuild it with `gpufleet bundle build`"
            )
        closure.add(key)
        todo.extend(wheels[key][3])
    lines = []
    for key in closure:
        name, version, digest = wheels[key][:3]
        extras = sorted(asked.get(key, ()))
        label = f"{name}[{','.join(extras)}]" if extras else name
        lines.append(f"{label}=={version} --hash=sha256:{digest}")
    return sorted(lines)


def verified_manifest(root, fingerprint, gpgv="gpgv"):
    """The manifest of the bundle files in ``root`` (manifest, signature, keyring), once its signature
    is the pinned key's and it names that key; BundleError says why not."""
    sig = check_signature(root, fingerprint, gpgv=gpgv)
    if not sig["ok"]:
        raise BundleError(f"the bundle manifest is refused: {sig['problem']}")
    manifest = load_manifest(root)
    problem = signing_key_problem(manifest, fingerprint)
    if problem:
        raise BundleError(f"the bundle manifest is refused: {problem}")
    return manifest
