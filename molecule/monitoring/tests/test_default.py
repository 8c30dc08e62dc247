"""Real state after playbooks/monitoring.yml on one lab host (Debian 12) that is both the monitoring
host (bastion) and a GPU node (gpu_nodes), with Debian's prometheus, prometheus-alertmanager and
prometheus-node-exporter.

The chain a site relies on is followed end to end: gpufleet verify's own writer
(gpufleet.verify.report.render_prometheus) produces a textfile for an unhealthy host, written
atomically into the role's textfile directory; node_exporter serves it, Prometheus scrapes it (the
`node` job, target up), evaluates gpufleet's rules and fires GpufleetHostUnhealthy (it has no `for:`,
so it goes straight to firing), and Alertmanager holds the alert. The scenario sets 5 s scrape and
evaluation intervals; every wait is bounded (WAIT_S) and polls, so the scenario cannot hang.
"""

import base64
import json
import shlex
import time
import urllib.parse
from datetime import UTC, datetime

import pytest
import yaml

from gpufleet.verify.report import render_prometheus

# The role's default monitoring_node_exporter_textfile_dir (roles/monitoring/defaults/main.yml).
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
TEXTFILE = f"{TEXTFILE_DIR}/gpufleet-verify.prom"
NODE_EXPORTER = "http://127.0.0.1:9100"
DCGM_EXPORTER = "http://127.0.0.1:9400"
# Fields only gpufleet's counters file has (the package's default counters leave them out).
GPUFLEET_ONLY_FIELDS = ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_ROW_REMAP_PENDING")
PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
VERIFIED_HOST = "node1"  # the host the verdict is about (its own 'host' label)
RULE_GROUPS = {"gpufleet-verify", "gpufleet-dcgm", "gpufleet-nodes", "gpufleet-serving"}
WAIT_S = 90  # at most, for each wait: several 5 s scrape and evaluation intervals
POLL_S = 2


def fetch(host, url):
    """GET url on the host itself (the services listen there); (status, body), status 0 when refused."""
    script = (
        "import sys, urllib.request, urllib.error\n"
        "try:\n"
        "    r = urllib.request.urlopen(sys.argv[1], timeout=10)\n"
        "    print(r.status); sys.stdout.write(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code); sys.stdout.write(e.read().decode())\n"
        "except OSError as e:\n"
        "    print(0); sys.stdout.write(str(e))\n"
    )
    out = host.check_output(f"python3 -c {shlex.quote(script)} {shlex.quote(url)}")
    status, _, body = out.partition("\n")
    return int(status), body


def fetch_json(host, url):
    status, body = fetch(host, url)
    assert status == 200, f"{url}: {status} {body[:500]}"
    return json.loads(body)


def wait_for(what, probe):
    """Call probe() until it returns something true, for at most WAIT_S; fail with its last answer."""
    deadline = time.monotonic() + WAIT_S
    last = None
    while True:
        ok, last = probe()
        if ok:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {WAIT_S} s; last seen: {str(last)[:2000]}")
        time.sleep(POLL_S)


@pytest.fixture(scope="module")
def verify_textfile(host):
    """The textfile `gpufleet verify --prometheus` writes for an unhealthy host, placed atomically
    (a temporary name the collector ignores, then a rename), removed afterwards."""
    report = {
        "started": datetime.now(UTC).isoformat(),
        "duration_s": 1.0,
        "tier": "quick",
        "hosts": [{"host": VERIFIED_HOST, "verdict": "unhealthy", "checks": []}],
    }
    text = render_prometheus(report)
    b64 = base64.b64encode(text.encode()).decode()
    tmp = f"{TEXTFILE}.tmp"
    host.run_expect([0], f"echo {b64} | base64 -d > {tmp} && chmod 0644 {tmp} && mv {tmp} {TEXTFILE}")
    yield text
    host.run(f"rm -f {TEXTFILE}")


@pytest.mark.parametrize(
    "service", ["prometheus-node-exporter", "prometheus", "prometheus-alertmanager", "nvidia-dcgm-exporter"]
)
def test_service_active_and_enabled(host, service):
    svc = host.service(service)
    assert svc.is_running, service
    assert svc.is_enabled, service


def test_node_exporter_reads_the_textfile_directory(host):
    defaults = host.file("/etc/default/prometheus-node-exporter").content_string
    args = [line for line in defaults.splitlines() if line.startswith("ARGS=")]
    assert len(args) == 1, defaults
    assert f"--collector.textfile.directory={TEXTFILE_DIR}" in args[0], args
    assert host.file(TEXTFILE_DIR).is_directory
    # The running process got it (the change restarted the service).
    pid = host.check_output("systemctl show -p MainPID --value prometheus-node-exporter")
    cmdline = host.file(f"/proc/{pid}/cmdline").content.split(b"\0")
    assert f"--collector.textfile.directory={TEXTFILE_DIR}".encode() in cmdline, cmdline


