"""nvidia_driver (plugin_utils): input checks, package plans per source, version pinning, dkms status
parsing and the load/reboot decision."""

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils.pkg_recovery import (
    dkms_missing_kernels,
    parse_dkms_status,
)
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.nvidia_driver import (
    activation_plan,
    driver_plan,
    driver_problems,
    match_version,
    on_branch,
    upstream_version,
)
from conftest import FIXTURES

# Real package versions: bookworm non-free (main archive and security update) and Ubuntu jammy.
DEB_MAIN = "535.261.03-1"
DEB_SECURITY = "535.309.01-0+deb12u1"
UBUNTU = "1:535.183.01-0ubuntu0.22.04.1"


def inputs(**kw):
    args = {
        "distribution": "Debian",
        "version": "12.8",
        "major": "12",
        "source": "auto",
        "flavor": "proprietary",
        "branch": "535",
        "pinned_version": "",
        "nvswitch_count": 0,
    }
    args.update(kw)
    return driver_problems(**args)


# --- driver_problems----------------------------------------------------------------------------


def test_debian_12_defaults_are_fine():
    assert inputs() == []


def test_debian_12_with_explicit_source_and_pinned_version_is_fine():
    assert inputs(source="debian", flavor="open", pinned_version="535.261.03") == []


def test_unsupported_os_names_the_supported_list():
    problems = inputs(distribution="Debian", version="11.9", major="11")
    assert len(problems) == 1
    msg = problems[0]
    assert msg.startswith("unsupported OS Debian 11.9")
    for expected in ("Debian 12", "Ubuntu 22.04, 24.04", "RedHat 8, 9", "Rocky 8, 9", "AlmaLinux 8, 9"):
        assert expected in msg


def test_unknown_distribution_is_unsupported_and_stops_further_checks():
    # Only the OS problem: the bad flavour is not reported on an OS the role cannot serve.
    problems = inputs(distribution="Arch", version="rolling", major="rolling", flavor="bogus")
    assert len(problems) == 1
    assert "unsupported OS Arch rolling" in problems[0]


@pytest.mark.parametrize(("version", "major"), [("22.04", "22"), ("24.04", "24")])
def test_ubuntu_supported_by_full_version(version, major):
    assert inputs(distribution="Ubuntu", version=version, major=major) == []


def test_ubuntu_keyed_on_distribution_version_not_major():
    # 22.10 shares the major version 22 with 22.04 but is not an LTS the role supports.
    problems = inputs(distribution="Ubuntu", version="22.10", major="22")
    assert len(problems) == 1
    assert "unsupported OS Ubuntu 22.10" in problems[0]


def test_debian_keyed_on_major_version():
    # A point release is still Debian 12.
    assert inputs(distribution="Debian", version="12.11", major="12") == []


def test_unknown_source():
    problems = inputs(source="nvidia_runfile")
    assert problems == [
        "nvidia_driver_source 'nvidia_runfile' is unknown; "
        "use one of: auto, debian, ubuntu, cuda_repo, rhel_module"
    ]


def test_debian_source_on_ubuntu_names_the_allowed_sources():
    problems = inputs(distribution="Ubuntu", version="22.04", major="22", source="debian")
    assert problems == [
        "nvidia_driver_source 'debian' cannot install on Ubuntu; set nvidia_driver_source to one of: "
        "ubuntu, cuda_repo"
    ]


def test_rhel_module_source_on_debian_names_the_allowed_sources():
    problems = inputs(source="rhel_module")
    assert problems == [
        "nvidia_driver_source 'rhel_module' cannot install on Debian; "
        "set nvidia_driver_source to one of: debian"
    ]


def test_cuda_repo_on_rocky_is_fine():
    assert inputs(distribution="Rocky", version="9.4", major="9", source="cuda_repo") == []


def test_unknown_flavor():
    problems = inputs(flavor="nouveau")
    assert problems == ["nvidia_driver_flavor 'nouveau' is unknown; use one of: proprietary, open"]


@pytest.mark.parametrize("branch", ["53", "5350", "latest", "", None, "535.261"])
def test_bad_branch(branch):
    problems = inputs(branch=branch)
    assert problems == [f"nvidia_driver_branch '{branch}' is not a driver branch; set a number such as '535'"]


def test_branch_given_as_integer_is_accepted():
    # YAML turns an unquoted 535 into an int.
    assert inputs(branch=535, pinned_version="535.261.03") == []


