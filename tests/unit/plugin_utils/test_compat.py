"""The GPU software compatibility matrix: table shapes, every problem message, good and bad stacks."""

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils.gpu_arch import CHIP_ARCHITECTURES
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import compat, compat_matrix
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.compat import (
    ARCHITECTURES,
    CUDA_MIN_DRIVER,
    CUDA_MINOR_COMPAT,
    CUDNN,
    DEBIAN_CUDA,
    NCCL,
    TENSORRT_LLM,
    arch_problems,
    choose_cudnn,
    choose_nccl,
    cuda_problems,
    cudnn_packages,
    cudnn_problems,
    driver_key,
    max_cuda_for_driver,
    nccl_packages,
    nccl_problems,
    parse_cuda,
    stack_problems,
    trtllm_problems,
)

# ---------------------------------------------------------------- table shapes


def test_architectures_cover_the_gpu_arch_spellings():
    assert set(ARCHITECTURES) == set(CHIP_ARCHITECTURES.values())


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_architecture_row_shape(arch):
    row = ARCHITECTURES[arch]
    assert set(row) == {
        "compute_capability",
        "compute_capabilities",
        "min_cuda",
        "max_cuda",
        "min_branch",
        "max_branch",
        "open_supported",
        "open_required",
    }
    assert isinstance(row["min_branch"], int)
    assert row["max_branch"] is None or row["max_branch"] >= row["min_branch"]
    assert row["compute_capability"] in row["compute_capabilities"]
    assert parse_cuda(row["min_cuda"])
    assert row["max_cuda"] is None or row["max_cuda"] in CUDA_MIN_DRIVER
    assert not (row["open_required"] and not row["open_supported"])


def test_architecture_facts():
    assert ARCHITECTURES["Hopper"]["min_cuda"] == "11.8"
    assert ARCHITECTURES["Blackwell"]["min_cuda"] == "12.8"
    assert ARCHITECTURES["Blackwell"]["open_required"] is True
    assert ARCHITECTURES["Turing"]["open_supported"] is True
    assert ARCHITECTURES["Volta"]["open_supported"] is False
    assert ARCHITECTURES["Pascal"]["max_branch"] == ARCHITECTURES["Volta"]["max_branch"] == 580
    # min_branch is the branch of the first toolkit's minimum driver.
    for arch in ("Ampere", "Ada Lovelace", "Hopper", "Blackwell"):
        row = ARCHITECTURES[arch]
        assert row["min_branch"] == driver_key(CUDA_MIN_DRIVER[row["min_cuda"]])[0]


@pytest.mark.parametrize(("cuda", "driver"), sorted(CUDA_MIN_DRIVER.items()))
def test_cuda_min_driver_row_shape(cuda, driver):
    assert parse_cuda(cuda) is not None
    assert len(driver_key(driver)) >= 2


def test_cuda_table_is_monotonic_and_has_no_12_7():
    keys = sorted(CUDA_MIN_DRIVER, key=parse_cuda)
    drivers = [driver_key(CUDA_MIN_DRIVER[k]) for k in keys]
    assert drivers == sorted(drivers)
    assert "12.7" not in CUDA_MIN_DRIVER
    assert CUDA_MIN_DRIVER["11.8"] == "520.61.05"
    assert CUDA_MIN_DRIVER["12.2"] == "535.54.03"
    assert CUDA_MIN_DRIVER["13.0"] == "580.65.06"


def test_minor_compat_rows():
    assert CUDA_MINOR_COMPAT == {"11": "450.80.02", "12": "525.60.13", "13": "580"}


@pytest.mark.parametrize("release", sorted(CUDNN))
def test_cudnn_row_shape(release):
    row = CUDNN[release]
    assert set(row) == {"cuda", "min_driver", "apt", "apt_cuda", "pip"}
    assert len(release.split(".")) == 3
    for major, versions in row["cuda"].items():
        assert all(parse_cuda(v)[0] == int(major) for v in versions)
        assert major in row["min_driver"]
    assert set(row["pip"]) <= set(row["cuda"])
    assert row["apt"] is None or row["apt"].startswith(release + ".")
    assert all(v.startswith(release + ".") for v in row["pip"].values())


