"""pkg_recovery (host code): reading what a fault left half done, on outputs recorded on a lab node
whose container was killed during the NVIDIA driver's DKMS build (tests/fixtures/recovery), and
wheel installs cut short, on copies of real pip-made installs from the test venv."""

from ansible_collections.gpufleet.cluster.plugins.module_utils import pkg_recovery as pr
from conftest import FIXTURES
from wheel_testkit import copy_real_install, installed_site_packages

REC = FIXTURES / "recovery"


def test_recorded_power_loss_leaves_the_driver_half_configured():
    half = pr.half_done_packages((REC / "dpkg-query-after-power-loss.txt").read_text())
    assert {"package": "nvidia-kernel-dkms", "version": "535.261.03-1", "state": "half-configured"} in half
    assert all(h["state"] in pr.HALF_DONE.values() or h["state"] == "reinstall required" for h in half)


def test_recorded_clean_node_has_nothing_half_done():
    text = (REC / "dpkg-query-clean.txt").read_text()
    assert len(text.splitlines()) > 300  # the whole package list of a converged node
    assert pr.half_done_packages(text) == []


def test_every_dpkg_state_letter_is_read():
    text = (
        "ii \tcurl\t7.88.1-10+deb12u14\n"
        "iU \tnvidia-kernel-support\t535.261.03-1\n"
        "iF \tnvidia-kernel-dkms\t535.261.03-1\n"
        "iH \tlibcuda1:amd64\t535.261.03-1\n"
        "iW \tnvidia-driver\t535.261.03-1\n"
        "it \tinitramfs-tools\t0.142+deb12u3\n"
        "iiR\tbroken\t1.0\n"
        "rc \tremoved-keeps-config\t1.0\n"
        "not a dpkg line\n"
    )
    states = {h["package"]: h["state"] for h in pr.half_done_packages(text)}
    assert states == {
        "nvidia-kernel-support": "unpacked, not configured",
        "nvidia-kernel-dkms": "half-configured",
        "libcuda1:amd64": "half-installed",
        "nvidia-driver": "awaiting another package's triggers",
        "initramfs-tools": "triggers pending",
        "broken": "reinstall required",
    }


def test_journal_pending_is_digit_named_files_only(tmp_path):
    assert pr.journal_pending(str(tmp_path / "missing")) is False
    assert pr.journal_pending(str(tmp_path)) is False
    (tmp_path / "tmp.i").write_text("")
    assert pr.journal_pending(str(tmp_path)) is False
    (tmp_path / "0000").write_text("Package: nvidia-kernel-dkms\n")
    assert pr.journal_pending(str(tmp_path)) is True


def test_recorded_dkms_state_after_power_loss_is_unfinished_for_the_kernel_with_headers():
    rows = pr.parse_dkms_status((REC / "dkms-status-after-power-loss.txt").read_text())
    todo = pr.dkms_unfinished(rows, ["nvidia-current"], ["6.1.0-57-amd64"])
    assert todo == [{"module": "nvidia-current", "version": "535.261.03", "kernel": "6.1.0-57-amd64"}]


def test_dkms_unfinished_takes_the_newest_version_and_skips_installed_kernels():
    rows = pr.parse_dkms_status(
        "nvidia-current/535.261.03, 6.1.0-57-amd64, x86_64: installed\n"
        "nvidia-current/535.309.01, 6.1.0-57-amd64, x86_64: built\n"
        "nvidia-current/535.309.01, 6.1.0-58-amd64, x86_64: installed\n"
    )
    assert pr.dkms_unfinished(rows, ["nvidia-current"], ["6.1.0-57-amd64", "6.1.0-58-amd64"]) == [
        {"module": "nvidia-current", "version": "535.309.01", "kernel": "6.1.0-57-amd64"}
    ]
    assert pr.dkms_unfinished(rows, ["nvidia-current-open"], ["6.1.0-57-amd64"]) == []
    assert pr.dkms_unfinished(rows, ["nvidia-current"], []) == []


