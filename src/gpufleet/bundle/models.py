"""Models a bundle carries: the profile's ``models:`` list, made into signed model versions.

In the bundle each model version is::

    models/NAME/VERSION.model.json       the model manifest (gpufleet model add), signed with the
    models/NAME/VERSION.model.json.asc   bundle key, so the nodes trust it by the pinned fingerprint
    models/NAME/VERSION/<files>          the model's files, as the manifest names them

so the bastion serves ``http://bastion/BUNDLE/models/NAME/VERSION/`` as a model source, and the
model_store role fetches from it with every chunk checked against the signed manifest. The bundle's
own manifest lists every one of these files too: ``gpufleet bundle verify`` covers them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from gpufleet.bundle import BundleBuildError

TOP = "models"
MODEL_KEYS = {"name", "version", "path", "chunk_size"}
SUFFIX = ".model.json"


def _mm():
    from ansible_collections.gpufleet.cluster.plugins.module_utils import model_manifest

    return model_manifest


def validate(value, base_dir: Path | None, problems: list[str]) -> list[dict]:
    """The profile's ``models`` list, normalized; every problem is appended to ``problems``."""
    mm = _mm()
    if value in (None, []):
        return []
    if not isinstance(value, list):
        problems.append("models: must be a list of {name, version, path}")
        return []
    out, seen = [], set()
    for i, entry in enumerate(value):
        where = f"models[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a mapping with name, version and path (the model's directory)")
            continue
        extra = sorted(set(entry) - MODEL_KEYS)
        if extra:
            known = ", ".join(sorted(MODEL_KEYS))
            problems.append(f"{where}: unknown keys {', '.join(extra)} (known: {known})")
        name, version, path = entry.get("name"), entry.get("version"), entry.get("path")
        version = str(version) if isinstance(version, (int, float)) else version
        bad = False
        for key, val in (("name", name), ("version", version)):
            if not isinstance(val, str) or not mm._NAME.fullmatch(val):
                problems.append(
                    f"{where}.{key}: {val!r} must be letters, digits and '._+-' (at most 128), "
                    "starting with a letter or digit"
                )
                bad = True
        if not isinstance(path, str) or not path:
            problems.append(f"{where}.path: the model's directory is required")
            bad = True
        chunk = entry.get("chunk_size", mm.DEFAULT_CHUNK_SIZE)
        if not isinstance(chunk, int) or not mm.MIN_CHUNK_SIZE <= chunk <= mm.MAX_CHUNK_SIZE:
            problems.append(
                f"{where}.chunk_size: {chunk!r} must be a number of bytes from {mm.MIN_CHUNK_SIZE} "
                f"to {mm.MAX_CHUNK_SIZE}"
            )
            bad = True
        if bad:
            continue
        if (name, version) in seen:
            problems.append(f"{where}: model {name} version {version} is listed twice")
            continue
        seen.add((name, version))
        p = Path(path).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        out.append({"name": name, "version": version, "path": os.path.normpath(p), "chunk_size": chunk})
    return out


def manifest_rel(model: dict) -> str:
    return f"{TOP}/{model['name']}/{model['version']}{SUFFIX}"


def files_rel(model: dict) -> str:
    return f"{TOP}/{model['name']}/{model['version']}"


def check_sources(models: list[dict]) -> None:
    """Fail before anything is downloaded when a model directory is missing or empty."""
    from gpufleet.models.api import model_files

    for m in models:
        src = Path(m["path"])
        if not src.is_dir() or not model_files(src):
            raise BundleBuildError(
                f"models: {m['name']} {m['version']}: {src} is not a directory holding the model's files "
                "(for the lab's model run 'gpufleet lab tiny-model DIR' first)"
            )


def need_bytes(models: list[dict], out: Path) -> int:
    """Bytes the carried copies still need (for the disk check)."""
    from gpufleet.models.api import model_files

    total = 0
    for m in models:
        src = Path(m["path"])
        for rel in model_files(src):
            if not _same(src / rel, out / files_rel(m) / rel):
                total += (src / rel).stat().st_size
    return total


def _same(src: Path, dst: Path) -> bool:
    try:
        a, b = src.stat(), dst.stat()
    except OSError:
        return False
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns


def carry(
    models: list[dict],
    out: Path,
    signing_home=None,
    key: str | None = None,
    say: Callable[[str], None] = print,
) -> list[dict]:
    """Sign a manifest for each model (resumable hashing) and copy its files into ``out``.

    A file whose copy already has the source's size and mtime is not copied again. Returns the
    signed manifests (``make_manifest`` checks each carried file against them)."""
    from gpufleet.models import ModelCommandError
    from gpufleet.models.api import add_model

    mm = _mm()
    signed = []
    for m in models:
        src = Path(m["path"])
        manifest_path = out / manifest_rel(m)
        say(f"model {m['name']} {m['version']}: hashing {src} and signing its manifest")
        try:
            add_model(
                src,
                m["name"],
                m["version"],
                output=manifest_path,
                chunk_size=m["chunk_size"],
                signing_home=signing_home,
                key=key,
                say=say,
            )
        except ModelCommandError as exc:
            raise BundleBuildError(f"models: {m['name']} {m['version']}: {exc}") from None
        manifest = mm.loads(mm.read(str(manifest_path)), str(manifest_path))
        dest = out / files_rel(m)
        copied = 0
        for entry in manifest["files"]:
            s, d = src / entry["path"], dest / entry["path"]
            if _same(s, d):
                continue
            d.parent.mkdir(parents=True, exist_ok=True)
            tmp = d.with_name(f".{d.name}.tmp")
            shutil.copy2(s, tmp)
            os.replace(tmp, d)
            copied += 1
        say(
            f"model {m['name']} {m['version']}: {len(manifest['files'])} files, "
            f"{mm.total_bytes(manifest)} bytes ({copied} copied)"
        )
        signed.append({"model": m, "manifest": manifest})
    return signed


def remove_stale(models: list[dict], out: Path) -> None:
    """Files under ``models/`` an earlier build left that the profile no longer asks for."""
    root = out / TOP
    if not root.is_dir():
        return
    keep_files = {manifest_rel(m) for m in models} | {manifest_rel(m) + ".asc" for m in models}
    keep_dirs = {files_rel(m) for m in models}
    for path in sorted(root.rglob("*"), reverse=True):
        rel = path.relative_to(out).as_posix()
        if path.is_file() or path.is_symlink():
            if rel not in keep_files and not any(rel.startswith(d + "/") for d in keep_dirs):
                path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()


def describe(rel: str, signed: list[dict]) -> tuple[str, str, str, str | None]:
    """(kind, origin, purpose, expected sha256 or None) of the bundle file ``rel`` under models/."""
    for item in signed:
        m, manifest = item["model"], item["manifest"]
        what = f"model {m['name']} version {m['version']}"
        if rel == manifest_rel(m):
            return "model-manifest", "gpufleet model add", f"{what}: manifest (files, chunk sha256)", None
        if rel == manifest_rel(m) + ".asc":
            return "model-signature", "gpg --detach-sign", f"{what}: manifest signature (bundle key)", None
        prefix = files_rel(m) + "/"
        if rel.startswith(prefix):
            inner = rel[len(prefix) :]
            for entry in manifest["files"]:
                if entry["path"] == inner:
                    return "model", str(Path(m["path"]) / inner), what, entry["sha256"]
    raise BundleBuildError(f"{rel} is not part of any model the profile lists; move it out of the bundle")
