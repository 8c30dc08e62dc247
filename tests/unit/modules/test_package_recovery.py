"""gpufleet.cluster.package_recovery: what it repairs after a fault cut package work short, driven
with the outputs recorded on a lab node whose container was killed during the NVIDIA driver's DKMS
build (tests/fixtures/recovery/PROVENANCE.md). run_command and get_bin_path are replaced; the
real recovery on a real node is `make faults` (tests/faults: power loss during DKMS, controller killed)."""

import json

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.module_utils import pkg_recovery
from ansible_collections.gpufleet.cluster.plugins.modules import package_recovery
from conftest import FIXTURES
from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401

REC = FIXTURES / "recovery"
BINS = {"dpkg": "/usr/bin/dpkg", "dpkg-query": "/usr/bin/dpkg-query", "apt-get": "/usr/bin/apt-get"}
BINS_DKMS = dict(BINS, dkms="/usr/sbin/dkms")


class Host:
    """A node as the module sees it: binaries, each command's answer, kernels with headers."""

    def __init__(
        self, monkeypatch, tmp_path, answers, bins=BINS_DKMS, kernels=("6.1.0-57-amd64",), journal=False
    ):
        self.answers = answers
        self.calls = []
        self.record = tmp_path / "state" / "recovery.jsonl"
        host = self

        def get_bin_path(_module, name, required=False, opt_dirs=None):
            return bins.get(name)

        def run_command(_module, args, **kwargs):
            argv = [str(a) for a in args]
            host.calls.append(argv)
            for prefix, answer in host.answers.items():
                if " ".join(argv).startswith(prefix):
                    return answer(argv) if callable(answer) else answer
            return 0, "", ""

        monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", get_bin_path)
        monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
        monkeypatch.setattr(package_recovery, "_kernels_with_headers", lambda: list(kernels))
        monkeypatch.setattr(pkg_recovery, "journal_pending", lambda *a: journal)
        monkeypatch.setattr(package_recovery, "_holder", lambda path: None)

    def run(self, expect=AnsibleExitJson, **args):
        args.setdefault("record", str(self.record))
        with patch_module_args(args), pytest.raises(expect) as exc:
            package_recovery.main()
        return exc.value.args[0]

    def ran(self, prefix):
        return [c for c in self.calls if " ".join(c).startswith(prefix)]


def text(name):
    return (REC / name).read_text(encoding="utf-8")


INTERRUPTED = {
    "/usr/bin/dpkg-query -W": (0, text("dpkg-query-after-power-loss.txt"), ""),
    "/usr/sbin/dkms status": (0, text("dkms-status-after-power-loss.txt"), ""),
}


def test_power_loss_during_dkms_configures_dpkg_and_records_it(monkeypatch, tmp_path):
    host = Host(monkeypatch, tmp_path, dict(INTERRUPTED), journal=True)
    result = host.run(role="nvidia_driver", dkms_modules=["nvidia-current"])
    assert result["changed"] is True
    assert host.ran("dpkg --configure -a --force-confdef --force-confold")
    dpkg = result["repaired"][0]
    assert dpkg["what"] == "dpkg"
    assert {"package": "nvidia-kernel-dkms", "version": "535.261.03-1", "state": "half-configured"} in dpkg[
        "packages"
    ]
    assert result["msg"].startswith("recovered an interrupted dpkg run (")
    assert "nvidia-kernel-dkms" in result["msg"]
    entry = json.loads(host.record.read_text().splitlines()[-1])
    assert entry["role"] == "nvidia_driver"
    assert entry["repaired"] == result["repaired"]


def test_a_clean_node_changes_nothing_and_writes_no_record(monkeypatch, tmp_path):
    answers = {
        "/usr/bin/dpkg-query -W": (0, text("dpkg-query-clean.txt"), ""),
        "/usr/sbin/dkms status": (0, "nvidia-current/535.261.03, 6.1.0-57-amd64, x86_64: installed\n", ""),
    }
    host = Host(monkeypatch, tmp_path, answers)
    result = host.run(role="nvidia_driver", dkms_modules=["nvidia-current"])
    assert result["changed"] is False
    assert result["repaired"] == [] and result["msg"] == ""
    assert not host.ran("dpkg --configure") and not host.ran("/usr/sbin/dkms install")
    assert not host.record.exists()