def test_lock_holders_from_proc_locks():
    locks = (
        "1: POSIX  ADVISORY  WRITE 4242 00:2e:131090 0 EOF\n"
        "1: -> POSIX  ADVISORY  WRITE 5151 00:2e:131090 0 EOF\n"
        "2: FLOCK  ADVISORY  WRITE 77 fd:01:999 0 EOF\n"
    )
    assert pr.lock_holders(locks, {(0, 0x2E, 131090)}) == [4242]
    assert pr.lock_holders(locks, {(0x63, 0x1, 131090)}) == [4242]  # overlayfs: the inode decides
    assert pr.lock_holders(locks, {(0, 0x2E, 5)}) == []
    assert pr.lock_holders("", {(0, 0x2E, 131090)}) == []


def test_file_identity(tmp_path):
    path = tmp_path / "lock"
    path.write_text("")
    _major, _minor, inode = pr.file_identity(str(path))
    assert inode == path.stat().st_ino
    assert pr.file_identity(str(tmp_path / "missing")) is None


def test_summary_names_what_was_repaired():
    assert pr.summary([]) == ""
    text = pr.summary(
        [
            {"what": "dpkg", "packages": [{"package": "nvidia-kernel-dkms", "version": "1", "state": "x"}]},
            {"what": "apt"},
            {"what": "dkms", "module": "nvidia-current", "version": "535.261.03", "kernel": "6.1.0-57-amd64"},
        ]
    )
    assert text == (
        "recovered an interrupted dpkg run (nvidia-kernel-dkms); completed dependencies apt left unresolved "
        "(apt-get install -f, nothing removed); finished the DKMS build of nvidia-current/535.261.03 for "
        "6.1.0-57-amd64"
    )


# --- wheel installs cut short ------------------------------------------------------------------
def test_every_install_in_this_venv_reads_as_whole():
    """No false alarm on real RECORDs: every distribution pip installed in the test venv is whole."""
    site = installed_site_packages()
    assert len(list(site.glob("*.dist-info"))) > 10
    assert pr.broken_distributions(str(site)) == []


def test_a_file_cut_short_or_missing_is_found(tmp_path):
    real = copy_real_install(tmp_path)
    assert pr.broken_distributions(str(tmp_path)) == []
    cut = tmp_path / real["file"]
    cut.write_bytes(cut.read_bytes()[:100])
    (found,) = pr.broken_distributions(str(tmp_path))
    assert found["package"] == "iniconfig" and found["version"] == real["version"]
    assert found["problem"].startswith(f"{real['file']} is 100 bytes, ") and found["problem"].endswith(
        "(cut short)"
    )
    cut.unlink()
    assert pr.broken_distributions(str(tmp_path))[0]["problem"] == f"{real['file']} is missing"


def test_bytecode_python_rewrote_or_dropped_is_no_broken_install(tmp_path):
    """pip records the size of the .pyc it compiled; Python rewrites bytecode as it sees fit (found on
    the lab: numpy's conv_template.cpython-311.pyc 17 bytes longer than recorded after the install)."""
    real = copy_real_install(tmp_path)
    record = tmp_path / real["dist_info"] / "RECORD"
    pyc = "iniconfig/__pycache__/__init__.cpython-311.pyc"
    (tmp_path / pyc).parent.mkdir(exist_ok=True)
    (tmp_path / pyc).write_bytes(b"x" * 120)
    with record.open("a") as fh:
        fh.write(f"{pyc},sha256=AAAA,103\n")
        fh.write("iniconfig/__pycache__/gone.cpython-311.pyc,sha256=BBBB,99\n")
    assert pr.broken_distributions(str(tmp_path)) == []
    cut = tmp_path / real["file"]
    cut.write_bytes(cut.read_bytes()[:100])
    assert pr.broken_distributions(str(tmp_path))[0]["problem"].startswith(f"{real['file']} is 100 bytes")


def test_metadata_without_record_is_an_install_cut_short(tmp_path):
    real = copy_real_install(tmp_path)
    (tmp_path / real["dist_info"] / "RECORD").unlink()
    (found,) = pr.broken_distributions(str(tmp_path))
    assert found["problem"] == "no RECORD (its install was cut short)"
    assert found["dist_info"] == str(tmp_path / real["dist_info"])


def test_venv_site_packages_and_a_missing_venv(tmp_path):
    sp = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    sp.mkdir(parents=True)
    (tmp_path / "venv" / "lib" / "python3.11" / "config").mkdir()
    assert pr.venv_site_packages(str(tmp_path / "venv")) == [str(sp)]
    assert pr.venv_site_packages(str(tmp_path / "nowhere")) == []
    assert pr.broken_distributions(str(tmp_path / "nowhere")) == []
