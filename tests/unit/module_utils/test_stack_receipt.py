"""module_utils/stack_receipt.py: what a receipt records and which changes make it stop holding,
on real files in a temporary tree (packages, units and the boot given as data where a test needs
them to change)."""

import json
import os

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import stack_receipt as sr

INPUTS = "a" * 64


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A managed tree (/etc-like and /opt-like parts) and fixed packages, units and boot."""
    etc = tmp_path / "etc"
    (etc / "modprobe.d").mkdir(parents=True)
    (etc / "modprobe.d" / "gpufleet-blacklist-nouveau.conf").write_text("blacklist nouveau\n")
    (etc / "nccl.conf").write_text("NCCL_DEBUG=WARN\n")
    venv = tmp_path / "opt" / "venv" / "lib"
    venv.mkdir(parents=True)
    (venv / "nccl.py").write_text("x = 1\n")
    (tmp_path / "opt" / "venv" / "python").symlink_to("/usr/bin/python3")
    paths = (str(etc / "modprobe.d"), str(etc / "nccl.conf"), str(tmp_path / "opt" / "*"))
    monkeypatch.setattr(sr, "PATHS", paths)
    state = {
        "packages": {"nvidia-driver": "535.261.03-1 ii ", "libnccl2": "2.21.5-1 ii "},
        "units": {"nvidia-persistenced.service": "enabled/active", "docker.service": "enabled/active"},
        "boot_id": "boot-1",
    }
    monkeypatch.setattr(sr, "packages", lambda: dict(state["packages"]))
    monkeypatch.setattr(sr, "units", lambda names=sr.UNITS: dict(state["units"]))
    real_read = sr._read
    monkeypatch.setattr(
        sr, "_read", lambda path: state["boot_id"] if path.endswith("boot_id") else real_read(path)
    )
    return tmp_path, state


def recorded(extra=()):
    return sr.render(INPUTS, extra, "2026-12-03T18:00:00Z")


def test_a_receipt_holds_on_the_host_it_was_recorded_on(host):
    assert sr.check(recorded(), INPUTS) == (True, [])


def test_no_receipt_an_unreadable_one_or_another_format_means_a_full_run():
    assert sr.check(None, INPUTS) == (False, ["no receipt (no full run with --fast has finished here yet)"])
    assert sr.check("{not json", INPUTS) == (False, ["the receipt is unreadable"])
    assert sr.check(json.dumps({"format": 99}), INPUTS) == (False, ["the receipt is of another format"])


def test_other_settings_or_another_collection_do_not_hold(host):
    reason = "the settings or the collection changed since the receipt"
    assert sr.check(recorded(), "b" * 64) == (False, [reason])


def test_an_edited_config_file_is_named(host):
    tmp, _ = host
    text = recorded()
    conf = tmp / "etc" / "nccl.conf"
    conf.write_text("NCCL_DEBUG=WARN\nNCCL_IB_DISABLE=1\n")
    assert sr.check(text, INPUTS) == (False, [f"changed under {conf}"])


def test_same_size_rewrite_is_seen_by_its_mtime(host):
    tmp, _ = host
    conf = tmp / "etc" / "nccl.conf"
    text = recorded()
    st = conf.stat()
    conf.write_text("NCCL_DEBUG=INFO\n")  # the same length
    os.utime(conf, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert sr.check(text, INPUTS)[0] is False


def relink(link, target):
    link.unlink()
    link.symlink_to(target)


@pytest.mark.parametrize(
    "change",
    [
        lambda tmp: (tmp / "etc" / "modprobe.d" / "local.conf").write_text("options nvidia x=1\n"),
        lambda tmp: (tmp / "etc" / "modprobe.d" / "gpufleet-blacklist-nouveau.conf").unlink(),
        lambda tmp: (tmp / "etc" / "modprobe.d" / "gpufleet-blacklist-nouveau.conf").chmod(0o600),
        lambda tmp: relink(tmp / "opt" / "venv" / "python", "/usr/local/bin/python3"),
    ],
    ids=["file added", "file removed", "mode changed", "link retargeted"],
)
def test_changes_under_a_managed_directory_do_not_hold(host, change):
    tmp, _ = host
    text = recorded()
    change(tmp)
    converged, reasons = sr.check(text, INPUTS)
    assert not converged and len(reasons) == 1 and reasons[0].startswith("changed under ")


def test_a_managed_path_that_is_gone_or_new_is_named(host):
    tmp, _ = host
    text = recorded()
    (tmp / "etc" / "nccl.conf").unlink()
    (tmp / "opt" / "conda").mkdir()
    gone, new = tmp / "etc" / "nccl.conf", tmp / "opt" / "conda"
    assert sr.check(text, INPUTS) == (False, [f"gone: {gone}", f"new: {new}"])


def test_python_bytecode_written_by_running_a_venv_is_ignored(host):
    tmp, _ = host
    text = recorded()
    cache = tmp / "opt" / "venv" / "lib" / "__pycache__"
    cache.mkdir()
    (cache / "nccl.cpython-311.pyc").write_bytes(b"\0" * 16)
    (tmp / "opt" / "venv" / "lib" / "stray.pyc").write_bytes(b"\0")
    assert sr.check(text, INPUTS) == (True, [])


def test_packages_units_and_the_boot_are_compared(host):
    _, state = host
    text = recorded()
    state["packages"]["nvidia-driver"] = "535.261.03-1 hi "  # put on hold
    state["packages"].pop("libnccl2")
    state["units"]["docker.service"] = "enabled/failed"
    state["boot_id"] = "boot-2"
    converged, reasons = sr.check(text, INPUTS)
    assert not converged
    assert reasons == [
        "the host rebooted since",
        "packages changed: libnccl2, nvidia-driver",
        "docker.service enabled/active -> enabled/failed",
    ]


def test_extra_paths_are_part_of_the_receipt(host, tmp_path):
    moved = tmp_path / "srv-nccl.conf"
    moved.write_text("NCCL_DEBUG=WARN\n")
    text = recorded([str(moved)])
    assert sr.check(text, INPUTS, [str(moved)]) == (True, [])
    assert sr.check(text, INPUTS) == (False, ["the managed paths changed since the receipt"])
    moved.write_text("NCCL_DEBUG=INFO\nNCCL_P2P_DISABLE=1\n")
    assert sr.check(text, INPUTS, [str(moved)]) == (False, [f"changed under {moved}"])


def test_differences_name_at_most_three_and_count_the_rest():
    old = {"packages": {f"p{i}": "1 ii " for i in range(5)}}
    assert sr.differences(old, {"packages": {}}) == ["packages changed: p0, p1, p2 and 2 more"]
    assert sr.differences({"kernel": "6.1.0-57-amd64"}, {"kernel": "6.1.0-58-amd64"}) == [
        "kernel 6.1.0-57-amd64 -> 6.1.0-58-amd64"
    ]
    assert sr.differences({"kernel_modules": ["nvidia"]}, {"kernel_modules": []}) == [
        "loaded NVIDIA/RDMA kernel modules changed"
    ]


def test_kernel_modules_keeps_only_nvidia_and_rdma_modules():
    proc_modules = (
        "nvidia_uvm 1806336 0 - Live 0x0000000000000000 (POE)\n"
        "nvidia 56717312 2 nvidia_uvm, Live 0x0000000000000000 (POE)\n"
        "ib_core 491520 8 rdma_ucm,ib_uverbs, Live 0x0000000000000000\n"
        "overlay 151552 3 - Live 0x0000000000000000\n"
        "mlx5_core 2490368 1 mlx5_ib, Live 0x0000000000000000\n"
    )
    assert sr.kernel_modules(proc_modules) == ["ib_core", "mlx5_core", "nvidia", "nvidia_uvm"]


def test_units_reads_systemctl_show_and_leaves_out_units_not_loaded(monkeypatch):
    out = (
        "Id=docker.service\nLoadState=loaded\nUnitFileState=enabled\nActiveState=active\n\n"
        "Id=nvidia-fabricmanager.service\nLoadState=not-found\nUnitFileState=\nActiveState=inactive\n\n"
        "Id=nvidia-persistenced.service\nLoadState=loaded\nUnitFileState=enabled\nActiveState=failed\n"
    )
    monkeypatch.setattr(sr, "_run", lambda argv: out)
    assert sr.units() == {"docker.service": "enabled/active", "nvidia-persistenced.service": "enabled/failed"}
    monkeypatch.setattr(sr, "_run", lambda argv: None)
    assert sr.units() == {}


def test_packages_falls_back_to_rpm(monkeypatch):
    answers = {"dpkg-query": None, "rpm": "cuda-toolkit-12-4.x86_64 (none):12.4.1-1 ii\n"}
    monkeypatch.setattr(sr, "_run", lambda argv: answers[argv[0]])
    assert sr.packages() == {"cuda-toolkit-12-4.x86_64": "(none):12.4.1-1 ii"}


def test_a_tree_too_large_to_fingerprint_is_refused(tmp_path):
    for i in range(5):
        (tmp_path / f"f{i}").write_text("x")
    assert len(sr.tree(str(tmp_path))) == 6
    with pytest.raises(ValueError, match="more than 3 entries"):
        sr.tree(str(tmp_path), limit=3)
    assert sr.tree(str(tmp_path / "absent")) == []
