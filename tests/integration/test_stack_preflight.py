"""site.yml stops in preflight, before any change, on conflicting stack inputs - all listed at once.

The lab has no GPU, so the "driver branch too old for the GPU" case points gpu_facts at a PCI tree
holding one H100 (a test double made here, device id 0x2330 as in pci.ids), via the
gpufleet_sysfs_pci_root variable. Everything else is the real lab node.
"""

import json

import pytest
from itest import REPO, docker_exec, run

SITE = REPO / "playbooks" / "site.yml"
PCI_DOUBLE = "/tmp/test-double-pci"


def site(lab, tmp_path, extra_vars):
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(extra_vars))
    return run(["ansible-playbook", "-i", lab["inventory"], SITE, "-e", f"@{vars_file}"])


def assert_untouched(lab):
    c = lab["container"]
    listing = docker_exec(c, "sh", "-c", "ls /etc/apt/sources.list.d /etc/apt/preferences.d /opt").stdout
    assert "gpufleet" not in listing
    for path in ("/usr/local/cuda", "/etc/nccl.conf", "/etc/ansible/facts.d"):
        assert docker_exec(c, "test", "-e", path, check=False).returncode == 1, path
    pkgs = docker_exec(c, "dpkg-query", "-W", "-f", "${Package}\n", check=False).stdout.split()
    assert not [p for p in pkgs if "nvidia" in p or "cuda" in p or p.startswith("linux-headers")]


@pytest.fixture
def h100_on_pci(lab):
    c = lab["container"]
    dev = f"{PCI_DOUBLE}/0000:17:00.0"
    docker_exec(
        c,
        "sh",
        "-c",
        f"mkdir -p {dev} && echo 0x10de > {dev}/vendor && echo 0x2330 > {dev}/device "
        f"&& echo 0x030200 > {dev}/class",
    )
    yield PCI_DOUBLE
    docker_exec(c, "rm", "-rf", PCI_DOUBLE)


def test_conflicting_stack_inputs_all_fail_in_preflight(lab, tmp_path, h100_on_pci):
    out = site(
        lab,
        tmp_path,
        {
            "gpufleet_sysfs_pci_root": h100_on_pci,
            "nvidia_driver_branch": "470",
            "cuda_toolkit_source": "cuda_repo",
            "cuda_toolkit_versions": ["12.7", "12.4"],
            "cuda_toolkit_default": "12.4",
            "cuda_toolkit_cudnn_version": "8.9.6",
            "nccl_ib_hca": ["mlx5_0"],
        },
    )
    text = out.stdout
    assert out.returncode != 0
    assert "preflight failed on node1" in text and "nothing was changed" in text
    # driver branch too old for the detected GPU architecture
    assert "driver branch 470 does not support Hopper GPUs" in text
    assert "set nvidia_driver_branch to 520 or newer" in text
    # a CUDA version that does not exist
    assert "cuda_toolkit_versions names 12.7, which NVIDIA never released" in text
    # CUDA newer than the driver supports
    assert "cuda_toolkit_versions names 12.4, which needs driver 550.54.14 or newer" in text
    # an HCA the host does not have
    assert "nccl_ib_hca names mlx5_0, which this host does not have" in text
    # the later plays never ran
    assert "TASK [gpufleet.cluster.nvidia_driver : Install" not in text
    assert_untouched(lab)


def test_cudnn_for_another_cuda_major_fails_in_preflight(lab, tmp_path):
    # Debian 12's toolkit is CUDA 11.8; cuDNN 9.17.0 has builds for CUDA 12 and 13 only.
    out = site(lab, tmp_path, {"cuda_toolkit_cudnn_version": "9.17.0"})
    assert out.returncode != 0
    assert "cuda_toolkit_cudnn_version 9.17.0 is built for CUDA 12.x/13.x only" in out.stdout
    assert "preflight failed on node1: 1 problem(s)" in out.stdout
    assert_untouched(lab)


def test_secure_boot_on_refuses_unsigned_modules(lab, tmp_path):
    c = lab["container"]
    # efivarfs layout: 4 attribute bytes, then the value (1 = enforcing); a copy, since the lab has no EFI.
    docker_exec(c, "sh", "-c", r"printf '\006\000\000\000\001' > /tmp/test-double-SecureBoot")
    out = site(lab, tmp_path, {"preflight_secure_boot_efivar": "/tmp/test-double-SecureBoot"})
    assert out.returncode != 0
    assert "Secure Boot is enabled" in out.stdout
    assert "mokutil --import /var/lib/dkms/mok.pub" in out.stdout
    assert_untouched(lab)
    docker_exec(c, "rm", "-f", "/tmp/test-double-SecureBoot")


def test_not_enough_disk_fails_in_preflight(lab, tmp_path):
    # Ask for a reserve larger than any lab disk: the message names the numbers and the way out.
    out = site(lab, tmp_path, {"preflight_disk_reserve_mib": 100_000_000})
    assert out.returncode != 0
    assert "not enough free disk on /" in out.stdout
    assert "preflight_disk_reserve_mib" in out.stdout
    assert_untouched(lab)
