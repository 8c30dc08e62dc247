"""Local wheels in a bundle (profile ``wheels.files``): the profile's checks, the platform tag of a
locally built wheel, the checks on the file before anything is resolved, and the whole way from the
profile to an offline install on a node: real pip resolving, downloading and installing tiny real
wheels, with --no-index (a folder of wheels stands in for the index: no network)."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_wheels import wheel_requirements
from wheel_factory import make_wheel

from gpufleet.bundle import BundleBuildError, artifacts, build, local_wheels, profile

ENGINE = "gpufleet-test-engine"
LOCAL = "py3-none-linux_x86_64"  # what 'pip wheel' of a compiled project tags a wheel on this machine


def validate(wheels, base_dir):
    data = {"name": "t", "target": {"os": "debian-12"}, "wheels": wheels}
    return profile.validate(data, base_dir=base_dir)["wheels"]


def problems(wheels, base_dir):
    with pytest.raises(BundleBuildError) as exc:
        validate(wheels, base_dir)
    return str(exc.value).split("\n  - ")[1:]


# --- the profile ----------------------------------------------------------------------------------


def test_entries_are_paths_or_mappings_with_extras_relative_to_the_profile(tmp_path):
    got = validate(
        {
            "files": [
                {"path": f"wheels/gpufleet_test_engine-0.3.36-{LOCAL}.whl", "extras": ["Server", "fast_api"]},
                "/srv/wheels/tensorrt_llm-1.2.1-cp311-cp311-linux_x86_64.whl",
                "../x/Plain.Pkg-1.0-py3-none-any.whl",
            ]
        },
        tmp_path / "bundles",
    )
    assert got["files"] == [
        {
            "path": str(tmp_path / "bundles" / "wheels" / f"gpufleet_test_engine-0.3.36-{LOCAL}.whl"),
            "file": f"gpufleet_test_engine-0.3.36-{LOCAL}.whl",
            "name": ENGINE,
            "version": "0.3.36",
            "extras": ["fast-api", "server"],
        },
        {
            "path": "/srv/wheels/tensorrt_llm-1.2.1-cp311-cp311-linux_x86_64.whl",
            "file": "tensorrt_llm-1.2.1-cp311-cp311-linux_x86_64.whl",
            "name": "tensorrt-llm",
            "version": "1.2.1",
            "extras": [],
        },
        {
            "path": str(tmp_path / "x" / "Plain.Pkg-1.0-py3-none-any.whl"),
            "file": "Plain.Pkg-1.0-py3-none-any.whl",
            "name": "plain-pkg",
            "version": "1.0",
            "extras": [],
        },
    ]
    assert got["packages"] == []  # wheels.files alone is something to bundle


def test_a_locally_built_wheel_adds_its_linux_platform_tag_once_and_last(tmp_path):
    default = validate({"packages": ["six==1.17.0"]}, tmp_path)["platform"]
    assert "linux_x86_64" not in default
    both = validate(
        {"files": [f"a-1-{LOCAL}.whl", "b-1-cp311-cp311-linux_x86_64.whl"], "packages": ["six"]}, tmp_path
    )
    assert both["platform"] == [*default, "linux_x86_64"]  # the first tag still names the machine
    assert validate({"files": ["a-1-py3-none-any.whl"]}, tmp_path)["platform"] == default
    given = validate({"files": [f"a-1-{LOCAL}.whl"], "platform": "manylinux2014_x86_64"}, tmp_path)
    assert given["platform"] == ["manylinux2014_x86_64", "linux_x86_64"]


@pytest.mark.parametrize(
    "wheel",
    [
        "engine-1.0-cp311-abi3-manylinux_2_17_x86_64.whl",
        "engine-1.0-cp38-abi3-linux_x86_64.whl",
        "engine-1.0-py2.py3-none-any.whl",
        "engine-1.0-cp311-cp311-manylinux_2_36_x86_64.whl",
    ],
)
def test_wheels_the_target_loads_are_accepted(tmp_path, wheel):
    assert validate({"files": [wheel]}, tmp_path)["files"][0]["name"] == "engine"


@pytest.mark.parametrize(
    ("wheel", "why"),
    [
        ("engine-1.0-cp312-cp312-linux_x86_64.whl", "another Python"),
        ("engine-1.0-cp311-cp311-linux_aarch64.whl", "another machine"),
        ("engine-1.0-cp311-cp311-manylinux_2_39_x86_64.whl", "a newer glibc than Debian 12's 2.36"),
        ("engine-1.0-cp311-cp311-win_amd64.whl", "another OS"),
        ("engine-1.0-cp311-cp311-musllinux_1_2_x86_64.whl", "musl, not glibc"),
    ],
)
def test_a_wheel_for_another_python_or_platform_is_refused_naming_the_entry(tmp_path, wheel, why):
    [problem] = problems({"files": ["ok-1-py3-none-any.whl", wheel]}, tmp_path)
    tag = "-".join(wheel[: -len(".whl")].split("-")[2:])
    assert problem == (
        f"wheels.files[1] ({wheel}): it is tagged {tag}, which the target cannot load (CPython 3.11 on "
        "manylinux_2_36_x86_64 or linux_x86_64); build or get the wheel for Python 3.11 on Linux x86_64"
    ), why


def test_every_problem_of_the_entries_is_reported_at_once(tmp_path):
    found = problems(
        {
            "files": [
                "engine-1.0.tar.gz",
                {"path": "a-1-py3-none-any.whl", "extras": "server"},
                {"path": "b-1-py3-none-any.whl", "sha256": "0" * 64},
                {"extras": ["server"]},
                7,
                "A-2-py3-none-any.whl",
            ]
        },
        tmp_path,
    )
    assert found == [
        "wheels.files[0] (engine-1.0.tar.gz): 'engine-1.0.tar.gz' is not a wheel's file name "
        "(NAME-VERSION-PYTHON-ABI-PLATFORM.whl, PEP 427); give the .whl file as pip or 'pip wheel' named it",
        "wheels.files[1] (a-1-py3-none-any.whl).extras: 'server' must be a list of extra names, "
        "e.g. [server]",
        "wheels.files[2]: unknown key 'sha256' (allowed: extras, path)",
        f"wheels.files[3].path: the wheel's path is required, e.g. {local_wheels.EXAMPLE}",
        f"wheels.files[4]: must be a wheel path or a mapping like {local_wheels.EXAMPLE}",
        "wheels.files[5] (A-2-py3-none-any.whl): a is already carried by wheels.files[1]; keep one of them",
    ]
    assert problems({"files": "engine.whl"}, tmp_path) == [
        f"wheels.files: must be a list of wheel paths or mappings like {local_wheels.EXAMPLE}"
    ]


# --- the file, before anything is resolved ---------------------------------------------------------


def entries(tmp_path, *paths):
    return validate({"files": [str(p) for p in paths]}, tmp_path)["files"]


def test_a_missing_file_fails_naming_it(tmp_path):
    with pytest.raises(BundleBuildError) as exc:
        local_wheels.check(entries(tmp_path, tmp_path / f"engine-1.0-{LOCAL}.whl"))
    assert str(exc.value) == (
        f"wheels.files: engine-1.0-{LOCAL}.whl: {tmp_path / f'engine-1.0-{LOCAL}.whl'} does not exist "
        "(build or copy the wheel there first)"
    )


def test_a_file_that_is_not_a_wheel_fails_naming_it(tmp_path):
    text = tmp_path / f"engine-1.0-{LOCAL}.whl"
    text.write_text("not a zip")
    with pytest.raises(BundleBuildError, match=rf"{text} is not a wheel \(not a zip archive\)"):
        local_wheels.check(entries(tmp_path, text))
    import zipfile

    with zipfile.ZipFile(text, "w") as zf:
        zf.writestr("engine/__init__.py", "")
    with pytest.raises(
        BundleBuildError, match=r"exactly one NAME-VERSION\.dist-info with METADATA and WHEEL"
    ):
        local_wheels.check(entries(tmp_path, text))


def test_a_wheel_whose_metadata_says_another_version_fails(tmp_path):
    real = make_wheel(tmp_path / "w", "engine", "1.0", LOCAL)
    renamed = real.rename(tmp_path / f"engine-1.1-{LOCAL}.whl")
    with pytest.raises(BundleBuildError, match=r"is named for engine 1\.1 but its METADATA says engine 1\.0"):
        local_wheels.check(entries(tmp_path, renamed))
    local_wheels.check(entries(tmp_path, make_wheel(tmp_path / "ok", "engine", "1.0", LOCAL)))


def test_the_build_stops_at_a_missing_wheel_before_touching_anything(tmp_path, monkeypatch):
    prof = tmp_path / "p.yml"
    prof.write_text(f"name: t\ntarget: {{os: debian-12}}\nwheels:\n  files: [engine-1.0-{LOCAL}.whl]\n")
    monkeypatch.setattr(artifacts, "_pip", lambda *a, **k: pytest.fail("pip ran"))
    with pytest.raises(BundleBuildError, match="does not exist"):
        build.build(prof, tmp_path / "out", signing_home=tmp_path / "signing")
    assert not (tmp_path / "out").exists() and not (tmp_path / "signing").exists()


# --- from the profile to an offline install, with real pip --------------------------------------------


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A local engine wheel (as 'pip wheel' tags it here) with a 'server' extra, and a folder of
    wheels standing in for the index; pip runs for real, without the index or this machine's pip
    configuration."""
    index = tmp_path / "index"
    make_wheel(index, "gpufleet-test-core", "1.0")
    make_wheel(index, "gpufleet-test-core", "2.0")
    make_wheel(
        index,
        "gpufleet-test-server",
        "2.0",
        "py3-none-manylinux2014_x86_64",
        requires=("gpufleet-test-core",),
    )
    engine = make_wheel(
        tmp_path / "built",
        ENGINE,
        "0.3.36",
        LOCAL,
        requires=("gpufleet-test-core<2",),
        extras={"server": ["gpufleet-test-server>=2"], "dev": ["gpufleet-test-missing"]},
    )
    real_pip = artifacts._pip
    calls = []

    def offline_pip(*args, quiet=True):
        listed = Path(args[args.index("-r") + 1]).read_text() if "-r" in args else ""
        calls.append((args, listed))
        return real_pip(
            "--isolated", args[0], "--no-index", "--find-links", str(index), *args[1:], quiet=quiet
        )

    monkeypatch.setattr(artifacts, "_pip", offline_pip)
    prof = tmp_path / "bundles" / "site.yml"
    prof.parent.mkdir()
    prof.write_text(
        "name: site\ntarget: {os: debian-12}\nroles: [python_runtime]\n"
        f"wheels:\n  files:\n    - {{path: ../built/{engine.name}, extras: [server]}}\n"
    )
    return {"engine": engine, "profile": prof, "calls": calls, "tmp": tmp_path}


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_pip_refuses_a_local_wheel_for_manylinux_platforms_alone(site):
    wheels = profile.load(site["profile"])["wheels"]
    wheels = dict(wheels, platform=[p for p in wheels["platform"] if p != "linux_x86_64"])
    with pytest.raises(BundleBuildError, match="is not a supported wheel on this platform"):
        artifacts.resolve_wheels(wheels)


