"""Lab layer images (gpufleet.lab.layers): keyed by what made them, refused when stale."""

import json
import os

import pytest

from gpufleet.lab import layers
from gpufleet.lab.fleet import LabError


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.setattr(layers, "current_image_hash", lambda: "base1")
    monkeypatch.setattr(layers.dk, "require_daemon", lambda: "20.10")
    monkeypatch.setitem(
        layers.LAYERS, "t", {"produced_by": "molecule test -s x (why)", "inputs": ["roles", "b.yml"]}
    )
    (tmp_path / "roles" / "r" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "r" / "tasks" / "main.yml").write_text("- name: a\n")
    (tmp_path / "b.yml").write_text("x: 1\n")
    return tmp_path


def test_key_changes_with_any_input_and_the_base_image(tree, monkeypatch):
    key = layers.layer_key("t", tree)
    assert key == layers.layer_key("t", tree)
    (tree / "roles" / "r" / "tasks" / "main.yml").write_text("- name: b\n")
    edited = layers.layer_key("t", tree)
    assert edited != key
    (tree / "roles" / "r" / "tasks" / "new.yml").write_text("")
    added = layers.layer_key("t", tree)
    assert added != edited
    (tree / "roles" / "r" / "__pycache__").mkdir()
    (tree / "roles" / "r" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert layers.layer_key("t", tree) == added, "byte-code is not an input"
    monkeypatch.setattr(layers, "current_image_hash", lambda: "base2")
    assert layers.layer_key("t", tree) != added


def test_unknown_layer_is_named(tree):
    with pytest.raises(LabError, match="no lab layer named 'nope'; known: "):
        layers.layer_key("nope", tree)


def test_check_refuses_a_missing_image_with_what_to_run(tree, monkeypatch):
    monkeypatch.setattr(layers.dk, "inspect", lambda kind, name: None)
    with pytest.raises(LabError) as err:
        layers.check("t", tree)
    assert "gpufleet-lab-t:current does not exist" in str(err.value)
    assert "molecule test -s x" in str(err.value)


def test_check_refuses_an_image_made_from_other_inputs(tree, monkeypatch):
    labels = {layers.KEY_LABEL: "0" * 16, layers.SOURCE_LABEL: "c1"}
    monkeypatch.setattr(layers.dk, "inspect", lambda kind, name: {"Config": {"Labels": labels}})
    with pytest.raises(LabError) as err:
        layers.check("t", tree)
    assert "was made from other inputs (key 0000000000000000" in str(err.value)
    assert "nothing was started from the stale image" in str(err.value)
    labels[layers.KEY_LABEL] = layers.layer_key("t", tree)
    ok = json.loads(layers.check("t", tree))
    assert ok == {"image": "gpufleet-lab-t:current", "key": labels[layers.KEY_LABEL], "source": "c1"}


def test_commit_labels_and_tags_by_key(tree, monkeypatch):
    calls = []
    monkeypatch.setattr(layers.dk, "inspect", lambda kind, name: {"Id": "c"} if kind == "container" else None)
    key = layers.layer_key("t", tree)
    listed = f"gpufleet-lab-t:{key}\ngpufleet-lab-t:current\ngpufleet-lab-t:0123456789abcdef\n"

    def docker(*args, **kw):
        calls.append(args)
        return listed if args[:2] == ("image", "ls") else ""

    monkeypatch.setattr(layers.dk, "docker", docker)
    tag = layers.commit("node1", "t", tree)
    assert tag == f"gpufleet-lab-t:{key}"
    commit, retag, listing, prune = calls
    assert commit[0] == "commit" and commit[-2:] == ("node1", tag)
    assert f"{layers.KEY_LABEL}={key}" in commit[2]
    assert retag == ("tag", tag, "gpufleet-lab-t:current")
    assert listing[:2] == ("image", "ls")
    assert prune == ("rmi", "gpufleet-lab-t:0123456789abcdef"), "only the superseded image is removed"


def test_commit_of_a_missing_container_is_refused(tree, monkeypatch):
    monkeypatch.setattr(layers.dk, "inspect", lambda kind, name: None)
    with pytest.raises(LabError, match="container 'gone' does not exist"):
        layers.commit("gone", "t", tree)


def test_the_node_layer_is_keyed_by_the_collection_and_the_bundle():
    inputs = layers.LAYERS["node"]["inputs"]
    for needed in ("roles", "plugins", "bundles/lab.yml", ".cache/bundles/lab/manifest.json"):
        assert needed in inputs


def test_commit_unless_current_only_retags_an_image_with_this_key(tree, monkeypatch):
    """The airgap converge commits at its end; its idempotence run must change nothing."""
    calls = []
    key = layers.layer_key("t", tree)
    monkeypatch.setattr(
        layers.dk,
        "inspect",
        lambda kind, name: {"Id": "x"} if kind == "container" or name.endswith(key) else None,
    )
    monkeypatch.setattr(layers.dk, "docker", lambda *args, **kw: calls.append(args) or "")
    assert layers.commit("node1", "t", tree, unless_current=True) == f"gpufleet-lab-t:{key}"
    assert calls == [("tag", f"gpufleet-lab-t:{key}", "gpufleet-lab-t:current")], "no commit, nothing removed"
    calls.clear()
    monkeypatch.setattr(layers.dk, "inspect", lambda kind, name: {"Id": "x"} if kind == "container" else None)
    layers.commit("node1", "t", tree, unless_current=True)
    assert calls[0][0] == "commit", "no image with this key yet: committed"


def test_detached_commit_runs_in_the_background_holding_the_lock(tree, monkeypatch, tmp_path):
    """The airgap converge commits in the background (about 10 GB, minutes) and goes on; a second
    detached commit while the first runs commits nothing and says so (its idempotence run)."""
    monkeypatch.setattr(layers.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(layers.dk, "inspect", lambda kind, name: {"Id": "c"} if kind == "container" else None)
    monkeypatch.setattr(layers.dk, "docker", lambda *a, **k: pytest.fail(f"docker in the parent: {a}"))
    started = []

    class Child:
        pid = 4242

        def __init__(self, argv, **kw):
            started.append((argv, kw))
            fd = kw["pass_fds"][0]
            # The lock is taken before the child starts, and the child inherits it.
            with pytest.raises(BlockingIOError), open(layers._lock("t")) as other:
                layers.fcntl.flock(other, layers.fcntl.LOCK_EX | layers.fcntl.LOCK_NB)
            self.held = os.dup(fd)  # the child's copy keeps the lock after the parent closes

    monkeypatch.setattr(layers.subprocess, "Popen", Child)
    key = layers.layer_key("t", tree)
    assert layers.commit("node1", "t", tree, unless_current=True, detach=True) == f"gpufleet-lab-t:{key}"
    ((argv, kw),) = started
    assert argv[-9:-1] == ["lab", "layer", "commit", "node1", "--as", "t", "--root", str(tree)]
    assert argv[-1] == "--no-pause" and kw["start_new_session"] is True
    assert (tmp_path / "gpufleet-layer-t.log").exists()
    monkeypatch.setattr(layers.subprocess, "Popen", lambda *a, **k: pytest.fail("a second commit started"))
    assert layers.commit("node1", "t", tree, unless_current=True, detach=True) == f"gpufleet-lab-t:{key}"


def test_commit_without_pause_passes_the_flag(tree, monkeypatch):
    calls = []
    monkeypatch.setattr(layers.dk, "inspect", lambda kind, name: {"Id": "c"} if kind == "container" else None)
    monkeypatch.setattr(layers.dk, "docker", lambda *args, **kw: calls.append(args) or "")
    layers.commit("node1", "t", tree, pause=False)
    assert calls[0][:2] == ("commit", "--pause=false")
    calls.clear()
    layers.commit("node1", "t", tree)
    assert "--pause=false" not in calls[0]


def test_check_names_the_background_commits_log(tree, monkeypatch, tmp_path):
    monkeypatch.setattr(layers.tempfile, "gettempdir", lambda: str(tmp_path))
    (tmp_path / "gpufleet-layer-t.log").write_text("gpufleet: error: No such container\n")
    monkeypatch.setattr(layers.dk, "inspect", lambda kind, name: None)
    with pytest.raises(LabError, match=r"the last background commit's log: .*gpufleet-layer-t\.log"):
        layers.check("t", tree)
