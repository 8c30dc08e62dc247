"""module_utils.bundle_wheels: hash-pinned pip requirements from a bundle manifest's wheel entries
(closure over ``requires``), and the pinned-key check it shares with verify_bundle."""

import hashlib

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import bundle as b
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_format import validate_manifest
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_wheels import (
    verified_manifest,
    wheel_requirements,
)
from bundle_testkit import build, signing_keys

PIN = "2F173C5CB4120B0D1C028E34128F7BAC8776D15E"


def wheel(filename, requires):
    return {
        "path": f"wheels/{filename}",
        "size": 10,
        "sha256": hashlib.sha256(filename.encode()).hexdigest(),
        "kind": "wheel",
        "requires": requires,
    }


def digest(filename):
    return hashlib.sha256(filename.encode()).hexdigest()


CUDNN = "nvidia_cudnn_cu12-9.1.0.70-py3-none-manylinux2014_x86_64.whl"
CUBLAS = "nvidia_cublas_cu12-12.4.5.8-py3-none-manylinux2014_x86_64.whl"
NCCL = "nvidia_nccl_cu12-2.21.5-py3-none-manylinux2014_x86_64.whl"
TORCH = "torch-2.5.1-cp311-cp311-manylinux1_x86_64.whl"
FILELOCK = "filelock-3.16.1-py3-none-any.whl"


def manifest(*entries):
    files = list(entries) or [
        wheel(CUDNN, ["nvidia-cublas-cu12"]),
        wheel(CUBLAS, []),
        wheel(NCCL, []),
        wheel(TORCH, ["filelock", "nvidia-cudnn-cu12", "nvidia-nccl-cu12"]),
        wheel(FILELOCK, []),
        {"path": "wheels/requirements.txt", "size": 1, "sha256": "a" * 64, "kind": "wheel-index"},
    ]
    return validate_manifest({"schema": 1, "name": "lab", "signing_key": PIN, "files": files})


# --- the closure --------------------------------------------------------------------------------


def test_a_wheel_brings_its_dependencies_with_their_hashes():
    assert wheel_requirements(manifest(), ["nvidia-cudnn-cu12==9.1.0.70"]) == [
        f"nvidia-cublas-cu12==12.4.5.8 --hash=sha256:{digest(CUBLAS)}",
        f"nvidia-cudnn-cu12==9.1.0.70 --hash=sha256:{digest(CUDNN)}",
    ]


def test_the_closure_is_transitive_and_names_are_pep503_normalized():
    lines = wheel_requirements(manifest(), ["Torch", "NVIDIA_NCCL.cu12"])
    assert [line.split(" ")[0] for line in lines] == [
        "filelock==3.16.1",
        "nvidia-cublas-cu12==12.4.5.8",  # torch -> cudnn -> cublas
        "nvidia-cudnn-cu12==9.1.0.70",
        "nvidia-nccl-cu12==2.21.5",
        "torch==2.5.1",
    ]
    assert all(" --hash=sha256:" in line for line in lines)


def test_a_wheel_the_bundle_lacks_is_named_with_the_fix():
    with pytest.raises(b.BundleError) as exc:
        wheel_requirements(manifest(), ["nvidia-cudnn-cu12", "vllm==0.6.0"])
    assert "the bundle has no wheel vllm (vllm==0.6.0)" in str(exc.value)
    assert "add it to the bundle profile's wheels and rebuild the bundle" in str(exc.value)


def test_another_version_than_the_bundle_carries_names_both():
    with pytest.raises(b.BundleError) as exc:
        wheel_requirements(manifest(), ["nvidia-nccl-cu12==2.23.4"])
    assert "nvidia-nccl-cu12==2.23.4 was asked for but the bundle carries nvidia-nccl-cu12==2.21.5" in str(
        exc.value
    )


def test_a_bundle_built_before_requires_was_recorded_must_be_rebuilt():
    old = manifest(
        {"path": f"wheels/{CUDNN}", "size": 10, "sha256": digest(CUDNN), "kind": "wheel"},
        wheel(CUBLAS, []),
    )
    with pytest.raises(b.BundleError) as exc:
        wheel_requirements(old, ["nvidia-cudnn-cu12"])
    assert str(exc.value) == (
        "this bundle was built before gpufleet recorded wheel dependencies: "
        "rebuild it with `gpufleet bundle build`"
    )


def test_a_dependency_without_its_wheel_is_an_inconsistent_bundle():
    broken = manifest(wheel(CUDNN, ["nvidia-cublas-cu12"]))
    with pytest.raises(b.BundleError, match="lists nvidia-cublas-cu12 as a dependency but carries no wheel"):
        wheel_requirements(broken, ["nvidia-cudnn-cu12"])


@pytest.mark.parametrize(
    "spec", ["", "torch==", "torch>=2", "../torch", "torch[]==2.5.1", "torch[a b]", "torch[x"]
)
def test_a_spec_that_is_not_name_or_name_version_is_refused(spec):
    with pytest.raises(b.BundleError, match=r"write NAME, NAME==VERSION or NAME\[EXTRA,...\]==VERSION"):
        wheel_requirements(manifest(), [spec])


# --- extras (llama-cpp-python[server]: the lab's engine and its OpenAI server) ----------------------

LLAMA = "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
DISKCACHE = "diskcache-5.6.3-py3-none-any.whl"
UVICORN = "uvicorn-0.55.0-py3-none-any.whl"
CLICK = "click-8.5.1-py3-none-any.whl"
FASTAPI = "fastapi-0.165.0-py3-none-any.whl"


