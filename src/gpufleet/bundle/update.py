"""Compare two bundles, make an update bundle of what changed, and apply one to its base."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from gpufleet.bundle import BundleBuildError
from gpufleet.bundle.build import _core


def _place(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def _fresh_dir(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise BundleBuildError(f"{out} is not empty; choose a new directory (nothing there was touched)")
    out.mkdir(parents=True, exist_ok=True)


def diff(old: Path, new: Path) -> dict:
    core = _core()
    return core.diff_manifests(core.load_manifest(str(old)), core.load_manifest(str(new)))


def make_update(old: Path, new: Path, out: Path) -> dict:
    """Write into ``out`` NEW's signed manifest plus only the files that differ from OLD.

    The manifest stays the full, signed list of NEW: whoever applies the update checks every
    file, from the update or from the base, against it."""
    core = _core()
    changes = diff(old, new)
    _fresh_dir(out)
    carried = [e for e in changes["added"]] + [n for _, n in changes["changed"]]
    carried_paths = {e["path"] for e in carried}
    for entry in core.load_manifest(str(new))["files"]:
        if entry["path"] in carried_paths or entry["kind"] == "key":
            _place(new / entry["path"], out / entry["path"])
    for name in (core.MANIFEST, core.SIGNATURE):
        shutil.copyfile(new / name, out / name)
    size = sum((out / p).stat().st_size for p in carried_paths)
    return {**changes, "carried_bytes": size, "path": str(out)}


def apply_update(update: Path, base: Path, out: Path, fingerprint: str, progress=None) -> dict:
    """Assemble the full bundle from an update and its base into ``out``; verified before and after."""
    core = _core()
    report = core.verify_bundle(str(update), fingerprint, base=str(base), progress=progress)
    if not report["ok"]:
        raise BundleBuildError(
            f"update {update} with base {base} failed verification; nothing was written:\n  - "
            + "\n  - ".join(core.format_problems(report))
        )
    _fresh_dir(out)
    manifest = core.load_manifest(str(update))
    for entry in manifest["files"]:
        src = update / entry["path"]
        _place(src if src.is_file() else base / entry["path"], out / entry["path"])
    for name in (core.MANIFEST, core.SIGNATURE):
        shutil.copyfile(update / name, out / name)
    final = core.verify_bundle(str(out), fingerprint, progress=progress)
    if not final["ok"]:
        raise BundleBuildError(
            f"the assembled bundle {out} failed verification: {core.format_problems(final)}"
        )
    return final
