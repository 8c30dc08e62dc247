"""gpufleet.cluster NVIDIA driver filters (plugins/filter/driver.py): the names the nvidia_driver
role calls, and the messages they build."""

from types import SimpleNamespace

from ansible_collections.gpufleet.cluster.plugins.filter import driver

# Real package versions of nvidia-kernel-dkms on Debian 12: the bookworm main archive and the
# bookworm-security update.
DEB_MAIN = "535.261.03-1"
DEB_SECURITY = "535.309.01-0+deb12u1"

# Called through the registry, by the names roles use.
flt = SimpleNamespace(**driver.FilterModule().filters())


# --- driver_version_match / driver_version_problem ----------------------------------------------


def test_version_match_pinned_and_newest():
    available = [DEB_SECURITY, DEB_MAIN]
    assert flt.driver_version_match(available, "535.261.03", "535") == DEB_MAIN
    assert flt.driver_version_match(available, "", "535") == DEB_SECURITY
    assert flt.driver_version_match(available, "", "550") is None


def test_version_problem_empty_when_available():
    assert (
        flt.driver_version_problem([DEB_SECURITY, DEB_MAIN], "535.261.03", "535", "nvidia-kernel-dkms") == ""
    )
    assert flt.driver_version_problem([DEB_SECURITY, DEB_MAIN], "", "535", "nvidia-kernel-dkms") == ""


def test_version_problem_pinned_lists_what_the_source_has():
    msg = flt.driver_version_problem([DEB_SECURITY, DEB_MAIN], "535.183.01", "535", "nvidia-kernel-dkms")
    assert msg.startswith("nvidia_driver_version '535.183.01' is not available from the configured source")
    assert "nvidia-kernel-dkms has" in msg
    # Oldest first, each with the upstream version to set and the package version it stands for.
    assert "535.261.03 (535.261.03-1), 535.309.01 (535.309.01-0+deb12u1)" in msg
    assert "set nvidia_driver_version" in msg


def test_version_problem_branch_names_the_branch():
    msg = flt.driver_version_problem([DEB_SECURITY, DEB_MAIN], "", "550", "nvidia-kernel-dkms")
    assert msg.startswith("nvidia_driver_branch '550' is not available")
    assert "535.309.01" in msg
    assert "nvidia_driver_version" in msg


def test_version_problem_pinned_version_on_other_branch_is_a_problem():
    # 535.261.03 exists, but not on the branch that was asked for.
    msg = flt.driver_version_problem([DEB_MAIN], "535.261.03", "550", "nvidia-kernel-dkms")
    assert "nvidia_driver_version '535.261.03' is not available" in msg


def test_version_problem_source_has_nothing():
    msg = flt.driver_version_problem([], "", "535", "nvidia-kernel-dkms")
    assert "nvidia-kernel-dkms has nothing" in msg


def test_version_problem_lists_each_version_once():
    msg = flt.driver_version_problem([DEB_MAIN, DEB_MAIN], "535.183.01", "535", "nvidia-kernel-dkms")
    assert msg.count("535.261.03-1") == 1


# --- driver_problems (ansible_facts-shaped input) -----------------------------------------------


def facts(**kw):
    base = {
        "distribution": "Debian",
        "distribution_version": "12.8",
        "distribution_major_version": "12",
        "distribution_release": "bookworm",
        "os_family": "Debian",
        "kernel": "6.1.0-56-amd64",
    }
    base.update(kw)
    return base


def test_driver_problems_debian_ok():
    assert flt.driver_problems(facts(), "auto", "proprietary", "535", "") == []


def test_driver_problems_reads_distribution_version_for_ubuntu():
    ubuntu = facts(distribution="Ubuntu", distribution_version="22.04", distribution_major_version="22")
    assert flt.driver_problems(ubuntu, "auto", "proprietary", "535", "") == []
    kinetic = facts(distribution="Ubuntu", distribution_version="22.10", distribution_major_version="22")
    assert "unsupported OS Ubuntu 22.10" in flt.driver_problems(kinetic, "auto", "proprietary", "535", "")[0]


def test_driver_problems_reads_major_version_for_debian():
    bullseye = facts(distribution_version="11.9", distribution_major_version="11")
    assert flt.driver_problems(bullseye, "auto", "proprietary", "535", "")[0].startswith(
        "unsupported OS Debian 11.9"
    )


def test_driver_problems_passes_inputs_and_nvswitch_count():
    problems = flt.driver_problems(facts(), "debian", "proprietary", "550", "535.261.03", 4)
    assert len(problems) == 2
    assert "is not on branch 550" in problems[0]
    assert problems[1].startswith("4 NVSwitch device(s) found")


def test_driver_problems_missing_facts_is_unsupported():
    assert flt.driver_problems({}, "auto", "proprietary", "535", "")[0].startswith("unsupported OS None")


# --- the other pass-throughs --------------------------------------------------------------------


def test_driver_plan_forwards_every_argument():
    plan = flt.driver_plan("auto", "Ubuntu", "open", "550", False, True, True)
    assert plan["packages"] == ["nvidia-driver-550-server-open"]
    assert plan["fabricmanager_package"] == "nvidia-fabricmanager-550"
    debian = flt.driver_plan("auto", "Debian", "proprietary", "535", True, False)
    assert "nvidia-persistenced" not in debian["packages"]


def test_dkms_filters_chain_as_in_the_role():
    rows = flt.parse_dkms_status("nvidia-current/535.309.01, 6.1.0-56-amd64, x86_64: installed\n")
    version = flt.upstream_version(DEB_SECURITY)
    assert flt.dkms_missing_kernels(rows, "nvidia-current", version, ["6.1.0-56-amd64"]) == []
    assert flt.dkms_missing_kernels(rows, "nvidia-current", version, ["6.1.0-50-amd64"]) == ["6.1.0-50-amd64"]


def test_activation_plan_forwards_arguments():
    assert flt.activation_plan(True, "535.309.01", "", True, True, 8)["action"] == "none"
    assert (
        flt.activation_plan(False, "535.309.01", "535.261.03", False, False, 8)["action"] == "reboot_required"
    )
    assert flt.activation_plan(False, "535.309.01", "", False, True, 8)["action"] == "load"
    assert flt.activation_plan(False, "535.309.01", "", False, True)["action"] == "none"
