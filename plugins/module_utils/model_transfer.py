# Copyright: gpufleet developers
# Apache-2.0
"""Fetching a model version into the store: parallel ranged GETs, every chunk verified as it lands.

For each object the store lacks, the engine writes into ``OBJECT.partial`` (allocated at full size)
and records each chunk whose sha256 matched the manifest in ``OBJECT.partial.chunks``; a later run
skips those chunks (resume after a lost source, a killed run or a reboot). Chunks are fetched in
parallel threads, spread over the sources (chunk ``i`` is asked of source ``i mod n`` first); a
chunk that fails (connection lost, short body, wrong sha256) is asked of the next source. Only when
every chunk is in is the file fsynced and renamed to its final name, so no partial file is ever at a
final path; chunks a resume takes over are read back and checked first (the sidecar is not synced
with the data).

Failures: a chunk that no source delivered intact (wrong sha256 from every one) refuses the object
and removes its partial data; a chunk no source could deliver at all (sources gone) keeps the
verified chunks, so running again resumes. The active version is never touched by a failed fetch.

Sources are base URLs of a model directory (``http://bastion/models/NAME/VERSION``, any mirror, or a
peer serving its own ``models/NAME/current``): the file ``a/b.json`` is fetched from
``SOURCE/a/b.json``. An ``s3://BUCKET/PREFIX`` source reads the object ``PREFIX/a/b.json`` with ranged
GetObject requests (``model_s3``, boto3 when the host has it). A source that fails for a reason that
holds for every chunk (wrong credentials, no such bucket, endpoint unreachable) is not asked again
in that run: its chunks go to the other sources at once.

Peers (fleet fan-out, rules in ``model_peers``): other nodes serving their store's objects; each
chunk is asked of the peers first, then of the sources, so a node takes from the bastion only what
no peer holds yet (a peer answers 404 for a file it does not hold whole; one that cannot be reached
is not asked again). Each file is put in place as soon as its last chunk lands, so peers can serve
it; with ``spread`` the nodes start evenly apart by bytes, so the bastion sends each file about once.

Host code: stdlib only (boto3 optional, for s3:// sources), Python >= 3.8.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from urllib.parse import urlsplit

from ansible_collections.gpufleet.cluster.plugins.module_utils import model_metalink
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_http import (
    NO_LIMIT,
    Throttle,
    TransferFailed,
    get_range,
    redact,
    source_url,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_manifest import (
    ModelError,
    chunk_count,
    chunk_range,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_peers import (
    check_peers,
    others_files,
    peer_url,
    spread_start,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_s3 import (
    S3Failure,
    S3Source,
    source_problem,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_store import (
    FILE_MODE,
    PARTIAL,
    SIDECAR,
    activate,
    build_version,
    check_disk,
    fsync_dir,
    makedirs,
    object_path,
    plan,
    read_sidecar,
    remove_quietly,
)

SCHEMES = ("http", "https", "s3")
ENGINES = ("builtin", "aria2")
LOCK = ".gpufleet-lock"


@contextlib.contextmanager
def store_lock(store):
    """Hold the store's lock file for one fetch; ModelError when another fetch holds it."""
    makedirs(store)
    fd = os.open(os.path.join(store, LOCK), os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ModelError(
                f"another model fetch is writing to the store {store} (it holds {LOCK}); "
                "run again when it has finished"
            ) from None
        yield
    finally:
        os.close(fd)


def check_sources(sources):
    """Raise ModelError for an empty list or a source this engine cannot read."""
    if not sources:
        raise ModelError("no sources: give at least one http(s) or s3:// URL of the model directory")
    for source in sources:
        parts = urlsplit(source)
        if parts.scheme == "s3":
            problem = source_problem(source)
            if problem:
                raise ModelError(f"source {redact(source)}: {problem}")
        elif parts.scheme not in SCHEMES or not parts.netloc:
            raise ModelError(
                f"source {redact(source)!r} is not an http://, https:// or s3:// URL of a model directory"
            )


class _Sources:
    """The sources of one fetch. ``get`` reads a byte range from one of them with the reader its
    scheme calls for (a ranged HTTP GET, or a ranged S3 GetObject); a source that failed for a reason
    that holds for every chunk is remembered in ``dead`` and not asked again.
    """

    def __init__(self, sources, timeout, throttle=NO_LIMIT, s3=None, peers=()):
        self.urls = list(sources)
        self.peers = list(peers)
        self.timeout = timeout
        self.throttle = throttle
        self.dead = {}  # source or peer -> why it is not asked again
        self.from_peers = 0  # bytes the peers delivered (verified or not)
        self._count = threading.Lock()
        try:
            self.s3 = {u: S3Source(u, s3, timeout) for u in self.urls if urlsplit(u).scheme == "s3"}
        except S3Failure as exc:
            raise ModelError(str(exc)) from None

    def name(self, source, path):
        """Where ``path`` is read from, without credentials, for messages."""
        if source in self.s3:
            return self.s3[source].name(path)
        return redact(source_url(source, path))

    def candidates(self, index):
        """(kind, base) to ask for chunk ``index``, in order: the peers, then the sources, each list
        spread by the chunk's index so parallel chunks go to different servers."""
        peers = [("peer", self.peers[(index + k) % len(self.peers)]) for k in range(len(self.peers))]
        return peers + [("source", self.urls[(index + k) % len(self.urls)]) for k in range(len(self.urls))]

    def get_peer(self, peer, entry, start, length, sink):
        """Bytes of the object ``entry`` from a peer's store; a peer that cannot be reached (no HTTP
        answer) is not asked again; one that answers 404 just does not hold the file yet."""
        url = peer_url(peer, entry["sha256"])
        if peer in self.dead:
            raise TransferFailed("transfer", f"{redact(url)}: not asked again ({self.dead[peer]})")
        try:
            got = get_range(url, start, length, self.timeout, self.throttle, sink)
        except TransferFailed as exc:
            if exc.status is None:
                self.dead.setdefault(peer, str(exc))
            raise
        with self._count:
            self.from_peers += got

    def get(self, source, path, start, length, sink):
        """Bytes ``[start, start + length)`` of ``path`` from ``source`` into ``sink``."""
        if source in self.dead:
            raise TransferFailed(
                "transfer", f"{self.name(source, path)}: not asked again ({self.dead[source]})"
            )
        reader = self.s3.get(source)
        if reader is None:
            get_range(source_url(source, path), start, length, self.timeout, self.throttle, sink)
            return
        try:
            sink(memoryview(reader.get(path, start, length, self.throttle)))
        except S3Failure as exc:
            if exc.fatal:
                self.dead.setdefault(source, str(exc))
            raise TransferFailed("transfer", str(exc)) from None


class _Partial:
    """One object being fetched: its ``.partial`` file and the sidecar of verified chunks."""

    def __init__(self, store, entry, chunk_size):
        self.entry = entry
        self.chunk_size = chunk_size
        self.final = object_path(store, entry["sha256"])
        self.partial = self.final + PARTIAL
        self.sidecar = self.final + SIDECAR
        self.lock = threading.Lock()
        self.done = set()
        self.fd = None
        self.wait_for = 0  # seconds to wait for a peer to hold this file (another node fetches it)
        self.waiting_since = None

    def open(self):
        """Open (resume) or create the partial file; returns the bytes already verified."""
        makedirs(os.path.dirname(self.final))
        size = self.entry["size"]
        try:
            resumable = os.path.getsize(self.partial) == size
        except OSError:
            resumable = False
        claimed = read_sidecar(self.sidecar, self.entry, self.chunk_size) if resumable else set()
        if not resumable:
            remove_quietly(self.sidecar)
        self.fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, FILE_MODE)
        os.ftruncate(self.fd, size)
        self.done = {index for index in claimed if self._intact(index)}
        return sum(chunk_range(i, size, self.chunk_size)[1] for i in self.done)

    def _intact(self, index):
        """Whether chunk ``index`` on disk has its sha256: the sidecar is not synced with the data (a
        sync per chunk costs throughput), so after a power loss it can claim what the disk never got."""
        start, length = chunk_range(index, self.entry["size"], self.chunk_size)
        digest = hashlib.sha256()
        while length > 0:
            block = os.pread(self.fd, min(1 << 20, length), start)
            if not block:
                return False
            digest.update(block)
            start += len(block)
            length -= len(block)
        return digest.hexdigest() == self.entry["chunks"][index]

    def todo(self):
        return [i for i in range(chunk_count(self.entry["size"], self.chunk_size)) if i not in self.done]

    def write(self, offset, view):
        """Write ``view`` at ``offset`` of the partial file (a chunk counts only once ``record``ed)."""
        written = 0
        while written < len(view):
            written += os.pwrite(self.fd, view[written:], offset + written)

    def record(self, index):
        with self.lock:
            self.done.add(index)
            tmp = self.sidecar + ".tmp"
            record = {
                "sha256": self.entry["sha256"],
                "chunk_size": self.chunk_size,
                "done": sorted(self.done),
            }
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
            os.replace(tmp, self.sidecar)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def discard(self):
        self.close()
        for path in (self.partial, self.sidecar, self.sidecar + ".tmp"):
            remove_quietly(path)

    def finish(self):
        """fsync and rename into place. Every chunk was checked against the signed manifest as it landed
        (or was read back on resume); the signed manifest binds the chunks to the file's sha256, so a
        second whole-file pass (a third of the throughput, reading the page cache) is not made."""
        os.fsync(self.fd)
        self.close()
        os.chmod(self.partial, FILE_MODE)
        os.replace(self.partial, self.final)
        remove_quietly(self.sidecar)
        fsync_dir(os.path.dirname(self.final))


