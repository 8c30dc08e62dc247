"""Drain/undrain hooks against fake ``scontrol`` and ``kubectl`` executables (see fake_schedulers.py)."""

import json
import os
import time

import pytest
from fake_schedulers import kube_fixture, slurm_fixture  # noqa: F401

from gpufleet.verify import drain as D

REASON = "gpufleet verify quick 2026-11-21T10:00:00Z"


def slurm_drainer(fake, state_file, **kw):
    return D.make_drainer("slurm", state_file, executable=fake.exe, **kw)


def kube_drainer(fake, state_file, **kw):
    return D.make_drainer("kubernetes", state_file, executable=fake.exe, **kw)


def state_records(state_file, kind):
    return json.loads(state_file.read_text())["drained"].get(kind, {})


# ---------------------------------------------------------------------------------------------------
# Slurm


def test_slurm_drain_skips_nodes_an_admin_drained_or_downed(slurm, tmp_path):
    state_file = tmp_path / "var" / "drain-state.json"
    out = slurm_drainer(slurm, state_file).drain(["gpu01", "gpu02", "gpu03", "gpu04"], REASON)

    assert out["drained"] == ["gpu01", "gpu02"]
    assert out["already"] == ["gpu03", "gpu04"]
    assert out["errors"] == {}
    assert "bad PSU, ticket 4711" in out["notes"]["gpu03"]
    # Nothing was sent to the admin's nodes; their reasons are untouched.
    updated = [c[1] for c in slurm.calls("update")]
    assert updated == ["NodeName=gpu01", "NodeName=gpu02"]
    assert slurm.calls("update")[0] == ["update", "NodeName=gpu01", "State=DRAIN", f"Reason={REASON}"]
    assert slurm.node("gpu03") == {"state": "IDLE+DRAIN", "reason": "bad PSU, ticket 4711", "by": "alice"}
    assert slurm.node("gpu01")["state"] == "IDLE+DRAIN"
    assert slurm.node("gpu02")["state"] == "MIXED+DRAIN"
    # Only gpufleet's drains are recorded.
    assert set(state_records(state_file, "slurm")) == {"gpu01", "gpu02"}
    assert state_records(state_file, "slurm")["gpu01"]["mark"] == REASON


def test_slurm_undrain_releases_only_what_gpufleet_drained(slurm, tmp_path):
    state_file = tmp_path / "drain-state.json"
    drainer = slurm_drainer(slurm, state_file)
    drainer.drain(["gpu01", "gpu03"], REASON)
    slurm.clear_calls()

    out = drainer.undrain(["gpu01", "gpu03", "gpu04"])

    assert out["undrained"] == ["gpu01"]
    assert out["kept"] == ["gpu03", "gpu04"]
    assert out["errors"] == {}
    assert slurm.calls("update") == [["update", "NodeName=gpu01", "State=RESUME"]]
    assert slurm.node("gpu01")["state"] == "IDLE"
    assert slurm.node("gpu03")["state"] == "IDLE+DRAIN"
    assert slurm.node("gpu04")["state"] == "DOWN"
    assert state_records(state_file, "slurm") == {}
    assert state_file.exists()  # never deleted, even when empty


def test_slurm_reason_changed_by_admin_keeps_node_drained(slurm, tmp_path):
    state_file = tmp_path / "drain-state.json"
    drainer = slurm_drainer(slurm, state_file)
    assert drainer.drain(["gpu01", "gpu02"], REASON)["drained"] == ["gpu01", "gpu02"]
    # While verify ran, an admin took over gpu01's drain: the reason is now theirs.
    slurm.edit_node("gpu01", reason="XID 79 seen during verify, keep out - bob", by="bob")
    # ... and extended ours on gpu02 with a note (a changed reason too).
    slurm.edit_node("gpu02", reason=REASON + " HOLD for RMA", by="bob")
    slurm.clear_calls()

    out = drainer.undrain(["gpu01", "gpu02"])

    assert out["undrained"] == []
    assert out["kept"] == ["gpu01", "gpu02"]
    assert "XID 79 seen during verify" in out["notes"]["gpu01"]
    assert "left drained" in out["notes"]["gpu01"]
    assert slurm.calls("update") == []
    assert slurm.node("gpu01")["state"] == "IDLE+DRAIN"
    # gpufleet forgets it: a later undrain will not touch it either.
    assert state_records(state_file, "slurm") == {}


