"""gpufleet.cluster python_runtime_plan for kind: conda (plugins/plugin_utils/python_runtime_conda.py):
conda-pack archives and pinned conda packages, what is refused with which message, the steps the
role takes for each and the Miniforge base."""

from types import SimpleNamespace

import pytest
from ansible_collections.gpufleet.cluster.plugins.filter import python_runtime

flt = SimpleNamespace(**python_runtime.FilterModule().filters())
ROOT = "/opt/gpufleet/envs"
INSTALLER = "Miniforge3-24.11.3-0-Linux-x86_64.sh"
SHA = "ab" * 32
CACHE = "/var/cache/gpufleet/python_runtime"


def plan(envs, **kwargs):
    return flt.python_runtime_plan(envs, ROOT, **kwargs)


def only_problem(envs, **kwargs):
    result = plan(envs, **kwargs)
    assert len(result["problems"]) == 1, result["problems"]
    assert result["envs"] == [] or all(e["name"] != envs[0].get("name") for e in result["envs"])
    return result["problems"][0]


# --- conda-pack archives -----------------------------------------------------------------------------


@pytest.mark.parametrize("offline", [False, True])
def test_a_pack_from_the_bundle_is_fetched_unpacked_and_conda_unpacked(offline):
    result = plan([{"name": "torch", "kind": "conda", "pack": "torch-env.tar.gz"}], offline=offline)
    assert result["problems"] == []
    assert result["miniforge"] is None  # an archive is a whole environment: no conda needed
    assert result["envs"] == [
        {
            "name": "torch",
            "path": "/opt/gpufleet/envs/torch",
            "state": "present",
            "kind": "conda",
            "marker": "/opt/gpufleet/envs/torch/.gpufleet-python-runtime",
            "pack": "torch-env.tar.gz",
            "source": "bundle",
            "url": None,
            "sha256": None,
            "archive": f"{CACHE}/torch-env.tar.gz",
            "packages": [],
            "steps": ["fetch_pack", "unpack", "conda_unpack"],
        }
    ]


def test_online_a_pack_may_come_from_a_url_with_its_sha256():
    (env,) = plan(
        [
            {
                "name": "t",
                "kind": "conda",
                "pack": "t.tgz",
                "url": "https://example.org/t.tgz",
                "sha256": SHA.upper(),
            }
        ]
    )["envs"]
    assert (env["source"], env["url"], env["sha256"]) == ("url", "https://example.org/t.tgz", SHA)


def test_offline_a_pack_url_is_refused():
    problem = only_problem(
        [{"name": "t", "kind": "conda", "pack": "t.tgz", "url": "https://example.org/t.tgz", "sha256": SHA}],
        offline=True,
    )
    assert problem.startswith(
        "python_runtime_envs[0] (t): url 'https://example.org/t.tgz' is for online hosts only"
    )
    assert "add the file to the bundle profile's files" in problem


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"url": "https://example.org/t.tgz"}, "url needs its sha256 (64 hexadecimal characters; got None)"),
        ({"url": "https://example.org/t.tgz", "sha256": "abc"}, "url needs its sha256"),
        (
            {"url": "ftp://example.org/t.tgz", "sha256": SHA},
            "url 'ftp://example.org/t.tgz' is not an http://",
        ),
        ({"sha256": SHA}, "sha256 goes with url"),
    ],
)
def test_a_pack_url_needs_a_sha256_and_a_sha256_needs_a_url(extra, says):
    problem = only_problem([{"name": "t", "kind": "conda", "pack": "t.tgz", **extra}])
    assert problem.startswith("python_runtime_envs[0] (t): ") and says in problem


@pytest.mark.parametrize("pack", ["env.zip", "env.tar", "dir/env.tar.gz", "../env.tgz", ".tar.gz", 3])
def test_a_pack_must_be_a_tar_gz_file_name(pack):
    problem = only_problem([{"name": "t", "kind": "conda", "pack": pack}])
    assert problem.startswith(f"python_runtime_envs[0] (t): pack {pack!r} is not a conda-pack archive name")
    assert "ending .tar.gz or .tgz" in problem


