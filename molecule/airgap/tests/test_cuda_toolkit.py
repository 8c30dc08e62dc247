"""State after the cuda_toolkit role on the air-gapped nodes: Debian's CUDA 11.8 from the bundle, no GPU.

(Formerly its own Molecule scenario, which downloaded the same 1.6 GB toolkit once more; folded here
with every assertion kept: the state is the same whether the packages come from the mirror or the
bastion.)"""

import json

import pytest

testinfra_hosts = ["ansible://gpu_nodes"]

HOME = "/usr/local/cuda-11.8"


@pytest.fixture(scope="module")
def fact(host):
    return json.loads(host.file("/etc/ansible/facts.d/gpufleet_cuda_toolkit.fact").content_string)


def test_debian_toolkit_installed(host):
    assert host.package("nvidia-cuda-toolkit").is_installed
    assert host.package("nvidia-cuda-toolkit").version.startswith("11.8.")


def test_home_links_into_debian_layout(host):
    assert host.file(f"{HOME}/bin").linked_to == "/usr/lib/nvidia-cuda-toolkit/bin"
    assert host.file(f"{HOME}/include").linked_to == "/usr/include"
    assert host.file(f"{HOME}/include/cuda_runtime.h").exists
    assert host.file(f"{HOME}/lib64/libcudart.so").exists


def test_default_selected_through_alternatives(host):
    out = host.check_output("update-alternatives --query cuda")
    assert "Status: manual" in out
    assert f"Value: {HOME}" in out
    assert host.file("/usr/local/cuda").linked_to == HOME


def test_nvcc_reports_the_release_its_home_is_named_for(host):
    out = host.check_output(f"{HOME}/bin/nvcc --version")
    assert "release 11.8" in out


def test_login_shell_gets_cuda_on_path_and_compiles(host):
    # A user's login shell (profile.d) finds nvcc and its host compiler, and can build CUDA code.
    out = host.check_output("bash -lc 'command -v nvcc; echo CUDA_HOME=$CUDA_HOME'")
    assert "/usr/local/cuda/bin/nvcc" in out
    assert "CUDA_HOME=/usr/local/cuda" in out
    host.check_output(
        "cd /tmp && printf '__global__ void k(){}\\nint main(){k<<<1,1>>>();return 0;}\\n' > t.cu "
        "&& bash -lc 'nvcc -o /tmp/t /tmp/t.cu' && test -x /tmp/t"
    )


def test_ld_so_conf_names_default_toolkit_libraries(host):
    f = host.file("/etc/ld.so.conf.d/gpufleet-cuda.conf")
    assert "/usr/local/cuda/lib64" in f.content_string
    assert "libcudart.so.11.0" in host.check_output("ldconfig -p")


def test_hello_compiled_and_reported_as_no_gpu_not_pass(host, fact):
    binary = host.file("/var/lib/gpufleet/cuda-hello/hello-11.8")
    assert binary.exists and binary.mode & 0o111
    run = host.run("/var/lib/gpufleet/cuda-hello/hello-11.8")
    assert run.rc != 0
    assert "no CUDA-capable device is detected" in run.stderr
    assert fact["hello"]["11.8"]["status"] == "no_gpu"
    assert "no GPU on this host" in fact["hello"]["11.8"]["detail"]


def test_local_fact(fact):
    assert fact["source"] == "debian"
    assert fact["versions"] == ["11.8"]
    assert fact["default"] == "11.8"
    assert fact["nvcc"] == {"11.8": "11.8.89"}
    assert fact["cudnn"]["packages"] == ["nvidia-cudnn-cu11==9.10.2.21"]


def test_cudnn_wheel_loads_and_reports_its_version(host, fact):
    venv = fact["cudnn"]["venv"]
    code = (
        "import ctypes, glob; "
        f"lib = glob.glob('{venv}/lib/python3*/site-packages/nvidia/cudnn/lib/libcudnn.so.9')[0]; "
        "print(ctypes.CDLL(lib).cudnnGetVersion())"
    )
    assert host.check_output(f'{venv}/bin/python -c "{code}"').strip() == "91002"