@pytest.mark.parametrize("release", sorted(NCCL))
def test_nccl_row_shape(release):
    row = NCCL[release]
    assert set(row) == {"apt", "pip"}
    assert all(parse_cuda(a) for a in row["apt"])
    assert row["pip"] and all(m in ("11", "12", "13") for m in row["pip"])


@pytest.mark.parametrize("series", sorted(TENSORRT_LLM))
def test_trtllm_row_shape(series):
    row = TENSORRT_LLM[series]
    assert set(row) == {"cuda", "tensorrt"}
    assert parse_cuda(row["cuda"]) is not None
    assert row["tensorrt"] is None or row["tensorrt"].startswith("10.")


def test_debian_row():
    row = DEBIAN_CUDA["12"]
    assert row["cuda"] == "11.8"
    assert row["package"] == "nvidia-cuda-toolkit"
    assert row["cudnn"] == "8.5.0"
    assert row["cudnn_is_downloader"] is True


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12.4", (12, 4)), ("12.4.1", (12, 4)), ("cuda12.8", (12, 8)), (" 11.8 ", (11, 8)), ("12", None)],
)
def test_parse_cuda(value, expected):
    assert parse_cuda(value) == expected


@pytest.mark.parametrize("value", [None, "", "abc", 12.4, True, [], {}, "1.2.x"])
def test_parse_cuda_never_raises(value):
    assert parse_cuda(value) is None or isinstance(parse_cuda(value), tuple)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("535.261.03", (535, 261, 3)), ("535", (535,)), (535, (535,)), ("R580", (580,)), ("x", ()), (None, ())],
)
def test_driver_key(value, expected):
    assert driver_key(value) == expected


@pytest.mark.parametrize(
    ("driver", "cuda"),
    [
        ("535", "12.2"),
        (535, "12.2"),
        ("550", "12.4"),
        ("570", "12.8"),
        ("580", "13.0"),
        ("470", "11.4"),
        ("525.60.13", "12.0"),
        ("535.43.02", "12.1"),
        ("535.261.03", "12.2"),
        ("580.65.06", "13.0"),
        ("440", None),
        ("garbage", None),
        (None, None),
    ],
)
def test_max_cuda_for_driver(driver, cuda):
    assert max_cuda_for_driver(driver) == cuda


# ---------------------------------------------------------------- architectures


def test_branch_too_old_for_hopper():
    problems = arch_problems(["Hopper"], "470", "proprietary", ["NVIDIA H100 80GB HBM3"])
    assert problems == [
        "driver branch 470 does not support Hopper GPUs (found: NVIDIA H100 80GB HBM3); "
        "set nvidia_driver_branch to 520 or newer"
    ]


def test_branch_past_the_last_for_volta():
    (problem,) = arch_problems(["Volta", "Volta"], "590", "proprietary", ["Tesla V100", "Tesla V100"])
    assert "nvidia_driver_branch" in problem
    assert "R580" in problem
    assert "Tesla V100" in problem


def test_open_flavor_on_pascal():
    (problem,) = arch_problems(["Pascal"], "535", "open")
    assert "nvidia_driver_flavor" in problem
    assert "proprietary" in problem


def test_proprietary_on_blackwell():
    (problem,) = arch_problems(["Blackwell"], "570", "proprietary", ["B200"])
    assert "nvidia_driver_flavor" in problem
    assert "set nvidia_driver_flavor to open" in problem


def test_proprietary_on_grace_hopper_by_name():
    (problem,) = arch_problems(["Hopper"], "550", "proprietary", ["NVIDIA GH200 480GB"])
    assert "Grace Hopper" in problem
    assert "nvidia_driver_flavor" in problem


def test_unknown_architecture_is_ignored():
    assert arch_problems(["unknown", "Kepler", None], "535", "open") == []


