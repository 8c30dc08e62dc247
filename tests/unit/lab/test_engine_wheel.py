"""`gpufleet lab engine-wheel`: the pinned sdist download and the wheel build, with pip replaced by a
recorder that leaves the files pip would (llama.cpp is never compiled here: minutes of every core)."""

import subprocess
import zipfile
from pathlib import Path

import pytest

from gpufleet.lab import cli, engine_wheel
from gpufleet.lab.fleet import LabError

WHEEL = engine_wheel.wheel_name()


class FakePip:
    """Stands in for subprocess.Popen of ``python -m pip``: records each call, writes what pip
    writes (the sdist into -d, the wheel into -w), exits with the code given for that command."""

    def __init__(self, codes=None, wheel=WHEEL, slow=0):
        self.calls, self.codes, self.wheel, self.slow = [], codes or {}, wheel, slow

    def __call__(self, cmd, stdout, stderr, env):
        command = cmd[cmd.index("pip") + 2]
        self.calls.append({"command": command, "cmd": cmd, "env": env})
        code = self.codes.get(command, 0)
        stdout.write(f"pip {command} output\n")
        stdout.flush()
        if code == 0 and command == "download":
            Path(cmd[cmd.index("-d") + 1], engine_wheel.SDIST).write_bytes(b"sdist")
        if code == 0 and command == "wheel":
            out = Path(cmd[cmd.index("-w") + 1])
            out.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(out / self.wheel, "w") as zf:
                zf.writestr("llama_cpp/__init__.py", "")
        fake = self

        class Proc:
            timeouts = fake.slow

            def wait(self, timeout):
                if self.timeouts:
                    self.timeouts -= 1
                    raise subprocess.TimeoutExpired(cmd, timeout)
                return code

        return Proc()