@pytest.mark.parametrize("version", ["535.261.03-1", "535", "v535.261.03", DEB_SECURITY])
def test_malformed_pinned_version(version):
    problems = inputs(pinned_version=version)
    assert len(problems) == 1
    assert problems[0].startswith(f"nvidia_driver_version '{version}' is not a driver version")
    assert "'535.261.03'" in problems[0]


def test_two_part_pinned_version_is_accepted():
    assert inputs(pinned_version="535.54") == []


def test_version_not_on_branch_says_which_branch_to_set():
    problems = inputs(branch="550", pinned_version="535.261.03")
    assert problems == [
        "nvidia_driver_version '535.261.03' is not on branch 550; "
        "set nvidia_driver_branch: '535' or pick a 550.x version"
    ]


def test_version_not_checked_against_a_bad_branch():
    # One problem per mistake: the bad branch is reported, not also a branch mismatch.
    problems = inputs(branch="latest", pinned_version="535.261.03")
    assert len(problems) == 1
    assert "nvidia_driver_branch 'latest'" in problems[0]


def test_nvswitch_with_debian_source():
    problems = inputs(nvswitch_count=4)
    assert len(problems) == 1
    assert problems[0].startswith("4 NVSwitch device(s) found")
    assert "Fabric Manager" in problems[0]
    assert "nvidia_driver_fabricmanager: false" in problems[0]


def test_nvswitch_advice_on_debian_is_itself_valid():
    # Following the message must not lead into another preflight failure: no source that
    # driver_problems rejects on Debian may be suggested.
    msg = inputs(nvswitch_count=4)[0]
    assert "nvidia_driver_source: cuda_repo" not in msg
    assert inputs(source="cuda_repo")[0].startswith(
        "nvidia_driver_source 'cuda_repo' cannot install on Debian"
    )


def test_nvswitch_with_explicit_debian_source_also_reported():
    assert len(inputs(source="debian", nvswitch_count=2)) == 1


def test_nvswitch_on_ubuntu_is_fine():
    assert inputs(distribution="Ubuntu", version="22.04", major="22", nvswitch_count=4) == []


def test_all_problems_reported_together():
    problems = inputs(source="bogus", flavor="bogus", branch="x")
    assert len(problems) == 3
    assert [p.split("'")[0] for p in problems] == [
        "nvidia_driver_source ",
        "nvidia_driver_flavor ",
        "nvidia_driver_branch ",
    ]


# --- driver_plan --------------------------------------------------------------------------------

DEBIAN_HEADLESS_USERSPACE = ["nvidia-smi", "libcuda1", "libnvidia-ml1", "firmware-nvidia-gsp"]


def test_debian_proprietary_headless():
    plan = driver_plan("auto", "Debian", "proprietary", "535")
    assert plan["source"] == "debian"
    assert plan["versioned"] == ["nvidia-kernel-dkms", *DEBIAN_HEADLESS_USERSPACE]
    assert plan["packages"] == [
        "nvidia-kernel-dkms",
        *DEBIAN_HEADLESS_USERSPACE,
        "nvidia-modprobe",
        "nvidia-persistenced",
    ]
    assert plan["dkms_module"] == "nvidia-current"
    assert plan["peermem_module"] == "nvidia-current-peermem"
    assert plan["module_stream"] is None
    assert plan["fabricmanager_package"] is None
    assert "nvidia-*" in plan["pin_packages"]
    assert "libcuda1" in plan["pin_packages"]
    assert "firmware-nvidia-gsp" in plan["pin_packages"]


def test_debian_open_headless():
    plan = driver_plan("debian", "Debian", "open", "535")
    assert plan["versioned"] == ["nvidia-open-kernel-dkms", *DEBIAN_HEADLESS_USERSPACE]
    assert plan["packages"][0] == "nvidia-open-kernel-dkms"
    assert "nvidia-kernel-dkms" not in plan["packages"]
    assert plan["dkms_module"] == "nvidia-current-open"
    # Debian's dkms.conf renames each module to "$PACKAGE_NAME-<name>".
    assert plan["peermem_module"] == "nvidia-current-open-peermem"


def test_debian_proprietary_with_desktop():
    plan = driver_plan("debian", "Debian", "proprietary", "535", headless=False)
    assert plan["versioned"] == ["nvidia-kernel-dkms", "nvidia-driver", *DEBIAN_HEADLESS_USERSPACE]
    assert "nvidia-driver" in plan["packages"]


