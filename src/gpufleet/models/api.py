"""The documented API behind ``gpufleet model``: write a signed model manifest, verify one.

Hashing is resumable: each file's entry is saved in ``OUTPUT.hashcache`` as soon as it is hashed,
keyed by path, size and mtime, so a ``model add`` interrupted in the middle of a 140 GB model
re-hashes only what it had not finished (the cache is removed once the manifest is signed).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from gpufleet._io import write_atomic
from gpufleet.bundle import BundleBuildError
from gpufleet.bundle.signing import SigningKey
from gpufleet.models import ModelCommandError

CACHE_SUFFIX = ".hashcache"
SKIP_DIRS = {".git", ".cache"}  # VCS metadata and huggingface_hub's download cache are not the model


def _mm():
    from ansible_collections.gpufleet.cluster.plugins.module_utils import model_manifest

    return model_manifest


def model_files(directory: Path) -> list[str]:
    """Relative POSIX paths of the regular files under ``directory`` (links to files followed), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.isfile(full):
                found.append(os.path.relpath(full, directory).replace(os.sep, "/"))
    return sorted(found)


def _load_cache(path: Path, chunk_size: int) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("chunk_size") != chunk_size:
        return {}
    return data.get("files") or {}


def default_output(name: str, version: str) -> Path:
    return Path(f"{name}-{version}.model.json")


def add_model(
    directory: str | Path,
    name: str,
    version: str,
    output: str | Path | None = None,
    chunk_size: int | None = None,
    signing_home: str | Path | None = None,
    key: str | None = None,
    progress: Callable[[int], None] | None = None,
    say: Callable[[str], None] = print,
    on_total: Callable[[int], None] | None = None,
) -> dict:
    """Hash ``directory`` into a model manifest, sign it with the bundle key, write both.

    directory     the model directory (safetensors shards, config.json, tokenizer files)
    name          the model's name in the store (letters, digits, ``._+-``)
    version       its version, e.g. the upstream revision or a date
    output        manifest path (default ``NAME-VERSION.model.json``); the signature is ``OUTPUT.asc``
    chunk_size    bytes per verified chunk (default 64 MiB)
    signing_home  GnuPG home of the bundle key (default as for ``gpufleet bundle``); created when empty
    key           fingerprint of the key to use when the home holds several
    progress      ``progress(nbytes)`` for each block hashed (a progress bar)
    say           receives one-line messages (key creation, resumed hashing)
    on_total      called once with the number of bytes still to hash, before hashing starts

    Returns ``{"manifest", "signature", "name", "version", "files", "bytes", "fingerprint", "hashed",
    "cached"}``; raises ModelCommandError for a bad directory, name or key.
    """
    mm = _mm()
    chunk_size = chunk_size or mm.DEFAULT_CHUNK_SIZE
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelCommandError(f"{directory} is not a directory; give the model's directory")
    output = Path(output) if output else default_output(name, version)
    if output.resolve().is_relative_to(directory.resolve()):
        raise ModelCommandError(f"write the manifest outside the model directory {directory} (-o)")
    rels = model_files(directory)
    if not rels:
        raise ModelCommandError(f"{directory} holds no files")
    signer = SigningKey(signing_home, key)
    try:
        fpr, _ = signer.ensure(say=say)
        # fail on a bad name before hashing a single byte
        mm.new_manifest(
            name, version, [{"path": "x", "size": 0, "sha256": "0" * 64, "chunks": []}], chunk_size, fpr
        )
    except (BundleBuildError, mm.BundleError) as exc:
        raise ModelCommandError(str(exc)) from None
    cache_path = output.with_name(output.name + CACHE_SUFFIX)
    cache = _load_cache(cache_path, chunk_size)
    entries, todo = [], []
    for rel in rels:
        st = (directory / rel).stat()
        hit = cache.get(rel)
        if hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
            entries.append(hit["entry"])
        else:
            todo.append((rel, st))
    if entries:
        say(f"resuming: {len(entries)} files hashed by an earlier run are not hashed again")
    if on_total is not None:
        on_total(sum(st.st_size for _rel, st in todo))
    for rel, st in todo:
        entry = mm.file_entry(str(directory / rel), rel, chunk_size, progress)
        entries.append(entry)
        cache[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "entry": entry}
        write_atomic(cache_path, json.dumps({"chunk_size": chunk_size, "files": cache}))
    try:
        manifest = mm.new_manifest(name, version, entries, chunk_size, fpr)
    except mm.BundleError as exc:
        raise ModelCommandError(f"{directory}: {exc}") from None
    raw = mm.dumps(manifest)
    write_atomic(output, raw.decode("utf-8"))
    signature = output.with_name(output.name + ".asc")
    try:
        signer.sign(output, signature, "detach")
    except BundleBuildError as exc:
        raise ModelCommandError(str(exc)) from None
    cache_path.unlink(missing_ok=True)
    return {
        "manifest": str(output),
        "signature": str(signature),
        "name": name,
        "version": version,
        "files": len(entries),
        "bytes": mm.total_bytes(manifest),
        "fingerprint": fpr,
        "hashed": len(todo),
        "cached": len(rels) - len(todo),
    }


