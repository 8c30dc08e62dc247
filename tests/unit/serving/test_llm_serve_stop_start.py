"""The llm_serve role's stop and start entry points (a rolling upgrade's stop_serving/start_serving):
what they stop and bring back (plugins/plugin_utils/serving_engine.py, through its filters), the front
unit's graceful stop bounded by llm_serve_drain_timeout, and the entry points run on this machine
where there is nothing to stop or start (no systemd here: stopping real units is molecule's)."""

import json
from types import SimpleNamespace

import jinja2
import pytest
from ansible_collections.gpufleet.cluster.plugins.filter import serving as serving_filters
from conftest import REPO
from front_harness import run_role

flt = SimpleNamespace(**serving_filters.FilterModule().filters())
FRONT = "gpufleet-front.service"
A1, A2, B3 = (
    "gpufleet-serve-tiny-a-1.service",
    "gpufleet-serve-tiny-a-2.service",
    "gpufleet-serve-tiny-b-3.service",
)
STATES = {
    "tiny-a": {"current": "2", "previous": "1", "ports": {"2": 8102, "1": 8101}},
    "tiny-b": {"current": "3", "previous": None, "ports": {"3": 8103}},
}


def running(*units, stopped=()):
    out = {u: {"name": u, "state": "running", "source": "systemd"} for u in units}
    out.update({u: {"name": u, "state": "stopped", "source": "systemd"} for u in stopped})
    return out


# --- what stop stops and records ----------------------------------------------------------------------


def test_stop_stops_the_running_front_and_every_running_recorded_version():
    plan = flt.serving_stop_plan(STATES, running(FRONT, A1, A2, B3, "ssh.service"))
    assert plan["front"] == [FRONT]
    # each model's current version, then its previous one
    assert plan["engines"] == [A2, A1, B3]
    assert plan["record"] == {"schema": 1, "front": [FRONT], "engines": [A2, A1, B3]}
    assert plan["write"] is True


def test_stop_leaves_out_what_does_not_run():
    # tiny-a's previous version was not kept running; tiny-b's unit failed: start must not bring them.
    plan = flt.serving_stop_plan(STATES, running(FRONT, A2, stopped=(A1, B3)))
    assert plan["engines"] == [A2] and plan["front"] == [FRONT]


def test_a_second_stop_keeps_the_record_and_writes_nothing():
    first = flt.serving_stop_plan(STATES, running(FRONT, A1, A2))
    again = flt.serving_stop_plan(STATES, running(stopped=(FRONT, A1, A2)), first["record"] | {"time": "t"})
    assert again["engines"] == [A2, A1] and again["front"] == [FRONT]
    assert again["write"] is False


def test_a_stop_after_a_partial_one_adds_what_runs_again():
    # The front was stopped and recorded; A2 was started again meanwhile (a serve run).
    record = {"schema": 1, "front": [FRONT], "engines": [A1]}
    plan = flt.serving_stop_plan(STATES, running(A2, stopped=(FRONT, A1)), record)
    assert plan["engines"] == [A1, A2] and plan["front"] == [FRONT] and plan["write"] is True


def test_a_host_where_nothing_runs_stops_and_records_nothing():
    plan = flt.serving_stop_plan(STATES, running(stopped=(FRONT, A1, A2, B3)))
    assert plan == {
        "front": [],
        "engines": [],
        "record": {"schema": 1, "front": [], "engines": []},
        "write": False,
    }
    assert flt.serving_stop_plan({}, running(FRONT))["engines"] == []


def test_bad_names_in_the_state_are_refused():
    with pytest.raises(ValueError, match="version"):
        flt.serving_stop_plan({"tiny-a": {"current": "../x"}}, {})


# --- what start brings back ---------------------------------------------------------------------------