def test_debian_open_with_desktop():
    plan = driver_plan("debian", "Debian", "open", "535", headless=False)
    assert plan["versioned"] == ["nvidia-open-kernel-dkms", "nvidia-driver", *DEBIAN_HEADLESS_USERSPACE]


def test_debian_headless_has_no_x_server_packages():
    plan = driver_plan("debian", "Debian", "proprietary", "535")
    assert "nvidia-driver" not in plan["packages"]
    assert not [p for p in plan["packages"] if "xserver" in p]


def test_debian_without_persistenced():
    plan = driver_plan("debian", "Debian", "proprietary", "535", persistenced=False)
    assert "nvidia-persistenced" not in plan["packages"]
    assert plan["packages"][-1] == "nvidia-modprobe"


def test_debian_separately_versioned_packages_are_not_pinned_to_the_driver_version():
    # nvidia-modprobe and nvidia-persistenced come from their own source packages (bookworm:
    # 535.161.07-1~deb12u1 / 535.309.01-0+deb12u1 and 535.171.04-1~deb12u1): "=535.261.03-1"
    # does not exist for them, so they must never be in the versioned list.
    plan = driver_plan("debian", "Debian", "proprietary", "535")
    assert "nvidia-modprobe" not in plan["versioned"]
    assert "nvidia-persistenced" not in plan["versioned"]
    assert plan["versioned"][0] == "nvidia-kernel-dkms"


def test_debian_has_no_fabric_manager_package_even_when_asked():
    plan = driver_plan("debian", "Debian", "proprietary", "535", fabricmanager=True)
    assert plan["fabricmanager_package"] is None


@pytest.mark.parametrize(
    ("flavor", "headless", "packages"),
    [
        ("proprietary", True, ["nvidia-headless-535-server", "nvidia-utils-535-server"]),
        ("open", True, ["nvidia-headless-535-server-open", "nvidia-utils-535-server"]),
        ("proprietary", False, ["nvidia-driver-535-server"]),
        ("open", False, ["nvidia-driver-535-server-open"]),
    ],
)
def test_ubuntu_server_packages(flavor, headless, packages):
    plan = driver_plan("auto", "Ubuntu", flavor, "535", headless=headless)
    assert plan["source"] == "ubuntu"
    assert plan["packages"] == packages
    assert plan["versioned"] == []
    assert plan["dkms_module"] == "nvidia"
    assert plan["pin_packages"] == ["*-535-server*"]
    assert plan["fabricmanager_package"] is None


def test_ubuntu_branch_in_names():
    plan = driver_plan("ubuntu", "Ubuntu", "proprietary", 550)
    assert plan["packages"] == ["nvidia-headless-550-server", "nvidia-utils-550-server"]


def test_ubuntu_fabric_manager():
    plan = driver_plan("ubuntu", "Ubuntu", "proprietary", "535", fabricmanager=True)
    assert plan["fabricmanager_package"] == "nvidia-fabricmanager-535"


@pytest.mark.parametrize(
    ("flavor", "package"), [("proprietary", "cuda-drivers-535"), ("open", "nvidia-open-535")]
)
def test_cuda_repo_ubuntu(flavor, package):
    plan = driver_plan("cuda_repo", "Ubuntu", flavor, "535", fabricmanager=True)
    assert plan["source"] == "cuda_repo"
    assert plan["packages"] == [package]
    assert plan["module_stream"] is None
    assert plan["fabricmanager_package"] == "nvidia-fabricmanager-535"
    assert plan["pin_packages"] == ["nvidia-*", "libnvidia-*", "cuda-drivers*"]


@pytest.mark.parametrize("distribution", ["RedHat", "Rocky", "AlmaLinux"])
@pytest.mark.parametrize("source", ["auto", "rhel_module", "cuda_repo"])
@pytest.mark.parametrize(
    ("flavor", "stream"), [("proprietary", "nvidia-driver:535-dkms"), ("open", "nvidia-driver:535-open")]
)
def test_rhel_module_streams(distribution, source, flavor, stream):
    plan = driver_plan(source, distribution, flavor, "535")
    assert plan["module_stream"] == stream
    assert plan["packages"] == ["@" + stream]
    assert plan["dkms_module"] == "nvidia"
    assert plan["fabricmanager_package"] is None
    assert plan["source"] == ("rhel_module" if source == "auto" else source)


def test_rhel_fabric_manager():
    plan = driver_plan("rhel_module", "Rocky", "proprietary", "535", fabricmanager=True)
    assert plan["fabricmanager_package"] == "nvidia-fabric-manager"