def test_pack_and_packages_exclude_each_other_and_one_is_needed():
    both = only_problem([{"name": "t", "kind": "conda", "pack": "t.tgz", "packages": ["numpy=1.26.4"]}])
    assert both.startswith("python_runtime_envs[0] (t): pack and packages exclude each other")
    neither = only_problem([{"name": "t", "kind": "conda"}])
    assert neither.startswith("python_runtime_envs[0] (t): a conda environment needs pack")
    # Absent needs neither.
    (gone,) = plan([{"name": "t", "kind": "conda", "state": "absent"}])["envs"]
    assert gone["steps"] == ["remove"] and gone["kind"] == "conda"


def test_pack_url_and_sha256_are_refused_on_a_venv():
    problem = only_problem([{"name": "t", "packages": ["six==1.17.0"], "pack": "t.tgz", "sha256": SHA}])
    assert problem == (
        "python_runtime_envs[0] (t): pack, sha256 is for kind: conda (a conda-pack archive); a venv gets its "
        "packages as NAME==VERSION wheels: drop it, or set kind: conda"
    )


def test_an_unknown_kind_is_refused():
    problem = only_problem([{"name": "t", "kind": "mamba", "packages": ["six==1.17.0"]}])
    assert problem == "python_runtime_envs[0] (t): kind 'mamba' is not one of venv, conda"


# --- conda packages with the Miniforge base ------------------------------------------------------------


def test_pinned_packages_online_plan_miniforge_and_conda_create():
    result = plan(
        [
            {
                "name": "sci",
                "kind": "conda",
                "packages": ["python=3.11.10", " numpy==1.26.4 ", "mkl=2024.2.2=h1"],
            }
        ],
        miniforge_installer=INSTALLER,
        miniforge_url=f"https://github.com/conda-forge/miniforge/releases/download/24.11.3-0/{INSTALLER}",
        miniforge_sha256=SHA,
    )
    assert result["problems"] == []
    (env,) = result["envs"]
    assert env["steps"] == ["miniforge", "conda_create"]
    assert env["packages"] == ["python=3.11.10", "numpy==1.26.4", "mkl=2024.2.2=h1"]
    assert env["create_args"] == env["packages"]
    assert env["record"] == "conda create python=3.11.10 numpy==1.26.4 mkl=2024.2.2=h1"
    assert result["miniforge"] == {
        "installer": INSTALLER,
        "source": "url",
        "url": f"https://github.com/conda-forge/miniforge/releases/download/24.11.3-0/{INSTALLER}",
        "sha256": SHA,
        "download": f"{CACHE}/{INSTALLER}",
        "root": "/opt/gpufleet/miniforge3",
        "conda": "/opt/gpufleet/miniforge3/bin/conda",
        "marker": "/opt/gpufleet/miniforge3/.gpufleet-miniforge",
    }


def test_offline_packages_use_only_the_sites_channels_and_the_bundles_installer():
    result = plan(
        [{"name": "sci", "kind": "conda", "packages": ["numpy=1.26.4"]}],
        offline=True,
        miniforge_installer=INSTALLER,
        conda_channels=["http://bastion/conda/conda-forge", " local "],
        conda_root="/srv/miniforge3/",
    )
    assert result["problems"] == []
    (env,) = result["envs"]
    assert env["create_args"] == [
        "--override-channels", "-c", "http://bastion/conda/conda-forge", "-c", "local", "numpy=1.26.4",
    ]  # fmt: skip
    assert env["record"] == "conda create " + " ".join(env["create_args"])
    assert result["miniforge"]["source"] == "bundle" and result["miniforge"]["sha256"] is None
    assert result["miniforge"]["conda"] == "/srv/miniforge3/bin/conda"


def test_offline_packages_without_a_channel_are_refused_and_told_to_use_a_pack():
    problem = only_problem(
        [{"name": "sci", "kind": "conda", "packages": ["numpy=1.26.4"]}],
        offline=True,
        miniforge_installer=INSTALLER,
    )
    assert problem.startswith(
        "python_runtime_envs[0] (sci): offline (gpufleet_offline) there is no conda channel"
    )
    assert "set python_runtime_conda_channels" in problem
    assert "carry the environment as a conda-pack archive (pack: torch-env.tar.gz" in problem


@pytest.mark.parametrize(
    "spec",
    [
        "numpy",
        "numpy>=1.26",
        "numpy=1.26.*",
        "numpy 1.26.4",
        "conda-forge::numpy=1.26.4",
        "numpy==",
        "numpy[x]=1",
        7,
    ],
)
def test_every_conda_package_is_pinned(spec):
    problem = only_problem(
        [{"name": "sci", "kind": "conda", "packages": ["python=3.11.10", spec]}],
        miniforge_installer=INSTALLER,
    )
    assert problem.startswith(
        f"python_runtime_envs[0] (sci): conda package {spec!r} is not pinned to one version"
    )
    assert "NAME=VERSION, NAME==VERSION or NAME=VERSION=BUILD" in problem