def test_slurm_drain_is_idempotent_for_gpufleets_own_drain(slurm, tmp_path):
    state_file = tmp_path / "drain-state.json"
    drainer = slurm_drainer(slurm, state_file)
    drainer.drain(["gpu01"], REASON)
    slurm.clear_calls()
    out = drainer.drain(["gpu01"], "gpufleet verify quick 2026-11-21T11:00:00Z")
    assert out["drained"] == ["gpu01"]
    assert out["already"] == []
    assert slurm.calls("update") == []
    assert state_records(state_file, "slurm")["gpu01"]["mark"] == REASON


def test_slurm_node_resumed_by_someone_else_is_reported_and_forgotten(slurm, tmp_path):
    state_file = tmp_path / "drain-state.json"
    drainer = slurm_drainer(slurm, state_file)
    drainer.drain(["gpu01"], REASON)
    slurm.edit_node("gpu01", state="IDLE", reason=None)
    slurm.clear_calls()
    out = drainer.undrain(["gpu01"])
    assert out["not_drained"] == ["gpu01"]
    assert out["undrained"] == [] and out["kept"] == []
    assert slurm.calls("update") == []
    assert state_records(state_file, "slurm") == {}


def test_slurm_command_failures_are_reported_per_node(slurm, tmp_path):
    state_file = tmp_path / "drain-state.json"
    slurm.set("fail", {"gpu02": {"update": "slurm_update error: Access/permission denied"}})
    drainer = slurm_drainer(slurm, state_file)

    out = drainer.drain(["gpu01", "gpu02", "gpu99"], REASON)

    assert out["drained"] == ["gpu01"]
    assert set(out["errors"]) == {"gpu02", "gpu99"}
    assert "Access/permission denied" in out["errors"]["gpu02"]
    assert "exited 1" in out["errors"]["gpu02"]
    assert "gpu99 not found" in out["errors"]["gpu99"]
    assert set(state_records(state_file, "slurm")) == {"gpu01"}

    slurm.set("fail", {"gpu01": {"update": "slurm_update error: Unable to contact slurm controller"}})
    out = drainer.undrain(["gpu01"])
    assert out["undrained"] == []
    assert "Unable to contact slurm controller" in out["errors"]["gpu01"]
    # Still recorded, so a later undrain can release it.
    assert set(state_records(state_file, "slurm")) == {"gpu01"}
    slurm.set("fail", {})
    assert drainer.undrain(["gpu01"])["undrained"] == ["gpu01"]


def test_slurm_timeouts_are_reported_per_node_and_do_not_block_others(slurm, tmp_path):
    state_file = tmp_path / "drain-state.json"
    slurm.set("hang", {"gpu02": ["show"]})
    drainer = slurm_drainer(slurm, state_file, timeout=1)
    started = time.monotonic()
    out = drainer.drain(["gpu01", "gpu02"], REASON)
    assert time.monotonic() - started < 20
    assert out["drained"] == ["gpu01"]
    assert "timed out after 1 s" in out["errors"]["gpu02"]
    assert slurm.node("gpu02")["state"] == "MIXED"


def test_slurm_drain_that_times_out_but_took_effect_is_recorded(slurm, tmp_path):
    """A drain command that hangs after applying: the node shows gpufleet's reason, so record it."""
    state_file = tmp_path / "drain-state.json"
    slurm.set("hang", {"gpu01": ["update"]})
    drainer = slurm_drainer(slurm, state_file, timeout=1)

    def runner(argv, timeout):
        # The controller applies the drain although the client then hangs.
        if argv[1] == "update":
            slurm.edit_node("gpu01", state="IDLE+DRAIN", reason=REASON)
        return D.run_command(argv, timeout)

    drainer.runner = runner
    out = drainer.drain(["gpu01"], REASON)
    assert "timed out" in out["errors"]["gpu01"]
    assert "recorded for undrain" in out["errors"]["gpu01"]
    assert set(state_records(state_file, "slurm")) == {"gpu01"}
    slurm.set("hang", {})
    assert drainer.undrain(["gpu01"])["undrained"] == ["gpu01"]


