"""The test suite's own guard: every Molecule scenario and integration test file is a row of the
timing table `make test` prints (tests/suite.py), so the budget stays visible as the suite grows."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("gpufleet_suite", REPO / "tests" / "suite.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def test_every_molecule_scenario_is_a_timed_stage(suite):
    on_disk = {p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml")}
    assert on_disk == set(suite.SCENARIOS), (
        f"scenarios not in tests/suite.py SCENARIOS: {sorted(on_disk - set(suite.SCENARIOS))}; "
        f"listed but missing: {sorted(set(suite.SCENARIOS) - on_disk)}"
    )
    stage_names = {s.name for s in suite.stages()}
    assert {f"molecule {n}" for n in on_disk} <= stage_names


def test_every_integration_test_file_is_a_timed_row(suite):
    on_disk = {p.name for p in (REPO / "tests" / "integration").glob("test_*.py")}
    assert on_disk == set(suite.INTEGRATION), (
        f"integration files not in tests/suite.py INTEGRATION: {sorted(on_disk - set(suite.INTEGRATION))}; "
        f"listed but missing: {sorted(set(suite.INTEGRATION) - on_disk)}"
    )
    (integration,) = [s for s in suite.stages() if s.name == "integration"]
    assert integration.rows_from_junit
    assert [a for a in integration.argv if a.startswith("tests/integration/")] == [
        f"tests/integration/{f}" for f in suite.INTEGRATION
    ]


def test_make_test_runs_the_timed_suite():
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "Makefile has no test target"
    assert "tests/suite.py" in recipe.group(1)


def test_stage_names_are_unique(suite):
    names = [s.name for s in suite.stages()]
    assert len(names) == len(set(names))


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.integration.test_lab" name="test_a" time="2.5"/>
<testcase classname="tests.integration.test_lab" name="test_b" time="1.5"><skipped message="x"/></testcase>
<testcase classname="test_bundle" name="test_c" time="10.0"><failure message="boom"/></testcase>
<testcase classname="test_bundle" name="test_d" time="0.5"><error message="teardown"/></testcase>
</testsuite></testsuites>"""


def test_junit_rows_per_file_and_counts(suite, tmp_path):
    path = tmp_path / "r.xml"
    path.write_text(JUNIT)
    parsed = suite.junit_counts(path)
    assert parsed["counts"] == {"passed": 1, "failed": 2, "skipped": 1}
    assert parsed["files"] == {"test_lab.py": 4.0, "test_bundle.py": 10.5}
    assert parsed["failures"] == ["test_bundle::test_c: boom", "test_bundle::test_d: teardown"]
    assert suite.junit_counts(tmp_path / "missing.xml") == {"counts": None, "files": {}, "failures": []}


def test_a_failed_stage_says_under_the_table_what_failed(suite, monkeypatch, tmp_path, capsys):
    """The failed tests from the stage's JUnit report, or else the stage's last lines of output."""
    import threading

    monkeypatch.setattr(suite, "JUNIT_DIR", tmp_path)
    (tmp_path / "x.xml").write_text(JUNIT)
    results = []
    lines = "; ".join(f"echo line{n}" for n in range(40))
    tested = suite.Stage("tested", ["sh", "-c", "exit 1"], "", junit="x.xml")
    untested = suite.Stage("untested", ["sh", "-c", f"{lines}; echo 'ansible-doc: broken' >&2; exit 2"], "")
    passed = suite.Stage("passed", ["true"], "")
    for stage in (tested, untested, passed):
        suite.run_stage(stage, results, threading.Lock())
    capsys.readouterr()
    text = suite.why_failed(results)
    assert (
        "--- tested: exit 1\n    FAILED test_bundle::test_c: boom\n    FAILED test_bundle::test_d: teardown"
        in text
    )
    assert "--- untested: exit 2\n    | line16\n" in text and text.endswith("    | ansible-doc: broken")
    assert "line15" not in text and "passed" not in text


