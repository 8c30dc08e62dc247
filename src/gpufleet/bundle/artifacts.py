"""Wheels, container images and pinned files for a bundle; each step skips what is already there."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import unquote

from packaging.requirements import InvalidRequirement, Requirement

from gpufleet._progress import Bar
from gpufleet.bundle import BundleBuildError, local_wheels


def _pip(*args: str, quiet: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=quiet,
        text=True,
        check=False,
    )


def _target_args(wheels: dict) -> list[str]:
    py = wheels["python"].replace(".", "")
    args = [
        "--only-binary",
        ":all:",
        "--python-version",
        wheels["python"],
        "--implementation",
        "cp",
        "--abi",
        f"cp{py}",
    ]
    for plat in wheels["platform"]:
        args += ["--platform", plat]
    return args


def resolve_wheels(wheels: dict) -> list[dict]:
    """Resolve the requirements and their dependencies for the target (metadata only, nothing
    kept): a name that does not exist fails here, before anything is downloaded.

    The profile's local wheels (``wheels.files``) are requirements too, as direct references to
    their files (with their extras), so their dependencies come from the index like any wheel's;
    such an entry gets ``local``: the file to copy into the wheelhouse."""
    local = {f["name"]: f for f in wheels.get("files", [])}
    with tempfile.TemporaryDirectory(prefix="gpufleet-wheels-") as tmp:
        report = Path(tmp) / "report.json"
        proc = _pip(
            "install", "--dry-run", "--ignore-installed", "--quiet", "--target", str(Path(tmp) / "t"),
            "--report", str(report), *_target_args(wheels), *wheels["packages"],
            *(local_wheels.requirement(f) for f in wheels.get("files", [])),
        )  # fmt: skip
        if proc.returncode != 0:
            errors = [ln for ln in (proc.stderr or "").splitlines() if ln.startswith("ERROR")]
            raise BundleBuildError(
                "pip cannot resolve the profile's wheels for Python "
                f"{wheels['python']} on {wheels['platform'][0]} (nothing was downloaded):\n  - "
                + "\n  - ".join(errors or [(proc.stderr or "").strip()[-600:]])
            )
        data = json.loads(report.read_text())
    items = data.get("install", [])
    by_name = {_normalize(item["metadata"]["name"]): item["metadata"] for item in items}
    env = _marker_env(wheels)
    out = []
    for item in items:
        info = item.get("download_info", {})
        sha = (info.get("archive_info", {}).get("hashes") or {}).get("sha256")
        url = info.get("url", "")
        if not sha or not url.endswith(".whl"):
            raise BundleBuildError(
                f"pip resolved {item['metadata']['name']} to {url}, which is not a wheel with a sha256"
            )
        requires, extras = _requires(item["metadata"], by_name, env)
        wheel = {
            "name": item["metadata"]["name"],
            "version": item["metadata"]["version"],
            "file": unquote(url.rsplit("/", 1)[-1]),
            "sha256": sha,
            "requested": bool(item.get("requested")),
            "requires": requires,
            "extras": extras,
        }
        mine = local.get(_normalize(wheel["name"]))
        if mine is not None and url.startswith("file:") and wheel["file"] == mine["file"]:
            wheel["local"] = mine["path"]
        out.append(wheel)
    return sorted(out, key=lambda w: w["name"].lower())


def _normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of '-', '_' and '.' as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _marker_env(wheels: dict) -> dict[str, str] | None:
    """The environment markers of the bundle's target, as far as the profile says it (CPython on
    Linux, the profile's Python and the first platform tag's machine); None: markers kept as true."""
    py = str(wheels.get("python", ""))
    plat = (wheels.get("platform") or [""])[0]
    machine = re.sub(r"^(many|musl)?linux(\d+)?(_\d+)*_", "", plat) if "linux" in plat else ""
    if not py or not machine:
        return None
    return {
        "python_version": py,
        "python_full_version": f"{py}.0",
        "implementation_name": "cpython",
        "implementation_version": f"{py}.0",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": machine,
        "platform_release": "",
        "platform_version": "",
        "extra": "",
    }


def _needed(metadata: dict, extras: tuple[str, ...], env: dict[str, str] | None) -> list[Requirement]:
    """The Requires-Dist of ``metadata`` the target needs when the wheel is installed with ``extras``.

    A marker false for the target (and for each of ``extras``) leaves the requirement out; a marker
    that cannot be evaluated keeps it: listing an already-resolved wheel too many is harmless (the
    host installs the closure of these lists), leaving a needed one out is not."""
    out = []
    for line in metadata.get("requires_dist") or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and env is not None:
            try:
                if not any(req.marker.evaluate({**env, "extra": extra}) for extra in ("", *extras)):
                    continue
            except Exception:  # noqa: S110 - an unknown marker variable: keep it (see above)
                pass
        out.append(req)
    return out


def _dependencies(
    metadata: dict, extras: tuple[str, ...], by_name: dict[str, dict], env, seen: set | None = None
) -> tuple[set[str], set[str]]:
    """(names, missing) for ``metadata`` installed with ``extras``: the PEP 503 names of the resolved
    wheels (``by_name``: name -> metadata) it needs on the target, the extras' dependencies of a
    dependency asked for with extras (``B[x]``) included; and the names of requirements no resolved
    wheel satisfies (not there, or in a version outside the requirement's specifier)."""
    seen = set() if seen is None else seen
    names, missing = set(), set()
    for req in _needed(metadata, extras, env):
        name = _normalize(req.name)
        dep = by_name.get(name)
        if dep is None or not req.specifier.contains(dep["version"], prereleases=True):
            missing.add(name)
            continue
        names.add(name)
        key = (name, tuple(sorted(_normalize(x) for x in req.extras)))
        if key[1] and key not in seen:
            seen.add(key)
            more, gone = _dependencies(dep, key[1], by_name, env, seen)
            names |= more
            missing |= gone
    return names, missing


def _requires(metadata: dict, by_name: dict[str, dict], env) -> tuple[list[str], dict[str, list[str]]]:
    """(requires, extras) of a resolved wheel, for its manifest entry.

    ``requires``: the resolved wheels it needs on the target (Requires-Dist, markers evaluated for the
    target, extra-only requirements left out). ``extras``: for each extra it provides whose
    requirements the resolved set satisfies completely, the names that extra adds (a host asking
    for ``NAME[EXTRA]`` installs those too). An extra the bundle does not carry complete is left out,
    so a host cannot be handed half of it."""
    own = _normalize(metadata["name"])
    requires, _missing = _dependencies(metadata, (), by_name, env)
    extras = {}
    for extra in sorted({_normalize(x) for x in metadata.get("provides_extra") or []}):
        names, missing = _dependencies(metadata, (extra,), by_name, env)
        if not missing:
            extras[extra] = sorted(names - requires - {own})
    return sorted(requires - {own}), extras


def requirements_text(resolved: list[dict]) -> str:
    lines = [
        "# gpufleet bundle wheelhouse: every wheel pinned by version and sha256.",
        "# pip install --require-hashes --no-index --find-links <this directory> -r requirements.txt",
    ]
    lines += [f"{w['name']}=={w['version']} --hash=sha256:{w['sha256']}" for w in resolved]
    return "\n".join(lines) + "\n"


def download_wheels(wheels: dict, resolved: list[dict], dest: Path) -> None:
    """pip download, hash-checked, of exactly the resolved set; pip skips wheels already in dest."""
    dest.mkdir(parents=True, exist_ok=True)
    for stale in dest.glob("*.whl"):
        if stale.name not in {w["file"] for w in resolved}:
            stale.unlink()
    (dest / "requirements.txt").write_text(requirements_text(resolved))
    copy_local_wheels([w for w in resolved if "local" in w], dest)
    from_index = [w for w in resolved if "local" not in w]
    todo = [w for w in from_index if not (dest / w["file"]).is_file()]
    if not todo:
        print(f"wheels   {len(resolved)} wheels already in the bundle", file=sys.stderr)
        return
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
        req.write(requirements_text(from_index))
    try:
        proc = _pip(
            "download", "--no-deps", "--require-hashes", "--progress-bar", "on", "--dest", str(dest),
            *_target_args(wheels), "-r", req.name, quiet=False,
        )  # fmt: skip
    finally:
        os.unlink(req.name)
    if proc.returncode != 0:
        raise BundleBuildError("pip could not download the wheels (see its output above); re-run to resume")


def copy_local_wheels(local: list[dict], dest: Path) -> None:
    """Copy each local wheel (``wheels.files``) into the wheelhouse, keeping a copy that already has
    the sha256 pip resolved; nothing lands unless it has that sha256 (the file changed since)."""
    for w in local:
        target = dest / w["file"]
        if target.is_file() and _sha256(target) == w["sha256"]:
            continue
        tmp = target.with_name(target.name + ".partial")
        shutil.copyfile(w["local"], tmp)
        actual = _sha256(tmp)
        if actual != w["sha256"]:
            tmp.unlink()
            raise BundleBuildError(
                f"wheels.files: {w['local']} changed while the bundle was built (sha256 {actual}, resolved "
                f"{w['sha256']}); it was not added: run the build again"
            )
        tmp.replace(target)
        print(f"wheels   {w['file']} copied from {w['local']}", file=sys.stderr)


def image_file(name: str) -> str:
    """The bundle path of an image's tarball; the nodes' bundle_images module finds it the same way."""
    from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_images import image_file as path

    return path(name)


def image_id(name: str) -> tuple[str | None, int]:
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}} {{.Size}}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None, 0
    ident, size = proc.stdout.split()
    return ident, int(size)