def verify_model(
    manifest: str | Path,
    fingerprint: str,
    keyring: str | Path | None = None,
    signature: str | Path | None = None,
    directory: str | Path | None = None,
    signing_home: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Check a model manifest's signature against the pinned key; optionally a directory against it.

    manifest      the ``.model.json`` file
    fingerprint   the pinned bundle key fingerprint (required: a manifest is never trusted by itself)
    keyring       public key to check with (binary or armored); default: this machine's bundle key,
                  exported from ``signing_home`` (it must still be the pinned key)
    signature     detached signature (default ``MANIFEST.asc``)
    directory     a model directory to hash against the manifest (every file, size and sha256)
    signing_home  GnuPG home of the bundle key, for the default keyring
    progress      ``progress(nbytes)`` while hashing ``directory``

    Returns ``{"ok", "name", "version", "files", "bytes", "problems"}``; raises ModelCommandError
    when the signature is not trusted (the files are then not checked).
    """
    mm = _mm()
    parsed, _raw = _verified(manifest, fingerprint, keyring, signature, signing_home)
    problems = []
    if directory is not None:
        root = Path(directory)
        listed = {entry["path"] for entry in parsed["files"]}
        for entry in parsed["files"]:
            path = root / entry["path"]
            if not path.is_file():
                problems.append(f"missing: {entry['path']}")
                continue
            size, digest, _chunks = mm.hash_file(str(path), parsed["chunk_size"], progress)
            if size != entry["size"] or digest != entry["sha256"]:
                problems.append(
                    f"corrupt: {entry['path']} (sha256 {entry['sha256'][:12]}... expected, "
                    f"{digest[:12]}... found)"
                )
        problems += [f"extra: {rel}" for rel in model_files(root) if rel not in listed]
    return {
        "ok": not problems,
        "name": parsed["name"],
        "version": parsed["version"],
        "files": len(parsed["files"]),
        "bytes": mm.total_bytes(parsed),
        "problems": problems,
    }


def fetch_model(
    manifest: str | Path,
    fingerprint: str,
    sources: list[str],
    store: str | Path,
    keyring: str | Path | None = None,
    signature: str | Path | None = None,
    activate: bool = True,
    workers: int = 4,
    rate_limit: int | None = None,
    signing_home: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    timeout: int = 60,
    engine: str = "builtin",
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
) -> dict:
    """Fetch a signed model version into a local store, as the ``model_fetch`` module does on a node.

    manifest      the ``.model.json`` file; its signature is checked first (see ``verify_model``)
    fingerprint   the pinned bundle key fingerprint
    sources       http(s) base URLs or ``s3://BUCKET/PREFIX`` of the model directory, tried in turn
                  for each chunk (``s3://`` needs boto3 in this Python environment)
    store         the model store directory (created when absent)
    keyring       public key to check with (default: this machine's bundle key)
    signature     detached signature (default ``MANIFEST.asc``)
    activate      flip ``current`` to the version once complete
    workers       parallel chunk downloads
    rate_limit    bytes per second over all downloads (None: no cap)
    signing_home  GnuPG home of the bundle key, for the default keyring
    progress      ``progress(nbytes)`` per verified chunk
    on_total      called once with the bytes to fetch (before the first byte)
    timeout       seconds to wait for a source to answer one request
    engine        ``builtin`` (parallel ranged requests) or ``aria2`` (``aria2c`` on PATH carries the
                  bytes from a Metalink of the signed manifest; http(s) sources only, ``rate_limit``
                  does not apply, ``workers`` is the connections per source)
    s3_endpoint_url  S3-compatible storage (MinIO, Ceph RGW, ...) for ``s3://`` sources; None: AWS S3
                  (or boto3's ``AWS_ENDPOINT_URL_S3``)
    s3_region     the ``s3://`` sources' region; None: boto3's default

    S3 credentials are never parameters here: boto3's own chain supplies them (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``~/.aws``, an instance role),
    and no message holds them.

    Returns ``model_transfer.install``'s result; raises ModelCommandError on any failure (the
    active version is then unchanged).
    """
    mm = _mm()
    from ansible_collections.gpufleet.cluster.plugins.module_utils import (
        model_s3,
        model_store,
        model_transfer,
    )

    if engine == "builtin" and not model_s3.HAS_BOTO3:
        s3_sources = [s for s in sources if urlsplit(s).scheme == "s3"]
        if s3_sources:
            raise ModelCommandError(
                f"source {s3_sources[0]}: s3:// sources need boto3 in the Python environment gpufleet "
                f"runs in ({sys.executable} -m pip install boto3), or give http(s) sources only"
            )
    parsed, raw = _verified(manifest, fingerprint, keyring, signature, signing_home)
    # no credential options: model_s3 then leaves them to boto3's chain (environment, ~/.aws, role)
    s3 = {"endpoint_url": s3_endpoint_url, "region": s3_region}
    try:
        if on_total is not None:
            on_total(model_store.plan(str(store), parsed, raw)["fetch_bytes"])
        return model_transfer.install(
            str(store),
            parsed,
            raw,
            sources,
            activate,
            workers,
            timeout=timeout,
            progress=progress,
            rate_limit=rate_limit,
            s3=s3,
            engine=engine,
        )
    except (mm.BundleError, OSError) as exc:
        raise ModelCommandError(_without_env_secrets(str(exc))) from None


# boto3 reads these from the environment; model_s3 scrubs only the credentials it was given
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def _without_env_secrets(text: str) -> str:
    """``text`` with the values of the secret AWS_* variables replaced by ``***``."""
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value:
            text = text.replace(value, "***")
    return text


def rollback_model(store: str | Path, name: str) -> dict:
    """Point ``current`` back at the version before the last flip (``previous``); nothing is fetched.

    store   the model store directory
    name    the model's name

    Returns ``{"current", "previous"}``; raises ModelCommandError when there is nothing to go back to.
    """
    from ansible_collections.gpufleet.cluster.plugins.module_utils import model_store

    try:
        now = model_store.rollback(str(store), name)
        return {"current": now, "previous": model_store.previous_version(str(store), name)}
    except (_mm().BundleError, OSError) as exc:
        raise ModelCommandError(str(exc)) from None


def _verified(manifest, fingerprint, keyring, signature, signing_home) -> tuple[dict, bytes]:
    """``(manifest, raw)`` once the signature is good; the keyring defaults to this machine's key."""
    mm = _mm()
    with tempfile.TemporaryDirectory(prefix="gpufleet-model-key-") as scratch:
        if keyring is None:
            try:
                exported = SigningKey(signing_home).export(armor=False)
            except BundleBuildError as exc:
                raise ModelCommandError(
                    f"give --keyring: no local bundle key to check with ({exc})"
                ) from None
            keyring = Path(scratch) / "key.gpg"
            keyring.write_bytes(exported)
        try:
            return mm.verify_signed(
                str(manifest), fingerprint, str(keyring), str(signature) if signature else None
            )
        except mm.BundleError as exc:
            raise ModelCommandError(str(exc)) from None
