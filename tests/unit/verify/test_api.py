"""gpufleet.verify.run: validate -> drain -> run -> undrain -> reports, and the CLI's thin mapping onto it.

The fleet run (``runner.run``) is replaced by a stand-in that reports fixed verdicts: the
orchestration around it is under test. Draining goes through the fake ``scontrol``/``kubectl``
executables of fake_schedulers.py, found on PATH as the real ones would be.
"""

import inspect
import json
import os
import xml.etree.ElementTree as ET

import pytest
import yaml
from fake_schedulers import kube_fixture, slurm_fixture  # noqa: F401

from gpufleet import cli, verify
from gpufleet.verify import api, drain, runner
from gpufleet.verify import cli as verify_cli


def fake_fleet_run(verdicts, calls=None, check_drained=None):
    """A stand-in for ``runner.run`` that calls ``before`` as the real one does and returns ``verdicts``."""

    def fake_run(inventory, **kw):
        if calls is not None:
            calls.append({"inventory": inventory, **kw})
        kw["before"]({h: dict(hv) for h, hv in verdicts.items()})
        if check_drained:
            check_drained()
        hosts = [
            {"host": h, "verdict": hv["verdict"], "action": None, "failing": [], "warning": [], "error": None,
             "duration_s": 1.0, "gpu_count": 8, "sku": "H100 SXM", "checks": []}
            for h, hv in verdicts.items()
        ]  # fmt: skip
        return {"schema": 1, "tool": "gpufleet verify", "version": "0", "inventory": inventory,
                "tier": kw["tier"], "started": "2026-11-21T10:00:00+00:00", "duration_s": 1.0, "hosts": hosts,
                "summary": runner.summarize(hosts)}  # fmt: skip

    return fake_run


def on_path(monkeypatch, tmp_path, name, exe):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / name).symlink_to(exe)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def test_run_drains_then_returns_only_fit_nodes_it_drained(slurm, tmp_path, monkeypatch):
    """drain="slurm": unhealthy stays drained, an admin's drain is never touched."""
    on_path(monkeypatch, tmp_path, "scontrol", slurm.exe)
    verdicts = {
        "gpu01": {"verdict": "healthy"},
        "gpu02": {"verdict": "unhealthy"},
        "gpu03": {"verdict": "healthy"},
    }

    def drained_during_the_run():
        for host in ("gpu01", "gpu02"):
            assert slurm.node(host)["state"].endswith("DRAIN"), host

    monkeypatch.setattr(runner, "run", fake_fleet_run(verdicts, check_drained=drained_during_the_run))
    state_file = tmp_path / "drain-state.json"
    lines = []
    result = verify.run(
        "inv",
        drain="slurm",
        drain_state=str(state_file),
        json_report=str(tmp_path / "verify.json"),
        progress=lines.append,
    )
    assert result.exit_code == 1
    report = json.loads((tmp_path / "verify.json").read_text())
    assert report["drain"]["undrained"] == ["gpu01"]
    assert "gpu02" in report["drain"]["kept"]
    assert result.report["drain"] == report["drain"]
    assert "DRAIN" not in slurm.node("gpu01")["state"]
    assert slurm.node("gpu02")["state"].endswith("DRAIN")
    assert slurm.node("gpu03")["reason"] == "bad PSU, ticket 4711"  # the admin's drain, untouched
    assert lines[0].startswith("slurm: drained gpu01, gpu02; already out of service (left alone): gpu03")
    assert lines[-1] == "slurm: returned to service gpu01; kept out gpu03, gpu02"
    assert set(drain.make_drainer("slurm", state_file)._load()["drained"]["slurm"]) == {"gpu02"}


def test_run_drains_kubernetes_nodes_by_their_inventory_node_name(kube, tmp_path, monkeypatch):
    on_path(monkeypatch, tmp_path, "kubectl", kube.exe)
    verdicts = {
        "node-a": {"verdict": "degraded", "gpufleet_k8s_node": "gpu01"},
        "node-b": {"verdict": "unreachable", "gpufleet_k8s_node": "gpu02"},
    }
    monkeypatch.setattr(runner, "run", fake_fleet_run(verdicts))
    result = verify.run("inv", drain="kubernetes", drain_state=str(tmp_path / "state.json"))
    assert result.exit_code == 1
    assert result.report["drain"] == {
        "kind": "kubernetes",
        "undrained": ["gpu01"],
        "kept": ["gpu02"],
        "errors": {},
    }
    assert "unschedulable" not in kube.node("gpu01")["spec"]
    assert kube.node("gpu02")["spec"]["unschedulable"] is True


