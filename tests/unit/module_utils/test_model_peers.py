"""Fleet fan-out: peers (other nodes serving their store's objects read-only) are asked first, the
sources (the bastion) only for what no peer holds; wrong bytes from a peer are refused and fetched
elsewhere; an unreachable peer is not asked again; nodes start on different files."""

import hashlib
import os
import socket
import threading
import time
import xml.etree.ElementTree as ET

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_metalink
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_peers as mp
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_store as ms
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_transfer as mt
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_manifest import ModelError
from model_testkit import Server, make_files, manifest_for

FILES = make_files()
MANIFEST = manifest_for(FILES)
SHARD2 = "model-00002-of-00002.safetensors"


def objects_of(paths):
    """What a peer's store serves: objects/<sha[:2]>/<sha> for each of ``paths``."""
    out = {}
    for path in paths:
        sha = hashlib.sha256(FILES[path]).hexdigest()
        out[f"objects/{sha[:2]}/{sha}"] = FILES[path]
    return out


def stored(store):
    return {e["path"]: open(ms.object_path(str(store), e["sha256"]), "rb").read() for e in MANIFEST["files"]}


def test_a_file_a_peer_holds_comes_from_the_peer_and_the_rest_from_the_bastion(tmp_path):
    with Server(FILES) as bastion, Server(objects_of([SHARD2])) as peer:
        got = mt.fetch_objects(str(tmp_path), MANIFEST, MANIFEST["files"], [bastion.url], peers=[peer.url])
        assert SHARD2 not in bastion.paths_requested()
        assert got["peer_bytes"] == len(FILES[SHARD2])
        assert got["bytes"] == sum(len(d) for d in FILES.values())
    assert stored(tmp_path) == FILES


def test_wrong_bytes_from_a_peer_are_refused_and_fetched_from_the_bastion(tmp_path):
    lying = objects_of([SHARD2])
    with Server(FILES) as bastion, Server(lying, corrupt=set(lying)) as peer:
        got = mt.fetch_objects(str(tmp_path), MANIFEST, MANIFEST["files"], [bastion.url], peers=[peer.url])
        assert set(lying) <= peer.paths_requested(), "the peer was asked first"
        assert SHARD2 in bastion.paths_requested()
        assert SHARD2 in got["fetched"] and got["peer_bytes"] == len(FILES[SHARD2])
    assert stored(tmp_path)[SHARD2] == FILES[SHARD2]