def _try(part, index, sources, kind, base, problems):
    """One server for chunk ``index``, written into the partial file as it arrives: its length when
    the bytes match the manifest, else None (the reason appended to ``problems``; a peer that does
    not hold the file yet is no problem)."""
    entry = part.entry
    start, length = chunk_range(index, entry["size"], part.chunk_size)
    digest, at = hashlib.sha256(), [start]

    def sink(view):  # hashed and written block by block, as it arrives: no chunk held in memory
        digest.update(view)
        part.write(at[0], view)
        at[0] += len(view)

    try:
        if kind == "peer":
            sources.get_peer(base, entry, start, length, sink)
        else:
            sources.get(base, entry["path"], start, length, sink)
    except TransferFailed as exc:
        if kind != "peer" or exc.status is None:  # a peer's 404 is expected: not a problem
            problems.append(exc)
        return None
    got = digest.hexdigest()
    want = entry["chunks"][index]
    if got == want:
        return length
    where = redact(peer_url(base, entry["sha256"])) if kind == "peer" else sources.name(base, entry["path"])
    problems.append(
        TransferFailed(
            "checksum",
            f"{where}: chunk {index} (bytes {start}-{start + length - 1}) has sha256 "
            f"{got[:12]}..., the manifest says {want[:12]}...",
        )
    )
    return None