# --- versions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("package_version", "upstream"),
    [
        (DEB_MAIN, "535.261.03"),
        (DEB_SECURITY, "535.309.01"),
        (UBUNTU, "535.183.01"),
        ("535.161.07-1~deb12u1", "535.161.07"),
        ("535.54.03", "535.54.03"),
    ],
)
def test_upstream_version(package_version, upstream):
    assert upstream_version(package_version) == upstream


def test_match_version_pinned_picks_that_upstream():
    assert match_version("535.261.03", [DEB_SECURITY, DEB_MAIN]) == DEB_MAIN


def test_match_version_unpinned_picks_newest():
    # 309 > 261 numerically (a string comparison would also work here; 54 vs 261 below would not).
    assert match_version("", [DEB_MAIN, DEB_SECURITY]) == DEB_SECURITY
    assert match_version("", ["535.54.03-1", DEB_MAIN]) == DEB_MAIN


def test_match_version_ignores_epoch():
    assert match_version("535.183.01", [UBUNTU, "1:535.161.08-0ubuntu2.22.04.1"]) == UBUNTU


def test_match_version_nothing_matches():
    assert match_version("535.999.01", [DEB_MAIN, DEB_SECURITY]) is None
    assert match_version("", []) is None


def test_on_branch_filters_by_major():
    available = [DEB_SECURITY, "550.163.01-2~deb12u1", DEB_MAIN, "525.147.05-7~deb12u1"]
    assert on_branch("535", available) == [DEB_SECURITY, DEB_MAIN]
    assert on_branch(550, available) == ["550.163.01-2~deb12u1"]
    assert on_branch("470", available) == []


# --- dkms status --------------------------------------------------------------------------------


def test_parse_dkms_recorded_debian12():
    text = (FIXTURES / "dkms" / "debian12-nvidia-current.txt").read_text()
    assert parse_dkms_status(text) == [
        {
            "module": "nvidia-current",
            "version": "535.309.01",
            "kernel": "6.1.0-56-amd64",
            "arch": "x86_64",
            "state": "installed",
            "warnings": None,
        }
    ]


# The following strings are constructed from dkms's documented output formats, not recorded.


def test_parse_dkms_2x_comma_form():
    rows = parse_dkms_status("nvidia, 535.54.03, 5.15.0-76-generic, x86_64: installed\n")
    assert rows == [
        {
            "module": "nvidia",
            "version": "535.54.03",
            "kernel": "5.15.0-76-generic",
            "arch": "x86_64",
            "state": "installed",
            "warnings": None,
        }
    ]


def test_parse_dkms_warning_in_parentheses():
    rows = parse_dkms_status(
        "nvidia/535.54.03, 5.15.0-76-generic, x86_64: installed "
        "(WARNING! Diff between built and installed module!)"
    )
    assert len(rows) == 1
    assert rows[0]["state"] == "installed"
    assert rows[0]["kernel"] == "5.15.0-76-generic"
    assert rows[0]["warnings"] == "WARNING! Diff between built and installed module!"


def test_parse_dkms_added_only():
    rows = parse_dkms_status("nvidia-current/535.309.01: added\nnvidia, 535.54.03: added\n")
    assert rows == [
        {
            "module": "nvidia-current",
            "version": "535.309.01",
            "kernel": None,
            "arch": None,
            "state": "added",
            "warnings": None,
        },
        {
            "module": "nvidia",
            "version": "535.54.03",
            "kernel": None,
            "arch": None,
            "state": "added",
            "warnings": None,
        },
    ]


def test_parse_dkms_several_kernels_and_modules_skips_noise():
    text = (
        "\n"
        "nvidia-current/535.309.01, 6.1.0-56-amd64, x86_64: installed\n"
        "nvidia-current/535.309.01, 6.1.0-50-amd64, x86_64: built\n"
        "Error! Could not locate dkms.conf file.\n"
        "virtualbox/7.0.20, 6.1.0-56-amd64, x86_64: installed\n"
    )
    rows = parse_dkms_status(text)
    assert [(r["module"], r["kernel"], r["state"]) for r in rows] == [
        ("nvidia-current", "6.1.0-56-amd64", "installed"),
        ("nvidia-current", "6.1.0-50-amd64", "built"),
        ("virtualbox", "6.1.0-56-amd64", "installed"),
    ]


def test_parse_dkms_empty():
    assert parse_dkms_status("") == []