def test_a_local_wheel_is_resolved_copied_and_pinned_like_a_downloaded_one(site):
    prof = profile.load(site["profile"])
    local_wheels.check(prof["wheels"]["files"])
    resolved = {w["name"]: w for w in artifacts.resolve_wheels(prof["wheels"])}
    engine = resolved["gpufleet-test-engine"]
    assert engine["local"] == str(site["engine"]) and engine["file"] == site["engine"].name
    assert engine["sha256"] == sha256(site["engine"]) and engine["requested"] is True
    assert engine["requires"] == ["gpufleet-test-core"]
    # The 'server' extra is carried complete; 'dev' names a wheel nobody resolved: not recorded.
    assert engine["extras"] == {"server": ["gpufleet-test-server"]}
    assert resolved["gpufleet-test-core"]["version"] == "1.0"  # the engine's '<2' held
    assert "local" not in resolved["gpufleet-test-server"]

    out = site["tmp"] / "bundle"
    artifacts.download_wheels(prof["wheels"], list(resolved.values()), out / "wheels")
    assert sorted(p.name for p in (out / "wheels").iterdir()) == sorted(
        [*(w["file"] for w in resolved.values()), "requirements.txt"]
    )
    assert sha256(out / "wheels" / site["engine"].name) == sha256(site["engine"])
    requirements = (out / "wheels" / "requirements.txt").read_text()
    assert f"gpufleet-test-engine==0.3.36 --hash=sha256:{sha256(site['engine'])}" in requirements
    # pip download fetched only the index's wheels: the local one is copied, never asked of an index.
    [(download, listed)] = [c for c in site["calls"] if c[0][0] == "download"]
    assert "--require-hashes" in download and "linux_x86_64" in download
    assert "gpufleet-test-core==1.0" in listed and "gpufleet-test-server==2.0" in listed
    assert "engine" not in listed
    manifest = build.make_manifest(out, prof, "A" * 40, 0, [], list(resolved.values()), {})
    entry = next(e for e in manifest["files"] if e["path"] == f"wheels/{site['engine'].name}")
    assert entry["sha256"] == sha256(site["engine"])
    assert entry["origin"] == f"local wheel: {site['engine']}"
    assert entry["purpose"] == "requested for python_runtime"
    assert entry["requires"] == ["gpufleet-test-core"] and entry["extras"] == {
        "server": ["gpufleet-test-server"]
    }
    json.dumps(manifest)

    # The node: python_runtime's pins for the env's package with its extra, then pip offline with
    # --require-hashes from the wheelhouse alone (what /etc/pip.conf points at on a node).
    lines = wheel_requirements(manifest, ["gpufleet-test-engine[server]==0.3.36"])
    assert [line.split(" ")[0] for line in lines] == [
        "gpufleet-test-core==1.0",
        "gpufleet-test-engine[server]==0.3.36",
        "gpufleet-test-server==2.0",
    ]
    req = site["tmp"] / "req.txt"
    req.write_text("".join(line + "\n" for line in lines))
    target = site["tmp"] / "venv-site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "install", "--no-index", "--require-hashes",
         "--find-links", str(out / "wheels"), "--target", str(target), "-r", str(req)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in target.glob("*.dist-info")) == [
        "gpufleet_test_core-1.0.dist-info",
        "gpufleet_test_engine-0.3.36.dist-info",
        "gpufleet_test_server-2.0.dist-info",
    ]