def test_start_brings_back_what_the_stop_recorded_and_waits_for_current_versions():
    record = {"schema": 1, "front": [FRONT], "engines": [A1, A2], "time": "t"}
    plan = flt.serving_start_plan(record, STATES)
    assert plan["engines"] == [A1, A2] and plan["front"] == [FRONT]
    # tiny-a's current version is waited for on its port; tiny-b was not running: not waited for.
    assert plan["ready"] == [{"model": "tiny-a", "version": "2", "unit": A2, "port": 8102}]


def test_start_without_a_record_starts_nothing():
    assert flt.serving_start_plan({}, STATES) == {"engines": [], "front": [], "ready": []}


# --- the front's graceful stop ------------------------------------------------------------------------


def render_front_unit(**values):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(REPO / "roles" / "llm_serve" / "templates"))
    context = {
        "ansible_managed": "managed",
        "__llm_serve_front_dir": "/etc/gpufleet/front",
        "__llm_serve_front_nginx": "/usr/sbin/nginx",
        **values,
    }
    return env.get_template("gpufleet-front.service.j2").render(context)


@pytest.mark.parametrize("timeout", [120, 45])
def test_the_front_stops_gracefully_within_the_drain_timeout(timeout):
    lines = render_front_unit(llm_serve_drain_timeout=timeout).splitlines()
    # SIGQUIT is nginx's graceful shutdown (nginx -s quit); no ExecStop that would stop it otherwise
    assert "KillSignal=SIGQUIT" in lines
    assert [line for line in lines if line.startswith("TimeoutStopSec=")] == [f"TimeoutStopSec={timeout}"]
    assert not [line for line in lines if line.startswith(("ExecStop=", "KillMode="))]


def test_the_role_default_drain_timeout_is_what_the_unit_gets():
    import yaml

    defaults = yaml.safe_load((REPO / "roles" / "llm_serve" / "defaults" / "main.yml").read_text())
    assert defaults["llm_serve_drain_timeout"] == 120


# --- the entry points on this machine (no systemd) --------------------------------------------------------


def test_stop_on_a_host_that_serves_nothing_does_nothing_and_says_so(tmp_path):
    for check in (False, True):
        result = run_role(tmp_path, {}, tasks_from="stop", tags=None, check=check)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "changed=0" in result.stdout, result.stdout
    assert not (tmp_path / "serve-stopped.json").exists()


def test_start_without_a_record_does_nothing_and_a_record_is_removed_once(tmp_path):
    result = run_role(tmp_path, {}, tasks_from="start", tags=None)
    assert result.returncode == 0 and "changed=0" in result.stdout, result.stdout + result.stderr
    # A stop that found nothing running recorded no unit: start removes the record, then has nothing to do.
    (tmp_path / "serve").mkdir()
    (tmp_path / "serve" / "tiny-a.json").write_text(json.dumps(STATES["tiny-a"]))
    record = tmp_path / "serve-stopped.json"
    record.write_text(json.dumps({"schema": 1, "front": [], "engines": [], "time": "t"}))
    result = run_role(tmp_path, {}, tasks_from="start", tags=None, check=True)
    assert result.returncode == 0 and record.exists(), result.stdout + result.stderr
    result = run_role(tmp_path, {}, tasks_from="start", tags=None)
    assert result.returncode == 0 and "changed=1" in result.stdout, result.stdout + result.stderr
    assert not record.exists()
    result = run_role(tmp_path, {}, tasks_from="start", tags=None)
    assert result.returncode == 0 and "changed=0" in result.stdout, result.stdout + result.stderr


def test_stop_where_nothing_runs_records_nothing(tmp_path):
    # Served models, but no unit runs (this machine has no systemd: service_facts finds none).
    (tmp_path / "serve").mkdir()
    for name, state in STATES.items():
        (tmp_path / "serve" / f"{name}.json").write_text(json.dumps(state))
    for check in (True, False):
        result = run_role(tmp_path, {"__llm_serve_systemd": True}, tasks_from="stop", tags=None, check=check)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "changed=0" in result.stdout, result.stdout
    assert not (tmp_path / "serve-stopped.json").exists()
