"""``gpufleet apply``: bad input is exit 1 with a clear message and nothing run; options reach
ansible-runner (``--check`` as ``--check``); collection playbook names; the environment it runs in;
off a terminal the view is plain lines."""

import io
import os
import sys
from types import SimpleNamespace

import ansible_runner
import pytest
from conftest import FIXTURES, REPO

from gpufleet.apply import api
from gpufleet.apply import view as views
from gpufleet.apply.cli import exit_status_epilog, parse_extra_vars, runner_failure
from gpufleet.cli import build_parser, main

PLAYBOOK = FIXTURES / "apply" / "tiny.yml"
INVENTORY = FIXTURES / "apply" / "tiny_hosts.yml"


@pytest.fixture
def runner_calls(monkeypatch):
    """ansible_runner.run replaced: records its keywords, feeds two ok events, succeeds."""
    calls = []

    def fake_run(**kwargs):
        calls.append(kwargs)
        for host in ("alpha", "beta"):
            kwargs["event_handler"](
                {"event": "runner_on_ok", "event_data": {"host": host, "task": "t", "res": {}}}
            )
        return SimpleNamespace(status="successful", rc=0)

    monkeypatch.setattr(ansible_runner, "run", fake_run)
    return calls


def apply_cmd(capsys, tmp_path, *argv):
    code = main(["apply", *map(str, argv), "--runs-dir", str(tmp_path / "runs"), "--plain"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_missing_playbook_is_exit_1_and_nothing_runs(capsys, tmp_path, runner_calls):
    code, _out, err = apply_cmd(capsys, tmp_path, tmp_path / "nope.yml", "-i", INVENTORY)
    assert code == 1
    assert f"gpufleet: error: playbook '{tmp_path / 'nope.yml'}' not found" in err
    assert runner_calls == [] and not (tmp_path / "runs").exists()


def test_missing_inventory_is_exit_1_and_nothing_runs(capsys, tmp_path, runner_calls):
    code, _out, err = apply_cmd(capsys, tmp_path, PLAYBOOK, "-i", tmp_path / "hosts.yml")
    assert code == 1
    assert "inventory" in err and "not found" in err
    assert runner_calls == [] and not (tmp_path / "runs").exists()


def test_unknown_collection_playbook_lists_the_ones_there_are(capsys, tmp_path, runner_calls):
    code, _out, err = apply_cmd(capsys, tmp_path, "gpufleet.cluster.nosuch", "-i", INVENTORY)
    assert code == 1
    assert "gpufleet.cluster has no playbooks/nosuch.yml" in err and "site" in err
    assert runner_calls == []


def test_bad_extra_vars_are_exit_1(capsys, tmp_path, runner_calls):
    code, _out, err = apply_cmd(capsys, tmp_path, PLAYBOOK, "-i", INVENTORY, "-e", "novalue")
    assert code == 1 and "expected KEY=VALUE" in err and runner_calls == []


def test_options_reach_ansible_runner(capsys, tmp_path, runner_calls):
    code, out, _err = apply_cmd(
        capsys, tmp_path, PLAYBOOK, "-i", INVENTORY, "--check", "--limit", "gpu_nodes", "--tags", "driver",
        "-e", "a=1 b=two", "-e", '{"c": [1, 2]}',
    )  # fmt: skip
    assert code == 0
    (kw,) = runner_calls
    assert kw["cmdline"] == "--check"
    assert (kw["limit"], kw["tags"]) == ("gpu_nodes", "driver")
    assert kw["extravars"] == {"a": "1", "b": "two", "c": [1, 2]}
    assert kw["playbook"] == str(PLAYBOOK.resolve()) and kw["inventory"] == str(INVENTORY.resolve())
    assert kw["private_data_dir"] == str((tmp_path / "runs" / kw["ident"]).resolve())
    assert kw["quiet"] is True
    assert "2 hosts: 2 running" in out
    summary = (tmp_path / "runs" / kw["ident"] / "summary.json").read_text()
    assert '"check": true' in summary and '"exit_code": 0' in summary


def test_without_check_there_is_no_check_flag(capsys, tmp_path, runner_calls):
    assert apply_cmd(capsys, tmp_path, PLAYBOOK, "-i", INVENTORY)[0] == 0
    assert runner_calls[0]["cmdline"] is None


def test_a_runner_timeout_is_exit_3(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(ansible_runner, "run", lambda **kw: SimpleNamespace(status="timeout", rc=254))
    code, _out, err = apply_cmd(capsys, tmp_path, PLAYBOOK, "-i", INVENTORY, "--timeout", "5")
    assert code == 3
    assert "ansible-runner status timeout" in err


def test_collection_playbook_names_resolve_in_the_collection():
    assert api.resolve_playbook("gpufleet.cluster.site") == (REPO / "playbooks" / "site.yml").resolve()
    assert api.resolve_inventory("node1,node2,") == "node1,node2,"


def test_extra_vars_from_a_file(tmp_path):
    varfile = tmp_path / "vars.yml"
    varfile.write_text("gpufleet_offline: true\n")
    assert parse_extra_vars([f"@{varfile}", "x=1"]) == {"gpufleet_offline": True, "x": "1"}


def test_runner_env_keeps_host_keys_checked_and_names_the_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ansible.cfg here: the checkout's is used
    monkeypatch.delenv("ANSIBLE_CONFIG", raising=False)
    monkeypatch.delenv("ANSIBLE_HOST_KEY_CHECKING", raising=False)
    env = api.runner_env()
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert env["ANSIBLE_CONFIG"] == str(REPO / "ansible.cfg")
    assert env["ANSIBLE_COLLECTIONS_PATH"].split(os.pathsep)[0] == str(REPO / ".collections")
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    assert api.runner_env()["ANSIBLE_CONFIG"] == str(tmp_path / "ansible.cfg")


def test_help_documents_the_exit_codes():
    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    epilog = sub.choices["apply"].epilog
    for code in (0, 1, 2, 3, 4):
        assert f"  {code}  " in epilog
    assert "unreachable" in epilog and "nothing was run" in epilog


def test_usage_errors_are_exit_1_not_argparses_2(capsys, runner_calls):
    with pytest.raises(SystemExit) as exit_info:
        main(["apply", str(PLAYBOOK)])  # no -i
    assert exit_info.value.code == 1
    assert "the following arguments are required: -i/--inventory" in capsys.readouterr().err
    assert runner_calls == []


def test_off_a_terminal_the_default_view_is_plain_lines(capsys, tmp_path, monkeypatch):
    """What `make demo` does in a CI log or behind `| tee`: no --plain, neither stream a terminal —
    the view degrades to plain lines on stderr, the final table on stdout, no escape codes in either."""

    def fake_run(**kwargs):
        for event in (
            {"event": "playbook_on_play_start", "event_data": {"play": "Tiny fleet play"}},
            {"event": "runner_on_ok", "event_data": {"host": "alpha", "task": "t", "res": {"changed": True}}},
            {
                "event": "runner_on_failed",
                "event_data": {"host": "beta", "task": "t", "res": {"msg": "broken"}},
            },
            {
                "event": "playbook_on_stats",
                "event_data": {
                    "ok": {"alpha": 1, "beta": 0},
                    "changed": {"alpha": 1},
                    "failures": {"beta": 1},
                },
            },
        ):
            kwargs["event_handler"](event)
        return SimpleNamespace(status="failed", rc=2)

    monkeypatch.setattr(ansible_runner, "run", fake_run)
    for forcing in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):  # rich's overrides of the check
        monkeypatch.delenv(forcing, raising=False)
    assert not sys.stdout.isatty() and not sys.stderr.isatty()  # capsys: neither is a terminal
    code = main(["apply", str(PLAYBOOK), "-i", str(INVENTORY), "--runs-dir", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    assert code == 2
    assert "gpufleet apply: play 'Tiny fleet play'" in err
    assert "gpufleet apply: beta FAILED at t: broken" in err
    assert "gpufleet apply: alpha done ok=1 changed=1 failed=0" in err
    assert "gpufleet apply: beta failed ok=0 changed=0 failed=1" in err
    assert "failed and unreachable hosts" in out and "2 hosts: 1 done, 1 failed" in out
    assert "\x1b[" not in out + err


def test_default_view_is_live_only_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(views.default_view(io.StringIO()), views.PlainView)
    assert isinstance(views.default_view(Terminal()), views.LiveView)


def test_apply_and_upgrade_say_a_runner_failure_in_the_same_words(capsys, tmp_path, monkeypatch):
    """One text for exit status 3 in both --help epilogs, one runner-failure line on stderr."""
    from gpufleet.upgrade import api as upgrade_api

    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    meaning = f"  3  {api.EXIT_CODES[api.EXIT_RUNNER]}\n"
    for cmd, codes in (("apply", api.EXIT_CODES), ("upgrade", upgrade_api.EXIT_CODES)):
        assert sub.choices[cmd].epilog == exit_status_epilog(codes), cmd
        assert meaning in sub.choices[cmd].epilog + "\n", cmd

    monkeypatch.setattr(ansible_runner, "run", lambda **kw: SimpleNamespace(status="timeout", rc=254))
    code, _out, apply_err = apply_cmd(capsys, tmp_path, PLAYBOOK, "-i", INVENTORY)
    assert code == 3
    done = SimpleNamespace(status="timeout", rc=254, run_dir=tmp_path / "runs" / "r1", id="r1")
    stopped = SimpleNamespace(exit_code=3, text="report", report_file="r.json", apply=done)
    monkeypatch.setattr(upgrade_api, "run", lambda **kw: stopped)
    assert main(["upgrade", "-i", str(INVENTORY), "--plain"]) == 3
    upgrade_err = capsys.readouterr().err
    tail = "ansible-runner status timeout, ansible-playbook rc 254; its output: "
    (apply_line,) = [line for line in apply_err.splitlines() if tail in line]
    (upgrade_line,) = [line for line in upgrade_err.splitlines() if tail in line]
    assert apply_line.startswith(f"gpufleet apply: {tail}") and apply_line.endswith("stdout")
    assert (
        upgrade_line == f"gpufleet upgrade: {tail}{tmp_path / 'runs' / 'r1' / 'artifacts' / 'r1' / 'stdout'}"
    )
    assert upgrade_line == runner_failure("gpufleet upgrade", done)


def test_fast_sets_the_variable_and_keeps_other_extra_vars(capsys, tmp_path, runner_calls):
    argv = ["apply", str(FIXTURES / "apply" / "tiny.yml"), "-i", str(FIXTURES / "apply" / "tiny_hosts.yml")]
    argv += ["--runs-dir", str(tmp_path / "runs"), "--plain", "--fast", "-e", "gpufleet_offline=true"]
    assert main(argv) == 0
    assert runner_calls[0]["extravars"] == {"gpufleet_offline": "true", "gpufleet_fast_path": True}
    runner_calls.clear()
    assert main(argv[:-3]) == 0
    assert runner_calls[0]["extravars"] is None


def test_serve_rollback_has_no_fast(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "rollback", "-i", "hosts.yml", "--fast"])
    assert exc.value.code != 0
    assert "unrecognized arguments: --fast" in capsys.readouterr().err