def test_a_local_wheel_changed_since_it_was_resolved_is_not_added(site):
    prof = profile.load(site["profile"])
    resolved = artifacts.resolve_wheels(prof["wheels"])
    site["engine"].write_bytes(site["engine"].read_bytes() + b"\0")
    out = site["tmp"] / "bundle" / "wheels"
    with pytest.raises(BundleBuildError, match="changed while the bundle was built"):
        artifacts.download_wheels(prof["wheels"], resolved, out)
    assert not list(out.glob("gpufleet_test_engine*"))


def test_dependencies_asked_for_with_extras_bring_those_extras_wheels():
    """A wheel that requires ``B[x]`` needs B's extra-x wheels too: they are in its ``requires``."""
    meta = {
        "app": {"name": "app", "version": "1", "requires_dist": ["uvicorn[standard]>=0.20"]},
        "uvicorn": {
            "name": "uvicorn",
            "version": "0.55.0",
            "requires_dist": [
                "click",
                'httptools; extra == "standard"',
                'uvloop; extra == "standard" and sys_platform == "win32"',
            ],
            "provides_extra": ["standard"],
        },
        "click": {"name": "click", "version": "8"},
        "httptools": {"name": "httptools", "version": "0.6"},
    }
    env = artifacts._marker_env({"python": "3.11", "platform": ["manylinux_2_36_x86_64"]})
    requires, extras = artifacts._requires(meta["app"], meta, env)
    assert requires == ["click", "httptools", "uvicorn"]
    requires, extras = artifacts._requires(meta["uvicorn"], meta, env)
    assert requires == ["click"] and extras == {"standard": ["httptools"]}
