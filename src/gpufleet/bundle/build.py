"""``gpufleet bundle build``: profile -> signed bundle directory, resumable and deterministic.

Order: validate the profile, make sure a signing key exists, resolve everything (apt in a lab
container of the target OS, wheels with pip's resolver, images, pinned files) so a name that does
not exist fails before anything is downloaded, check the disk, then download, index, sign.
State lives in ``OUT/.gpufleet-build/`` until the bundle is complete; a re-run resumes."""

from __future__ import annotations

import calendar
import json
import os
import shutil
import time
from pathlib import Path

from gpufleet._io import write_atomic
from gpufleet._progress import sayer
from gpufleet.bundle import BundleBuildError, aptrepo, artifacts, local_wheels, profile
from gpufleet.bundle import models as bundle_models
from gpufleet.bundle.signing import SigningKey

STATE_DIR = ".gpufleet-build"
MANAGED = ("apt", "wheels", "images", "files", "models", "keys")
# Room kept free beyond the known sizes: apt's partial files, indexes, the manifest.
DISK_MARGIN = 64 * 1000 * 1000


def _core():
    from ansible_collections.gpufleet.cluster.plugins.module_utils import bundle as core

    return core


say = sayer("bundle")


def prepare_out(out: Path, name: str) -> dict:
    """Load or start the build state; refuse directories that are not this bundle's."""
    core = _core()
    state_file = out / STATE_DIR / "state.json"
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        if state.get("name") != name:
            raise BundleBuildError(
                f"{out} holds an unfinished build of bundle '{state.get('name')}', not '{name}'; "
                "choose another -o directory (nothing was touched)"
            )
        say(f"resuming the unfinished build in {out}")
        return state
    state = {"name": name, "created": int(time.time()), "images": {}}
    if out.exists() and any(out.iterdir()):
        manifest = out / core.MANIFEST
        if not manifest.is_file():
            raise BundleBuildError(
                f"{out} is not empty and is not a gpufleet bundle; nothing there was touched. "
                "Choose an empty or new directory with -o."
            )
        old = json.loads(manifest.read_text())
        if old.get("name") != name:
            raise BundleBuildError(
                f"{out} holds bundle '{old.get('name')}', not '{name}'; choose another -o directory "
                "(use 'gpufleet bundle diff' to compare two bundles)"
            )
        say(f"rebuilding bundle '{name}' in place: files that are already there are not fetched again")
        state["created"] = _created_epoch(old.get("created")) or state["created"]
        (out / core.SIGNATURE).unlink(missing_ok=True)
        manifest.unlink()
    out.mkdir(parents=True, exist_ok=True)
    _save_state(out, state)
    return state


def _created_epoch(text) -> int | None:
    try:
        return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return None


def _save_state(out: Path, state: dict) -> None:
    d = out / STATE_DIR
    d.mkdir(exist_ok=True)
    write_atomic(d / "state.json", json.dumps(state, indent=1, sort_keys=True))


def check_disk(out: Path, need: dict[str, int], free: int | None = None) -> None:
    total = sum(need.values())
    free = shutil.disk_usage(out).free if free is None else free
    if total + DISK_MARGIN > free:
        from gpufleet._progress import human

        parts = ", ".join(f"{k} {human(v)}" for k, v in need.items() if v)
        raise BundleBuildError(
            f"not enough disk space in {out}: this build still needs about {human(total)} ({parts}; "
            f"wheel sizes are only known while downloading) plus {human(DISK_MARGIN)} of room, "
            f"but {human(free)} is free. Free space there or build into another -o directory; "
            "nothing was downloaded."
        )


