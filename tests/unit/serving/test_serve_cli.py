"""gpufleet serve rollback: runs playbooks/serve.yml through the apply machinery with
llm_serve_rollback on, the operator's own extra vars kept."""

from gpufleet import cli, serve
from gpufleet.apply import api as apply_api


def test_rollback_runs_the_serve_playbook_with_rollback_on(monkeypatch, tmp_path):
    calls = []

    class Result:
        exit_code, state, run_dir, status, rc, id = 0, None, tmp_path, "successful", 0, "x"

    def fake_run(playbook, inventory, **kw):
        calls.append((playbook, inventory, kw))
        return Result()

    monkeypatch.setattr(apply_api, "run", fake_run)
    monkeypatch.setattr("gpufleet.apply.view.print_final", lambda *a, **k: None)
    args = cli.build_parser().parse_args(
        ["serve", "rollback", "-i", "inv.yml", "-l", "node7", "-e", "llm_serve_ready_wait=30", "--plain"]
    )
    assert args.func(args) == 0
    playbook, inventory, kw = calls[0]
    assert (playbook, inventory, kw["limit"]) == (serve.PLAYBOOK, "inv.yml", "node7")
    assert kw["extra_vars"] == {"llm_serve_ready_wait": "30", "llm_serve_rollback": True}
    assert serve.PLAYBOOK == "gpufleet.cluster.serve"
    assert apply_api.resolve_playbook(serve.PLAYBOOK).name == "serve.yml"


def test_bad_usage_exits_1_not_2_which_means_failed_hosts(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(["serve", "rollback"])
    assert exc.value.code == apply_api.EXIT_USAGE == 1
    assert "required: -i/--inventory" in capsys.readouterr().err