@pytest.fixture
def pip(monkeypatch):
    fake = FakePip()
    monkeypatch.setattr(engine_wheel.subprocess, "Popen", fake)
    monkeypatch.setattr(engine_wheel.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    return fake


def test_the_wheel_is_built_from_the_pinned_sdist_with_the_cmake_options(tmp_path, pip, capsys):
    got = engine_wheel.ensure(tmp_path / "wheels", jobs=3)
    assert got["built"] is True and got["path"] == str(tmp_path / "wheels" / WHEEL)
    assert zipfile.is_zipfile(got["path"])
    download, wheel = pip.calls
    args = download["cmd"][download["cmd"].index("download") :]
    assert args[:6] == ["download", "--no-deps", "--no-binary", ":all:", "--require-hashes", "-d"]
    assert download["env"] is None
    # The requirement pins the sdist by the sha256 written in the code (read while pip runs: gone after).
    assert wheel["cmd"][wheel["cmd"].index("wheel") :][:3] == ["wheel", "--no-deps", "-w"]
    assert wheel["cmd"][-1].endswith(engine_wheel.SDIST)
    assert wheel["env"]["CMAKE_ARGS"] == (
        "-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF "
        "-DLLAMA_BUILD_TOOLS=OFF -DCMAKE_C_FLAGS_RELEASE=-O0 -DCMAKE_CXX_FLAGS_RELEASE=-O0"
    )
    assert wheel["env"]["CMAKE_BUILD_PARALLEL_LEVEL"] == "3"
    assert sorted(p.name for p in (tmp_path / "wheels").iterdir()) == sorted(
        [WHEEL, "llama-cpp-python-build.log"]
    )
    err = capsys.readouterr().err
    assert "downloading the llama-cpp-python 0.3.36 sdist (sha256 pinned)" in err
    assert "compiles with 3 jobs" in err and f"{WHEEL} built in " in err


def test_the_requirement_pins_the_sdist_hash(tmp_path, pip, monkeypatch):
    seen = []
    real = pip.__call__

    def reading(cmd, stdout, stderr, env):
        if "-r" in cmd:
            seen.append(Path(cmd[cmd.index("-r") + 1]).read_text())
        return real(cmd, stdout, stderr, env)

    monkeypatch.setattr(engine_wheel.subprocess, "Popen", reading)
    engine_wheel.ensure(tmp_path)
    assert seen == [f"llama-cpp-python==0.3.36 --hash=sha256:{engine_wheel.SDIST_SHA256}\n"]
    assert len(engine_wheel.SDIST_SHA256) == 64


def test_every_cpu_compiles_by_default(tmp_path, pip, monkeypatch):
    monkeypatch.setattr(engine_wheel.os, "cpu_count", lambda: 7)
    engine_wheel.ensure(tmp_path)
    assert pip.calls[1]["env"]["CMAKE_BUILD_PARALLEL_LEVEL"] == "7"


def test_a_wheel_already_there_is_kept_and_nothing_runs(tmp_path, pip, capsys):
    with zipfile.ZipFile(tmp_path / WHEEL, "w") as zf:
        zf.writestr("llama_cpp/__init__.py", "")
    got = engine_wheel.ensure(tmp_path)
    assert got == {"path": str(tmp_path / WHEEL), "built": False, "seconds": 0.0}
    assert pip.calls == []
    assert "already there; not built again" in capsys.readouterr().err


def test_a_truncated_wheel_is_built_again(tmp_path, pip):
    (tmp_path / WHEEL).write_bytes(b"PK")
    assert engine_wheel.ensure(tmp_path)["built"] is True
    assert zipfile.is_zipfile(tmp_path / WHEEL)


def test_missing_build_tools_are_named_before_anything_runs(tmp_path, pip, monkeypatch):
    monkeypatch.setattr(engine_wheel.shutil, "which", lambda tool: None if tool != "gcc" else "/usr/bin/gcc")
    with pytest.raises(LabError) as exc:
        engine_wheel.ensure(tmp_path / "wheels")
    assert str(exc.value) == (
        "building the llama-cpp-python wheel needs cmake, g++ on this machine: run 'make host-deps' "
        "(or apt-get install cmake g++)"
    )
    assert pip.calls == [] and not (tmp_path / "wheels").exists()


@pytest.mark.parametrize("failing", ["download", "wheel"])
def test_a_failed_pip_step_says_which_with_its_output_and_leaves_no_wheel(tmp_path, pip, failing):
    pip.codes = {failing: 1}
    with pytest.raises(LabError) as exc:
        engine_wheel.ensure(tmp_path)
    assert f"pip {failing} of llama_cpp_python-0.3.36.tar.gz failed (exit 1)" in str(exc.value)
    assert f"pip {failing} output" in str(exc.value)  # the log's last lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llama-cpp-python-build.log"]  # work dir removed


def test_a_wheel_with_another_name_is_refused(tmp_path, pip):
    pip.wheel = "llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl"
    with pytest.raises(LabError, match=rf"pip wheel made {pip.wheel}, not {WHEEL}"):
        engine_wheel.ensure(tmp_path)
    assert not (tmp_path / WHEEL).exists()


def test_a_long_build_says_it_still_runs(tmp_path, pip, capsys):
    pip.slow = 2
    engine_wheel.ensure(tmp_path)
    assert capsys.readouterr().err.count("still running") == 4  # two per pip step here


def test_the_wheel_name_is_the_one_the_lab_bundle_carries(monkeypatch):
    monkeypatch.setattr(engine_wheel.sysconfig, "get_platform", lambda: "linux-x86_64")
    assert engine_wheel.wheel_name() == "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
    lab = (Path(__file__).resolve().parents[3] / "bundles" / "lab.yml").read_text()
    assert f"{engine_wheel.DEFAULT_DEST}/llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl" in lab


def test_the_command_prints_the_wheel(tmp_path, pip, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["lab", "engine-wheel", "--dest", str(tmp_path), "--jobs", "2"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.startswith(f"lab engine wheel: {tmp_path / WHEEL} (built in ")
    assert args.func(args) == 0
    assert capsys.readouterr().out == f"lab engine wheel: {tmp_path / WHEEL} (already there)\n"
