"""`gpufleet bundle build --reuse`: a finished bundle of this very profile, signed by this machine's
key and complete, is used as it is; anything else is built as usual (and says why)."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from gpufleet.bundle import build, profile

REPO = Path(__file__).resolve().parents[3]
FPR = "A" * 40


@pytest.fixture
def bundle(tmp_path, monkeypatch, capsys):
    # The lab profile, in a checkout of its own: its local engine wheel (../.cache/wheels/...) is
    # this test's, not whatever the real checkout's .cache holds.
    path = tmp_path / "bundles" / "lab.yml"
    path.parent.mkdir()
    shutil.copyfile(REPO / "bundles" / "lab.yml", path)
    prof = profile.load(path)
    out = tmp_path / "lab"
    (out / "apt" / "pool").mkdir(parents=True)
    (out / "apt" / "pool" / "x_1_amd64.deb").write_bytes(b"deb")
    files = [{"path": "apt/pool/x_1_amd64.deb", "size": 3}]
    for wheel in prof["wheels"]["files"]:
        Path(wheel["path"]).parent.mkdir(parents=True, exist_ok=True)
        Path(wheel["path"]).write_bytes(b"PK wheel")
        (out / "wheels").mkdir(exist_ok=True)
        (out / "wheels" / wheel["file"]).write_bytes(b"PK wheel")
        digest = hashlib.sha256(b"PK wheel").hexdigest()
        files.append({"path": f"wheels/{wheel['file']}", "size": 8, "sha256": digest})
    manifest = {
        "name": "lab",
        "profile": json.loads(json.dumps(prof)),
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(build.SigningKey, "fingerprint", lambda self: FPR)
    checked = []

    def check_signature(root, fingerprint):
        checked.append((root, fingerprint))
        return {"ok": True, "fingerprint": fingerprint, "problem": None}

    monkeypatch.setattr(build._core(), "check_signature", check_signature)
    return {"out": out, "manifest": manifest, "checked": checked, "profile": path}


def said(capsys):
    cap = capsys.readouterr()
    return cap.out + cap.err


def test_a_complete_signed_bundle_of_this_profile_is_reused(bundle, capsys):
    got = build.reusable(bundle["profile"], bundle["out"])
    # The .deb and the lab engine's local wheel.
    assert got["reused"] is True and got["files"] == 2 and got["bytes"] == 3 + 8 and got["fingerprint"] == FPR
    assert bundle["checked"] == [(str(bundle["out"].resolve()), FPR)], (
        "the signature is checked against our key"
    )
    assert "not rebuilt" in said(capsys)


def test_another_profile_is_rebuilt(bundle, capsys):
    bundle["manifest"]["profile"]["apt"]["packages"].append("htop")
    (bundle["out"] / "manifest.json").write_text(json.dumps(bundle["manifest"]))
    assert build.reusable(bundle["profile"], bundle["out"]) is None
    assert "built from another profile" in said(capsys)


def test_a_missing_or_resized_file_is_rebuilt(bundle, capsys):
    (bundle["out"] / "apt" / "pool" / "x_1_amd64.deb").write_bytes(b"debx")
    assert build.reusable(bundle["profile"], bundle["out"]) is None
    assert "apt/pool/x_1_amd64.deb is missing or has another size" in said(capsys)
    (bundle["out"] / "apt" / "pool" / "x_1_amd64.deb").unlink()
    assert build.reusable(bundle["profile"], bundle["out"]) is None


def test_a_bad_signature_is_rebuilt(bundle, monkeypatch, capsys):
    monkeypatch.setattr(
        build._core(), "check_signature", lambda root, fpr: {"ok": False, "problem": "BAD signature"}
    )
    assert build.reusable(bundle["profile"], bundle["out"]) is None
    assert "does not check against this machine's key (BAD signature)" in said(capsys)


def test_an_unfinished_or_absent_build_is_built(bundle, tmp_path, capsys):
    (bundle["out"] / build.STATE_DIR).mkdir()
    assert build.reusable(bundle["profile"], bundle["out"]) is None
    shutil.rmtree(bundle["out"])
    assert build.reusable(bundle["profile"], bundle["out"]) is None
    assert "no finished bundle" in said(capsys)


def test_a_local_wheel_rebuilt_since_is_rebuilt(bundle, capsys):
    """Same profile, same file name and size, other content: the bundle carries the old wheel."""
    [wheel] = profile.load(bundle["profile"])["wheels"]["files"]
    Path(wheel["path"]).write_bytes(b"PK WHEEL")
    assert build.reusable(bundle["profile"], bundle["out"]) is None
    assert f"the local wheel {wheel['path']} is not the one the bundle carries" in said(capsys)
