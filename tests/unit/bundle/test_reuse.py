"""`gpufleet bundle build --reuse`: a finished bundle of this very profile, signed by this machine's
key and complete, is used as it is; anything else is built as usual (and says why)."""

import json
import shutil
from pathlib import Path

import pytest

from gpufleet.bundle import build, profile

REPO = Path(__file__).resolve().parents[3]
PROFILE = REPO / "bundles" / "lab.yml"
FPR = "A" * 40


@pytest.fixture
def bundle(tmp_path, monkeypatch, capsys):
    out = tmp_path / "lab"
    (out / "apt" / "pool").mkdir(parents=True)
    (out / "apt" / "pool" / "x_1_amd64.deb").write_bytes(b"deb")
    manifest = {
        "name": "lab",
        "profile": json.loads(json.dumps(profile.load(PROFILE))),
        "files": [{"path": "apt/pool/x_1_amd64.deb", "size": 3}],
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(build.SigningKey, "fingerprint", lambda self: FPR)
    checked = []

    def check_signature(root, fingerprint):
        checked.append((root, fingerprint))
        return {"ok": True, "fingerprint": fingerprint, "problem": None}

    monkeypatch.setattr(build._core(), "check_signature", check_signature)
    return {"out": out, "manifest": manifest, "checked": checked}


def said(capsys):
    cap = capsys.readouterr()
    return cap.out + cap.err


def test_a_complete_signed_bundle_of_this_profile_is_reused(bundle, capsys):
    got = build.reusable(PROFILE, bundle["out"])
    assert got["reused"] is True and got["files"] == 1 and got["bytes"] == 3 and got["fingerprint"] == FPR
    assert bundle["checked"] == [(str(bundle["out"].resolve()), FPR)], (
        "the signature is checked against our key"
    )
    assert "not rebuilt" in said(capsys)


def test_another_profile_is_rebuilt(bundle, capsys):
    bundle["manifest"]["profile"]["apt"]["packages"].append("htop")
    (bundle["out"] / "manifest.json").write_text(json.dumps(bundle["manifest"]))
    assert build.reusable(PROFILE, bundle["out"]) is None
    assert "built from another profile" in said(capsys)


def test_a_missing_or_resized_file_is_rebuilt(bundle, capsys):
    (bundle["out"] / "apt" / "pool" / "x_1_amd64.deb").write_bytes(b"debx")
    assert build.reusable(PROFILE, bundle["out"]) is None
    assert "apt/pool/x_1_amd64.deb is missing or has another size" in said(capsys)
    (bundle["out"] / "apt" / "pool" / "x_1_amd64.deb").unlink()
    assert build.reusable(PROFILE, bundle["out"]) is None


def test_a_bad_signature_is_rebuilt(bundle, monkeypatch, capsys):
    monkeypatch.setattr(
        build._core(), "check_signature", lambda root, fpr: {"ok": False, "problem": "BAD signature"}
    )
    assert build.reusable(PROFILE, bundle["out"]) is None
    assert "does not check against this machine's key (BAD signature)" in said(capsys)


def test_an_unfinished_or_absent_build_is_built(bundle, tmp_path, capsys):
    (bundle["out"] / build.STATE_DIR).mkdir()
    assert build.reusable(PROFILE, bundle["out"]) is None
    shutil.rmtree(bundle["out"])
    assert build.reusable(PROFILE, bundle["out"]) is None
    assert "no finished bundle" in said(capsys)
