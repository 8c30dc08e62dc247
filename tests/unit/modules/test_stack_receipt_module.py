"""gpufleet.cluster.stack_receipt: the module's contract (check, record, absent, check mode) on a
temporary receipt and tree, and once for real through ansible-playbook on this machine."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.module_utils import stack_receipt as sr
from ansible_collections.gpufleet.cluster.plugins.modules import stack_receipt
from conftest import playbook_env
from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401

INPUTS = "c" * 64


def run(expect=AnsibleExitJson, check_mode=False, **args):
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(expect) as exc:
        stack_receipt.main()
    return exc.value.args[0]


@pytest.fixture
def managed(tmp_path, monkeypatch):
    """Only a temporary tree is managed; packages and units are fixed (this machine's may change
    while the suite runs)."""
    tree = tmp_path / "etc-nccl"
    tree.mkdir()
    (tree / "nccl.conf").write_text("NCCL_DEBUG=WARN\n")
    monkeypatch.setattr(sr, "PATHS", (str(tree),))
    monkeypatch.setattr(sr, "packages", lambda: {"libnccl2": "2.21.5-1 ii "})
    monkeypatch.setattr(sr, "units", lambda names=sr.UNITS: {})
    return tree, tmp_path / "state" / "stack-receipt.json"


def test_check_without_a_receipt_asks_for_a_full_run_and_changes_nothing(managed):
    _, receipt = managed
    res = run(inputs=INPUTS, receipt=str(receipt))
    assert res["converged"] is False and res["changed"] is False
    assert res["msg"] == "full run: no receipt (no full run with --fast has finished here yet)"


def test_record_then_check_holds(managed):
    _, receipt = managed
    res = run(state="record", inputs=INPUTS, receipt=str(receipt))
    assert res["changed"] is True and receipt.is_file() and "converged" not in res
    assert oct(receipt.stat().st_mode & 0o777) == "0o644"
    assert json.loads(receipt.read_text())["inputs"] == INPUTS
    res = run(inputs=INPUTS, receipt=str(receipt))
    assert (res["converged"], res["changed"], res["reasons"]) == (True, False, [])
    assert res["msg"] == "the receipt holds"


def test_a_receipt_that_no_longer_holds_is_removed(managed):
    tree, receipt = managed
    run(state="record", inputs=INPUTS, receipt=str(receipt))
    (tree / "nccl.conf").write_text("NCCL_DEBUG=INFO\nNCCL_IB_HCA=mlx5_0\n")
    res = run(inputs=INPUTS, receipt=str(receipt))
    assert (res["converged"], res["changed"]) == (False, True)
    assert res["reasons"] == [f"changed under {tree}"]
    assert not receipt.exists()
    # Put back as it was: still a full run, since a run cut short must not leave a receipt behind.
    assert run(inputs=INPUTS, receipt=str(receipt))["converged"] is False


def test_check_mode_neither_writes_nor_removes(managed):
    tree, receipt = managed
    res = run(state="record", inputs=INPUTS, receipt=str(receipt), check_mode=True)
    assert res["changed"] is True and not receipt.exists()
    run(state="record", inputs=INPUTS, receipt=str(receipt))
    (tree / "new.conf").write_text("x\n")
    res = run(inputs=INPUTS, receipt=str(receipt), check_mode=True)
    assert (res["converged"], res["changed"]) == (False, True) and receipt.exists()


def test_absent_removes_once(managed):
    _, receipt = managed
    run(state="record", inputs=INPUTS, receipt=str(receipt))
    assert run(state="absent", receipt=str(receipt))["changed"] is True
    assert run(state="absent", receipt=str(receipt))["changed"] is False


def test_inputs_are_required_to_check_or_record(managed):
    _, receipt = managed
    res = run(AnsibleFailJson, receipt=str(receipt))
    assert "inputs" in res["msg"]


def test_a_tree_too_large_is_a_full_run_not_a_failure(managed, monkeypatch):
    tree, receipt = managed
    run(state="record", inputs=INPUTS, receipt=str(receipt))
    monkeypatch.setattr(sr, "MAX_ENTRIES", 1)
    (tree / "more.conf").write_text("x\n")
    res = run(inputs=INPUTS, receipt=str(receipt))
    assert res["converged"] is False and "more than 1 entries" in res["reasons"][0]
    res = run(AnsibleFailJson, state="record", inputs=INPUTS, receipt=str(receipt))
    assert res["msg"].startswith("cannot record the receipt:")


# --- for real: ansible-playbook on localhost -------------------------------------------------------

PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


@pytest.mark.skipif(not PLAYBOOK.exists(), reason="ansible-playbook is not in this Python's environment")
def test_ansible_playbook_records_checks_and_sees_drift(tmp_path):
    tree = tmp_path / "managed"
    tree.mkdir()
    (tree / "nccl.conf").write_text("NCCL_DEBUG=WARN\n")
    receipt = tmp_path / "stack-receipt.json"
    args = {"inputs": INPUTS, "paths": [str(tree)], "receipt": str(receipt)}
    play = tmp_path / "play.yml"

    def playbook(state):
        task = {
            "name": "receipt",
            "register": "r",
            "gpufleet.cluster.stack_receipt": {**args, "state": state},
        }
        show = {"name": "show", "ansible.builtin.debug": {"msg": "RESULT {{ r | to_json }}"}}
        play.write_text(
            json.dumps(
                [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [task, show]}]
            )
        )
        env = playbook_env(
            ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_CALLBACK_RESULT_FORMAT="json"
        )
        argv = [str(PLAYBOOK), "-i", "localhost,", str(play)]
        argv += ["-e", f"ansible_python_interpreter={sys.executable}"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(re.search(r'"msg": "RESULT (.*)"\n', done.stdout).group(1).replace('\\"', '"'))

    assert playbook("check")["converged"] is False
    assert playbook("record")["changed"] is True
    held = playbook("check")
    assert (held["converged"], held["changed"]) == (True, False)
    (tree / "nccl.conf").write_text("NCCL_DEBUG=INFO\nNCCL_P2P_DISABLE=1\n")
    drift = playbook("check")
    assert (drift["converged"], drift["changed"]) == (False, True)
    assert f"changed under {tree}" in drift["reasons"]
    assert not receipt.exists()
