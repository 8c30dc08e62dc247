"""The Grafana dashboards the monitoring role provisions (roles/monitoring/files/dashboards) are valid
Grafana JSON that any site's Grafana can load: a schema version, unique ids, the Prometheus data
source asked for at import (a 'datasource' variable, never one site's uid), and only metrics that
exist: gpufleet verify's (PROM_FAMILIES), the rules' recorded series, or the exporters' listed below.
The alert rules are held to the same list."""

import json
import re

import pytest
import yaml
from conftest import REPO

from gpufleet.verify.report import PROM_FAMILIES

ROLE = REPO / "roles" / "monitoring"
DASHBOARDS = sorted((ROLE / "files" / "dashboards").glob("*.json"))
RULE_FILES = sorted((ROLE / "files").glob("*.rules.yml"))
DATASOURCE = "${datasource}"

# Metrics of the exporters the dashboards and rules read, as the exporters name them.
# node_exporter 1.5 (Debian 12 prometheus-node-exporter; collector/infiniband_linux.go,
# meminfo, loadavg, textfile) and Prometheus itself:
NODE_EXPORTER = {
    "node_infiniband_state_id",
    "node_infiniband_physical_state_id",
    "node_infiniband_port_data_received_bytes_total",
    "node_infiniband_port_data_transmitted_bytes_total",
    "node_memory_MemAvailable_bytes",
    "node_load1",
    "node_textfile_scrape_error",
}
PROMETHEUS = {"up", "ALERTS"}
# dcgm-exporter: the fields of the counters file the role starts it with (the role's own file, which
# adds the volatile ECC totals and ROW_REMAP_PENDING that dcgm-exporter's default counters leave out).
DCGM_COUNTERS = ROLE / "files" / "dcgm-exporter-counters.csv"


def dcgm_counters():
    """{field: metric type} from the counters file, in dcgm-exporter's format (field, type, help)."""
    out = {}
    for line in DCGM_COUNTERS.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            field, kind, help_text = (part.strip() for part in line.split(",", 2))
            assert re.fullmatch(r"DCGM_FI_[A-Z0-9_]+", field) and help_text, line
            assert kind in ("gauge", "counter"), line
            assert field not in out, f"{field} twice"
            out[field] = kind
    return out


DCGM = set(dcgm_counters())

# PromQL words that are not metric names.
KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
}


def load_rules():
    out = []
    for path in RULE_FILES:
        with open(path) as fh:
            out += [rule for group in yaml.safe_load(fh)["groups"] for rule in group["rules"]]
    return out


def recorded():
    return {rule["record"] for rule in load_rules() if "record" in rule}


def known_metrics():
    return set(PROM_FAMILIES) | recorded() | NODE_EXPORTER | PROMETHEUS | DCGM


def metric_names(expr):
    """The metric names a PromQL expression reads (not functions, keywords, labels or strings)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word in KEYWORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def test_the_dcgm_counters_carry_the_fields_the_alerts_need():
    counters = dcgm_counters()
    # Left out of dcgm-exporter's default counters: without them two alerts could never fire.
    assert counters["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"] == "counter"
    assert counters["DCGM_FI_DEV_ROW_REMAP_PENDING"] == "gauge"
    assert counters["DCGM_FI_DEV_XID_ERRORS"] == "gauge"  # the last XID: the rules count its changes
    used = {name for rule in load_rules() for name in metric_names(rule["expr"]) if name.startswith("DCGM_")}
    assert used and used <= set(counters)


def test_metric_names_are_found_in_expressions():
    assert metric_names('count by (node) (node_infiniband_state_id{device=~"mlx.*"} != 4)') == {
        "node_infiniband_state_id"
    }
    assert metric_names("time() - max(gpufleet_verify_last_run_timestamp_seconds)") == {
        "gpufleet_verify_last_run_timestamp_seconds"
    }
    assert metric_names(
        "gpufleet:dcgm_last_xid:info and ignoring (xid) changes(DCGM_FI_DEV_XID_ERRORS[15m]) > 0"
    ) == {"gpufleet:dcgm_last_xid:info", "DCGM_FI_DEV_XID_ERRORS"}
    assert metric_names('count(ALERTS{alertstate="firing"}) or vector(0)') == {"ALERTS"}


def load(path):
    with open(path) as fh:
        return json.load(fh)


def panels(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def test_both_dashboards_are_there():
    assert [p.name for p in DASHBOARDS] == ["gpufleet-fleet.json", "gpufleet-node.json"]
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_grafana_json(path):
    board = load(path)
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["title"].startswith("gpufleet / ")
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"])
    assert "id" not in board or board["id"] is None, "a provisioned dashboard has no database id"
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in panels(board):
        pos = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= set(pos) and pos["x"] + pos["w"] <= 24, panel["title"]
        assert panel.get("title") and panel.get("type")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_asks_for_its_data_source(path):
    board = load(path)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    sources = [panel["datasource"] for panel in panels(board)]
    sources += [t["datasource"] for panel in panels(board) for t in panel.get("targets", [])]
    sources += [v["datasource"] for v in variables.values() if "datasource" in v]
    assert sources and all(s == {"type": "prometheus", "uid": DATASOURCE} for s in sources)
    # No uid of some site's data source anywhere.
    text = path.read_text()
    assert set(re.findall(r'"uid":\s*"([^"]*)"', text)) == {DATASOURCE, board["uid"]}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_reads_only_metrics_that_exist(path):
    board = load(path)
    exprs = [t["expr"] for panel in panels(board) for t in panel.get("targets", [])]
    # A query variable's label_values(<series>, <label name>): the series is PromQL.
    exprs += [
        re.fullmatch(r"label_values\((.*),\s*\w+\)", v["definition"]).group(1)
        for v in board["templating"]["list"]
        if v.get("definition")
    ]
    assert exprs
    unknown = {expr: sorted(metric_names(expr) - known_metrics()) for expr in exprs}
    assert {e: u for e, u in unknown.items() if u} == {}
    assert all(metric_names(expr) for expr in exprs), "every expression reads a metric"


def test_dashboards_read_gpufleet_verify_metrics_with_their_real_labels():
    # gpufleet verify's series carry 'host'; exporters' series carry the scrape label 'node'.
    for path in DASHBOARDS:
        for panel in panels(load(path)):
            for t in panel.get("targets", []):
                for name in metric_names(t["expr"]) & set(PROM_FAMILIES):
                    for selector in re.findall(rf"{name}\{{([^}}]*)\}}", t["expr"]):
                        assert "node=" not in selector, (path.name, t["expr"])


def test_rules_read_only_metrics_that_exist():
    unknown = {
        rule.get("alert") or rule["record"]: sorted(metric_names(rule["expr"]) - known_metrics())
        for rule in load_rules()
    }
    assert {name: u for name, u in unknown.items() if u} == {}


def test_rules_use_only_labels_gpufleet_verify_writes():
    # A typo in a label ('hosts', 'check_name') would make an alert silently never fire.
    verify_labels = {
        "host",
        "verdict",
        "check",
        "tier",
        "status",
        "unit",
        "action",
        "sku",
        "instance",
        "job",
        "node",
    }
    for rule in load_rules():
        for name, selector in re.findall(r"(gpufleet_verify_\w+)\{([^}]*)\}", rule["expr"]):
            assert name in PROM_FAMILIES, name
            used = set(re.findall(r"(\w+)\s*[=!]~?", selector))
            assert used <= verify_labels, (rule.get("alert"), used - verify_labels)
