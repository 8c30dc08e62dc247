"""The monitoring role's templates, rendered for a fake inventory: prometheus.yml scrapes every node by
its ansible_host with the labels the alert rules rely on and passes 'promtool check config' (with the
real rule files), the Alertmanager configuration routes to a declared receiver, the Grafana provider
points at the dashboards."""

import json
import shutil
import subprocess

import jinja2
import jinja2.nativetypes
import pytest
import yaml
from conftest import REPO

ROLE = REPO / "roles" / "monitoring"
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")

INVENTORY = {
    "groups": {
        "all": ["bastion01", "gpu01", "gpu02", "gpu03"],
        "bastion": ["bastion01"],
        "gpu_nodes": ["gpu01", "gpu02", "gpu03"],
    },
    "hostvars": {
        "bastion01": {"ansible_host": "10.0.0.10"},
        "gpu01": {"ansible_host": "10.0.1.11"},
        "gpu02": {"ansible_host": "fd00::12"},
        "gpu03": {},  # no ansible_host: the inventory name is the address
    },
}


def load(path):
    with open(path) as fh:
        return yaml.safe_load(fh)


def ansible_filters(env):
    """The few Ansible filters the role's templates and vars use, as Ansible defines them."""
    env.filters["to_json"] = json.dumps
    env.filters["bool"] = lambda v: v if isinstance(v, bool) else str(v).lower() in ("yes", "on", "1", "true")
    env.filters["unique"] = lambda seq: list(dict.fromkeys(seq))
    return env


def role_vars(**overrides):
    """defaults/main.yml and vars/main.yml as Ansible would see them on bastion01 (vars' templated
    values evaluated), with overrides."""
    values = {**load(ROLE / "defaults" / "main.yml"), **load(ROLE / "vars" / "main.yml"), **overrides}
    context = {**INVENTORY, "inventory_hostname": "bastion01", "ansible_facts": {"service_mgr": "systemd"}}
    native = ansible_filters(jinja2.nativetypes.NativeEnvironment())
    for _ in range(3):  # templated values may name each other
        for name, value in values.items():
            if isinstance(value, str) and "{{" in value:
                rendered = native.from_string(value).render(**context, **values)
                values[name] = rendered
        context.update(values)
    return values


def render(template, **overrides):
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROLE / "templates"),
        trim_blocks=True,  # as Ansible's template module
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    ansible_filters(env)
    values = role_vars(**overrides)
    return env.get_template(template).render(
        **INVENTORY, **values, inventory_hostname="bastion01", ansible_managed="Ansible managed"
    )


def test_the_role_vars_evaluate_for_the_fake_inventory():
    values = role_vars()
    assert values["__monitoring_node_targets"] == ["gpu01", "gpu02", "gpu03", "bastion01"]
    assert values["__monitoring_is_server"] is True
    assert values["__monitoring_is_node"] is True


def scrape_jobs(text):
    return {job["job_name"]: job for job in yaml.safe_load(text)["scrape_configs"]}


def test_prometheus_scrapes_every_node_by_its_address_with_the_rules_labels():
    config = yaml.safe_load(render("prometheus.yml.j2"))
    assert config["global"] == {"scrape_interval": "30s", "evaluation_interval": "30s"}
    assert config["rule_files"] == ["/etc/prometheus/rules/gpufleet-alerts.rules.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "node"}, "no dcgm or serving job by default"
    node = [(c["targets"], c["labels"]) for c in jobs["node"]["static_configs"]]
    assert node == [
        (["10.0.1.11:9100"], {"node": "gpu01", "gpufleet_role": "node"}),
        (["[fd00::12]:9100"], {"node": "gpu02", "gpufleet_role": "node"}),
        (["gpu03:9100"], {"node": "gpu03", "gpufleet_role": "node"}),
        (["10.0.0.10:9100"], {"node": "bastion01", "gpufleet_role": "node"}),
    ]


def test_prometheus_adds_dcgm_and_serving_jobs_when_asked():
    config = yaml.safe_load(
        render(
            "prometheus.yml.j2",
            monitoring_dcgm_exporter=True,
            monitoring_serving_targets=["gpu01:8000", "10.0.1.12:8000"],
            monitoring_serving_job="vllm",
            monitoring_scrape_interval="15s",
        )
    )
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "node", "dcgm", "vllm"}
    dcgm = [(c["targets"], c["labels"]) for c in jobs["dcgm"]["static_configs"]]
    assert dcgm[0] == (["10.0.1.11:9400"], {"node": "gpu01", "gpufleet_role": "dcgm"})
    assert [c["labels"]["node"] for c in jobs["dcgm"]["static_configs"]] == ["gpu01", "gpu02", "gpu03"]
    assert jobs["vllm"]["metrics_path"] == "/metrics"
    assert jobs["vllm"]["static_configs"] == [
        {"targets": ["gpu01:8000", "10.0.1.12:8000"], "labels": {"gpufleet_role": "serving"}}
    ]
    assert config["global"]["scrape_interval"] == "15s"


def test_prometheus_labels_are_the_ones_the_rules_select():
    rules = (ROLE / "files" / "gpufleet-alerts.rules.yml").read_text()
    for role in ("node", "dcgm", "serving"):
        assert f'gpufleet_role="{role}"' in rules


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)")
@pytest.mark.parametrize(
    "overrides",
    [{}, {"monitoring_dcgm_exporter": True, "monitoring_serving_targets": ["gpu01:8000"]}],
    ids=["default", "dcgm-and-serving"],
)
def test_promtool_accepts_the_rendered_configuration(tmp_path, overrides):
    # As the role's 'validate:' runs it: the rule files are in place (here in tmp_path).
    shutil.copy(ROLE / "files" / "gpufleet-alerts.rules.yml", tmp_path)
    config = tmp_path / "prometheus.yml"
    config.write_text(render("prometheus.yml.j2", __monitoring_rules_dir=str(tmp_path), **overrides))
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)")
def test_promtool_refuses_a_configuration_whose_rules_are_missing(tmp_path):
    config = tmp_path / "prometheus.yml"
    config.write_text(render("prometheus.yml.j2", __monitoring_rules_dir=str(tmp_path / "absent")))
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


def test_alertmanager_routes_to_a_declared_receiver(tmp_path):
    receivers = [
        {"name": "ops", "webhook_configs": [{"url": "http://10.0.0.10:5001/hook"}]},
        {"name": "null"},
    ]
    text = render(
        "alertmanager.yml.j2",
        monitoring_alertmanager_receivers=receivers,
        monitoring_alertmanager_receiver="ops",
    )
    config = yaml.safe_load(text)
    assert config["route"]["receiver"] == "ops"
    assert config["receivers"] == receivers
    assert config["inhibit_rules"][0]["source_matchers"] == ['severity="critical"']
    default = yaml.safe_load(render("alertmanager.yml.j2"))
    assert default["receivers"] == [{"name": "null"}] and default["route"]["receiver"] == "null"
    if AMTOOL:
        path = tmp_path / "alertmanager.yml"
        path.write_text(text)
        result = subprocess.run(
            [AMTOOL, "check-config", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provider_points_at_the_dashboards():
    config = yaml.safe_load(
        render("grafana-dashboards.yml.j2", monitoring_grafana_dashboards_dir="/srv/dash")
    )
    (provider,) = config["providers"]
    assert config["apiVersion"] == 1
    assert provider["type"] == "file" and provider["options"]["path"] == "/srv/dash"
