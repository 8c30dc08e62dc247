"""Host-level preflight rules (plugins/plugin_utils/preflight.py)."""

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import preflight as pf


def test_secure_boot_from_efivar_bytes():
    # efivarfs content: 4 attribute bytes (0x06 = BS|RT access) then the value byte.
    assert pf.secure_boot_state(b"\x06\x00\x00\x00\x01") == "enabled"
    assert pf.secure_boot_state(b"\x06\x00\x00\x00\x00") == "disabled"
    assert pf.secure_boot_state(b"\x06\x00") == "unknown"
    assert pf.secure_boot_state(None, "SecureBoot enabled\n") == "enabled"
    assert pf.secure_boot_state(None, "SecureBoot disabled\nPlatform is in Setup Mode\n") == "disabled"
    assert pf.secure_boot_state(None, "EFI variables are not supported on this system") == "unknown"


def test_secure_boot_refused_only_when_on_and_unsigned():
    (problem,) = pf.secure_boot_problems("enabled", False)
    assert "mokutil --import /var/lib/dkms/mok.pub" in problem
    assert "preflight_secure_boot_signed: true" in problem
    assert pf.secure_boot_problems("enabled", True) == []
    assert pf.secure_boot_problems("disabled", False) == []
    assert pf.secure_boot_problems("unknown", False) == []


def test_disk_needed_and_refused():
    comps = ["nvidia_driver", "cuda_toolkit_debian", "cudnn", "nccl"]
    need = pf.disk_needed_mib(comps)
    assert need == 1024 + 6400 + 2048 + 512
    assert pf.disk_problems(comps, {"/": need + 1024}) == []
    (problem,) = pf.disk_problems(comps, {"/": 4000})
    assert "not enough free disk on /: 4000 MiB free, 11008 MiB needed" in problem
    assert "preflight_disk_reserve_mib" in problem


def test_disk_uses_the_smallest_relevant_mount():
    (problem,) = pf.disk_problems(["cuda_toolkit_cuda_repo"], {"/": 100000, "/var": 2000, "/home": 10})
    assert "on /var" in problem
    assert "could not read the free disk" in pf.disk_problems(["nccl"], {"/home": 1})[0]


def test_free_by_mount_from_ansible_facts():
    mounts = [
        {"mount": "/", "size_available": 10 * 1024 * 1024 * 1024},
        {"mount": "/boot"},
        {"mount": "/var", "size_available": "bad"},
    ]
    assert pf.free_by_mount(mounts) == {"/": 10240}


def test_report_lists_every_problem_and_says_nothing_changed():
    text = pf.preflight_report(["a; set x", "b; set y"], "node1")
    assert text.splitlines() == [
        "preflight failed on node1: 2 problem(s); nothing was changed.",
        "  1. a; set x",
        "  2. b; set y",
    ]


# Recorded in a lab container (overlay root, which Ansible's mount facts leave out).
DF_CONTAINER = """Filesystem     1048576-blocks  Used Available Capacity Mounted on
overlay                258020 26806     77093      26% /
overlay                258020 26806     77093      26% /
overlay                258020 26806     77093      26% /
overlay                258020 26806     77093      26% /
"""
DF_SEPARATE_VAR = """Filesystem     1048576-blocks  Used Available Capacity Mounted on
/dev/nvme0n1p2          95000 40000     50000      45% /
/dev/nvme0n1p2          95000 40000     50000      45% /
/dev/mapper/vg-var       9000  6000      3000      67% /var
df: /opt: No such file or directory
"""


def test_parse_df():
    assert pf.parse_df(DF_CONTAINER) == {"/": 77093}
    assert pf.parse_df(DF_SEPARATE_VAR) == {"/": 50000, "/var": 3000}
    assert pf.parse_df("") == {}


def test_disk_check_in_a_container_and_with_a_small_var():
    assert pf.disk_problems(["nccl"], pf.parse_df(DF_CONTAINER)) == []
    (problem,) = pf.disk_problems(["cuda_toolkit_debian"], pf.parse_df(DF_SEPARATE_VAR))
    assert "not enough free disk on /var: 3000 MiB free" in problem


def test_unreadable_disk_is_a_problem_not_a_pass_and_can_be_skipped():
    (problem,) = pf.disk_problems(["nccl"], {})
    assert "could not read the free disk" in problem
    assert pf.disk_problems(["nccl"], {}, reserve_mib=-1) == []
