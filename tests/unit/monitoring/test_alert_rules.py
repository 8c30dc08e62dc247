"""gpufleet's alert rules (roles/monitoring/files/*.rules.yml) are valid, and every alert is proven by
promtool's unit tests (tests/monitoring/*.test.yml): each alert has a case where it fires and one
where it stays quiet, and all of them pass. A broken rule makes these tests fail, so 'make test' does.
promtool comes with Debian's prometheus package (scripts/host-deps.sh installs it, as CI does)."""

import re
import shutil
import subprocess

import pytest
import yaml
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import xid
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks.registry import CHECKS
from conftest import REPO

ROLE_FILES = REPO / "roles" / "monitoring" / "files"
RULE_FILES = sorted(ROLE_FILES.glob("*.rules.yml"))
TEST_FILES = sorted((REPO / "tests" / "monitoring").glob("*.test.yml"))
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package prometheus; scripts/host-deps.sh)"
)


def load(path):
    with open(path) as fh:
        return yaml.safe_load(fh)


def rules():
    return [rule for path in RULE_FILES for group in load(path)["groups"] for rule in group["rules"]]


def alerts():
    return [rule for rule in rules() if "alert" in rule]


def promtool(*args, cwd=REPO):
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, check=False)


def alert_cases():
    """alertname -> {"firing": n, "quiet": n} over every promtool test file."""
    cases: dict[str, dict[str, int]] = {}
    for path in TEST_FILES:
        for test in load(path)["tests"]:
            for case in test.get("alert_rule_test") or []:
                kind = "firing" if case.get("exp_alerts") else "quiet"
                counts = cases.setdefault(case["alertname"], {"firing": 0, "quiet": 0})
                counts[kind] += 1
    return cases


def test_the_rule_and_test_files_are_there():
    assert [p.name for p in RULE_FILES] == ["gpufleet-alerts.rules.yml"]
    assert len(TEST_FILES) >= 3
    for path in TEST_FILES:
        named = [(path.parent / f).resolve() for f in load(path)["rule_files"]]
        assert named == [p.resolve() for p in RULE_FILES], f"{path.name} tests another rule file"


def test_every_alert_fires_in_one_case_and_stays_quiet_in_another():
    cases = alert_cases()
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names)), "alert names are unique"
    missing = {
        name: cases.get(name, {"firing": 0, "quiet": 0})
        for name in names
        if cases.get(name, {}).get("firing", 0) == 0 or cases.get(name, {}).get("quiet", 0) == 0
    }
    assert missing == {}, "alerts without a firing and a quiet promtool case"
    assert set(cases) - set(names) == set(), "promtool cases for alerts that do not exist"


def test_every_alert_has_a_severity_a_summary_and_a_description():
    problems = [
        rule["alert"]
        for rule in alerts()
        if rule.get("labels", {}).get("severity") not in ("critical", "warning")
        or not rule.get("annotations", {}).get("summary")
        or not rule.get("annotations", {}).get("description")
    ]
    assert problems == []


def test_the_dcgm_xid_alert_covers_the_hardware_xids_of_the_xid_table():
    # The knowledge is plugins/plugin_utils/xid.py's; the rule carries a copy of one list, kept
    # equal to the table here: hardware XIDs whose action is more than MONITOR (92, a high
    # corrected-error rate, is counted by gpufleet verify, not paged).
    rule = next(r for r in alerts() if r["alert"] == "GpuXidHardwareFault")
    match = re.search(r'xid=~"([^"]+)"', rule["expr"])
    assert match, rule["expr"]
    # Prometheus anchors label regexes: the XIDs the rule selects are the codes the regex matches whole.
    in_rule = [code for code in range(1000) if re.fullmatch(match.group(1), str(code))]
    expected = sorted(
        code
        for code, row in xid.XID_TABLE.items()
        if row["class"] == xid.HARDWARE and row["action"] != xid.MONITOR
    )
    assert in_rule == expected
    # The rule file's comment lists the same codes for readers of the regex.
    text = RULE_FILES[0].read_text()
    listed = re.search(r"that table\):((?:\s*#?\s*[0-9][0-9-]*)+)", text)
    assert listed, "the comment above GpuXidHardwareFault lists the codes"
    codes = []
    for item in listed.group(1).replace("#", " ").split():
        low, _, high = item.partition("-")
        codes += range(int(low), int(high or low) + 1)
    assert codes == expected
    # azurehpc-health-checks' hardware list, less what the table calls MONITOR, is in it.
    azure = {48, 56, 57, 58, 62, 63, 64, 65, 68, 69, 73, 74, 79, 80, 81, 92, 119, 120}
    assert azure - set(in_rule) == {92}