def test_dkms_missing_kernels():
    rows = parse_dkms_status(
        "nvidia-current/535.309.01, 6.1.0-56-amd64, x86_64: installed\n"
        "nvidia-current/535.309.01, 6.1.0-50-amd64, x86_64: built\n"
        "nvidia-current/535.261.03, 6.1.0-48-amd64, x86_64: installed\n"
    )
    kernels = ["6.1.0-56-amd64", "6.1.0-50-amd64", "6.1.0-48-amd64", "6.1.0-40-amd64"]
    # built-but-not-installed, other version, and not built at all are all missing.
    assert dkms_missing_kernels(rows, "nvidia-current", "535.309.01", kernels) == [
        "6.1.0-40-amd64",
        "6.1.0-48-amd64",
        "6.1.0-50-amd64",
    ]
    # Without a version any installed version counts.
    assert dkms_missing_kernels(rows, "nvidia-current", "", kernels) == ["6.1.0-40-amd64", "6.1.0-50-amd64"]


def test_dkms_missing_kernels_other_module_name_does_not_count():
    rows = parse_dkms_status((FIXTURES / "dkms" / "debian12-nvidia-current.txt").read_text())
    assert dkms_missing_kernels(rows, "nvidia-current", "535.309.01", ["6.1.0-56-amd64"]) == []
    assert dkms_missing_kernels(rows, "nvidia", "535.309.01", ["6.1.0-56-amd64"]) == ["6.1.0-56-amd64"]
    assert dkms_missing_kernels(rows, "nvidia-current-open", "", ["6.1.0-56-amd64"]) == ["6.1.0-56-amd64"]


def test_dkms_missing_kernels_added_rows_do_not_count():
    rows = parse_dkms_status("nvidia-current/535.309.01: added\n")
    assert dkms_missing_kernels(rows, "nvidia-current", "535.309.01", ["6.1.0-56-amd64"]) == [
        "6.1.0-56-amd64"
    ]


# --- activation_plan ----------------------------------------------------------------------------


def activation(**kw):
    args = {
        "in_container": False,
        "installed_version": "535.309.01",
        "loaded_version": "",
        "nouveau_loaded": False,
        "reboot_allowed": True,
        "gpu_count": 8,
    }
    args.update(kw)
    return activation_plan(**args)


def test_container_never_loads_or_reboots():
    for loaded, nouveau in [("535.261.03", False), ("", True), ("", False)]:
        plan = activation(in_container=True, loaded_version=loaded, nouveau_loaded=nouveau)
        assert plan["action"] == "none"
        assert "container" in plan["reason"]


def test_nothing_installed():
    plan = activation(installed_version="")
    assert plan["action"] == "none"
    assert "no NVIDIA kernel module is installed" in plan["reason"]


def test_loaded_module_differs_reboots():
    plan = activation(loaded_version="535.261.03")
    assert plan == {
        "action": "reboot",
        "reason": "loaded module 535.261.03 differs from installed 535.309.01",
    }


def test_loaded_module_differs_reboot_disallowed():
    plan = activation(loaded_version="535.261.03", reboot_allowed=False)
    assert plan["action"] == "reboot_required"
    assert plan["reason"].startswith("loaded module 535.261.03 differs from installed 535.309.01")
    assert "nvidia_driver_reboot: false" in plan["reason"]


def test_nouveau_holds_gpus_reboots():
    plan = activation(nouveau_loaded=True)
    assert plan["action"] == "reboot"
    assert "nouveau" in plan["reason"]


def test_nouveau_holds_gpus_reboot_disallowed():
    assert activation(nouveau_loaded=True, reboot_allowed=False)["action"] == "reboot_required"


def test_nouveau_and_loaded_current_nvidia_does_not_reboot():
    # nouveau being listed while the current nvidia module is loaded is no reason to reboot.
    assert activation(nouveau_loaded=True, loaded_version="535.309.01")["action"] == "none"


def test_not_loaded_with_gpus_loads():
    plan = activation()
    assert plan == {"action": "load", "reason": "module 535.309.01 installed, not loaded yet"}


def test_not_loaded_without_gpus_does_nothing():
    plan = activation(gpu_count=0)
    assert plan["action"] == "none"
    assert "no NVIDIA GPU" in plan["reason"]


def test_current_module_loaded_does_nothing():
    plan = activation(loaded_version="535.309.01")
    assert plan == {"action": "none", "reason": "module 535.309.01 loaded and current"}