def test_a_conda_package_listed_twice_is_refused():
    problem = only_problem(
        [{"name": "sci", "kind": "conda", "packages": ["NumPy=1.26.4", "numpy==1.26.3"]}],
        miniforge_installer=INSTALLER,
    )
    assert "conda package numpy is listed twice ('NumPy=1.26.4' and 'numpy==1.26.3')" in problem


@pytest.mark.parametrize("packages", [[], "numpy=1.26.4", {"numpy": "1.26.4"}])
def test_conda_packages_must_be_a_non_empty_list(packages):
    problem = only_problem(
        [{"name": "sci", "kind": "conda", "packages": packages}], miniforge_installer=INSTALLER
    )
    assert "packages must be a non-empty list of NAME=VERSION strings" in problem


def test_packages_need_a_miniforge_installer_name_and_only_they_do():
    problems = plan([{"name": "sci", "kind": "conda", "packages": ["numpy=1.26.4"]}])["problems"]
    assert problems == [
        "python_runtime_miniforge_installer '' is not a Miniforge installer's file name; conda packages need "
        "it: set it to the installer's name (a pinned file of the bundle profile, or the file "
        "python_runtime_miniforge_url downloads), e.g. Miniforge3-24.11.3-0-Linux-x86_64.sh"
    ]
    bad = plan(
        [{"name": "s", "kind": "conda", "packages": ["numpy=1.26.4"]}], miniforge_installer="installer.sh"
    )
    assert len(bad["problems"]) == 1 and bad["miniforge"] is None
    assert (
        plan([{"name": "s", "kind": "conda", "pack": "s.tgz"}], miniforge_installer="junk")["problems"] == []
    )


def test_the_miniforge_url_follows_the_same_rules_as_a_pack_url():
    envs = [{"name": "sci", "kind": "conda", "packages": ["numpy=1.26.4"]}]
    online = plan(envs, miniforge_installer=INSTALLER, miniforge_url="https://example.org/m.sh")
    assert online["problems"] == [
        "python_runtime_miniforge_url: url needs its sha256 (64 hexadecimal characters; got ''); compute it "
        "with 'sha256sum FILE' from a trusted copy"
    ]
    offline = plan(
        envs,
        offline=True,
        conda_channels=["http://bastion/conda"],
        miniforge_installer=INSTALLER,
        miniforge_url="https://example.org/m.sh",
        miniforge_sha256=SHA,
    )
    assert len(offline["problems"]) == 1
    assert offline["problems"][0].startswith(
        "python_runtime_miniforge_url: url 'https://example.org/m.sh' is for online"
    )


def test_a_bad_conda_root_or_channel_list_is_refused():
    envs = [{"name": "sci", "kind": "conda", "packages": ["numpy=1.26.4"]}]
    assert plan(envs, miniforge_installer=INSTALLER, conda_root="miniforge")["problems"] == [
        "python_runtime_conda_root 'miniforge' is not an absolute directory below /; set e.g. "
        "python_runtime_conda_root: /opt/gpufleet/miniforge3"
    ]
    assert plan([], conda_channels=["a b"])["problems"] == [
        "python_runtime_conda_channels: 'a b' is not a channel; write a URL or a name, without spaces"
    ]
    assert plan([], conda_channels="conda-forge")["problems"][0].startswith(
        "python_runtime_conda_channels must be a list"
    )


# --- the local fact -----------------------------------------------------------------------------------


def test_the_fact_records_the_kind_and_the_archive():
    envs = plan(
        [
            {"name": "packed", "kind": "conda", "pack": "packed.tar.gz"},
            {"name": "sci", "kind": "conda", "packages": ["numpy=1.26.4"]},
        ],
        miniforge_installer=INSTALLER,
    )["envs"]
    assert flt.python_runtime_fact(envs, ["3.11", ""]) == {
        "packed": {
            "path": f"{ROOT}/packed",
            "kind": "conda",
            "python": "3.11",
            "packages": [],
            "pack": "packed.tar.gz",
        },
        "sci": {"path": f"{ROOT}/sci", "kind": "conda", "python": "", "packages": ["numpy=1.26.4"]},
    }