def test_textfile_metric_served_by_node_exporter(host, verify_textfile):
    line = f'gpufleet_verify_host_verdict{{host="{VERIFIED_HOST}",verdict="unhealthy"}} 1'
    assert line in verify_textfile

    def probe():
        status, body = fetch(host, f"{NODE_EXPORTER}/metrics")
        served = [x for x in body.splitlines() if x.startswith("gpufleet_verify_host_verdict")]
        return status == 200 and line in served, (status, served)

    wait_for(f"node_exporter serving {line}", probe)
    # The collector read the file without an error (a half-written or malformed file sets this).
    _, body = fetch(host, f"{NODE_EXPORTER}/metrics")
    assert "node_textfile_scrape_error 0" in body.splitlines()


def test_prometheus_scrapes_the_node_job(host):
    def probe():
        targets = fetch_json(host, f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
        node = [t for t in targets if t["labels"].get("job") == "node"]
        return len(node) == 1 and node[0]["health"] == "up", node

    (target,) = wait_for("the node job's target up", probe)
    # The labels the rules select on (templates/prometheus.yml.j2).
    assert target["labels"]["gpufleet_role"] == "node"
    assert target["labels"]["node"] == host.backend.get_hostname()
    assert target["labels"]["instance"].endswith(":9100")


def test_prometheus_loaded_gpufleet_rules(host):
    groups = fetch_json(host, f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]
    loaded = {g["name"]: g for g in groups}
    assert set(loaded) >= RULE_GROUPS, sorted(loaded)
    for name in RULE_GROUPS:
        assert loaded[name]["file"] == "/etc/prometheus/rules/gpufleet-alerts.rules.yml"
        assert loaded[name]["interval"] == 5  # monitoring_evaluation_interval in molecule.yml
    alerts = {r["name"] for r in loaded["gpufleet-verify"]["rules"] if r["type"] == "alerting"}
    assert "GpufleetHostUnhealthy" in alerts


def test_unhealthy_verdict_fires_an_alert_that_reaches_alertmanager(host, verify_textfile):
    def firing():
        alerts = fetch_json(host, f"{PROMETHEUS}/api/v1/alerts")["data"]["alerts"]
        mine = [a for a in alerts if a["labels"].get("alertname") == "GpufleetHostUnhealthy"]
        mine = [a for a in mine if a["labels"].get("host") == VERIFIED_HOST]
        return bool(mine) and mine[0]["state"] == "firing", mine or alerts

    (alert,) = wait_for("GpufleetHostUnhealthy firing", firing)
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["job"] == "node"
    assert alert["labels"]["node"] == host.backend.get_hostname()
    # No other gpufleet-verify alert: the run is fresh (not stale), the host reachable.
    assert {"GpufleetVerifyStale", "GpufleetHostUnreachable"}.isdisjoint(
        a["labels"]["alertname"] for a in fetch_json(host, f"{PROMETHEUS}/api/v1/alerts")["data"]["alerts"]
    )

    def delivered():
        alerts = fetch_json(host, f"{ALERTMANAGER}/api/v2/alerts")
        mine = [a for a in alerts if a["labels"].get("alertname") == "GpufleetHostUnhealthy"]
        return bool(mine) and mine[0]["status"]["state"] == "active", alerts

    wait_for("Alertmanager holding GpufleetHostUnhealthy", delivered)


def test_alertmanager_ready_with_private_configuration(host):
    status, body = fetch(host, f"{ALERTMANAGER}/-/ready")
    assert status == 200, body
    conf = host.file("/etc/prometheus/alertmanager.yml")
    assert conf.mode == 0o640
    assert conf.group == "prometheus"
    # Alertmanager itself (not only amtool) loaded the role's file: the route and the inhibition.
    loaded = yaml.safe_load(fetch_json(host, f"{ALERTMANAGER}/api/v2/status")["config"]["original"])
    assert loaded["route"]["receiver"] == "null"
    assert loaded["route"]["group_by"] == ["alertname", "host", "node"]
    assert loaded["inhibit_rules"][0]["equal"] == ["host", "node", "gpu"]


# --- dcgm-exporter (TEST DOUBLES of NVIDIA's packages, prepare.yml) ------------------------------


def test_dcgm_exporter_installed_with_apt_where_dcgm_is(host):
    # The role installed the exporter (prepare only put it in a local APT repository); the DCGM
    # double it depends on is what a site would have installed.
    assert host.package("datacenter-gpu-manager-4-core").is_installed
    exporter = host.package("datacenter-gpu-manager-exporter")
    assert exporter.is_installed and "gpufleet.test.double" in exporter.version
    # apt installed it (prepare installed only the DCGM double, with dpkg -i).
    installs = [
        x
        for x in host.file("/var/log/apt/history.log").content_string.splitlines()
        if x.startswith("Install:")
    ]
    assert any("datacenter-gpu-manager-exporter:" in x for x in installs), installs


def test_dcgm_exporter_runs_gpufleets_counters_on_the_port(host):
    dropin = host.file("/etc/systemd/system/nvidia-dcgm-exporter.service.d/gpufleet.conf")
    assert dropin.exists and dropin.mode == 0o644
    # systemd merged the drop-in: one command line, the package's own replaced.
    execstart = host.check_output("systemctl show -p ExecStart --value nvidia-dcgm-exporter")
    assert "/etc/dcgm-exporter/gpufleet-counters.csv" in execstart and "-a :9400" in execstart
    assert "default-counters.csv" not in execstart
    assert host.check_output("systemctl show -p TimeoutStopUSec --value nvidia-dcgm-exporter") == "20s"
    counters = host.file("/etc/dcgm-exporter/gpufleet-counters.csv").content_string
    assert all(field in counters for field in GPUFLEET_ONLY_FIELDS)

    def serving():
        status, body = fetch(host, f"{DCGM_EXPORTER}/metrics")
        names = {line.split("{")[0] for line in body.splitlines() if line.startswith("DCGM_FI_")}
        return status == 200 and set(GPUFLEET_ONLY_FIELDS) <= names, (status, sorted(names))

    wait_for("dcgm-exporter serving gpufleet's counters", serving)


def test_prometheus_scrapes_dcgm_exporter_and_has_the_alerts_fields(host):
    def probe():
        targets = fetch_json(host, f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
        dcgm = [t for t in targets if t["labels"].get("job") == "dcgm"]
        return len(dcgm) == 1 and dcgm[0]["health"] == "up", dcgm

    (target,) = wait_for("the dcgm job's target up", probe)
    assert target["labels"]["gpufleet_role"] == "dcgm"
    assert target["labels"]["node"] == host.backend.get_hostname()
    assert target["labels"]["instance"].endswith(":9400")

    def series():
        query = 'DCGM_FI_DEV_ROW_REMAP_PENDING{gpufleet_role="dcgm"}'
        url = f"{PROMETHEUS}/api/v1/query?query={urllib.parse.quote(query)}"
        result = fetch_json(host, url)["data"]["result"]
        return len(result) == 1, result

    (sample,) = wait_for("DCGM_FI_DEV_ROW_REMAP_PENDING in Prometheus", series)
    assert sample["metric"]["gpu"] == "0" and sample["value"][1] == "0"


# --- gpufleet verify's timer (its command a TEST DOUBLE, prepare.yml; last: it replaces the textfile)


def test_verify_timer_is_scheduled_and_its_user_made(host):
    timer = host.service("gpufleet-verify.timer")
    assert timer.is_running and timer.is_enabled
    assert host.check_output("systemctl show -p NextElapseUSecRealtime --value gpufleet-verify.timer")
    user = host.user("gpufleet-verify")
    assert user.home == "/var/lib/gpufleet-verify" and user.shell == "/usr/sbin/nologin"
    assert user.uid < 1000, "a system user"


def test_verify_service_runs_as_its_user_and_publishes_the_textfile(host):
    """What the timer starts, started now: verify (the double) runs as the verify user in its state
    directory, exits 1 (a host unhealthy: not a failed unit), and root moves its file into the textfile
    directory, where node_exporter serves it."""
    host.run_expect([0], "systemctl start gpufleet-verify.service")  # oneshot: returns when it ended
    show = host.check_output("systemctl show -p Result -p ExecMainStatus gpufleet-verify.service")
    assert dict(line.split("=", 1) for line in show.splitlines()) == {
        "Result": "success",
        "ExecMainStatus": "1",
    }
    ran = host.file("/var/lib/gpufleet-verify/gpufleet-double-args").content_string.split()
    assert ran[0] == "gpufleet-verify"
    assert ran[1:] == [
        "verify",
        "--inventory",
        "/etc/gpufleet/inventory.yml",
        "--tier",
        "quick",
        "--prometheus",
        "/var/lib/gpufleet-verify/gpufleet-verify.prom",
        "--quiet",
    ]
    published = host.file(TEXTFILE)
    assert published.user == "root" and published.mode == 0o644
    assert 'host="timer-double"' in published.content_string
    assert not host.file(f"{TEXTFILE_DIR}/.gpufleet-verify.prom.tmp").exists

    def served():
        _, body = fetch(host, f"{NODE_EXPORTER}/metrics")
        line = 'gpufleet_verify_host_verdict{host="timer-double",verdict="unhealthy"} 1'
        return line in body.splitlines(), [x for x in body.splitlines() if x.startswith("gpufleet_verify")]

    wait_for("node_exporter serving the timer's file", served)
