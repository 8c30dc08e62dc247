"""CUDA toolkit layout and planning rules (plugins/plugin_utils/cuda_toolkit.py)."""

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import cuda_toolkit as ct

NVCC_118 = """nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2022 NVIDIA Corporation
Built on Wed_Sep_21_10:33:58_PDT_2022
Cuda compilation tools, release 11.8, V11.8.89
Build cuda_11.8.r11.8/compiler.31833905_0
"""  # recorded in the lab: Debian 12 nvidia-cuda-toolkit 11.8.89~11.8.0-5~deb12u1


def test_debian_defaults_to_debians_own_version():
    plan = ct.cuda_toolkit_plan("auto", "Debian", "12", [], "", "535")
    assert plan["problems"] == []
    assert plan["source"] == "debian"
    assert plan["versions"] == ["11.8"] and plan["default"] == "11.8"
    (home,) = plan["homes"]
    assert home["home"] == "/usr/local/cuda-11.8"
    assert home["packages"] == ["nvidia-cuda-toolkit"]
    assert home["links"]["bin"] == "/usr/lib/nvidia-cuda-toolkit/bin"
    assert home["links"]["lib64"] == "/usr/lib/x86_64-linux-gnu"


def test_debian_refuses_a_version_it_does_not_package():
    plan = ct.cuda_toolkit_plan("debian", "Debian", "12", ["12.4"], "", "550")
    (problem,) = plan["problems"]
    assert "Debian 12 packages only CUDA 11.8" in problem
    assert "cuda_toolkit_versions" in problem and "cuda_toolkit_source: cuda_repo" in problem


def test_debian_source_refused_elsewhere():
    plan = ct.cuda_toolkit_plan("debian", "Ubuntu", "22", ["12.4"], "", "550")
    assert any("cannot install on Ubuntu" in p for p in plan["problems"])


def test_cuda_repo_side_by_side_with_a_selected_default():
    plan = ct.cuda_toolkit_plan("auto", "Ubuntu", "22", ["12.4", "12.2"], "12.2", "550")
    assert plan["problems"] == []
    assert plan["source"] == "cuda_repo" and plan["repo_dir"] == "ubuntu2204"
    assert plan["versions"] == ["12.2", "12.4"]
    assert plan["default"] == "12.2"
    assert [h["packages"] for h in plan["homes"]] == [["cuda-toolkit-12-2"], ["cuda-toolkit-12-4"]]
    assert [h["priority"] for h in plan["homes"]] == [1202, 1204]
    assert all(h["links"] == {} for h in plan["homes"])


def test_cuda_repo_empty_versions_take_the_newest_the_branch_supports():
    assert ct.cuda_toolkit_plan("cuda_repo", "Rocky", "9", [], "", "535")["versions"] == ["12.2"]
    plan = ct.cuda_toolkit_plan("cuda_repo", "Rocky", "9", [], "", "")
    assert any("set cuda_toolkit_versions" in p for p in plan["problems"])


def test_default_must_be_installed_and_versions_well_formed():
    plan = ct.cuda_toolkit_plan("cuda_repo", "Ubuntu", "24", ["12.4", "twelve"], "12.2", "550")
    assert any("'twelve' is not a CUDA version" in p for p in plan["problems"])
    assert any(
        "cuda_toolkit_default 12.2 is not one of cuda_toolkit_versions (12.4)" in p for p in plan["problems"]
    )


def test_unknown_source_and_unknown_os_directory():
    assert (
        "cuda_toolkit_source 'conda' is unknown"
        in ct.cuda_toolkit_plan("conda", "Debian", "12", [], "")["problems"][0]
    )
    plan = ct.cuda_toolkit_plan("cuda_repo", "Ubuntu", "20", ["12.4"], "", "550")
    assert any("no directory gpufleet knows for Ubuntu 20" in p for p in plan["problems"])


def test_home_links_flattened_in_stable_order():
    plan = ct.cuda_toolkit_plan("debian", "Debian", "12", [], "", "535", arch="aarch64")
    links = ct.cuda_home_links(plan["homes"])
    assert [link["dest"] for link in links] == [
        "/usr/local/cuda-11.8/bin",
        "/usr/local/cuda-11.8/include",
        "/usr/local/cuda-11.8/lib64",
        "/usr/local/cuda-11.8/nvvm",
    ]
    assert links[2]["src"] == "/usr/lib/aarch64-linux-gnu"


def test_nvcc_release():
    assert ct.nvcc_release(NVCC_118) == {"release": "11.8", "version": "11.8.89"}
    assert ct.nvcc_release("bash: nvcc: command not found") is None


def test_hello_outcomes_never_pass_without_a_gpu():
    assert ct.hello_result(0, "42\n", "")["status"] == "pass"
    # recorded in the lab: the compiled hello on a host without a GPU
    no_gpu = ct.hello_result(2, "", "cudaMalloc: no CUDA-capable device is detected\n")
    assert no_gpu["status"] == "no_gpu"
    bad = ct.hello_result(2, "", "cudaMalloc: CUDA driver version is insufficient for CUDA runtime version")
    assert bad["status"] == "fail"
    assert ct.hello_result(1, "7\n", "")["status"] == "fail"


def test_hello_results_from_ansible_loop():
    runs = [{"skipped": True, "__cuda_toolkit_home": {"version": "11.8"}}]
    res = ct.cuda_hello_results(runs, {"gpu_count": 0})
    assert res["11.8"]["status"] == "no_gpu" and "no GPU on this host" in res["11.8"]["detail"]
    res = ct.cuda_hello_results(runs, {"gpu_count": 8, "driver_error": "NVIDIA-SMI has failed"})
    assert "driver not loaded (NVIDIA-SMI has failed)" in res["11.8"]["detail"]
    ran = [{"rc": 0, "stdout": "42", "stderr": "", "__cuda_toolkit_home": {"version": "12.4"}}]
    assert ct.cuda_hello_results(ran, {"gpu_count": 1})["12.4"]["summary"].startswith("12.4 pass")


def test_cudnn_plan_on_debian_is_the_matrix_wheel_for_the_toolkit_major():
    plan = ct.cudnn_plan("auto", "Debian", "", "11.8")
    assert plan == {
        "source": "pip",
        "version": "9.10.2",
        "packages": ["nvidia-cudnn-cu11==9.10.2.21"],
        "problems": [],
    }


def test_cudnn_plan_elsewhere_uses_nvidias_packages():
    plan = ct.cudnn_plan("auto", "Ubuntu", "9.10.2", "12.4")
    assert plan["source"] == "cuda_repo"
    assert plan["packages"] == ["libcudnn9-cuda-12=9.10.2.21-1", "libcudnn9-dev-cuda-12=9.10.2.21-1"]


def test_cudnn_for_another_cuda_major_is_a_problem():
    plan = ct.cudnn_plan("pip", "Debian", "9.17.0", "11.8")
    (problem,) = plan["problems"]
    assert "cuda_toolkit_cudnn_version 9.17.0 is built for CUDA 12.x/13.x only" in problem
