"""Run the llm_serve role's front on this machine, for the serving tests and benchmarks/serving.py:
the role's main entry point with --tags configure (preflight and the front's files; no package
installed, no systemd), its paths redirected into a temporary directory, then the nginx it configured
started there. Not shipped: test and benchmark tooling."""

import grp
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import playbook_env

REPO = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
NJS = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_role(tmp, extra, tasks_from="main", tags="configure", check=False):
    """The role's main entry point with --tags configure (preflight and the front's files; no package
    installed), on this machine, its paths redirected into ``tmp``; or another entry point
    (``tasks_from``, ``tags`` None: every task), in check mode with ``check``."""
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    paths = {
        "__llm_serve_front_dir": str(tmp / "etc"),
        "__llm_serve_front_state_dir": str(tmp / "state"),
        "__llm_serve_front_unit_dir": str(tmp / "units"),
        "__llm_serve_front_logrotate": str(tmp / "logrotate"),
        "__llm_serve_front_pid": str(tmp / "nginx.pid"),
        "__llm_serve_front_error_log": str(tmp / "error.log"),
        "__llm_serve_front_nginx": NGINX,
        "__llm_serve_front_user": me,
        "__llm_serve_front_owner": me,
        "__llm_serve_front_group": group,
        "__llm_serve_front_root_group": group,
        "__llm_serve_systemd": False,
        "__llm_serve_state_dir": str(tmp / "serve"),
        "__llm_serve_stop_record": str(tmp / "serve-stopped.json"),
        "llm_serve_audit_log": str(tmp / "log" / "front-audit.log"),
    }
    (tmp / "units").mkdir(exist_ok=True)
    play = tmp / "play.yml"
    play.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "llm_serve front, on this machine",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "The role",
                            "ansible.builtin.include_role": {
                                "name": "gpufleet.cluster.llm_serve",
                                "tasks_from": tasks_from,
                            },
                            "tags": ["always"],
                        }
                    ],
                }
            ],
            sort_keys=False,
        )
    )
    env = playbook_env()
    extra = {"ansible_python_interpreter": sys.executable, **paths, **extra}
    options = (["--tags", tags] if tags else []) + (["--check"] if check else [])
    return subprocess.run(
        [str(PLAYBOOK), "-i", "localhost,", str(play), *options, "-e", json.dumps(extra)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=tmp,
        timeout=300,
    )


def start_nginx(tmp, port, timeout=20):
    """nginx on the configuration ``run_role`` wrote into ``tmp``, once it accepts on ``port``."""
    conf = tmp / "etc" / "nginx.conf"
    server = subprocess.Popen(
        [NGINX, "-p", str(tmp), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise AssertionError(f"the front did not start: {server.stdout.read().decode()}") from None
            time.sleep(0.1)
