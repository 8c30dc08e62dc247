"""The monitoring role's templates, rendered for a fake inventory: prometheus.yml scrapes every node by
its ansible_host with the labels the alert rules rely on and passes 'promtool check config' (with the
real rule files), the Alertmanager configuration routes to a declared receiver, the Grafana provider
points at the dashboards, and the gpufleet verify service and timer run the quick tier into the
textfile directory (checked with 'systemd-analyze verify' where it is installed)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

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
    env.tests["match"] = lambda value, pattern: re.match(pattern, str(value)) is not None
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


def test_prometheus_leaves_out_the_nodes_where_the_role_found_no_dcgm(monkeypatch):
    """The role's install step sets __monitoring_dcgm_exporter_runs per node: false (no DCGM) is not
    scraped, so DcgmExporterDown does not fire for a node that has no exporter; a node the run did
    not reach (no fact) stays listed."""
    hostvars = dict(INVENTORY["hostvars"])
    hostvars["gpu01"] = {**hostvars["gpu01"], "__monitoring_dcgm_exporter_runs": True}
    hostvars["gpu02"] = {**hostvars["gpu02"], "__monitoring_dcgm_exporter_runs": False}
    monkeypatch.setitem(INVENTORY, "hostvars", hostvars)
    jobs = scrape_jobs(render("prometheus.yml.j2", monitoring_dcgm_exporter=True))
    assert [c["labels"]["node"] for c in jobs["dcgm"]["static_configs"]] == ["gpu01", "gpu03"]
    for host in ("gpu01", "gpu03"):
        hostvars[host] = {**hostvars[host], "__monitoring_dcgm_exporter_runs": False}
    jobs = scrape_jobs(render("prometheus.yml.j2", monitoring_dcgm_exporter=True))
    assert set(jobs) == {"prometheus", "node"}, "no node runs dcgm-exporter: no empty dcgm job"


def test_dcgm_exporter_drop_in_runs_the_counters_file_on_the_port():
    text = render("dcgm-exporter.conf.j2", monitoring_dcgm_exporter_port=9499)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[:3] == [
        "[Service]",
        "ExecStart=",  # the package's own command line (its default counters) is replaced, not added to
        "ExecStart=/usr/bin/dcgm-exporter -f /etc/dcgm-exporter/gpufleet-counters.csv -a :9499",
    ]
    assert "TimeoutStopSec=20s" in lines and "Restart=on-failure" in lines


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


# --- gpufleet verify's service and timer (monitoring_verify_timer) ---------------------------------

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
VERIFY = {
    "monitoring_verify_timer": True,
    "monitoring_verify_inventory": "/etc/gpufleet/site/hosts.yml",
}


def unit(text):
    """A systemd unit's lines as {section: [(key, value), ...]}, comments dropped (keys repeat)."""
    sections, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        else:
            key, _, value = line.partition("=")
            current.append((key, value))
    return sections


def values(section, key):
    return [v for k, v in section if k == key]


def test_verify_service_runs_the_quick_tier_into_the_state_dir_then_moves_the_file():
    service = unit(render("gpufleet-verify.service.j2", **VERIFY))["Service"]
    (exec_start,) = values(service, "ExecStart")
    assert exec_start.split() == [
        "/opt/gpufleet/cli/bin/gpufleet",
        "verify",
        "--inventory",
        "/etc/gpufleet/site/hosts.yml",
        "--tier",
        "quick",
        "--prometheus",
        "/var/lib/gpufleet-verify/gpufleet-verify.prom",
        "--quiet",
    ]
    assert values(service, "Type") == ["oneshot"]
    assert values(service, "User") == ["gpufleet-verify"]
    assert values(service, "StateDirectory") == ["gpufleet-verify"]
    # Into node_exporter's directory with root's rights ('+'), renamed over the old file.
    assert values(service, "ExecStartPost") == [
        "+/usr/bin/install -m 0644 /var/lib/gpufleet-verify/gpufleet-verify.prom"
        " /var/lib/prometheus/node-exporter/.gpufleet-verify.prom.tmp",
        "+/bin/mv -f /var/lib/prometheus/node-exporter/.gpufleet-verify.prom.tmp"
        " /var/lib/prometheus/node-exporter/gpufleet-verify.prom",
    ]
    assert values(service, "TimeoutStartSec") == ["30min"]
    assert values(service, "Nice") == ["10"] and values(service, "IOSchedulingClass") == ["idle"]


def test_verify_service_command_line_parses_with_the_real_cli():
    # The flags the unit passes are gpufleet verify's own: its parser gives the quick tier, the
    # inventory, the metrics file and no progress lines.
    from gpufleet.cli import build_parser

    service = unit(render("gpufleet-verify.service.j2", **VERIFY, monitoring_verify_args=["-j", "4"]))[
        "Service"
    ]
    argv = values(service, "ExecStart")[0].split()
    args = build_parser().parse_args(argv[1:])
    assert (args.cmd, args.tier, args.inventory) == ("verify", "quick", "/etc/gpufleet/site/hosts.yml")
    assert args.prometheus_report == "/var/lib/gpufleet-verify/gpufleet-verify.prom"
    assert args.quiet is True and args.jobs == 4 and args.drain is None