def reusable(
    profile_path: str | Path, out: str | Path, signing_home=None, key: str | None = None
) -> dict | None:
    """The finished bundle in ``out`` when it can be used as it is, else None (with why, said).

    Reusable: built from this very profile (the validated profile the manifest records), signed by
    this machine's bundle key (gpgv), and every file the manifest lists present at its recorded size.
    Contents are not hashed here: ``gpufleet bundle verify`` and the bastion do that. Package
    updates published since the build are not picked up; build without ``--reuse`` to refresh."""
    core = _core()
    prof = profile.load(profile_path)
    out = Path(out).resolve()
    manifest_file = out / core.MANIFEST
    if (out / STATE_DIR).exists() or not manifest_file.is_file():
        say(f"--reuse: no finished bundle in {out}; building")
        return None
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, ValueError) as exc:
        say(f"--reuse: {manifest_file} is unreadable ({exc}); building")
        return None
    if manifest.get("profile") != json.loads(json.dumps(prof)):
        say(f"--reuse: the bundle in {out} was built from another profile; building")
        return None
    fpr = SigningKey(signing_home, key).fingerprint()
    sig = core.check_signature(str(out), fpr)
    if not sig["ok"]:
        say(
            f"--reuse: the bundle's signature does not check against this machine's key "
            f"({sig['problem']}); building"
        )
        return None
    for entry in manifest.get("files", []):
        path = out / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["size"]:
            say(f"--reuse: {entry['path']} is missing or has another size; building")
            return None
    carried = {e["path"]: e.get("sha256") for e in manifest.get("files", [])}
    for f in prof["wheels"]["files"]:
        # A local wheel rebuilt under the same name: the profile is the same, the wheel is not.
        src = Path(f["path"])
        if not src.is_file() or artifacts._sha256(src) != carried.get(f"wheels/{f['file']}"):
            say(f"--reuse: the local wheel {src} is not the one the bundle carries; building")
            return None
    say(f"--reuse: the bundle in {out} is this profile's, complete and signed by {fpr}; not rebuilt")
    return {
        "path": str(out),
        "name": prof["name"],
        "fingerprint": fpr,
        "files": len(manifest["files"]),
        "bytes": sum(e["size"] for e in manifest["files"]),
        "seconds": 0.0,
        "reused": True,
    }