def _fetch_chunk(part, index, sources):
    """Fetch, verify and record one chunk: the peers first, the sources after; returns its length.

    A file another node of the fleet fetches from the bastion (``part.wait_for``: seconds) is asked
    of the peers again every second until one holds it or that time is up, then of the sources.
    Raises TransferFailed: 'checksum' when every source sent wrong bytes, else 'transfer'.
    """
    problems = []
    candidates = sources.candidates(index)
    peers = [c for c in candidates if c[0] == "peer"]
    if peers and part.wait_for and part.waiting_since is None:
        part.waiting_since = time.monotonic()
    while True:
        for kind, base in peers:
            length = _try(part, index, sources, kind, base, problems)
            if length is not None:
                part.record(index)
                return length
        left = (part.waiting_since or 0) + part.wait_for - time.monotonic()
        if not (peers and part.wait_for and left > 0 and any(p not in sources.dead for _k, p in peers)):
            break
        time.sleep(min(1.0, left))
    for kind, base in candidates[len(peers) :]:
        length = _try(part, index, sources, kind, base, problems)
        if length is not None:
            part.record(index)
            return length
    kind = "checksum" if all(p.kind == "checksum" for p in problems) else "transfer"
    raise TransferFailed(kind, "; ".join(str(p) for p in problems))