def test_table_shows_shares_and_the_budget_verdict(suite):
    rows = [
        {"stage": "lint", "item": "", "seconds": 60.0, "rc": 0, "group": ""},
        {"stage": "integration", "item": "", "seconds": 240.0, "rc": 1, "group": "lab",
         "tests": {"passed": 3, "failed": 1, "skipped": 0}},
        {"stage": "integration", "item": "test_lab.py", "seconds": 120.0, "part": True},
    ]  # fmt: skip
    text = suite.table(rows, 300.0)
    assert re.search(r"^lint\s+1:00\s+20\.0%\s+ok$", text, re.M), text
    assert re.search(r"integration\s+\(parallel\)\s+4:00\s+80\.0%\s+FAILED \(1\)\s+3 passed, 1 failed", text)
    assert re.search(r"^\s+test_lab\.py\s+2:00\s+40\.0%", text, re.M)
    assert "within the budget of 30:00" in text
    assert "OVER the budget of 30:00" in suite.table(rows, 1801.0)


def test_stages_find_the_venv_tools_without_make(suite):
    # Integration tests call ansible-playbook by name: the venv must come first on every stage's PATH.
    assert suite.ENV["PATH"].split(":")[0] == str(suite.BIN)
    assert suite.ENV["ANSIBLE_CONFIG"] == str(suite.REPO / "ansible.cfg")


def test_a_layer_scenario_waits_for_its_producer(suite):
    (nd,) = [s for s in suite.stages() if s.name == "molecule nvidia_driver"]
    assert nd.waits_for == ("molecule airgap", "node")
    producer = next(s for s in suite.stages() if s.name == nd.waits_for[0])
    assert producer.group == nd.group and producer.lane != nd.lane, "producer and waiter run side by side"


def test_waiting_ends_when_the_layer_is_ready_or_its_producer_ended(suite, monkeypatch):
    import subprocess

    answers = iter([1, 1, 0])
    monkeypatch.setattr(suite, "WAIT_POLL_S", 0)
    monkeypatch.setattr(
        suite, "_layer_ready", lambda layer, env: subprocess.CompletedProcess([], next(answers), "ready", "")
    )
    stage = suite.Stage("molecule x", ["true"], "", waits_for=("molecule p", "node"))
    ok, _, detail = suite.wait_for_layer(stage, set(), {})
    assert ok and detail == "ready"
    monkeypatch.setattr(
        suite, "_layer_ready", lambda layer, env: subprocess.CompletedProcess([], 2, "", "error: no image\n")
    )
    ok, _, detail = suite.wait_for_layer(stage, {"molecule p"}, {})
    assert not ok and detail == "error: no image"


def test_a_stage_whose_layer_never_came_fails_without_running(suite, monkeypatch, capsys):
    import subprocess
    import threading

    monkeypatch.setattr(
        suite, "_layer_ready", lambda layer, env: subprocess.CompletedProcess([], 2, "", "no image")
    )
    stage = suite.Stage("molecule x", ["false-never-run"], "", group="g", waits_for=("molecule p", "node"))
    results = []
    rc = suite.run_stage(stage, results, threading.Lock(), {"molecule p"})
    assert rc == 3
    assert results[0]["rc"] == 3 and results[0]["stage"] == "molecule x"
    assert "not started, the lab layer is missing: no image" in capsys.readouterr().out


def test_checks_beside_the_converge_yield_the_cpu_to_it(suite, monkeypatch):
    """On two cores the air-gapped converge (lane 1) is the longest path: lane 0's checks run niced,
    the scenarios and the setup stages do not."""
    by_name = {s.name: s for s in suite.stages()}
    niced = {name for name, s in by_name.items() if s.nice}
    assert niced == {"lint", "unit", "integration", "newest ansible-core"}
    assert all(by_name[n].lane == 0 for n in niced)
    seen = []

    class Proc:
        stdout = iter(())
        returncode = 0

        def wait(self):
            return 0

    monkeypatch.setattr(suite.subprocess, "Popen", lambda argv, **kw: seen.append(argv) or Proc())
    suite.run_stage(by_name["unit"], [], suite.threading.Lock())
    assert seen[0][:3] == ["nice", "-n", "10"] and seen[0][3:] == by_name["unit"].argv


def test_monitoring_fills_lane_0_before_nvidia_driver_waits(suite):
    stages = suite.stages()
    lane0 = [s.name for s in stages if s.group == "lab" and s.lane == 0]
    assert lane0.index("molecule monitoring") < lane0.index("molecule nvidia_driver"), lane0
    (mon,) = [s for s in stages if s.name == "molecule monitoring"]
    # it starts as soon as lane 0's checks end: no layer to wait for
    assert mon.waits_for is None