def test_rules_name_only_checks_that_are_registered():
    # check="..." / check=~"a|b" in a rule must be a check gpufleet verify runs, or it never fires.
    named = set()
    for rule in rules():
        for value in re.findall(r'check=~?"([^"]+)"', rule["expr"]):
            named |= set(value.split("|"))
    assert named, "the rules read gpufleet verify's checks"
    assert named - set(CHECKS) == set()


def test_xid_alerts_count_changes_in_a_window_not_the_last_value():
    # DCGM_FI_DEV_XID_ERRORS is the last XID and never resets: alerting on its value would fire
    # forever after one XID.
    for rule in alerts():
        if "DCGM_FI_DEV_XID_ERRORS" in rule["expr"]:
            assert re.search(r"changes\(DCGM_FI_DEV_XID_ERRORS\[\d+[smh]\]\)", rule["expr"]), rule["alert"]


@needs_promtool
def test_promtool_checks_the_rules():
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass():
    result = promtool("test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES)


def copy_with(tmp_path, old, new):
    """The rule file and the promtool tests in tmp_path, with one change made to the rule file."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    text = RULE_FILES[0].read_text()
    assert text.count(old) == 1, old
    (tmp_path / "rules" / RULE_FILES[0].name).write_text(text.replace(old, new))
    for path in TEST_FILES:
        test = load(path)
        test["rule_files"] = [f"../rules/{RULE_FILES[0].name}"]
        (tmp_path / "tests" / path.name).write_text(yaml.safe_dump(test, sort_keys=False))
    return tmp_path / "rules" / RULE_FILES[0].name, sorted((tmp_path / "tests").glob("*.test.yml"))


@needs_promtool
def test_the_copy_used_below_passes_as_the_original(tmp_path):
    rule_file, tests = copy_with(
        tmp_path, "expr: gpufleet_verify_host_unhealthy == 1", "expr: gpufleet_verify_host_unhealthy == 1"
    )
    assert promtool("check", "rules", str(rule_file)).returncode == 0
    result = promtool("test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_a_rule_that_does_not_parse_fails_the_check(tmp_path):
    rule_file, _ = copy_with(
        tmp_path, "expr: gpufleet_verify_host_unhealthy == 1", "expr: gpufleet_verify_host_unhealthy =="
    )
    result = promtool("check", "rules", str(rule_file))
    assert result.returncode != 0
    assert (
        "GpufleetHostUnhealthy" in result.stdout + result.stderr
        or "parse error" in result.stdout + result.stderr
    )


@needs_promtool
def test_a_rule_that_parses_but_is_wrong_fails_the_unit_tests(tmp_path):
    # Alerting on the healthy hosts instead of the unhealthy ones: valid PromQL, wrong alert.
    rule_file, tests = copy_with(
        tmp_path, "expr: gpufleet_verify_host_unhealthy == 1", "expr: gpufleet_verify_host_unhealthy == 0"
    )
    assert promtool("check", "rules", str(rule_file)).returncode == 0
    result = promtool("test", "rules", *map(str, tests))
    assert result.returncode != 0
    assert "GpufleetHostUnhealthy" in result.stdout + result.stderr