def test_an_unreachable_peer_is_asked_once(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    asked = []
    real = mt.get_range

    def counting(url, *args, **kw):
        asked.append(url)
        return real(url, *args, **kw)

    monkeypatch.setattr(mt, "get_range", counting)
    with Server(FILES) as bastion:
        got = mt.fetch_objects(
            str(tmp_path), MANIFEST, MANIFEST["files"], [bastion.url], peers=[dead], workers=1
        )
    assert sum(url.startswith(dead) for url in asked) == 1
    assert got["peer_bytes"] == 0 and stored(tmp_path) == FILES


def test_spread_starts_the_nodes_evenly_apart(tmp_path):
    entries = [e for e in MANIFEST["files"] if e["size"]]
    with Server(FILES) as bastion:
        mt.fetch_objects(str(tmp_path), MANIFEST, entries, [bastion.url], workers=1, spread=(1, 2))
        first = bastion.requests[0][0]
    sizes = [e["size"] for e in entries]
    assert first == entries[mt.spread_start((1, 2), sizes)]["path"] != entries[0]["path"]
    # by bytes: a small config file first is no step; 8 shards of 256 MiB over 4 nodes, 2 apart
    shards = [60] + [256 << 20] * 8
    assert [mt.spread_start((i, 4), shards) for i in range(4)] == [0, 3, 5, 7]
    assert mt.spread_start((0, 1), []) == 0 and mt.spread_start((1, 2), [0, 0]) == 0
    with pytest.raises(ModelError, match=r"spread \(4, 4\): the index must be from 0 to count - 1"):
        mt.spread_start((4, 4), shards)


def test_peers_must_be_http_urls(tmp_path):
    with pytest.raises(ModelError, match=r"peer 'ftp://node2' is not an http:// or https:// URL"):
        mt.fetch_objects(str(tmp_path), MANIFEST, MANIFEST["files"], ["http://b"], peers=["ftp://node2"])


def test_metalink_puts_peer_objects_ahead_of_every_source():
    text = model_metalink.metalink(
        MANIFEST, ["http://bastion/m", "http://mirror/m"], files=[SHARD2], peers=["http://node2:8090/"]
    )
    ns = {"m": model_metalink.NAMESPACE}
    urls = {u.text: int(u.get("priority")) for u in ET.fromstring(text).findall(".//m:url", ns)}
    sha = hashlib.sha256(FILES[SHARD2]).hexdigest()
    assert urls == {
        f"http://node2:8090/objects/{sha[:2]}/{sha}": 1,
        f"http://mirror/m/{SHARD2}": 2,
        f"http://bastion/m/{SHARD2}": 3,
    }


def test_each_file_is_in_place_as_soon_as_its_last_chunk_lands(tmp_path):
    """Peers can only serve whole files: a file must not wait for the rest of the model."""
    entries = [e for e in MANIFEST["files"] if e["size"]]
    first = ms.object_path(str(tmp_path), entries[0]["sha256"])
    seen = []
    with Server(FILES) as bastion:
        mt.fetch_objects(
            str(tmp_path),
            MANIFEST,
            entries,
            [bastion.url],
            workers=1,
            progress=lambda n: seen.append(os.path.exists(first)),
        )
    assert seen[-1] and seen.index(True) < len(seen) - 1, "the first file was placed before the last chunk"


def _two_halves():
    a, b = "model-00001-of-00002.safetensors", SHARD2
    return [e for e in MANIFEST["files"] if e["path"] in (a, b)], a


def test_a_file_of_another_nodes_part_is_awaited_from_the_peers(tmp_path):
    entries, first = _two_halves()  # node 1 of 2 starts on the second file; the first is node 0's
    with Server(FILES) as bastion, Server({}) as peer:
        later = threading.Timer(1.2, lambda: peer.files.update(objects_of([first])))
        later.start()
        got = mt.fetch_objects(
            str(tmp_path), MANIFEST, entries, [bastion.url], peers=[peer.url], spread=(1, 2), peer_wait=20
        )
        later.join()
        assert first not in bastion.paths_requested() and SHARD2 in bastion.paths_requested()
    assert got["peer_bytes"] == len(FILES[first])


def test_a_peers_file_comes_in_while_this_nodes_own_file_still_does(tmp_path):
    """Waiting for peers takes workers of its own: with one worker busy on this node's own file (from a
    slow bastion), the file a peer already holds is fetched and placed before the own file is done."""
    entries, first = _two_halves()  # node 1 of 2: its own file is SHARD2, the first is node 0's
    seen = []
    at = {e["path"]: ms.object_path(str(tmp_path), e["sha256"]) for e in entries}
    with Server(FILES, delay=0.2) as bastion, Server(objects_of([first])) as peer:
        got = mt.fetch_objects(
            str(tmp_path), MANIFEST, entries, [bastion.url], peers=[peer.url], spread=(1, 2),
            peer_wait=20, workers=1,
            progress=lambda n: seen.append((os.path.exists(at[first]), os.path.exists(at[SHARD2]))),
        )  # fmt: skip
        assert first not in bastion.paths_requested()
    assert got["peer_bytes"] == len(FILES[first])
    assert (True, False) in seen, f"the peer's file was placed only after this node's own: {seen}"


def test_the_wait_ends_and_the_bastion_is_asked(tmp_path):
    entries, first = _two_halves()
    with Server(FILES) as bastion, Server({}) as peer:
        t0 = time.monotonic()
        got = mt.fetch_objects(
            str(tmp_path), MANIFEST, entries, [bastion.url], peers=[peer.url], spread=(1, 2), peer_wait=1
        )
        assert first in bastion.paths_requested() and 1 <= time.monotonic() - t0 < 10
    assert got["peer_bytes"] == 0 and sorted(got["fetched"]) == sorted(e["path"] for e in entries)


def test_others_files_are_the_files_outside_this_nodes_part():
    shards = [60] + [256 << 20] * 8
    assert mp.others_files((1, 4), shards) == set(range(9)) - {3, 4}
    assert mp.others_files((3, 4), shards) == set(range(7))
    assert mp.others_files((0, 1), shards) == set()