def test_check_mode_reports_and_runs_nothing(monkeypatch, tmp_path):
    host = Host(monkeypatch, tmp_path, dict(INTERRUPTED), journal=True)
    result = host.run(_ansible_check_mode=True, dkms_modules=["nvidia-current"])
    assert result["changed"] is True
    assert [r["what"] for r in result["repaired"]] == ["dpkg", "dkms"]
    assert not host.ran("dpkg --configure") and not host.ran("/usr/sbin/dkms install")
    assert not host.ran("/usr/bin/apt-get")
    assert not host.record.exists()


def test_a_dkms_build_cut_short_outside_dpkg_is_finished_for_kernels_with_headers(monkeypatch, tmp_path):
    answers = {
        "/usr/bin/dpkg-query -W": (0, text("dpkg-query-clean.txt"), ""),
        "/usr/sbin/dkms status": (0, "nvidia-current/535.261.03: added\n", ""),
    }
    host = Host(monkeypatch, tmp_path, answers, kernels=("6.1.0-57-amd64", "6.1.0-58-amd64"))
    result = host.run(dkms_modules=["nvidia-current"])
    assert host.ran("/usr/sbin/dkms install") == [
        ["/usr/sbin/dkms", "install", "-m", "nvidia-current", "-v", "535.261.03", "-k", "6.1.0-57-amd64"],
        ["/usr/sbin/dkms", "install", "-m", "nvidia-current", "-v", "535.261.03", "-k", "6.1.0-58-amd64"],
    ]
    assert "finished the DKMS build of nvidia-current/535.261.03 for 6.1.0-57-amd64" in result["msg"]


def test_a_module_dkms_does_not_know_is_not_built(monkeypatch, tmp_path):
    answers = {
        "/usr/bin/dpkg-query -W": (0, text("dpkg-query-clean.txt"), ""),
        "/usr/sbin/dkms status": (0, "zfs/2.1.11, 6.1.0-57-amd64, x86_64: installed\n", ""),
    }
    host = Host(monkeypatch, tmp_path, answers)
    assert host.run(dkms_modules=["nvidia-current"])["changed"] is False
    assert not host.ran("/usr/sbin/dkms install")


def test_unresolved_dependencies_are_completed_without_removing_anything(monkeypatch, tmp_path):
    answers = {
        "/usr/bin/dpkg-query -W": (0, text("dpkg-query-clean.txt"), ""),
        "/usr/bin/apt-get check": (100, "", "E: Unmet dependencies. Try 'apt --fix-broken install'"),
    }
    host = Host(monkeypatch, tmp_path, answers, bins=BINS)
    result = host.run()
    (install,) = host.ran("/usr/bin/apt-get install")
    assert "-f" in install and "--no-remove" in install
    assert result["repaired"] == [{"what": "apt"}]


def test_dpkg_that_cannot_finish_fails_saying_the_host_is_half_configured(monkeypatch, tmp_path):
    answers = dict(INTERRUPTED)
    answers["dpkg --configure -a"] = (
        1,
        "",
        "dpkg: error processing package nvidia-kernel-dkms (--configure):\n"
        " installed nvidia-kernel-dkms package post-installation script subprocess returned error "
        "exit status 10",
    )
    host = Host(monkeypatch, tmp_path, answers, journal=True)
    result = host.run(expect=AnsibleFailJson, dkms_modules=["nvidia-current"])
    assert "dpkg --configure -a failed (exit 1)" in result["msg"]
    assert "post-installation script" in result["msg"]
    assert "still half configured" in result["msg"]
    assert result["repaired"][0]["what"] == "dpkg"


def test_a_running_package_manager_is_named_and_left_alone(monkeypatch, tmp_path):
    host = Host(monkeypatch, tmp_path, dict(INTERRUPTED), journal=True)
    lock = tmp_path / "lock-frontend"
    lock.write_text("")
    monkeypatch.setattr(pkg_recovery, "DPKG_LOCKS", (str(lock),))
    monkeypatch.setattr(
        package_recovery, "_holder", lambda path: (4242, "/usr/bin/python3 /usr/bin/unattended-upgrade")
    )
    result = host.run(expect=AnsibleFailJson, lock_timeout=0)
    assert f"another package manager holds {lock}" in result["msg"]
    assert "pid 4242 (/usr/bin/python3 /usr/bin/unattended-upgrade)" in result["msg"]
    assert "nothing was changed" in result["msg"]
    assert not host.ran("dpkg --configure")


