"""``gpufleet plan``: exit codes, the table, JSON on stdout and in a file, and clear errors."""

import json

import pytest
from conftest import FIXTURES

from gpufleet.cli import main

MODELS = FIXTURES / "models"


def run(capsys, *argv):
    code = main(["plan", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_table_for_a_model_directory(capsys):
    code, out, _err = run(capsys, MODELS / "llama-3.1-8b", "--gpu", "H100 SXM")
    assert code == 0
    assert "HOW COMPUTED" in out
    assert "2 (K and V) x 32 layers x 8 KV heads x 128 head dim x 2 B (bf16) = 128 KiB/token" in out
    assert "fits: TP 1 x PP 1 = 1 GPU(s) on 1 node(s)" in out


def test_json_on_stdout_has_the_figures(capsys):
    code, out, _err = run(capsys, MODELS / "deepseek-v3" / "config.json", "--gpu", "h100 sxm", "--json", "-")
    report = json.loads(out)
    assert code == 0
    assert {
        "model",
        "gpu",
        "request",
        "figures",
        "fits",
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "gpus",
        "nodes",
        "max_concurrency",
        "tried",
        "problems",
    } <= set(report)
    assert report["nodes"] == 2 and report["gpus"] == 16
    assert set(report["figures"]["weights"]) == {"value", "unit", "text", "how"}
    assert report["model"]["name"] == "deepseek-v3"


def test_json_file_and_table(capsys, tmp_path):
    target = tmp_path / "out" / "plan.json"
    code, out, _err = run(capsys, MODELS / "llama-3.1-70b", "--gpu", "H100 SXM", "--json", target)
    assert code == 0 and "FIGURE" in out
    assert json.loads(target.read_text())["tensor_parallel_size"] == 4


def test_does_not_fit_exits_1_with_the_numbers(capsys):
    code, out, _err = run(capsys, MODELS / "deepseek-v3", "--gpu", "H100 SXM", "--max-nodes", "1")
    assert code == 1
    assert "does not fit: H100 SXM x 8 cannot serve the model" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing-dir", "--gpu", "H100 SXM"], "no such file"),
        (["--gpu", "B300"], "--gpu 'B300' is not a known GPU SKU"),
        (["--gpu", "H100 SXM", "--context", "999999"], "--context 999999 is above the model's"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(capsys, argv, message):
    if argv[0] != "missing-dir":
        argv = [MODELS / "llama-3.1-8b", *argv]
    code, _out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_not_json_exits_2(capsys, tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    code, _out, err = run(capsys, bad, "--gpu", "H100 SXM")
    assert code == 2 and "not a readable JSON config.json" in err


def test_unknown_dtype_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as info:
        main(["plan", str(MODELS / "llama-3.1-8b"), "--gpu", "H100 SXM", "--dtype", "int3"])
    assert info.value.code == 2
    assert "--dtype: invalid choice: 'int3'" in capsys.readouterr().err
