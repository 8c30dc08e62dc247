"""model_metalink with the real aria2c against local HTTP servers: a "bastion" and a "peer" on
127.0.0.1, each counting the body bytes it sent. Skipped, saying why, only where aria2c is absent
(Debian: apt-get install aria2; scripts/host-deps.sh installs it)."""

import hashlib
import os
import shutil

import model_testkit
import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_manifest as mm
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_metalink as ml
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_store as ms
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_transfer as mt
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_manifest import ModelError
from model_testkit import manifest_for

pytestmark = pytest.mark.skipif(
    shutil.which("aria2c") is None,
    reason="aria2c is not installed (Debian package aria2: apt-get install -y aria2; scripts/host-deps.sh)",
)

CHUNK = 64 * 1024
FAST = {"timeout": 5, "run_timeout": 120}


def blob(tag, size):
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(tag + str(counter).encode()).digest()
        counter += 1
    return bytes(out[:size])


FILES = {
    "config.json": b'{"hidden_size": 64}\n',
    "model-00001-of-00002.safetensors": blob(b"s1", 5 * CHUNK - 1000),
    "model-00002-of-00002.safetensors": blob(b"s2", 4 * CHUNK),
    "tokenizer/tokenizer.json": blob(b"tok", CHUNK + 17),
    "empty.txt": b"",
}
TOTAL = sum(len(data) for data in FILES.values())


def manifest():
    return manifest_for(FILES, chunk=CHUNK)


def Server(files, drop_after=None):
    return model_testkit.Server(files, drop_after=drop_after, http11=True)


def staged_ok(staging):
    for path, data in FILES.items():
        with open(os.path.join(staging, path), "rb") as handle:
            assert handle.read() == data, path
        assert not os.path.exists(os.path.join(staging, path) + ml.CONTROL)


def test_peers_carry_the_bytes_and_the_manifest_checks_them(tmp_path):
    staging = str(tmp_path / "stage")
    with Server(FILES) as bastion, Server(FILES) as peer:
        result = ml.fetch(manifest(), [bastion.url, peer.url], staging, **FAST)
    staged_ok(staging)
    assert result["exit"] == 0
    assert sorted(result["fetched"]) == sorted(p for p, d in FILES.items() if d)
    assert result["kept"] == ["empty.txt"]
    # The seed of the fan-out figure: the bastion is the least preferred source, so the peer
    # serves (nearly) everything and the bastion (nearly) nothing.
    assert peer.sent >= TOTAL // 2, (peer.sent, bastion.sent, TOTAL)
    assert peer.sent > bastion.sent
    assert peer.sent + bastion.sent >= TOTAL
    # A second run finds everything staged and verified: aria2c is not run, nothing is sent.
    with Server(FILES) as bastion, Server(FILES) as peer:
        again = ml.fetch(manifest(), [bastion.url, peer.url], staging, **FAST)
    assert again["fetched"] == [] and bastion.sent == peer.sent == 0


def test_a_peer_serving_a_corrupted_chunk_never_gets_bad_bytes_into_staging(tmp_path):
    staging = str(tmp_path / "stage")
    bad_path = "model-00001-of-00002.safetensors"
    corrupted = dict(FILES)
    data = bytearray(FILES[bad_path])
    data[2 * CHUNK : 3 * CHUNK] = bytes(b ^ 0xFF for b in data[2 * CHUNK : 3 * CHUNK])  # chunk 2 flipped
    corrupted[bad_path] = bytes(data)
    with Server(FILES) as bastion, Server(corrupted) as peer:
        ml.fetch(manifest(), [bastion.url, peer.url], staging, **FAST)
    # What aria2c 1.36.0 does (seen on every run here): the piece fails its sha-256 from the peer and
    # is fetched again from the bastion, so the run completes; the bastion sent at least that chunk.
    assert bastion.sent >= CHUNK, (bastion.sent, peer.sent)
    staged_ok(staging)


def test_a_bastion_that_goes_away_mid_way_is_resumed_by_a_rerun(tmp_path):
    staging = str(tmp_path / "stage")
    cut = TOTAL // 2
    bastion = Server(FILES, drop_after=cut)
    with bastion, pytest.raises(ModelError, match=r"aria2c exited \d+ .*partial files .* are kept"):
        ml.fetch(manifest(), [bastion.url], staging, **FAST)
    assert bastion.sent == cut
    with Server(FILES) as bastion:
        result = ml.fetch(manifest(), [bastion.url], staging, **FAST)
    staged_ok(staging)
    # Resumed, not started over: what was verified in the first run is not sent again. Allow one
    # piece of slack per large file (aria2c fetches them at once; a piece cut mid-way comes whole).
    assert bastion.sent <= TOTAL - cut + 3 * CHUNK < TOTAL, (bastion.sent, TOTAL, cut)
    assert result["fetched"], result


def test_install_with_the_real_aria2c_builds_and_activates(tmp_path):
    store = str(tmp_path / "store")
    man = manifest()
    with Server(FILES) as bastion, Server(FILES) as peer:
        done = mt.install(store, man, mm.dumps(man), [bastion.url, peer.url], engine="aria2", timeout=5)
    assert done["activated"] and ms.active_version(store, "tiny") == "1"
    for path, data in FILES.items():
        with open(os.path.join(ms.version_dir(store, "tiny", "1"), path), "rb") as handle:
            assert handle.read() == data
    assert peer.sent > bastion.sent
    assert not os.path.exists(ml.staging_dir(store, man))