def test_slurm_fake_found_on_path(slurm, tmp_path, monkeypatch):
    """The default executable name is looked up on PATH: a fake ``scontrol`` first on PATH is used."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "scontrol").symlink_to(slurm.exe)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    drainer = D.make_drainer("slurm", tmp_path / "drain-state.json")
    assert drainer.drain(["gpu01"], REASON)["drained"] == ["gpu01"]
    assert slurm.node("gpu01")["reason"] == REASON


def test_missing_executable_is_a_per_node_error(tmp_path):
    drainer = D.make_drainer("slurm", tmp_path / "s.json", executable=tmp_path / "no-such-scontrol")
    out = drainer.drain(["gpu01", "gpu02"], REASON)
    assert set(out["errors"]) == {"gpu01", "gpu02"}
    assert "could not run" in out["errors"]["gpu01"]


def test_injected_runner_and_oneline_parsing():
    """A fake runner (no subprocess) fed the shape of real ``scontrol --oneline`` output."""
    calls = []

    def fake_runner(argv, timeout):
        calls.append((argv, timeout))
        return (
            0,
            "NodeName=n1 Arch=x86_64 State=MIXED+DRAIN ThreadsPerCore=2 "
            f"Reason={REASON} [root@2026-11-21T10:00:01] Comment=(null)\n",
            "",
        )

    drainer = D.make_drainer("slurm", "/nonexistent/never-written.json", runner=fake_runner)
    out = drainer.drain(["n1"], REASON)
    # Not recorded as gpufleet's: a drain already there, without a record, is someone else's.
    assert out["already"] == ["n1"]
    assert calls == [(["scontrol", "show", "node", "n1", "--oneline"], 30)]


def test_parse_slurm_node_and_reason_matching():
    info = D.parse_slurm_node(
        f"NodeName=n1 State=IDLE+DRAIN Weight=1 Reason={REASON} [root@2026-11-21T10:00:01]"
    )
    assert info["state"] == "IDLE+DRAIN"
    assert info["flags"] == {"IDLE", "DRAIN"}
    assert D.slurm_reason_is(info["reason"], REASON)
    assert D.slurm_reason_is(REASON, REASON)
    assert D.slurm_reason_is(f"{REASON} Comment=(null)", REASON)
    assert not D.slurm_reason_is(f"{REASON} HOLD", REASON)
    assert not D.slurm_reason_is("bad PSU [alice@2026-11-21T10:00:01]", REASON)
    assert not D.slurm_reason_is(None, REASON)
    assert D.parse_slurm_node("NodeName=n2 State=DOWN* Reason=Not responding")["flags"] == {"DOWN"}
    assert D.parse_slurm_node("NodeName=n3 State=IDLE Reason=(null)")["reason"] is None


def test_default_reason_names_tier_and_utc_time():
    from datetime import UTC, datetime

    assert D.default_reason("quick", datetime(2026, 11, 21, 10, 0, tzinfo=UTC)) == REASON


def test_corrupt_state_file_stops_before_any_command(slurm, tmp_path):
    state_file = tmp_path / "drain-state.json"
    state_file.write_text("{not json")
    drainer = slurm_drainer(slurm, state_file)
    with pytest.raises(D.DrainError, match="not valid"):
        drainer.undrain(["gpu01"])
    with pytest.raises(D.DrainError):
        drainer.drain(["gpu01"], REASON)
    assert slurm.calls() == []
    assert state_file.read_text() == "{not json"


def test_state_file_is_written_atomically_and_shared_between_kinds(slurm, kube, tmp_path):
    state_file = tmp_path / "lib" / "drain-state.json"
    slurm_drainer(slurm, state_file).drain(["gpu01"], REASON)
    kube_drainer(kube, state_file).drain(["gpu01"], REASON)
    data = json.loads(state_file.read_text())
    assert data["schema"] == 1
    assert set(data["drained"]) == {"slurm", "kubernetes"}
    assert sorted(p.name for p in state_file.parent.iterdir()) == ["drain-state.json"]
    assert (state_file.stat().st_mode & 0o777) == 0o600


def test_unknown_kind_is_refused(tmp_path):
    with pytest.raises(D.DrainError, match="unknown drain kind"):
        D.make_drainer("pbs", tmp_path / "s.json")


# ---------------------------------------------------------------------------------------------------
# Kubernetes


def test_kubernetes_drain_cordons_and_annotates_but_skips_cordoned_nodes(kube, tmp_path):
    state_file = tmp_path / "drain-state.json"
    out = kube_drainer(kube, state_file).drain(["gpu01", "gpu02", "gpu03"], REASON)

    assert out["drained"] == ["gpu01", "gpu02"]
    assert out["already"] == ["gpu03"]
    assert out["errors"] == {}
    assert kube.node("gpu01")["spec"]["unschedulable"] is True
    assert kube.node("gpu01")["metadata"]["annotations"] == {
        "team": "ml",
        D.K8S_ANNOTATION: D.K8S_ANNOTATION_VALUE,
    }
    assert ["cordon", "gpu01"] in kube.calls()
    assert [
        "annotate",
        "node",
        "gpu01",
        "gpufleet.io/drained-by=gpufleet-verify",
        "--overwrite",
    ] in kube.calls()
    assert not [c for c in kube.calls() if "gpu03" in c and c[0] != "get"]
    assert kube.node("gpu03")["metadata"]["annotations"] == {"ops/why": "NIC swap"}
    assert set(state_records(state_file, "kubernetes")) == {"gpu01", "gpu02"}


def test_kubernetes_undrain_only_gpufleets_and_keeps_admin_changed(kube, tmp_path):
    state_file = tmp_path / "drain-state.json"
    drainer = kube_drainer(kube, state_file)
    drainer.drain(["gpu01", "gpu02", "gpu03"], REASON)
    # An admin took over gpu02: removed gpufleet's annotation, left their own.
    kube.edit_node("gpu02", metadata={"name": "gpu02", "annotations": {"ops/why": "bad HBM, keep cordoned"}})
    kube.clear_calls()

    out = drainer.undrain(["gpu01", "gpu02", "gpu03"])

    assert out["undrained"] == ["gpu01"]
    assert out["kept"] == ["gpu02", "gpu03"]
    assert "left drained" in out["notes"]["gpu02"]
    assert "no record" in out["notes"]["gpu03"]
    assert kube.calls("uncordon") == [["uncordon", "gpu01"]]
    assert ["annotate", "node", "gpu01", "gpufleet.io/drained-by-"] in kube.calls()
    assert "unschedulable" not in kube.node("gpu01")["spec"]
    assert kube.node("gpu01")["metadata"]["annotations"] == {"team": "ml"}
    assert kube.node("gpu02")["spec"]["unschedulable"] is True
    assert kube.node("gpu03")["spec"]["unschedulable"] is True
    assert state_records(state_file, "kubernetes") == {}


def test_kubernetes_failed_annotation_rolls_back_the_cordon(kube, tmp_path):
    state_file = tmp_path / "drain-state.json"
    kube.set("fail", {"gpu01": {"annotate": 'Error from server (Forbidden): nodes "gpu01" is forbidden'}})
    out = kube_drainer(kube, state_file).drain(["gpu01", "gpu02"], REASON)
    assert out["drained"] == ["gpu02"]
    assert "Forbidden" in out["errors"]["gpu01"]
    assert "rolled back" in out["errors"]["gpu01"]
    assert "unschedulable" not in kube.node("gpu01")["spec"]
    assert set(state_records(state_file, "kubernetes")) == {"gpu02"}


def test_kubernetes_timeouts_and_missing_nodes_reported_per_node(kube, tmp_path):
    state_file = tmp_path / "drain-state.json"
    kube.set("hang", {"gpu01": ["get"]})
    out = kube_drainer(kube, state_file, timeout=1).drain(["gpu01", "gpu02", "gpu42"], REASON)
    assert out["drained"] == ["gpu02"]
    assert "timed out after 1 s" in out["errors"]["gpu01"]
    assert "NotFound" in out["errors"]["gpu42"]
