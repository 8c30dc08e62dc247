"""Container detection from the markers container engines and systemd leave."""

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils.host_env import detect_container


def test_bare_host_is_not_a_container(tmp_path):
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "environ").write_bytes(b"HOME=/\0TERM=linux\0")
    assert detect_container(str(tmp_path)) == (False, None)


def test_unreadable_proc_is_not_a_container(tmp_path):
    assert detect_container(str(tmp_path)) == (False, None)


@pytest.mark.parametrize(
    ("path", "content", "evidence"),
    [
        (".dockerenv", b"", "/.dockerenv"),
        ("run/.containerenv", b"engine=podman\n", "/run/.containerenv"),
        ("run/systemd/container", b"docker\n", "/run/systemd/container=docker"),
        ("proc/1/environ", b"PATH=/bin\0container=lxc\0", "/proc/1/environ container=lxc"),
    ],
)
def test_container_markers(tmp_path, path, content, evidence):
    target = tmp_path / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    assert detect_container(str(tmp_path)) == (True, evidence)