def llama_bundle(extras=None):
    entry = wheel(LLAMA, ["diskcache"])
    if extras is not None:
        entry["extras"] = extras
    return manifest(
        entry,
        dict(wheel(DISKCACHE, []), extras={}),
        dict(wheel(UVICORN, ["click"]), extras={}),
        wheel(CLICK, []),
        wheel(FASTAPI, []),
    )


def test_an_extra_brings_its_wheels_and_their_dependencies():
    bundle = llama_bundle({"server": ["fastapi", "uvicorn"]})
    assert wheel_requirements(bundle, ["llama-cpp-python[server]==0.3.36"]) == [
        f"click==8.5.1 --hash=sha256:{digest(CLICK)}",  # uvicorn's own dependency
        f"diskcache==5.6.3 --hash=sha256:{digest(DISKCACHE)}",
        f"fastapi==0.165.0 --hash=sha256:{digest(FASTAPI)}",
        f"llama-cpp-python[server]==0.3.36 --hash=sha256:{digest(LLAMA)}",
        f"uvicorn==0.55.0 --hash=sha256:{digest(UVICORN)}",
    ]
    # Without the extra: the wheel and its own dependencies only.
    assert [line.split(" ")[0] for line in wheel_requirements(bundle, ["llama_cpp_python==0.3.36"])] == [
        "diskcache==5.6.3",
        "llama-cpp-python==0.3.36",
    ]


def test_extras_are_compared_normalized_and_merged_across_specs():
    bundle = llama_bundle({"server": ["uvicorn"], "fast-api": ["fastapi"]})
    lines = wheel_requirements(
        bundle, ["llama-cpp-python[Server]", "LLAMA_cpp_python[fast_api, server]==0.3.36"]
    )
    assert f"llama-cpp-python[fast-api,server]==0.3.36 --hash=sha256:{digest(LLAMA)}" in lines
    assert any(line.startswith("fastapi==") for line in lines)


def test_an_extra_the_bundle_was_not_built_with_names_the_profile_line():
    with pytest.raises(b.BundleError) as exc:
        wheel_requirements(llama_bundle({"server": ["uvicorn"]}), ["llama-cpp-python[dev]==0.3.36"])
    assert str(exc.value) == (
        "llama-cpp-python[dev]==0.3.36 asks for the extra 'dev', but the bundle does not carry the "
        "dependencies of llama-cpp-python[dev] (extras it carries complete: server): put "
        "llama-cpp-python[dev]==0.3.36 in the bundle profile's wheels (wheels.packages, or extras on its "
        "wheels.files entry) and rebuild the bundle"
    )


def test_an_extra_in_a_bundle_that_records_no_extras_must_be_rebuilt():
    with pytest.raises(b.BundleError, match="built before gpufleet recorded the dependencies of extras"):
        wheel_requirements(llama_bundle(), ["llama-cpp-python[server]"])
    # A spec without extras still works on such a bundle.
    assert len(wheel_requirements(llama_bundle(), ["llama-cpp-python"])) == 2


@pytest.mark.parametrize("extras", [["server"], {"server": "uvicorn"}, {"": []}, {"server": [""]}])
def test_the_manifest_schema_refuses_extras_that_are_not_a_map_of_names(extras):
    entry = dict(wheel(LLAMA, []), extras=extras)
    with pytest.raises(b.BundleError, match="extras must map each extra to a list of wheel names"):
        validate_manifest({"schema": 1, "name": "lab", "files": [entry]})


def test_the_manifest_schema_refuses_extras_on_other_entries():
    entry = {"path": "files/x", "size": 1, "sha256": "a" * 64, "kind": "file", "extras": {}}
    with pytest.raises(b.BundleError, match="on a wheel entry"):
        validate_manifest({"schema": 1, "name": "lab", "files": [entry]})


@pytest.mark.parametrize("requires", ["filelock", [1], [""], {"a": 1}])
def test_the_manifest_schema_refuses_requires_that_is_not_a_list_of_names(requires):
    entry = dict(wheel(TORCH, []), requires=requires)
    with pytest.raises(b.BundleError, match="requires must be a list of wheel names"):
        validate_manifest({"schema": 1, "name": "lab", "files": [entry]})


# --- the pinned key -----------------------------------------------------------------------------


def test_signing_key_problem_accepts_the_pin_however_it_is_written():
    assert b.signing_key_problem({"signing_key": PIN.lower()}, " ".join([PIN[:20], PIN[20:]])) is None


@pytest.mark.parametrize("named", ["0" * 40, None, "not a key"])
def test_signing_key_problem_names_a_key_other_than_the_pin(named):
    problem = b.signing_key_problem({"signing_key": named}, PIN)
    assert problem == f"manifest.json names signing_key {named!r}, not the pinned key {PIN}"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    yield from signing_keys(tmp_path_factory)


def test_verified_manifest_needs_the_pinned_signature_and_signing_key(tmp_path, keys):
    good = tmp_path / "good"
    build(good, keys["bundle"])
    assert verified_manifest(str(good), keys["bundle"].fpr)["name"] == "lab"
    # Signed by the pinned key, but naming another: refused by the shared pin check.
    other = tmp_path / "names-other"
    build(other, keys["bundle"], signing_key=keys["other"].fpr)
    with pytest.raises(b.BundleError, match="names signing_key"):
        verified_manifest(str(other), keys["bundle"].fpr)
    # Signed with another key altogether.
    stranger = tmp_path / "stranger"
    build(stranger, keys["other"])
    with pytest.raises(b.BundleError, match=f"is not the pinned key {keys['bundle'].fpr}"):
        verified_manifest(str(stranger), keys["bundle"].fpr)
