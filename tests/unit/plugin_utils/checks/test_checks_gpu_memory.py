"""GPU memory error checks (plugin_utils/checks/gpu_memory.py) against recorded nvidia-smi output.

Inputs and their provenance: ``checks_inputs.py``.
"""

from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core, gpu_memory
from checks_inputs import a100, assert_result, p100, t4

# --- ecc --------------------------------------------------------------------------------------


def test_ecc_enabled_passes_with_aggregate_in_details():
    res = assert_result(gpu_memory.ecc(p100()), "ecc", core.PASS)
    assert res["details"][0]["aggregate"]["correctable"] == 3  # recorded aggregate single-bit total
    assert_result(gpu_memory.ecc(t4()), "ecc", core.PASS)


def test_ecc_volatile_uncorrectable_fails_reset():
    host = p100()
    host["gpus"][0]["ecc_errors"]["volatile"]["uncorrectable"] = 2  # derived from P100, edited: 2 DBE
    res = assert_result(gpu_memory.ecc(host), "ecc", core.FAIL)
    assert res["action"] == core.RESET_GPU and "GPU 0 (0000:00:04.0) 2" in res["summary"]


def test_ecc_disabled_pending_and_unsupported():
    host = t4()
    host["gpus"][0]["ecc_mode"] = {"current": False, "pending": False}  # derived from T4, edited
    # issue 13, class 1: ECC off is the site's policy, not a fault (was FAIL REBOOT)
    res = assert_result(gpu_memory.ecc(host), "ecc", core.POLICY_STATUS)
    assert res["action"] == core.RECONFIGURE
    assert gpu_memory.ecc(host, policy={"ecc_required": False})["status"] == core.PASS
    host["gpus"][0]["ecc_mode"] = {"current": False, "pending": True}  # derived, edited: change pending
    # current disabled still reported first
    assert_result(gpu_memory.ecc(host), "ecc", core.POLICY_STATUS)
    host["gpus"][0]["ecc_mode"] = {"current": True, "pending": False}  # derived, edited: disable pending
    assert assert_result(gpu_memory.ecc(host), "ecc", core.WARN)["action"] == core.REBOOT
    host["gpus"][0]["ecc_mode"] = {"current": None, "pending": None}  # derived, edited: not supported
    assert "not supported" in assert_result(gpu_memory.ecc(host), "ecc", core.SKIP)["summary"]


# --- row_remap --------------------------------------------------------------------------------


def test_row_remap_absent_skips_with_reason():
    assert "pre-Ampere" in assert_result(gpu_memory.row_remap(p100()), "row_remap", core.SKIP)["summary"]
    assert_result(
        gpu_memory.row_remap(a100()), "row_remap", core.SKIP
    )  # recorded <remapped_rows>N/A</remapped_rows>


def test_row_remap_good_pending_failure():
    host = a100()
    rows = {"correctable": 0, "uncorrectable": 0, "pending": False, "failure": False}
    host["gpus"][0]["remapped_rows"] = dict(rows)  # derived from the A100 report, edited: rows reported
    assert_result(gpu_memory.row_remap(host), "row_remap", core.PASS)
    host["gpus"][0]["remapped_rows"] = {**rows, "uncorrectable": 1, "pending": True}  # edited: pending
    assert assert_result(gpu_memory.row_remap(host), "row_remap", core.FAIL)["action"] == core.RESET_GPU
    host["gpus"][0]["remapped_rows"] = {**rows, "failure": True}  # edited: failure flag
    assert assert_result(gpu_memory.row_remap(host), "row_remap", core.FAIL)["action"] == core.ISOLATE
    host["gpus"][0]["remapped_rows"] = {**rows, "uncorrectable": 513}  # edited: past the RMA limit
    assert assert_result(gpu_memory.row_remap(host), "row_remap", core.FAIL)["action"] == core.ISOLATE


# --- retired_pages ----------------------------------------------------------------------------


def test_retired_pages_recorded_zero_passes_and_ampere_skips():
    res = assert_result(gpu_memory.retired_pages(p100()), "retired_pages", core.PASS)
    assert res["measured"] == 0 and res["expected"] == gpu_memory.RETIRED_PAGES_LIMIT
    assert (
        "row_remap" in assert_result(gpu_memory.retired_pages(a100()), "retired_pages", core.SKIP)["summary"]
    )


def test_retired_pages_pending_and_full():
    host = p100()
    host["gpus"][0]["retired_pages"] = {"single_bit": 2, "double_bit": 1, "pending": True}  # derived, edited
    assert (
        assert_result(gpu_memory.retired_pages(host), "retired_pages", core.FAIL)["action"] == core.RESET_GPU
    )
    host["gpus"][0]["retired_pages"] = {"single_bit": 50, "double_bit": 13, "pending": False}  # edited: 63
    res = assert_result(gpu_memory.retired_pages(host), "retired_pages", core.FAIL)
    assert res["action"] == core.ISOLATE and res["measured"] == 63
    host["gpus"][0]["retired_pages"] = {"single_bit": 0, "double_bit": 16, "pending": False}  # edited
    assert_result(gpu_memory.retired_pages(host), "retired_pages", core.WARN)
