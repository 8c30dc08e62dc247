"""The monitoring role's own logic, run with ansible-playbook on this machine (no container, no
package installed): preflight refuses bad inputs naming each variable, and the ARGS edit of
/etc/default/prometheus-node-exporter keeps the site's other options and is idempotent."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import playbook_env

PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
pytestmark = pytest.mark.skipif(
    not PLAYBOOK.exists(), reason="ansible-playbook is not in this Python's environment"
)


def run_play(tmp_path, tasks_from, extra, inventory=None, each=None, then=None):
    """Run one task file of the role on localhost, once per entry of ``each`` (task vars), each time
    followed by the task ``then`` when given, in one ansible-playbook run: starting ansible-playbook
    costs seconds on a loaded machine."""
    play = tmp_path / "play.yml"
    play.write_text(
        yaml.safe_dump(
            [
                {
                    "name": f"monitoring {tasks_from}, on this machine",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "tasks": [
                        task
                        for n, task_vars in enumerate(each or [{}])
                        for task in [
                            {
                                "name": f"The role's task file ({n})",
                                "ansible.builtin.include_role": {
                                    "name": "gpufleet.cluster.monitoring",
                                    "tasks_from": tasks_from,
                                },
                                "vars": task_vars,
                            },
                            *([{**then, "name": f"{then['name']} ({n})"}] if then else []),
                        ]
                    ],
                }
            ],
            sort_keys=False,
        )
    )
    hosts = tmp_path / "hosts.yml"
    hosts.write_text(yaml.safe_dump(inventory or {"all": {"hosts": {"localhost": None}}}))
    env = playbook_env()
    extra = {"ansible_python_interpreter": sys.executable, **extra}
    return subprocess.run(
        [str(PLAYBOOK), "-i", str(hosts), str(play), "-e", json.dumps(extra)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=tmp_path,
    )


FLEET = {
    "all": {
        "children": {
            "bastion": {"hosts": {"localhost": None}},
            "gpu_nodes": {"hosts": {"gpu01": {"ansible_host": "10.0.1.11"}}},
        }
    }
}
DEBIAN = {"ansible_facts": {"os_family": "Debian", "distribution": "Debian", "service_mgr": "systemd"}}


def test_preflight_passes_with_the_defaults(tmp_path):
    result = run_play(tmp_path, "preflight", DEBIAN, FLEET)
    assert result.returncode == 0, result.stdout + result.stderr


def test_preflight_names_every_bad_input_at_once(tmp_path):
    bad = {
        **DEBIAN,
        "monitoring_server_group": "monitoring",
        "monitoring_node_group": "gpus",
        "monitoring_node_exporter_port": 70000,
        "monitoring_node_exporter_textfile_dir": "relative dir",
        "monitoring_scrape_interval": "30 seconds",
        "monitoring_serving_targets": ["gpu01"],
        "monitoring_alertmanager_receiver": "ops",
        "monitoring_grafana": True,
        "monitoring_grafana_dashboards_dir": "dashboards",
    }
    result = run_play(tmp_path, "preflight", bad, FLEET)
    assert result.returncode != 0
    out = " ".join((result.stdout + result.stderr).split())
    assert "nothing was changed" in out
    for name in (
        "monitoring_server_group 'monitoring'",
        "monitoring_node_group 'gpus'",
        "monitoring_node_exporter_port",
        "monitoring_node_exporter_textfile_dir 'relative dir'",
        "monitoring_scrape_interval '30 seconds'",
        "monitoring_serving_targets",
        "monitoring_alertmanager_receiver 'ops'",
        "monitoring_grafana_dashboards_dir 'dashboards'",
    ):
        assert name in out, name
    assert "unsupported OS" not in out


# /etc/default/prometheus-node-exporter before -> after (the role's ARGS edit).
ARGS_CASES = {
    "empty": ('ARGS=""\n', 'ARGS="--collector.textfile.directory={dir}"\n'),
    "kept": (
        '# options\nARGS="--web.listen-address=:9100 --collector.systemd"\n# more\n',
        '# options\nARGS="--web.listen-address=:9100 --collector.systemd'
        ' --collector.textfile.directory={dir}"\n# more\n',
    ),
    "replaced": (
        'ARGS="--collector.textfile.directory /old --no-collector.wifi"\n',
        'ARGS="--no-collector.wifi --collector.textfile.directory={dir}"\n',
    ),
    "absent": ("# no ARGS line\n", '# no ARGS line\nARGS="--collector.textfile.directory={dir}"\n'),
}


def test_node_exporter_args_keep_the_other_options(tmp_path):
    each = []
    for case, (before, _) in ARGS_CASES.items():
        (tmp_path / case).mkdir()
        (tmp_path / case / "prometheus-node-exporter").write_text(before)
        each.append(
            {
                "__monitoring_node_exporter_defaults": str(tmp_path / case / "prometheus-node-exporter"),
                "monitoring_node_exporter_textfile_dir": str(tmp_path / case / "textfile"),
            }
        )
    for run in ("first", "second"):
        result = run_play(tmp_path, "node_exporter", {"__monitoring_systemd": False}, each=each)
        assert result.returncode == 0, result.stdout + result.stderr
        for case, (_, after) in ARGS_CASES.items():
            text = (tmp_path / case / "prometheus-node-exporter").read_text()
            assert text == after.format(dir=tmp_path / case / "textfile"), (case, run)
            assert (tmp_path / case / "textfile").is_dir()
        if run == "second":
            assert "changed=0" in result.stdout, "the second run changes nothing"


def test_dcgm_exporter_only_where_dpkg_has_dcgm_installed(tmp_path):
    """The role's DCGM lookup on this machine's real dpkg: names dpkg does not know (a node without
    DCGM) make a node to skip and say what to do; one installed package (dpkg itself here) is DCGM
    present. With the install off, or on a host outside monitoring_node_group, nothing is asked."""
    each = [  # the two that ask nothing first: the fact, once set, outranks task vars
        {"monitoring_dcgm_exporter_install": False},
        {"monitoring_node_group": "bastion"},
        {"monitoring_dcgm_packages": ["gpufleet-no-such-dcgm-core", "gpufleet-no-such-dcgm"]},
        {"monitoring_dcgm_packages": ["gpufleet-no-such-dcgm-core", "dpkg"]},
    ]
    show = {
        "name": "Show",
        "ansible.builtin.debug": {"msg": "RUNS={{ __monitoring_dcgm_exporter_runs | default('unset') }}"},
    }
    fleet = {
        "all": {"children": {"gpu_nodes": {"hosts": {"localhost": None}}, "bastion": {"hosts": {"b1": None}}}}
    }
    result = run_play(tmp_path, "dcgm_find", {**DEBIAN, "monitoring_dcgm_exporter": True}, fleet, each, show)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.findall(r"msg: RUNS=(\w+)", result.stdout) == ["unset", "unset", "False", "True"]
    words = " ".join(result.stdout.split())  # the YAML result format wraps long messages
    said = re.findall(r"localhost: DCGM is not installed .*? itself\.", words)
    assert len(said) == 1, result.stdout
    assert "(none of gpufleet-no-such-dcgm-core, gpufleet-no-such-dcgm)" in said[0]
    assert "monitoring_dcgm_exporter_install false" in said[0] and "apt.debs" in said[0]


# --- gpufleet verify's timer (monitoring_verify_timer) ---------------------------------------------


def test_preflight_wants_an_inventory_with_the_verify_timer(tmp_path):
    result = run_play(tmp_path, "preflight", {**DEBIAN, "monitoring_verify_timer": True}, FLEET)
    assert result.returncode != 0
    out = " ".join((result.stdout + result.stderr).split())
    assert "monitoring_verify_timer is on but monitoring_verify_inventory is not set" in out


def test_preflight_checks_the_verify_command_and_inventory_on_the_host(tmp_path):
    command = tmp_path / "gpufleet"
    command.write_text("#!/bin/sh\n")
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    good = {
        **DEBIAN,
        "monitoring_verify_timer": True,
        "monitoring_verify_inventory": str(inventory),
        "monitoring_verify_command": str(command),
    }
    not_executable = run_play(tmp_path, "preflight", good, FLEET)
    out = " ".join((not_executable.stdout + not_executable.stderr).split())
    assert not_executable.returncode != 0
    assert f"monitoring_verify_command '{command}' is not an executable file" in out
    assert "monitoring_verify_inventory" not in out.split("preflight failed", 1)[-1]
    command.chmod(0o755)
    result = run_play(tmp_path, "preflight", good, FLEET)
    assert result.returncode == 0, result.stdout + result.stderr
    missing = {**good, "monitoring_verify_inventory": str(tmp_path / "absent.yml")}
    result = run_play(tmp_path, "preflight", missing, FLEET)
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert f"monitoring_verify_inventory '{tmp_path / 'absent.yml'}' does not exist" in out


def test_preflight_refuses_bad_verify_settings(tmp_path):
    bad = {
        **DEBIAN,
        "monitoring_verify_timer": True,
        "monitoring_verify_inventory": "inventories/site",
        "monitoring_verify_interval": "every 5 minutes;",
        "monitoring_verify_user": "Ops User",
        "monitoring_verify_args": ["--limit", "gpu nodes", "--tier=full"],
    }
    result = run_play(tmp_path, "preflight", bad, FLEET)
    assert result.returncode != 0
    out = " ".join((result.stdout + result.stderr).split())
    for name in (
        "monitoring_verify_inventory 'inventories/site'",
        "monitoring_verify_interval 'every 5 minutes;'",
        "monitoring_verify_user 'Ops User'",
        "monitoring_verify_args",
    ):
        assert name in out, name
    # Each bad argument alone is refused: whitespace, and an option the role sets.
    for args in (["gpu nodes"], ["--tier=full"], ["-i", "/etc/other"], ["--prometheus", "/tmp/x"]):
        result = run_play(tmp_path, "preflight", {**bad, "monitoring_verify_args": args}, FLEET)
        assert "monitoring_verify_args must be a list" in " ".join(result.stdout.split()), args


def test_preflight_ignores_the_verify_settings_with_the_timer_off(tmp_path):
    off = {
        **DEBIAN,
        "monitoring_verify_args": ["--tier=full"],
        "monitoring_verify_command": "/absent/gpufleet",
    }
    result = run_play(tmp_path, "preflight", off, FLEET)
    assert result.returncode == 0, result.stdout + result.stderr


def test_verify_units_are_installed_then_removed_idempotently(tmp_path):
    # No systemd here: the units go to a directory of the test, the user is this one (no user created).
    units = tmp_path / "units"
    units.mkdir()
    common = {
        **DEBIAN,
        "__monitoring_systemd": False,
        "__monitoring_verify_unit_dir": str(units),
        "monitoring_verify_user": "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody"),
        "monitoring_verify_inventory": "/etc/gpufleet/site",
    }
    names = ["gpufleet-verify.service", "gpufleet-verify.timer"]
    for run in ("first", "second"):
        result = run_play(tmp_path, "verify_timer", {**common, "monitoring_verify_timer": True}, FLEET)
        assert result.returncode == 0, result.stdout + result.stderr
        assert sorted(p.name for p in units.iterdir()) == names, run
        assert "--inventory /etc/gpufleet/site --tier quick" in (units / names[0]).read_text()
        if run == "second":
            assert "changed=0" in result.stdout, "the second run changes nothing"
    (units / "unrelated.service").write_text("[Service]\n")
    for run in ("first", "second"):
        result = run_play(tmp_path, "verify_timer", {**common, "monitoring_verify_timer": False}, FLEET)
        assert result.returncode == 0, result.stdout + result.stderr
        assert [p.name for p in units.iterdir()] == ["unrelated.service"], run
        if run == "second":
            assert "changed=0" in result.stdout, "the second run changes nothing"
