# Copyright: gpufleet developers
# Apache-2.0
"""Fleet fan-out, the rules ``model_transfer`` fetches by: where a peer holds an object, which peers
are acceptable, and where each node of a fleet starts in the model's files.

A peer is another node serving its model store's ``objects/`` read-only over HTTP (the model_store
role's nginx); an object is there only once it is whole and verified, at
``PEER/objects/<sha256[:2]>/<sha256>``. Host code: stdlib only, Python >= 3.8.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ansible_collections.gpufleet.cluster.plugins.module_utils.model_http import redact
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_manifest import ModelError


def peer_url(peer, sha256):
    """Where a peer serving its store read-only has the object ``sha256``."""
    return f"{peer.rstrip('/')}/objects/{sha256[:2]}/{sha256}"


def spread_start(spread, sizes):
    """Where node ``index`` of ``count`` starts in a list of files of ``sizes``: at the file that
    begins nearest to ``index/count`` of the bytes, so the nodes start evenly apart by bytes (a small
    config file does not count as a step) and each has a file or more of lead over the next one."""
    index, count = spread
    if count < 1 or not 0 <= index < count:
        raise ModelError(f"spread ({index}, {count}): the index must be from 0 to count - 1")
    total = sum(sizes)
    if not sizes or index == 0 or total == 0:
        return 0
    goal, starts, at = total * index / count, [], 0
    for size in sizes:
        starts.append(at)
        at += size
    return min(range(len(sizes)), key=lambda k: (abs(starts[k] - goal), k))


def others_files(spread, sizes):
    """Indexes of the files another node of the fleet starts on and fetches from the bastion, which
    this one should take from that node: every file outside this node's own segment when the fleet
    is split by ``spread_start``. Empty for a node alone."""
    index, count = spread
    if count <= 1:
        return set()
    starts = [spread_start((j, count), sizes) for j in range(count)]
    begin = starts[index]
    end = starts[index + 1] if index + 1 < count else len(sizes)
    mine = set(range(begin, end)) if end > begin else set()
    return {k for k in range(len(sizes)) if k not in mine}


def check_peers(peers):
    """Raise ModelError for a peer that is not an http(s) base URL."""
    for peer in peers:
        parts = urlsplit(peer)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ModelError(
                f"peer {redact(peer)!r} is not an http:// or https:// URL of a peer's model store"
            )