def test_run_without_drain_writes_every_report_and_returns_typed_verdicts(tmp_path, monkeypatch):
    calls = []
    verdicts = {"gpu01": {"verdict": "healthy"}, "gpu02": {"verdict": "degraded"}}
    monkeypatch.setattr(runner, "run", fake_fleet_run(verdicts, calls))
    out = tmp_path / "reports"
    result = verify.run(
        "inventories/site",
        limit="gpu0*",
        tier="full",
        jobs=3,
        baselines="b.yml",
        host_timeout_s=60,
        json_report=str(out / "verify.json"),
        junit_report=str(out / "verify.junit.xml"),
        prometheus_report=str(out / "gpufleet_verify.prom"),
    )
    assert result.exit_code == 0 and result.ok
    assert result.verdicts == {"gpu01": "healthy", "gpu02": "degraded"}
    assert [(h.host, h.verdict) for h in result.hosts] == [("gpu01", "healthy"), ("gpu02", "degraded")]
    assert isinstance(result.hosts[0], verify.HostVerdict)
    assert result.summary["degraded"] == 1
    assert "drain" not in result.report
    assert set(result.written) == {"json", "junit", "prometheus"}
    assert json.loads((out / "verify.json").read_text())["hosts"][1]["verdict"] == "degraded"
    assert ET.parse(out / "verify.junit.xml").getroot() is not None
    assert "gpufleet_verify_" in (out / "gpufleet_verify.prom").read_text()
    (call,) = calls
    assert call["inventory"] == "inventories/site"
    assert {k: call[k] for k in ("limit", "tier", "jobs", "baselines_file", "host_timeout_s")} == {
        "limit": "gpu0*", "tier": "full", "jobs": 3, "baselines_file": "b.yml", "host_timeout_s": 60,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"tier": "burnin"}, runner.VerifyError, r"drain the hosts first \(--drain slurm\|kubernetes\)"),
        ({"drain_state": "/tmp/s.json"}, runner.VerifyError, "--drain-state needs --drain"),
        ({"drain": "pbs"}, drain.DrainError, "unknown drain kind 'pbs'"),
        ({"tier": "soak"}, runner.VerifyError, "unknown tier 'soak'"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(kwargs, error, message, monkeypatch):
    monkeypatch.setattr(runner, "run", lambda *a, **kw: pytest.fail("the fleet run must not start"))
    with pytest.raises(error, match=message) as caught:
        verify.run("inv", **kwargs)
    assert caught.value.exit_code == 2
    with pytest.raises(error, match=message):
        verify.preview("inv", **kwargs)


def test_burnin_is_allowed_on_hosts_said_to_be_drained(monkeypatch):
    monkeypatch.setattr(runner, "run", fake_fleet_run({"gpu01": {"verdict": "healthy"}}))
    assert verify.run("inv", tier="burnin", assume_drained=True).exit_code == 0


def test_preview_lists_hosts_and_drain_nodes_and_touches_nothing(slurm, tmp_path, monkeypatch):
    on_path(monkeypatch, tmp_path, "scontrol", slurm.exe)
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        yaml.safe_dump({"all": {"hosts": {"node1": {"gpufleet_slurm_node": "gpu01"}, "node2": {}}}})
    )
    monkeypatch.setattr(runner, "run", lambda *a, **kw: pytest.fail("preview must not run"))
    plan = verify.preview(str(inv), drain="slurm", junit_report="r/verify.junit.xml")
    assert plan.hosts == ["node1", "node2"]
    assert plan.inventory == str(inv)
    assert plan.drain_nodes == {"node1": "gpu01", "node2": "node2"}
    assert plan.drain_state == api.DEFAULT_DRAIN_STATE
    assert plan.reports == {"junit": "r/verify.junit.xml"}
    assert slurm.calls() == []


# ---------------------------------------------------------------------------------------------------
# The CLI maps its options onto verify.run and prints; nothing else.


def test_cli_maps_every_option_onto_the_api(monkeypatch, capsys):
    seen = {}

    def fake_api_run(**kwargs):
        seen.update(kwargs)
        hosts = [{"host": "gpu01", "verdict": "unhealthy", "action": None, "failing": [], "warning": [],
                  "error": None, "duration_s": 1.0, "gpu_count": 8, "sku": None, "checks": []}]  # fmt: skip
        report = {"schema": 1, "tool": "gpufleet verify", "version": "0", "inventory": "inv", "tier": "full",
                  "started": "2026-11-21T10:00:00+00:00", "duration_s": 1.0, "hosts": hosts,
                  "summary": runner.summarize(hosts)}  # fmt: skip
        return api.VerifyResult(report=report, exit_code=1)

    monkeypatch.setattr(api, "run", fake_api_run)
    argv = ["verify", "-i", "inv", "-l", "gpu0*", "--tier", "burnin", "-j", "3", "--baselines", "b.yml",
            "--json", "-", "--junit", "j.xml", "--prometheus", "p.prom", "--drain", "slurm",
            "--drain-state", "s.json", "--assume-drained", "--host-timeout", "60", "-q"]  # fmt: skip
    assert cli.main(argv) == 1
    progress = seen.pop("progress")
    assert seen == {
        "inventory": "inv", "limit": "gpu0*", "tier": "burnin", "jobs": 3, "baselines": "b.yml",
        "json_report": None, "junit_report": "j.xml", "prometheus_report": "p.prom", "drain": "slurm",
        "drain_state": "s.json", "assume_drained": True, "host_timeout_s": 60,
    }  # fmt: skip
    progress("not shown: --quiet")
    out, err = capsys.readouterr()
    assert json.loads(out)["hosts"][0]["verdict"] == "unhealthy"  # --json -: the report, no table
    assert err == ""

    seen.clear()
    assert cli.main(["verify", "-i", "inv", "--json", "r.json"]) == 1
    seen.pop("progress")("a progress line")
    assert seen == {
        "inventory": "inv", "limit": None, "tier": api.DEFAULT_TIER, "jobs": api.DEFAULT_JOBS,
        "baselines": None, "json_report": "r.json", "junit_report": None, "prometheus_report": None,
        "drain": None, "drain_state": None, "assume_drained": False, "host_timeout_s": None,
    }  # fmt: skip
    out, err = capsys.readouterr()
    assert out.startswith("HOST") or "gpu01" in out  # the table
    assert err == "gpufleet verify: a progress line\n"


def test_cli_options_are_declared_once_as_data():
    params = [o.param for o in verify_cli.OPTIONS if o.param]
    assert len(params) == len(set(params))
    assert set(params) <= set(inspect.signature(api.run).parameters)
    for param in params:  # every API parameter the CLI sets is documented in run's docstring
        assert f"{param}:" in api.run.__doc__
