"""Helpers for the integration tests: run real commands against a real lab.

They need root, docker and the lab image (``make integration`` provides them). The lab used
here is named ``itest`` so it never touches the user's ``lab``.
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LAB = "itest"


def run(args, check=False, env=None, cwd=REPO, timeout=1800):
    full_env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    full_env.update(env or {})
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def gpufleet(*args, **kw):
    return run([BIN / "gpufleet", *args], **kw)


def docker_exec(container, *cmd, check=True):
    return run(["docker", "exec", container, *cmd], check=check)