def _run_chunks(parts, sources, workers, progress, failures, finished):
    """Fetch every chunk still to do in a thread pool; failures by path into ``failures``.

    A file whose last chunk lands is finished at once (fsync, rename to its final name), not
    when every file is in: peers serve a node's objects as soon as they are whole. Each finished
    part goes into ``finished``: None, or the error that refused it.
    Returns the bytes fetched. On an interruption (Ctrl-C, a failing progress callback) the chunks
    not started yet are cancelled instead of all being fetched on the way out.
    """
    fetched = 0
    remaining = {id(part): len(part.todo()) for part in parts}
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=max(1, workers)))
        # Files another node fetches from the bastion wait for the peers in a pool of their own: a
        # chunk waiting for a peer must not hold a worker this node's own files need, and a file a
        # peer finishes early is taken from it while this node's own files still come in.
        waiting = pool
        if any(part.wait_for for part in parts):
            waiting = stack.enter_context(ThreadPoolExecutor(max_workers=max(1, workers)))
        futures = {
            (waiting if part.wait_for else pool).submit(_fetch_chunk, part, index, sources): part
            for part in parts
            for index in part.todo()
        }
        try:
            for future in as_completed(futures):
                part = futures[future]
                remaining[id(part)] -= 1
                try:
                    length = future.result()
                except Exception as exc:  # reported per file by the caller, with the others
                    failures.setdefault(part.entry["path"], []).append(exc)
                    continue
                fetched += length
                if progress is not None:
                    progress(length)
                if remaining[id(part)] == 0 and part.entry["path"] not in failures:
                    try:
                        part.finish()
                        finished[id(part)] = None
                    except (ModelError, OSError) as exc:
                        part.discard()
                        finished[id(part)] = exc
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return fetched


def fetch_objects(
    store,
    manifest,
    entries,
    sources,
    workers=4,
    timeout=60,
    progress=None,
    rate_limit=None,
    s3=None,
    peers=(),
    spread=(0, 1),
    peer_wait=0,
):
    """Fetch the objects of ``entries`` (from ``missing_objects``) into ``store``.

    ``sources``: http(s) or s3:// base URLs of the model directory, tried in turn per chunk;
    ``workers``: parallel chunk downloads (and as many again for files waiting for a peer: see
    ``_run_chunks``); ``timeout``: seconds per request; ``progress(nbytes)``:
    called with each verified chunk's size (resumed bytes are reported once at the start);
    ``rate_limit``: bytes per second over all threads and sources together (None: no limit);
    ``s3``: options of the s3:// sources (``model_s3.OPTIONS``; None: boto3's defaults);
    ``peers``: base URLs of peer stores, asked first; ``spread``: (this node's index, the fleet's
    node count): start ``index/count`` of the way through the files, so the nodes start evenly apart.
    Returns ``{"fetched": [paths], "bytes": downloaded, "resumed_bytes": skipped, "peer_bytes":
    from peers}``; raises
    ModelError naming every failed file and whether its partial data was kept (resume) or removed.
    """
    check_sources(sources)
    check_peers(peers)
    readers = _Sources(sources, timeout, Throttle(rate_limit), s3, peers)
    chunk_size = manifest["chunk_size"]
    sizes = [entry["size"] for entry in entries]
    waits = others_files(spread, sizes) if peers else set()
    parts = [_Partial(store, entry, chunk_size) for entry in entries]
    for k, part in enumerate(parts):
        part.wait_for = peer_wait if k in waits else 0
    if parts:
        k = spread_start(spread, sizes)
        parts = parts[k:] + parts[:k]
    resumed = 0
    try:
        for part in parts:
            resumed += part.open()
    except OSError as exc:
        for part in parts:
            part.close()
        raise ModelError(f"cannot write into the store {store}: {exc}") from None
    if progress is not None and resumed:
        progress(resumed)
    failures = {}  # path -> [TransferFailed or other exception]
    finished = {}  # id(part) -> None (in place) or the error that refused it
    try:
        fetched_bytes = _run_chunks(parts, readers, workers, progress, failures, finished)
    except BaseException:
        for part in parts:  # the pool has waited for its running threads: no write is in flight
            part.close()
        raise
    fetched, lines = [], []
    for part in parts:
        problems = failures.get(part.entry["path"])
        if id(part) in finished:
            if finished[id(part)] is None:
                fetched.append(part.entry["path"])
            else:
                lines.append(str(finished[id(part)]))
            continue
        if not problems:
            try:
                part.finish()
            except (ModelError, OSError) as exc:
                part.discard()
                lines.append(str(exc))
                continue
            fetched.append(part.entry["path"])
            continue
        refused = any(isinstance(p, TransferFailed) and p.kind == "checksum" for p in problems)
        if refused:
            part.discard()
            fate = "refused: no source sent the bytes the signed manifest lists; its partial data was removed"
        else:
            part.close()
            fate = f"{len(part.done)} verified chunks kept in {part.partial}; run again to resume"
        lines.append(f"{part.entry['path']}: {fate} ({problems[0]})")
    if lines:
        raise ModelError(
            f"fetching model {manifest['name']} {manifest['version']} failed; the active version is "
            "unchanged: " + " | ".join(lines)
        )
    return {
        "fetched": fetched,
        "bytes": fetched_bytes,
        "resumed_bytes": resumed,
        "peer_bytes": readers.from_peers,
    }