@pytest.mark.parametrize(
    ("archs", "branch", "flavor"),
    [
        (["Hopper", "Ampere"], "535", "open"),
        (["Hopper"], "550", "proprietary"),
        (["Volta"], "580", "proprietary"),
        (["Blackwell"], "570", "open"),
        (["Turing"], "535", "open"),
    ],
)
def test_good_architecture_combinations(archs, branch, flavor):
    assert arch_problems(archs, branch, flavor) == []


@pytest.mark.parametrize("bad", [None, "", 42, {"a": 1}, "x"])
def test_arch_problems_never_raise(bad):
    assert isinstance(arch_problems(bad, bad, bad, bad), list)


# ---------------------------------------------------------------- CUDA


def test_cuda_newer_than_the_driver_supports():
    (problem,) = cuda_problems(["12.4"], "12.4", "535")
    assert "cuda_toolkit_versions" in problem
    assert "nvidia_driver_branch" in problem
    assert "12.2" in problem
    assert "550" in problem
    assert "minor version compatibility" in problem


def test_cuda_13_on_535_names_580():
    (problem,) = cuda_problems(["13.0"], "", "535")
    assert "580" in problem
    assert "12.2" in problem


def test_pinned_driver_version_too_old_for_its_own_branch():
    (problem,) = cuda_problems(["12.2"], "", "535", "535.43.02")
    assert "nvidia_driver_version" in problem
    assert "535.54.03" in problem


def test_nonexistent_cuda_version():
    (problem,) = cuda_problems(["12.7"], "", "580")
    assert problem.startswith("cuda_toolkit_versions names 12.7, which NVIDIA never released; known: ")
    assert "12.6, 12.8" in problem


def test_cuda_newer_than_the_matrix_knows():
    (problem,) = cuda_problems(["14.0"], "", "580")
    assert "cuda_toolkit_versions" in problem
    assert "newer than this compatibility matrix knows" in problem


def test_not_a_cuda_version():
    (problem,) = cuda_problems(["twelve"], "", "535")
    assert "cuda_toolkit_versions entry 'twelve'" in problem


def test_default_not_in_versions():
    (problem,) = cuda_problems(["11.8"], "12.2", "535")
    assert "cuda_toolkit_default 12.2" in problem
    assert "cuda_toolkit_versions" in problem


def test_cuda_too_old_for_hopper():
    (problem,) = cuda_problems(["11.7"], "", "535", architectures=["Hopper"])
    assert "cuda_toolkit_versions" in problem
    assert "Hopper" in problem
    assert "11.8" in problem


def test_cuda_13_cannot_compile_for_volta():
    (problem,) = cuda_problems(["13.0"], "", "580", architectures=["Volta"])
    assert "cuda_toolkit_versions" in problem
    assert "Volta" in problem
    assert "12.9" in problem


def test_debian_cuda_on_debian_driver_is_fine():
    debian = DEBIAN_CUDA["12"]["cuda"]
    assert cuda_problems([debian], debian, "535", "535.261.03", ["Hopper", "Ampere"]) == []


@pytest.mark.parametrize("bad", [None, "", 3, {"x": 1}, ["", None]])
def test_cuda_problems_never_raise(bad):
    assert isinstance(cuda_problems(bad, bad, bad, bad, bad), list)


# ---------------------------------------------------------------- cuDNN


def test_cudnn_for_cuda_12_with_toolkit_11_8():
    (problem,) = cudnn_problems("8.9.6.50-1+cuda12.2", ["11.8"])
    assert "cudnn_version" in problem
    assert "cuda_toolkit_versions" in problem
    assert "CUDA 12.x" in problem


def test_cudnn_release_without_a_cuda_11_build():
    (problem,) = cudnn_problems("9.17.0", ["11.8"])
    assert "cudnn_version 9.17.0 is built for CUDA 12.x/13.x only" in problem
    assert "cuda_toolkit_versions" in problem


