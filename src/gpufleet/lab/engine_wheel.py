"""The lab's engine wheel: llama-cpp-python, built here from its sha256-pinned sdist.

The lab serves its tiny model on CPU with llama.cpp's OpenAI-compatible server (``python -m
llama_cpp.server``, the ``server`` extra). The package index has no Linux wheel of llama-cpp-python,
only the sdist, which compiles llama.cpp (about 5 CPU-minutes here without optimisation), so the
wheel is built once, here, and the lab bundle carries it (``wheels.files`` in bundles/lab.yml): the
air-gapped lab builds its ``serve`` venv from the bundle alone. A wheel already in the destination is
kept (the cache): nothing is downloaded or built again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from gpufleet._progress import sayer
from gpufleet.lab.fleet import LabError

PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
# sha256 of llama_cpp_python-0.3.36.tar.gz as PyPI serves it: taken once with `pip download --no-deps
# --no-binary :all: llama-cpp-python==0.3.36` (pip checked the download against the index's own hash).
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
SDIST = f"llama_cpp_python-{VERSION}.tar.gz"
# The library and its Python bindings only: the multimodal (llava) library, llama.cpp's tests,
# examples, tools and its own C++ server are not built (the Python package brings its server).
# Without compiler optimisation (-O0): the lab's engine serves a 1.25 M-parameter model, and the
# build then costs about 4.8 CPU-minutes here instead of 9.1 (measured on this 2-core machine kind),
# inside the test budget. A site serving real models builds its wheel with the defaults.
CMAKE_ARGS = (
    "-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF "
    "-DLLAMA_BUILD_TOOLS=OFF -DCMAKE_C_FLAGS_RELEASE=-O0 -DCMAKE_CXX_FLAGS_RELEASE=-O0"
)
DEFAULT_DEST = ".cache/wheels"
# What the build needs on the host (scripts/host-deps.sh installs them).
TOOLS = ("cmake", "gcc", "g++")
# Seconds between "still building" lines while the compiler runs.
HEARTBEAT_S = 30.0

_say = sayer("lab")


def wheel_name() -> str:
    """The wheel's file name on this machine: pure-Python tags with this machine's platform (the
    package loads its compiled library with ctypes), e.g. ``...-py3-none-linux_x86_64.whl``."""
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"llama_cpp_python-{VERSION}-py3-none-{platform}.whl"


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


def _run(cmd: list[str], log: Path, env: dict | None, what: str, say: Callable[[str], None]) -> None:
    """Run ``cmd`` with its output in ``log``, saying every HEARTBEAT_S that it still runs; LabError
    with the log's last lines when it fails."""
    t0 = time.monotonic()
    with log.open("a") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        while True:
            try:
                rc = proc.wait(timeout=HEARTBEAT_S)
                break
            except subprocess.TimeoutExpired:
                say(f"{what}: still running, {time.monotonic() - t0:.0f} s")
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise LabError(f"{what} failed (exit {rc}); the last lines of {log}:\n{tail}")


def ensure(dest: str | Path = DEFAULT_DEST, jobs: int | None = None, progress=None) -> dict:
    """The llama-cpp-python wheel in ``dest``, built unless it is there: ``{"path", "built",
    "seconds"}``. ``jobs``: parallel compile jobs (CMAKE_BUILD_PARALLEL_LEVEL; default: every CPU).

    Steps: check the host has cmake, gcc and g++; ``pip download --no-deps --no-binary :all:
    --require-hashes`` of the sdist pinned by SDIST_SHA256; ``pip wheel --no-deps`` of it with
    CMAKE_ARGS; the wheel moved into ``dest`` only when complete. pip's output goes to
    ``dest/llama-cpp-python-build.log``."""
    say = progress or _say
    t0 = time.monotonic()
    dest = Path(dest)
    target = dest / wheel_name()
    if target.is_file() and zipfile.is_zipfile(target):
        say(f"engine wheel {target} is already there; not built again")
        return {"path": str(target), "built": False, "seconds": 0.0}
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise LabError(
            f"building the {PACKAGE} wheel needs {', '.join(missing)} on this machine: run 'make host-deps' "
            f"(or apt-get install {' '.join(missing)})"
        )
    jobs = jobs or os.cpu_count() or 1
    dest.mkdir(parents=True, exist_ok=True)
    log = dest / "llama-cpp-python-build.log"
    log.write_text("")
    work = Path(tempfile.mkdtemp(prefix=".engine-wheel-", dir=dest))
    try:
        req = work / "requirements.txt"
        req.write_text(f"{PACKAGE}=={VERSION} --hash=sha256:{SDIST_SHA256}\n")
        say(f"downloading the {PACKAGE} {VERSION} sdist (sha256 pinned)")
        download = _pip(
            "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
            "-d", str(work), "-r", str(req),
        )  # fmt: skip
        _run(download, log, None, f"pip download of {SDIST}", say)
        sdist = work / SDIST
        if not sdist.is_file():
            raise LabError(f"pip download did not leave {SDIST} (see {log})")
        say(
            f"building the wheel: llama.cpp compiles with {jobs} jobs (about 5 CPU-minutes on a 2-core "
            "lab machine)"
        )
        env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": str(jobs)}
        built = work / "wheel"
        _run(_pip("wheel", "--no-deps", "-w", str(built), str(sdist)), log, env, f"pip wheel of {SDIST}", say)
        made = built / target.name
        if not made.is_file():
            found = ", ".join(p.name for p in built.glob("*.whl")) or "nothing"
            raise LabError(f"pip wheel made {found}, not {target.name} (see {log})")
        os.replace(made, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - t0
    say(f"engine wheel {target} built in {seconds:.0f} s")
    return {"path": str(target), "built": True, "seconds": seconds}
