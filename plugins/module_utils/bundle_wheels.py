# Copyright: gpufleet developers
# Apache-2.0
"""pip requirements with sha256 pins for wheels of a verified bundle manifest.

A node installs wheels from the bastion over HTTP; ``pip install --require-hashes -r FILE`` with the
lines made here refuses any wheel whose sha256 is not the one the signed manifest lists. The closure
of the requested wheels follows each wheel entry's ``requires`` (its dependencies in the bundle, as
``gpufleet bundle build`` resolved them), because ``--require-hashes`` needs every wheel pinned.

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


def _wheel_entries(manifest):
    """{normalized name: (name, version, sha256, requires)} of the manifest's wheel entries."""
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
        wheels[key] = (key, parts[1], entry["sha256"].lower(), [normalize_name(r) for r in entry["requires"]])
    return wheels


def parse_wheel_spec(spec):
    """(PEP 503 name, version or None) of ``NAME`` or ``NAME==VERSION``; BundleError when ``spec`` is
    neither. The python_runtime role's checks (plugin_utils/python_runtime.py) use it too."""
    text = spec.strip() if isinstance(spec, str) else ""
    name, sep, version = text.partition("==")
    name = name.strip()
    if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or (sep and not version.strip()):
        raise BundleError(f"{spec!r} is not a wheel to install: write NAME or NAME==VERSION")
    return normalize_name(name), version.strip() or None


def wheel_requirements(manifest, specs):
    """Lines ``name==version --hash=sha256:HEX``, sorted, for ``specs`` and their dependencies.

    ``manifest`` is a bundle manifest already verified (signature and pinned key); ``specs`` are
    ``NAME`` or ``NAME==VERSION``. BundleError names a wheel the bundle lacks, a version other than
    the bundle's, or a bundle built before manifests listed wheel dependencies.
    """
    wheels = _wheel_entries(manifest)
    if not wheels:
        raise BundleError(
            "the bundle carries no wheels: add the packages to the bundle profile's wheels and rebuild it "
            "with `gpufleet bundle build`"
        )
    todo = []
    for spec in specs:
        key, version = parse_wheel_spec(spec)
        if key not in wheels:
            raise BundleError(
                f"the bundle has no wheel {key} ({spec}): add it to the bundle profile's wheels and "
                "rebuild the bundle with `gpufleet bundle build`"
            )
        if version is not None and wheels[key][1] != version:
            raise BundleError(
                f"{spec} was asked for but the bundle carries {key}=={wheels[key][1]}: put {key}=={version} "
                f"in the bundle profile's wheels and rebuild the bundle, or ask for {wheels[key][1]}"
            )
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
    return sorted(
        f"{name}=={version} --hash=sha256:{digest}"
        for name, version, digest, _req in (wheels[key] for key in closure)
    )


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