def test_verify_exit_status_1_is_success_and_2_is_not():
    # verify exits 1 when a host is unhealthy or unreachable (a finished run, metrics written) and 2 on
    # bad input (GpufleetError). Only 1 may count as success: else the unit is "failed" whenever the
    # fleet has a bad host, and ExecStartPost never moves the metrics of such a run.
    from gpufleet.errors import GpufleetError
    from gpufleet.verify.runner import exit_code

    assert exit_code({"summary": {"unhealthy": 1}}) == 1 and exit_code({"summary": {"unreachable": 2}}) == 1
    assert GpufleetError.exit_code == 2
    service = unit(render("gpufleet-verify.service.j2", **VERIFY))["Service"]
    (success,) = values(service, "SuccessExitStatus")
    assert success.split() == ["1"]


def test_verify_service_puts_the_site_args_before_the_roles_options():
    service = unit(
        render(
            "gpufleet-verify.service.j2",
            **VERIFY,
            monitoring_verify_args=["--limit", "gpu_nodes", "--jobs", "16"],
            monitoring_verify_command="/usr/local/bin/gpufleet",
            monitoring_verify_user="root",
            monitoring_node_exporter_textfile_dir="/srv/textfile",
            monitoring_verify_timeout="45min",
        )
    )["Service"]
    argv = values(service, "ExecStart")[0].split()
    # argparse keeps the last value: the role's --inventory/--tier/--prometheus come last and win.
    assert argv == [
        "/usr/local/bin/gpufleet",
        "verify",
        "--limit",
        "gpu_nodes",
        "--jobs",
        "16",
        "--inventory",
        "/etc/gpufleet/site/hosts.yml",
        "--tier",
        "quick",
        "--prometheus",
        "/var/lib/gpufleet-verify/gpufleet-verify.prom",
        "--quiet",
    ]
    assert values(service, "User") == ["root"]
    assert values(service, "ExecStartPost")[1].endswith(" /srv/textfile/gpufleet-verify.prom")
    assert values(service, "TimeoutStartSec") == ["45min"]


def test_verify_timer_counts_a_time_span_from_the_last_run():
    timer = unit(render("gpufleet-verify.timer.j2", **VERIFY))
    section = timer["Timer"]
    assert values(section, "OnUnitActiveSec") == ["5min"]
    # Without a first trigger a never-run unit would never be started by OnUnitActiveSec.
    assert values(section, "OnBootSec") and values(section, "OnActiveSec")
    assert values(section, "OnCalendar") == [] and values(section, "Persistent") == []
    assert values(section, "Unit") == ["gpufleet-verify.service"]
    assert values(section, "RandomizedDelaySec") == ["30s"]
    assert values(timer["Install"], "WantedBy") == ["timers.target"]
    spans = render("gpufleet-verify.timer.j2", **VERIFY, monitoring_verify_interval="1h 30min")
    assert values(unit(spans)["Timer"], "OnUnitActiveSec") == ["1h 30min"]


def test_verify_timer_takes_a_calendar_expression_and_catches_up():
    section = unit(render("gpufleet-verify.timer.j2", **VERIFY, monitoring_verify_interval="*:0/10"))["Timer"]
    assert values(section, "OnCalendar") == ["*:0/10"]
    assert values(section, "Persistent") == ["true"]
    assert values(section, "OnUnitActiveSec") == [] and values(section, "OnBootSec") == []


def analyze_units(directory):
    """systemd-analyze verify on the rendered timer and service in ``directory``."""
    return subprocess.run(
        [
            SYSTEMD_ANALYZE,
            "verify",
            str(directory / "gpufleet-verify.timer"),
            str(directory / "gpufleet-verify.service"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian package systemd)"
)
@pytest.mark.parametrize("interval", ["5min", "*:0/10"], ids=["span", "calendar"])
def test_systemd_analyze_accepts_the_rendered_units(tmp_path, interval):
    # systemd-analyze verify exits 0 on a value it cannot parse ("Failed to parse ..., ignoring"),
    # so its output must be empty too. The command must exist: this Python's gpufleet (else Python).
    command = Path(sys.executable).parent / "gpufleet"
    command = str(command if command.exists() else sys.executable)
    for name in ("gpufleet-verify.service", "gpufleet-verify.timer"):
        (tmp_path / name).write_text(
            render(
                f"{name}.j2",
                **VERIFY,
                monitoring_verify_command=command,
                monitoring_verify_interval=interval,
                monitoring_verify_user="root",
            )
        )
    result = analyze_units(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


@pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian package systemd)"
)
def test_systemd_analyze_output_shows_a_broken_unit(tmp_path):
    # The check above can fail: a bad exit status and an unknown interval are reported.
    service = render("gpufleet-verify.service.j2", **VERIFY, monitoring_verify_command="/bin/true")
    (tmp_path / "gpufleet-verify.service").write_text(
        service.replace("SuccessExitStatus=1", "SuccessExitStatus=unhealthy")
    )
    timer = render("gpufleet-verify.timer.j2", **VERIFY, monitoring_verify_interval="every five minutes")
    (tmp_path / "gpufleet-verify.timer").write_text(timer)
    result = analyze_units(tmp_path)
    out = result.stdout + result.stderr
    assert "gpufleet-verify.service:" in out and "Failed to parse value, ignoring: unhealthy" in out, out
    assert "Failed to parse calendar specification, ignoring: every five minutes" in out, out