def build(
    profile_path: str | Path,
    out: str | Path,
    signing_home=None,
    key: str | None = None,
    apt_rate_limit: int | None = None,
) -> dict:
    """Build (or resume, or refresh in place) the bundle of ``profile_path`` in ``out``.

    ``apt_rate_limit`` caps apt's download rate in bytes/s (None: no cap)."""
    core = _core()
    prof = profile.load(profile_path)
    # Local wheels are checked before anything is touched: pip resolves their dependencies below.
    local_wheels.check(prof["wheels"]["files"])
    out = Path(out).resolve()
    state = prepare_out(out, prof["name"])
    signer = SigningKey(signing_home, key)
    fpr, _ = signer.ensure(say=say)
    created = int(os.environ.get("SOURCE_DATE_EPOCH") or state["created"])
    t0 = time.monotonic()

    apt_wanted: list[dict] = []
    pool = out / aptrepo.POOL
    container = None
    try:
        if prof["apt"]["packages"]:
            from gpufleet.lab.image import ensure_image

            pool.mkdir(parents=True, exist_ok=True)
            say(
                f"resolving {len(prof['apt']['packages'])} apt packages "
                f"in a {prof['target']['os']} lab container"
            )
            container = aptrepo.BuildContainer(ensure_image(), {str(pool): "/bundle-pool"}).__enter__()
            aptrepo.enable_components(container, prof["apt"]["components"])
            aptrepo.apply_pins(container, prof["apt"].get("pins", []))
            apt_wanted = aptrepo.resolve(container, prof["apt"]["packages"])
            say(f"apt: {len(apt_wanted)} .deb files to carry (the requested packages and their dependencies)")
        wheels: list[dict] = []
        if prof["wheels"]["packages"] or prof["wheels"]["files"]:
            asked = len(prof["wheels"]["packages"]) + len(prof["wheels"]["files"])
            say(f"resolving {asked} wheels for Python {prof['wheels']['python']}")
            wheels = artifacts.resolve_wheels(prof["wheels"])
            say(f"wheels: {len(wheels)} wheels (with dependencies)")
        image_ids = artifacts.ensure_images(prof["images"]) if prof["images"] else {}
        debs = prof["apt"].get("debs", [])
        for where, pinned in (("files", prof["files"]), ("apt.debs", debs)):
            for f in pinned:
                if "path" in f and not Path(f["path"]).is_file():
                    raise BundleBuildError(f"{where}: {f['name']}: {f['path']} does not exist")
        bundle_models.check_sources(prof["models"])

        wanted_debs = {w["file"] for w in apt_wanted}
        clash = sorted(wanted_debs & {d["name"] for d in debs})
        if clash:
            raise BundleBuildError(
                f"apt.debs: {', '.join(clash)} is also a package apt resolved for apt.packages; "
                "carry it one way only (drop it from apt.debs, or its package from apt.packages)"
            )
        wanted_debs |= {d["name"] for d in debs}
        for stale in pool.glob("*.deb") if pool.is_dir() else []:
            if stale.name not in wanted_debs:
                stale.unlink()
        need = {
            "apt": sum(w["size"] for w in apt_wanted if not (pool / w["file"]).is_file())
            + sum(
                Path(d["path"]).stat().st_size
                for d in debs
                if "path" in d and not (pool / d["name"]).is_file()
            ),
            "images": sum(
                size
                for name, (ident, size) in image_ids.items()
                if state["images"].get(artifacts.image_file(name)) != ident
            ),
            "files": sum(
                Path(f["path"]).stat().st_size
                for f in prof["files"]
                if "path" in f and not (out / "files" / f["name"]).is_file()
            ),
            "models": bundle_models.need_bytes(prof["models"], out),
            "wheels": sum(
                Path(f["path"]).stat().st_size
                for f in prof["wheels"]["files"]
                if not (out / "wheels" / f["file"]).is_file()
            ),
        }
        check_disk(out, need)

        if apt_wanted:
            aptrepo.download(container, prof["apt"]["packages"], pool, apt_wanted, rate_limit=apt_rate_limit)
    finally:
        if container is not None:
            container.__exit__(None, None, None)

    if debs:
        # NVIDIA's own .deb files (the Container Toolkit): into the pool, indexed and signed with the rest.
        artifacts.fetch_pinned(debs, pool, "apt.debs")
    if wheels:
        artifacts.download_wheels(prof["wheels"], wheels, out / "wheels")
    if prof["images"]:
        artifacts.save_images(prof["images"], image_ids, out, state)
        _save_state(out, state)
    if prof["files"]:
        artifacts.fetch_files(prof["files"], out)
    signed_models = bundle_models.carry(prof["models"], out, signing_home, key, say=say)
    _remove_stale(out, prof, wheels)

    keys = out / "keys"
    keys.mkdir(exist_ok=True)
    (out / core.KEYRING).write_bytes(signer.export(armor=False))
    (out / core.ARMORED_KEY).write_bytes(signer.export(armor=True))
    if apt_wanted or debs:
        repo = out / "apt"
        aptrepo.write_index(repo, created, prof["name"], prof["target"]["arch"])
        signer.sign(repo / "Release", repo / "InRelease", "clear", at=created)
        signer.sign(repo / "Release", repo / "Release.gpg", "detach", at=created)

    manifest = make_manifest(out, prof, fpr, created, apt_wanted, wheels, image_ids, signed_models)
    write_atomic(out / core.MANIFEST, json.dumps(manifest, indent=1) + "\n")
    signer.sign(out / core.MANIFEST, out / core.SIGNATURE, "detach", at=created)
    shutil.rmtree(out / STATE_DIR)
    total = sum(e["size"] for e in manifest["files"])
    return {
        "path": str(out),
        "name": prof["name"],
        "fingerprint": fpr,
        "files": len(manifest["files"]),
        "bytes": total,
        "seconds": time.monotonic() - t0,
    }


def _remove_stale(out: Path, prof: dict, wheels: list[dict]) -> None:
    """Files an earlier build of this bundle left that the profile no longer asks for."""
    keep_images = {artifacts.image_file(i["name"]) for i in prof["images"]}
    for p in (out / "images").glob("*") if (out / "images").is_dir() else []:
        if p.relative_to(out).as_posix() not in keep_images:
            p.unlink()
    keep_files = {f["name"] for f in prof["files"]}
    for p in (out / "files").glob("*") if (out / "files").is_dir() else []:
        if p.name not in keep_files:
            p.unlink()
    if not wheels and (out / "wheels").is_dir():
        shutil.rmtree(out / "wheels")
    if not prof["apt"]["packages"] and not prof["apt"].get("debs") and (out / "apt").is_dir():
        shutil.rmtree(out / "apt")
    bundle_models.remove_stale(prof["models"], out)


