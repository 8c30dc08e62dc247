"""apt.debs: .deb files a site downloads itself (NVIDIA's Container Toolkit, which Debian does not
package) carried in the bundle's own APT repository, pinned by sha256, indexed and signed with the
rest. Built for real: .deb files made by dpkg-deb, gpg in a temporary home, the index by dpkg-deb."""

import hashlib
import json
import shutil
import subprocess

import pytest
import yaml

from gpufleet.bundle import BundleBuildError, build, profile

pytestmark = pytest.mark.skipif(
    not (shutil.which("gpg") and shutil.which("gpgv") and shutil.which("dpkg-deb")),
    reason="gpg, gpgv and dpkg-deb are needed (apt-get install gnupg dpkg)",
)
SHA = "a" * 64


def validate(debs, **extra):
    data = {"name": "t", "target": {"os": "debian-12"}, "apt": {"debs": debs}, **extra}
    return profile.validate(data)


@pytest.mark.parametrize(
    ("debs", "message"),
    [
        (
            [{"name": "toolkit.tar", "url": "https://x/t.deb", "sha256": SHA}],
            r"apt.debs\[0\].name: 'toolkit.tar' .* ending in .deb",
        ),
        ([{"name": "t.deb", "url": "https://x/t.deb"}], r"apt.debs\[0\] \(t.deb\): sha256 pin missing"),
        (
            [{"name": "t.deb", "url": "https://x/t.deb", "path": "t.deb", "sha256": SHA}],
            "give exactly one of url or path",
        ),
        (
            [{"name": "t.deb", "url": "ftp://x/t.deb", "sha256": SHA}],
            "url must be http://, https:// or file://",
        ),
        (
            [{"name": "t.deb", "path": "a.deb", "sha256": SHA}] * 2,
            r"apt.debs\[1\].name: 't.deb' is listed twice",
        ),
        (
            [{"name": "t.deb", "path": "a.deb", "sha256": SHA, "version": "1"}],
            r"apt.debs\[0\]: unknown key 'version'",
        ),
        ({"name": "t.deb"}, "apt.debs: must be a list"),
        (["t.deb"], r"apt.debs\[0\]: must be a mapping"),
    ],
)
def test_bad_debs_are_named(debs, message):
    with pytest.raises(BundleBuildError, match=message):
        validate(debs)


def test_a_profile_of_debs_alone_is_valid_and_paths_are_relative_to_it(tmp_path):
    got = validate([{"name": "t.deb", "path": "debs/t.deb", "sha256": SHA.upper()}])
    assert got["apt"]["debs"] == [
        {"name": "t.deb", "sha256": SHA, "purpose": "package carried as a .deb file", "path": "debs/t.deb"}
    ]
    assert got["apt"]["packages"] == []
    prof = tmp_path / "p.yml"
    prof.write_text(yaml.safe_dump({"name": "t", "target": {"os": "debian-12"}, "apt": {"debs": [
        {"name": "t.deb", "path": "debs/t.deb", "sha256": SHA}
    ]}}))  # fmt: skip
    assert profile.load(prof)["apt"]["debs"][0]["path"] == str(tmp_path / "debs" / "t.deb")


def make_deb(where, package, version="1.17.8-1"):
    """A real (tiny) Debian package, built by dpkg-deb from a temporary directory."""
    src = where / f"{package}-src"
    (src / "DEBIAN").mkdir(parents=True)
    (src / "usr" / "share" / "doc" / package).mkdir(parents=True)
    (src / "usr" / "share" / "doc" / package / "README").write_text(f"{package} for a gpufleet test\n")
    (src / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: amd64\n"
        "Maintainer: gpufleet tests <tests@example.invalid>\nDescription: test package\n"
    )
    deb = where / f"{package}_{version}_amd64.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(src), str(deb)], check=True, capture_output=True
    )
    return deb


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("signing")
    yield path
    subprocess.run(["gpgconf", "--homedir", str(path), "--kill", "all"], check=False, capture_output=True)


def write_profile(tmp_path, debs, **extra):
    entries = [
        {"name": d.name, "path": str(d), "sha256": hashlib.sha256(d.read_bytes()).hexdigest()} for d in debs
    ]
    data = {"name": "toolkit", "target": {"os": "debian-12"}, "roles": ["container_runtime"], **extra}
    if entries:
        data["apt"] = {"debs": entries}
    path = tmp_path / "profile.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_debs_land_in_the_signed_pool_index_and_manifest(tmp_path, home):
    deb = make_deb(tmp_path, "nvidia-container-toolkit")
    out = tmp_path / "bundle"
    result = build.build(write_profile(tmp_path, [deb]), out, signing_home=home)
    pool = out / "apt" / "pool" / deb.name
    assert pool.read_bytes() == deb.read_bytes()
    packages = (out / "apt" / "Packages").read_text()
    assert "Package: nvidia-container-toolkit\nVersion: 1.17.8-1\n" in packages
    assert f"Filename: pool/{deb.name}\n" in packages
    assert f"SHA256: {hashlib.sha256(deb.read_bytes()).hexdigest()}" in packages
    assert "Packages" in (out / "apt" / "InRelease").read_text() and (out / "apt" / "Release.gpg").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    entry = next(e for e in manifest["files"] if e["path"] == f"apt/pool/{deb.name}")
    assert entry["kind"] == "apt" and entry["origin"] == str(deb)
    assert entry["purpose"] == "package carried as a .deb file"
    assert build._core().verify_bundle(str(out), result["fingerprint"])["ok"]


def test_a_deb_that_differs_from_its_pin_is_not_added(tmp_path, home):
    deb = make_deb(tmp_path, "nvidia-container-toolkit")
    path = write_profile(tmp_path, [deb])
    deb.write_bytes(deb.read_bytes() + b"tampered")
    with pytest.raises(
        BundleBuildError, match=r"apt.debs: nvidia-container-toolkit_.* has sha256 .* but the profile pins"
    ):
        build.build(path, tmp_path / "bundle", signing_home=home)
    assert not list((tmp_path / "bundle").rglob("*.deb"))


def test_a_rebuild_drops_debs_no_longer_listed(tmp_path, home):
    toolkit = make_deb(tmp_path, "nvidia-container-toolkit")
    base = make_deb(tmp_path, "nvidia-container-toolkit-base")
    out = tmp_path / "bundle"
    build.build(write_profile(tmp_path, [toolkit, base]), out, signing_home=home)
    assert {p.name for p in (out / "apt" / "pool").iterdir()} == {toolkit.name, base.name}
    kept = (out / "apt" / "pool" / toolkit.name).stat()

    build.build(write_profile(tmp_path, [toolkit]), out, signing_home=home)
    again = (out / "apt" / "pool" / toolkit.name).stat()
    assert (again.st_ino, again.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns), (
        "a carried deb is not fetched again"
    )
    assert {p.name for p in (out / "apt" / "pool").iterdir()} == {toolkit.name}
    assert "nvidia-container-toolkit-base" not in (out / "apt" / "Packages").read_text()
    listed = {e["path"] for e in json.loads((out / "manifest.json").read_text())["files"]}
    assert f"apt/pool/{base.name}" not in listed

    notes = tmp_path / "notes.txt"
    notes.write_text("no apt any more\n")
    files = [
        {"name": "notes.txt", "path": str(notes), "sha256": hashlib.sha256(notes.read_bytes()).hexdigest()}
    ]
    build.build(write_profile(tmp_path, [], files=files), out, signing_home=home)
    assert not (out / "apt").exists()