def ensure_images(images: list[dict]) -> dict[str, tuple[str, int]]:
    """Every image present locally (pulled when missing); fail naming any that cannot be had."""
    found, missing = {}, []
    for img in images:
        ident, size = image_id(img["name"])
        if ident is None:
            pull = subprocess.run(
                ["docker", "pull", img["name"]], capture_output=True, text=True, check=False
            )
            ident, size = image_id(img["name"]) if pull.returncode == 0 else (None, 0)
            if ident is None:
                missing.append(
                    f"{img['name']}: not present locally and 'docker pull' failed: "
                    f"{pull.stderr.strip()[-200:]}"
                )
                continue
        found[img["name"]] = (ident, size)
    if missing:
        raise BundleBuildError("images the profile names cannot be had:\n  - " + "\n  - ".join(missing))
    return found


def save_images(images: list[dict], ids: dict, root: Path, state: dict) -> None:
    saved = state.setdefault("images", {})
    for img in images:
        rel = image_file(img["name"])
        ident, size = ids[img["name"]]
        if saved.get(rel) == ident and (root / rel).is_file():
            continue
        (root / "images").mkdir(exist_ok=True)
        tmp = root / (rel + ".partial")
        bar = Bar("image", size)
        proc = subprocess.run(
            ["docker", "save", "--output", str(tmp), img["name"]], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise BundleBuildError(f"docker save {img['name']} failed: {proc.stderr.strip()}")
        tmp.replace(root / rel)
        bar.update((root / rel).stat().st_size)
        bar.close(f", {img['name']}")
        saved[rel] = ident


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_files(files: list[dict], root: Path) -> None:
    """Copy or download each pinned file into ``files/``; nothing lands unless its sha256 matches."""
    fetch_pinned(files, root / "files", "files")


def fetch_pinned(files: list[dict], dest_dir: Path, key: str) -> None:
    """Copy or download each pinned file (``files``, ``apt.debs``) into ``dest_dir``, keeping one that
    already matches; nothing lands there unless its sha256 matches the pin. ``key`` names the
    profile key in messages."""
    for f in files:
        dest = dest_dir / f["name"]
        if dest.is_file() and _sha256(dest) == f["sha256"]:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        source = f.get("path") or f["url"]
        if "path" in f:
            src = Path(f["path"])
            if not src.is_file():
                raise BundleBuildError(f"{key}: {f['name']}: {src} does not exist")
            bar = Bar("file", src.stat().st_size)
            shutil.copyfile(src, tmp)
            bar.update(tmp.stat().st_size)
        else:
            try:
                with urllib.request.urlopen(f["url"], timeout=60) as resp:  # noqa: S310 - http(s)/file checked by the profile
                    total = int(resp.headers.get("Content-Length") or 0) or None
                    bar = Bar("file", total)
                    with tmp.open("wb") as out:
                        for block in iter(lambda: resp.read(1 << 20), b""):
                            out.write(block)
                            bar.add(len(block))
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise BundleBuildError(f"{key}: {f['name']}: cannot fetch {f['url']}: {exc}") from None
        actual = _sha256(tmp)
        if actual != f["sha256"]:
            tmp.unlink()
            raise BundleBuildError(
                f"{key}: {f['name']} from {source} has sha256 {actual}, but the profile pins {f['sha256']}; "
                "it was not added. Check the source, or update the pin if the new file is trusted."
            )
        tmp.replace(dest)
        bar.close(f", {f['name']} (sha256 matches the pin)")