def make_manifest(
    out: Path, prof: dict, fpr: str, created: int, apt_wanted, wheels, image_ids, signed_models=()
) -> dict:
    core = _core()
    requested_debs = {p.split("=")[0] for p in prof["apt"]["packages"]}
    uris = {w["file"]: w["uri"] for w in apt_wanted}
    deb_by_name = {d["name"]: d for d in prof["apt"].get("debs", [])}
    wheel_by_file = {w["file"]: w for w in wheels}
    image_by_file = {artifacts.image_file(i["name"]): i for i in prof["images"]}
    file_by_name = {f["name"]: f for f in prof["files"]}
    roles = ", ".join(prof["roles"]) or "the fleet"
    entries = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        if rel in (core.MANIFEST, core.SIGNATURE) or rel.startswith(STATE_DIR + "/"):
            continue
        top = rel.split("/", 1)[0]
        expected = None
        if top not in MANAGED:
            raise BundleBuildError(
                f"{rel} in {out} was not made by this build; move it out of the bundle directory"
            )
        if rel.startswith("apt/pool/") and path.name in deb_by_name:
            d = deb_by_name[path.name]
            kind, origin, purpose = "apt", d.get("url") or d["path"], d["purpose"]
        elif rel.startswith("apt/pool/"):
            pkg = path.name.split("_", 1)[0]
            kind, origin = "apt", uris.get(path.name, "apt")
            purpose = (
                f"requested for {roles}" if pkg in requested_debs else "dependency of the requested packages"
            )
        elif top == "apt":
            kind, origin, purpose = (
                "apt-index",
                "generated",
                "flat apt repository index, signed with the bundle key",
            )
        elif rel.endswith(".whl"):
            w = wheel_by_file.get(path.name, {})
            kind, origin = "wheel", f"pip: {w.get('name', path.name)}=={w.get('version', '?')}"
            if "local" in w:
                origin = f"local wheel: {w['local']}"
            purpose = f"requested for {roles}" if w.get("requested") else "dependency of the requested wheels"
        elif top == "wheels":
            kind, origin, purpose = "wheel-index", "generated", "pip requirements with sha256 pins"
        elif top == "images":
            img = image_by_file[rel]
            kind, origin, purpose = (
                "image",
                f"docker image {img['name']} ({image_ids[img['name']][0]})",
                img["purpose"],
            )
        elif top == "files":
            f = file_by_name[path.name]
            kind, origin, purpose = "file", f.get("url") or f["path"], f["purpose"]
        elif top == "models":
            kind, origin, purpose, expected = bundle_models.describe(rel, signed_models)
        else:
            kind, origin, purpose = "key", "gpg --export", "bundle signing public key (pin its fingerprint)"
        sha = core.sha256_file(str(path))
        if top == "models" and expected and sha != expected:
            raise BundleBuildError(
                f"{rel}: its copy does not match the model manifest (sha256 {sha}, signed {expected}); "
                "the source changed while the bundle was built: run the build again"
            )
        entry = {
            "path": rel,
            "size": path.stat().st_size,
            "sha256": sha,
            "kind": kind,
            "origin": origin,
            "purpose": purpose,
        }
        if kind == "image":
            # Machine-readable for the nodes (bundle_images checks the loaded image against it).
            entry["image_id"] = image_ids[image_by_file[rel]["name"]][0]
        if kind == "wheel" and "requires" in wheel_by_file.get(path.name, {}):
            # The wheel's dependencies in this bundle: a host installs the closure with hash pins,
            # and with those of each extra it asks for that the bundle carries complete.
            entry["requires"] = wheel_by_file[path.name]["requires"]
            entry["extras"] = wheel_by_file[path.name].get("extras", {})
        entries.append(entry)
    return {
        "schema": core.SCHEMA_VERSION,
        "name": prof["name"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
        "target": prof["target"],
        "signing_key": fpr,
        "roles": prof["roles"],
        "profile": prof,
        "base": None,
        "files": entries,
    }
