"""gpufleet.cluster.daemon_json: the module's contract (results, check mode, diff, failures) run
in-process on temporary files, and once for real through ansible-playbook on this machine."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.gpufleet.cluster.plugins.modules import daemon_json
from conftest import playbook_env
from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401

NVIDIA = {
    "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}},
    "default-runtime": "nvidia",
}
SITE = """{
    "data-root": "/srv/docker",
    "runtimes": {
        "kata": {
            "path": "/usr/bin/kata-runtime"
        }
    }
}
"""


def run(expect=AnsibleExitJson, **args):
    with patch_module_args(args), pytest.raises(expect) as exc:
        daemon_json.main()
    return exc.value.args[0]


@pytest.fixture
def site(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text(SITE)
    return path


def test_merge_reports_keys_backup_and_restart(site):
    result = run(path=str(site), settings=NVIDIA)
    assert result["changed"] is True and result["restart_needed"] is True
    assert result["keys_set"] == ["runtimes.nvidia", "default-runtime"]
    assert result["keys_removed"] == []
    assert Path(result["backup_file"]).read_text() == SITE
    config = json.loads(site.read_text())
    assert list(config) == ["data-root", "runtimes", "default-runtime"]
    assert list(config["runtimes"]) == ["kata", "nvidia"]
    assert site.read_text().startswith(
        '{\n    "data-root": "/srv/docker",\n    "runtimes": {\n        "kata"'
    )
    assert "diff" not in result


def test_second_run_is_unchanged_byte_for_byte(site):
    run(path=str(site), settings=NVIDIA)
    before, mtime = site.read_bytes(), site.stat().st_mtime_ns
    result = run(path=str(site), settings=NVIDIA)
    assert result["changed"] is False and result["restart_needed"] is False
    assert result["keys_set"] == [] and "backup_file" not in result
    assert site.read_bytes() == before and site.stat().st_mtime_ns == mtime


def test_check_mode_with_diff_writes_nothing(site):
    result = run(path=str(site), settings=NVIDIA, _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] is True and result["restart_needed"] is True
    assert site.read_text() == SITE
    assert sorted(p.name for p in site.parent.iterdir()) == ["daemon.json"]
    diff = result["diff"]
    assert diff["before"] == SITE and diff["before_header"] == str(site)
    assert json.loads(diff["after"])["default-runtime"] == "nvidia"


def test_remove_deletes_a_present_key_without_backup_when_asked(site):
    site.write_text('{\n  "debug": true,\n  "default-runtime": "nvidia"\n}\n')
    result = run(path=str(site), remove=["default-runtime", "absent"], backup=False)
    assert result["changed"] is True and result["keys_removed"] == ["default-runtime"]
    assert site.read_text() == '{\n  "debug": true\n}\n'
    assert "backup_file" not in result and not list(site.parent.glob("*.gpufleet-bak"))


def test_missing_file_is_created(tmp_path):
    path = tmp_path / "docker" / "daemon.json"
    result = run(path=str(path), settings=NVIDIA)
    assert result["changed"] is True and "backup_file" not in result
    assert json.loads(path.read_text()) == NVIDIA


def test_invalid_json_fails_naming_path_line_and_column_and_touches_nothing(site):
    site.write_text('{\n    "data-root": "/srv/docker"\n    "debug": true\n}\n')
    before, mtime = site.read_bytes(), site.stat().st_mtime_ns
    result = run(AnsibleFailJson, path=str(site), settings=NVIDIA)
    assert result["msg"].startswith(f"{site} is not valid JSON: Expecting ',' delimiter: line 3 column 5")
    assert site.read_bytes() == before and site.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in site.parent.iterdir()) == ["daemon.json"]


def test_top_level_array_fails_clearly(site):
    site.write_text('["not", "an", "object"]\n')
    result = run(AnsibleFailJson, path=str(site), settings=NVIDIA)
    assert result["msg"].startswith(f"{site} holds a JSON array at the top level")
    assert site.read_text() == '["not", "an", "object"]\n'


def test_a_key_both_set_and_removed_fails(site):
    result = run(AnsibleFailJson, path=str(site), settings=NVIDIA, remove=["default-runtime"])
    assert "default-runtime both set and removed" in result["msg"]
    assert site.read_text() == SITE


def test_an_os_error_fails_with_the_path(tmp_path):
    (tmp_path / "docker").write_text("a file where the directory should be\n")
    path = tmp_path / "docker" / "daemon.json"
    result = run(AnsibleFailJson, path=str(path), settings=NVIDIA)
    assert result["msg"].startswith(f"cannot update {path}: [Errno 20] Not a directory")


# --- for real: ansible-playbook on localhost -------------------------------------------------------

PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


@pytest.mark.skipif(not PLAYBOOK.exists(), reason="ansible-playbook is not in this Python's environment")
def test_ansible_playbook_changes_once_then_not(site, tmp_path):
    play = tmp_path / "play.yml"
    play.write_text(
        json.dumps(
            [
                {
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "NVIDIA runtime in daemon.json",
                            "gpufleet.cluster.daemon_json": {"path": str(site), "settings": NVIDIA},
                        }
                    ],
                }
            ]
        )
    )
    env = playbook_env()
    argv = [
        str(PLAYBOOK),
        "-i",
        "localhost,",
        str(play),
        "-e",
        f"ansible_python_interpreter={sys.executable}",
    ]
    recaps = []
    for _ in range(2):
        done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        recaps.append(re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+)", done.stdout).groups())
    assert recaps == [("1", "1"), ("1", "0")]
    config = json.loads(site.read_text())
    assert list(config["runtimes"]) == ["kata", "nvidia"] and config["data-root"] == "/srv/docker"
    assert len(list(tmp_path.glob("daemon.json.*.gpufleet-bak"))) == 1