def test_dnf_duplicates_are_reported_not_removed(monkeypatch, tmp_path):
    answers = {
        "/usr/bin/dnf -q check": (1, "kmod-nvidia-535-1.el9.x86_64 is a duplicate with kmod-nvidia-550-1", "")
    }
    host = Host(monkeypatch, tmp_path, answers, bins={"dnf": "/usr/bin/dnf"})
    result = host.run(expect=AnsibleFailJson)
    assert "is a duplicate" in result["msg"] and "dnf remove --duplicates" in result["msg"]
    assert [c for c in host.calls if "remove" in c] == []


def test_a_dpkg_still_running_is_waited_for_before_its_state_is_read(monkeypatch, tmp_path):
    """A killed controller's apt goes on on the node: while it runs, nvidia-kernel-dkms looks half
    configured; the module waits for the lock, then reads the finished state and repairs nothing."""
    lock = tmp_path / "lock-frontend"
    lock.write_text("")
    finished = {"done": False}
    waits = iter([(4242, "/usr/bin/dpkg --status-fd 45 --configure nvidia-kernel-dkms")] * 2 + [None] * 10)

    def holder(path):
        answer = next(waits)
        finished["done"] = answer is None
        return answer

    def query(argv):
        name = "dpkg-query-clean.txt" if finished["done"] else "dpkg-query-after-power-loss.txt"
        return 0, text(name), ""

    host = Host(monkeypatch, tmp_path, {"/usr/bin/dpkg-query -W": query}, bins=BINS)
    monkeypatch.setattr(pkg_recovery, "DPKG_LOCKS", (str(lock),))
    monkeypatch.setattr(package_recovery, "_holder", holder)
    monkeypatch.setattr(package_recovery.time, "sleep", lambda s: None)
    result = host.run(lock_timeout=60)
    assert finished["done"] and result["changed"] is False and result["repaired"] == []
    assert not host.ran("dpkg --configure")


def _venv_with_a_cut_short_install(tmp_path):
    from wheel_testkit import copy_real_install

    sp = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    sp.mkdir(parents=True)
    real = copy_real_install(sp)
    cut = sp / real["file"]
    cut.write_bytes(cut.read_bytes()[:64])  # the power went mid-file
    return tmp_path / "venv", sp, real


def test_a_wheel_install_cut_short_is_set_aside_for_pip_and_recorded(monkeypatch, tmp_path):
    venv, sp, real = _venv_with_a_cut_short_install(tmp_path)
    host = Host(monkeypatch, tmp_path, {}, bins={})
    out = host.run(venvs=[str(venv)], role="cuda_toolkit")
    assert out["changed"] is True
    (item,) = out["repaired"]
    assert item["what"] == "venv" and item["venv"] == str(venv)
    assert item["packages"][0]["package"] == "iniconfig" and "cut short" in item["packages"][0]["problem"]
    assert out["msg"].startswith(f"set aside the metadata of a cut-short install in {venv}")
    assert not (sp / real["dist_info"]).exists(), "pip must see it missing and install it again"
    (aside,) = sp.glob(f"{real['dist_info']}.gpufleet-broken-*")
    assert (aside / "RECORD").is_file(), "set aside, not deleted"
    assert (sp / real["file"]).exists(), "the package's files stay for pip to overwrite"
    assert json.loads(host.record.read_text())["repaired"][0]["what"] == "venv"


def test_check_mode_only_says_which_install_was_cut_short(monkeypatch, tmp_path):
    venv, sp, real = _venv_with_a_cut_short_install(tmp_path)
    host = Host(monkeypatch, tmp_path, {}, bins={})
    out = host.run(venvs=[str(venv)], _ansible_check_mode=True)
    assert out["changed"] is True and out["repaired"][0]["what"] == "venv"
    assert (sp / real["dist_info"]).is_dir() and not host.record.exists()
