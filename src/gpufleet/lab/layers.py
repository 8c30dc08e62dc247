"""Layered lab images: the state a real converge produced, committed once and reused.

The expensive part of provisioning a lab node (the NVIDIA driver's DKMS build, the CUDA toolkit
unpack) happens once per test run, in the air-gapped whole-stack scenario. Scenarios that only need
"a node gpufleet provisioned" start from that node, committed as an image:

    gpufleet lab layer commit gpufleet-airgap-node1 --as node   # after converge + idempotence
    gpufleet lab layer check node                               # before a scenario starts from it

The image is keyed by a hash of what produced it: the lab image it started from, the collection
(roles, plugins, playbooks), the bundle it installed from, and the producing scenario's files. A
scenario that would start from an image made by other inputs (a role edited since, another bundle)
is refused with what to run, instead of testing stale state.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpufleet._progress import sayer
from gpufleet.lab import docker as dk
from gpufleet.lab.fleet import LabError
from gpufleet.lab.image import IMAGE, current_image_hash

KEY_LABEL = "io.gpufleet.layer-key"
NAME_LABEL = "io.gpufleet.layer"
SOURCE_LABEL = "io.gpufleet.layer-source"
CURRENT = "current"
NOT_AGAIN = "not committed again"

# Each layer: what produces it, and the files (relative to the checkout) whose content it depends on.
LAYERS = {
    "node": {
        "produced_by": "molecule test -s airgap (site.yml converged air-gapped from the lab bundle; "
        "committed at the end of the converge, then proven idempotent and verified)",
        "inputs": [
            "roles",
            "plugins",
            "playbooks",
            "bundles/lab.yml",
            ".cache/bundles/lab/manifest.json",
            "molecule/airgap/molecule.yml",
            "molecule/airgap/converge.yml",
            "molecule/airgap/prepare.yml",
            "molecule/shared/prepare.yml",
        ],
    },
}

_say = sayer("lab")


def image_name(layer: str) -> str:
    return f"gpufleet-lab-{layer}"


def _spec(layer: str) -> dict:
    try:
        return LAYERS[layer]
    except KeyError:
        raise LabError(f"no lab layer named {layer!r}; known: {', '.join(sorted(LAYERS))}") from None


def _files(root: Path, rel: str) -> list[Path]:
    path = root / rel
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
        )
    return []


def layer_key(layer: str, root: str | Path = ".") -> str:
    """The hash of everything the layer's state was made from (missing inputs count as absent)."""
    root = Path(root).resolve()
    digest = hashlib.sha256()
    digest.update(f"base={IMAGE}@{current_image_hash()}\n".encode())
    for rel in _spec(layer)["inputs"]:
        found = _files(root, rel)
        digest.update(f"input={rel} files={len(found)}\n".encode())
        for path in found:
            digest.update(f"{path.relative_to(root)}\n".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _lock(layer: str) -> Path:
    """The lock a layer's background commit holds while it runs (its log sits beside it)."""
    return Path(tempfile.gettempdir()) / f"gpufleet-layer-{layer}.lock"


def commit(
    container: str,
    layer: str,
    root: str | Path = ".",
    unless_current: bool = False,
    detach: bool = False,
    pause: bool = True,
) -> str:
    """Commit ``container`` as the ``layer`` image, tagged with its key and as ``current``.

    ``unless_current``: when an image with this checkout's key exists already (committed earlier in
    this run, or by an earlier run from the same inputs), only point ``current`` at it and say so;
    the playbook that commits at the end of a converge then reports no change on its second run.

    ``detach``: commit in a background process and return at once. A node image is about 10 GB and
    ``docker commit`` copies it for minutes; the converge that made it goes on meanwhile (its
    idempotence run). The background commit does not pause the node (``pause`` False): it captures
    the node while that run, which changes nothing, goes on. While it runs it holds a lock, so a
    second detached commit of the layer says so and commits nothing; ``check`` fails until the image
    is there, and names the background commit's log.
    """
    spec = _spec(layer)
    dk.require_daemon()
    if not dk.inspect("container", container):
        raise LabError(f"container {container!r} does not exist; a layer is committed from a converged node")
    key = layer_key(layer, root)
    tag = f"{image_name(layer)}:{key}"
    if unless_current and dk.inspect("image", tag):
        dk.docker("tag", tag, f"{image_name(layer)}:{CURRENT}")
        _say(f"{tag} exists (made from this checkout's inputs): {NOT_AGAIN}")
        return tag
    if detach:
        return _commit_in_background(container, layer, root, tag)
    started = time.monotonic()
    _say(f"committing {container} as {tag} (made by {spec['produced_by']})")
    dk.docker(
        "commit",
        *(() if pause else ("--pause=false",)),
        "--change",
        f"LABEL {NAME_LABEL}={layer} {KEY_LABEL}={key} {SOURCE_LABEL}={container}",
        container,
        tag,
    )
    dk.docker("tag", tag, f"{image_name(layer)}:{CURRENT}")
    _say(f"{tag} ready in {time.monotonic() - started:.0f} s (also tagged :{CURRENT})")
    for old in superseded(layer, key):
        # A node image is several GB: keep one per layer. One still in use stays (docker refuses).
        dk.docker("rmi", old, check=False)
    return tag


def _commit_in_background(container: str, layer: str, root: str | Path, tag: str) -> str:
    lock_path = _lock(layer)
    lock = open(lock_path, "a")  # noqa: SIM115 - handed to the background process, which keeps it
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        _say(f"a background commit of layer {layer!r} is still running (lock {lock_path}): {NOT_AGAIN}")
        return tag
    log_path = lock_path.with_suffix(".log")
    with open(log_path, "w") as log:
        # The child inherits the locked file: the lock is held until the commit has ended.
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from gpufleet.cli import main; sys.exit(main(sys.argv[1:]))",
                *("lab", "layer", "commit", container, "--as", layer, "--root", str(root), "--no-pause"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(lock.fileno(),),
        )
    lock.close()
    _say(
        f"committing {container} as {tag} in the background (pid {child.pid}; the node is not paused; "
        f"log: {log_path})"
    )
    return tag


def superseded(layer: str, key: str) -> list[str]:
    """This layer's images tagged with another key than ``key`` (made from older inputs)."""
    out = dk.docker("image", "ls", image_name(layer), "--format", "{{.Repository}}:{{.Tag}}", check=False)
    keep = {f"{image_name(layer)}:{key}", f"{image_name(layer)}:{CURRENT}"}
    return [ref for ref in out.split() if ref not in keep and not ref.endswith(":<none>")]


def check(layer: str, root: str | Path = ".") -> str:
    """The ``current`` image of ``layer`` when it was made from exactly this checkout's inputs."""
    spec = _spec(layer)
    dk.require_daemon()
    want = layer_key(layer, root)
    name = f"{image_name(layer)}:{CURRENT}"
    info = dk.inspect("image", name)
    log = _lock(layer).with_suffix(".log")
    said = f" (the last background commit's log: {log})" if log.exists() else ""
    if not info:
        raise LabError(
            f"the lab layer image {name} does not exist. It is made by {spec['produced_by']}; "
            f"run that first ('make test' runs it before every scenario that starts from it){said}."
        )
    labels = (info.get("Config") or {}).get("Labels") or {}
    have = labels.get(KEY_LABEL)
    if have != want:
        raise LabError(
            f"the lab layer image {name} was made from other inputs (key {have}, this checkout's is "
            f"{want}: a role, the bundle or the lab image changed since). Make it again with "
            f"{spec['produced_by'].split(' (')[0]}; nothing was started from the stale image{said}."
        )
    return json.dumps({"image": name, "key": want, "source": labels.get(SOURCE_LABEL)})