def test_cudnn_release_not_listing_the_minor():
    (problem,) = cudnn_problems("8.9.6", ["12.4"])
    assert "cudnn_version" in problem
    assert "12.4" in problem


def test_unknown_cudnn_series():
    (problem,) = cudnn_problems("9.99.0", ["12.4"])
    assert "cudnn_version 9.99.0 is not in the compatibility matrix" in problem


def test_cudnn_empty_means_choose():
    assert cudnn_problems("", ["12.4"]) == []


def test_choose_cudnn():
    assert choose_cudnn("12.4") == "9.17.0"
    assert choose_cudnn("12.4", source="cuda_repo") == "9.10.2"
    assert choose_cudnn("11.8") == "9.10.2"
    assert choose_cudnn("13.0", source="pip") == "9.17.0"
    assert choose_cudnn("13.0", source="cuda_repo") is None
    assert choose_cudnn("bad") is None


def test_cudnn_packages():
    assert cudnn_packages("9.10.2", "12.4", "cuda_repo") == [
        "libcudnn9-cuda-12=9.10.2.21-1",
        "libcudnn9-dev-cuda-12=9.10.2.21-1",
    ]
    assert cudnn_packages("9.17.0", "13.0", "pip") == ["nvidia-cudnn-cu13==9.17.0.29"]
    assert cudnn_packages("8.9.6", "11.8", "cuda_repo") == [
        "libcudnn8=8.9.6.50-1+cuda11.8",
        "libcudnn8-dev=8.9.6.50-1+cuda11.8",
    ]
    assert cudnn_packages("9.17.0", "12.4", "cuda_repo") == []
    assert cudnn_packages("9.17.0", "11.8", "pip") == []
    assert cudnn_packages(None, None, None) == []


# ---------------------------------------------------------------- NCCL


def test_unknown_nccl():
    (problem,) = nccl_problems("2.99.1", ["12.4"])
    assert "nccl_version 2.99.1 is not in the compatibility matrix" in problem


def test_nccl_without_a_build_for_the_toolkit_major():
    # 2.21.5 is the last release with a CUDA 11 wheel; 2.23.4 has builds for CUDA 12 only.
    assert nccl_problems("2.21.5", ["11.8"]) == []
    (problem,) = nccl_problems("2.23.4", ["11.8"])
    assert "nccl_version" in problem
    assert "cuda_toolkit_versions" in problem
    (problem,) = nccl_problems("2.27.7-1+cuda13.0", ["12.9"])
    assert "CUDA 13.x" in problem


def test_choose_nccl():
    assert choose_nccl("12.4") == "2.21.5"
    assert choose_nccl("12.8") == "2.26.2"
    assert choose_nccl("13.0") == "2.28.7"
    assert choose_nccl("12.4", source="pip") == "2.32.3"
    assert choose_nccl("11.8") is None  # no apt build for CUDA 11 is recorded
    assert choose_nccl("11.8", source="pip") == "2.21.5"
    assert choose_nccl(None) is None


def test_nccl_packages():
    assert nccl_packages("2.21.5", "12.4", "cuda_repo") == [
        "libnccl2=2.21.5-1+cuda12.4",
        "libnccl-dev=2.21.5-1+cuda12.4",
    ]
    assert nccl_packages("2.21.5", "12.3", "cuda_repo") == [
        "libnccl2=2.21.5-1+cuda12.2",
        "libnccl-dev=2.21.5-1+cuda12.2",
    ]
    assert nccl_packages("2.27.7", "13.0", "pip") == ["nvidia-nccl-cu13==2.27.7"]
    assert nccl_packages("2.21.5", "13.0", "pip") == []
    assert nccl_packages("2.32.3", "12.9", "cuda_repo") == []
    assert nccl_packages("x", "12.9", "pip") == []


# ---------------------------------------------------------------- TensorRT-LLM


def test_unknown_trtllm():
    (problem,) = trtllm_problems("1.1.0", ["12.9"], [])
    assert "trtllm_version 1.1.0 is not in the compatibility matrix" in problem