def install(
    store,
    manifest,
    raw,
    sources,
    activate_it=True,
    workers=4,
    timeout=60,
    progress=None,
    rate_limit=None,
    s3=None,
    engine="builtin",
    peers=(),
    spread=(0, 1),
    peer_wait=0,
):
    """Fetch what ``store`` lacks of a verified manifest, build the version, flip ``current`` to it.

    ``raw`` is the manifest's signed bytes (kept in the version directory); the other parameters are
    ``fetch_objects``'. ``engine="aria2"`` has aria2c carry the bytes instead (``model_metalink``:
    http(s) sources only, the first one - the bastion - least preferred; ``workers`` is its
    connections per server; every file is verified against the manifest before it is adopted).
    One fetch at a time per store (a lock file); the disk is checked before the first byte.
    Returns ``{"changed", "fetched", "bytes", "resumed_bytes", "built", "activated", "previous",
    "path"}``; ModelError on any failure, with ``current`` untouched.
    """
    if engine not in ENGINES:
        raise ModelError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    # aria2 reads only HTTP(S): say that first, before an s3:// source is judged on boto3's presence.
    (model_metalink.check_sources if engine == "aria2" else check_sources)(sources)
    with store_lock(store):
        how = dict(workers=workers, timeout=timeout, progress=progress, rate_limit=rate_limit, s3=s3)
        how.update(peers=peers, spread=spread, peer_wait=peer_wait)
        if engine == "aria2":
            how = dict(connections=workers, timeout=timeout, peers=peers)
        return _install(store, manifest, raw, sources, activate_it, how, engine)


def _install(store, manifest, raw, sources, activate_it, how, engine="builtin"):
    todo = plan(store, manifest, raw)
    if todo["fetch"]:
        check_disk(store, todo["fetch_bytes"])
    result = {"fetched": [], "bytes": 0, "resumed_bytes": 0, "peer_bytes": 0}
    if todo["fetch"] and engine == "aria2":
        result = model_metalink.install_objects(store, manifest, todo["fetch"], sources, **how)
    elif todo["fetch"]:
        result = fetch_objects(store, manifest, todo["fetch"], sources, **how)
    try:
        built = build_version(store, manifest, raw)
        activated = activate(store, manifest["name"], manifest["version"]) if activate_it else False
    except OSError as exc:
        raise ModelError(f"placing model {manifest['name']} {manifest['version']} failed: {exc}") from None
    result.update(
        built=built,
        activated=activated,
        previous=todo["active"],
        changed=bool(result["fetched"]) or built or activated,
        path=os.path.join(store, "models", manifest["name"], "versions", manifest["version"]),
    )
    return result