def test_trtllm_needs_its_cuda():
    (problem,) = trtllm_problems("1.2.1", ["12.9"], ["Hopper"])
    assert "trtllm_version" in problem
    assert "cuda_toolkit_versions" in problem
    assert "13.1" in problem


def test_trtllm_architectures():
    (problem,) = trtllm_problems("0.16.0", ["12.6"], ["Blackwell"])
    assert "trtllm_version" in problem
    assert "0.17" in problem
    (problem,) = trtllm_problems("0.15.0", ["12.6"], ["Volta"])
    assert "Volta" in problem


def test_trtllm_good():
    assert trtllm_problems("1.2.1", ["13.1"], ["Hopper", "Blackwell"]) == []
    assert trtllm_problems("0.21.0", ["12.9"], ["Hopper"]) == []


# ---------------------------------------------------------------- whole stacks


def test_good_stack_debian_defaults():
    assert (
        stack_problems(
            {
                "architectures": ["Hopper"],
                "gpu_names": ["NVIDIA H100 80GB HBM3"],
                "driver_branch": "535",
                "driver_version": "535.261.03",
                "driver_flavor": "proprietary",
                "cuda_versions": ["11.8"],
                "cuda_default": "11.8",
            }
        )
        == []
    )


def test_good_stack_550_cuda_12_4():
    cudnn = choose_cudnn("12.4", source="cuda_repo")
    nccl = choose_nccl("12.4")
    assert cudnn.startswith("9.")
    assert nccl.startswith("2.2")
    assert (
        stack_problems(
            {
                "architectures": ["Hopper", "Hopper"],
                "gpu_names": ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"],
                "driver_branch": "550",
                "driver_flavor": "open",
                "cuda_versions": ["12.4"],
                "cuda_default": "12.4",
                "cudnn_version": cudnn,
                "nccl_version": nccl,
            }
        )
        == []
    )


def test_bad_stack_lists_everything_in_order():
    problems = stack_problems(
        {
            "architectures": ["Hopper"],
            "gpu_names": ["NVIDIA H100 80GB HBM3"],
            "driver_branch": "470",
            "driver_flavor": "proprietary",
            "cuda_versions": ["12.4", "12.7"],
            "cuda_default": "12.4",
            "cudnn_version": "9.99.0",
            "nccl_version": "2.99.0",
            "trtllm_version": "0.99.0",
        }
    )
    starts = [p.split(" ")[0] for p in problems]
    assert starts == [
        "driver",
        "cuda_toolkit_versions",
        "cuda_toolkit_versions",
        "cuda_toolkit_cudnn_version",
        "nccl_version",
        "trtllm_version",
    ]
    assert problems == stack_problems(
        {
            "architectures": ["Hopper"],
            "gpu_names": ["NVIDIA H100 80GB HBM3"],
            "driver_branch": "470",
            "driver_flavor": "proprietary",
            "cuda_versions": ["12.4", "12.7"],
            "cuda_default": "12.4",
            "cudnn_version": "9.99.0",
            "nccl_version": "2.99.0",
            "trtllm_version": "0.99.0",
        }
    )


def test_bad_driver_inputs():
    problems = stack_problems({"driver_branch": "latest", "driver_version": "abc"})
    assert problems[0].startswith("nvidia_driver_branch 'latest'")
    assert problems[1].startswith("nvidia_driver_version 'abc'")


@pytest.mark.parametrize(
    "bad", [None, "", [], 5, {"architectures": 5, "cuda_versions": 7, "driver_branch": []}]
)
def test_stack_problems_never_raise(bad):
    assert isinstance(stack_problems(bad), list)


def test_module_is_stdlib_only():
    import ast
    import sys
    from pathlib import Path

    # compat reads its tables from compat_matrix; the pair together must need nothing but the stdlib.
    sibling = compat_matrix.__name__
    for module in (compat, compat_matrix):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module != sibling:
                imported.add(node.module.split(".")[0])
        assert imported <= set(sys.stdlib_module_names) | {"__future__"}
