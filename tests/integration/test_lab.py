"""`gpufleet lab` against the real docker daemon."""

import json

import yaml
from itest import BIN, gpufleet, run


def test_up_writes_inventory_and_boots_systemd(lab):
    inv = yaml.safe_load(lab["inventory"].read_text())
    hosts = inv["all"]["children"]["gpu_nodes"]["hosts"]
    assert hosts == {"node1": {"ansible_host": lab["container"]}}
    assert inv["all"]["vars"]["ansible_connection"] == "community.docker.docker"
    status = json.loads(gpufleet("lab", "status", "--name", lab["name"], "--json", check=True).stdout)
    assert [(r["host"], r["state"], r["systemd"]) for r in status] == [("node1", "running", "running")]


def test_up_again_changes_nothing(lab):
    before = run(
        ["docker", "inspect", "-f", "{{.Id}} {{.State.StartedAt}}", lab["container"]], check=True
    ).stdout
    out = gpufleet(
        "lab", "up", "--name", lab["name"], "--nodes", "1", "--inventory", lab["inventory"], check=True
    )
    assert "already running" in out.stderr
    after = run(
        ["docker", "inspect", "-f", "{{.Id}} {{.State.StartedAt}}", lab["container"]], check=True
    ).stdout
    assert before == after


def test_ansible_reaches_lab_node(lab):
    out = run(
        [
            "ansible",
            "-i",
            lab["inventory"],
            "all",
            "-m",
            "ansible.builtin.command",
            "-a",
            "systemctl is-system-running",
        ],
        env={"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin"},
        check=True,
    )
    assert "node1 | CHANGED" in out.stdout and "running" in out.stdout


def test_down_removes_only_what_the_lab_created(lab, tmp_path):
    stranger = "gpufleet-itest2-node9"  # looks like a lab container, but has no lab label
    run(["docker", "rm", "-f", stranger])
    run(["docker", "run", "-d", "--name", stranger, "gpufleet-lab:bookworm", "sleep", "600"], check=True)
    try:
        inv = tmp_path / "hosts.yml"
        gpufleet("lab", "up", "--name", "itest2", "--nodes", "1", "--inventory", inv, check=True)
        gpufleet("lab", "down", "--name", "itest2", "--inventory", inv, check=True)
        names = run(["docker", "ps", "-a", "--format", "{{.Names}}"], check=True).stdout.split()
        assert "gpufleet-itest2-node1" not in names
        assert stranger in names
        assert lab["container"] in names  # the other lab is untouched too
        assert not inv.exists()
    finally:
        run(["docker", "rm", "-f", stranger])


def test_user_inventory_is_never_overwritten(tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts:\n    prod-gpu-01: {}\n")
    out = gpufleet("lab", "up", "--name", "itest3", "--nodes", "1", "--inventory", inv)
    assert out.returncode == 2
    assert "was not written by gpufleet" in out.stderr and "--inventory" in out.stderr
    assert inv.read_text() == "all:\n  hosts:\n    prod-gpu-01: {}\n"
    names = run(["docker", "ps", "-a", "--format", "{{.Names}}"], check=True).stdout.split()
    assert "gpufleet-itest3-node1" not in names  # refused before creating anything


def test_no_docker_binary_says_how_to_install(tmp_path):
    out = gpufleet("lab", "up", "--name", "itest4", "--no-inventory", env={"PATH": str(tmp_path)})
    assert out.returncode == 2
    assert "docker is not installed" in out.stderr
    assert "apt-get install docker.io" in out.stderr


def test_daemon_down_says_how_to_start(tmp_path):
    out = gpufleet(
        "lab", "status", "--name", "itest4", env={"DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock"}
    )
    assert out.returncode == 2
    assert "docker daemon is not reachable" in out.stderr
    assert "systemctl start docker" in out.stderr


def test_bad_name_and_node_count_are_refused():
    out = gpufleet("lab", "up", "--name", "bad name!", "--no-inventory")
    assert out.returncode == 2 and "invalid lab name" in out.stderr
    out = gpufleet("lab", "up", "--nodes", "99", "--no-inventory")
    assert out.returncode == 2 and "out of range" in out.stderr


def test_ssh_mode_reaches_the_node_as_the_operator_with_host_keys_checked(tmp_path):
    """lab up --ssh: Ansible logs in as 'ops' over OpenSSH (sudo to root) with the host key the lab
    pinned; a known_hosts entry that does not match the served key is refused."""
    inv = tmp_path / "hosts.yml"
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin"}
    try:
        gpufleet(
            "lab",
            "up",
            "--ssh",
            "--name",
            "itest-ssh",
            "--nodes",
            "1",
            "--inventory",
            inv,
            env=env,
            check=True,
        )
        data = yaml.safe_load(inv.read_text())["all"]
        assert data["vars"]["ansible_connection"] == "ansible.builtin.ssh"
        assert data["vars"]["ansible_user"] == "ops"
        ping = ["ansible", "-i", inv, "all", "-m", "ansible.builtin.command", "-a", "id -un"]
        out = run(ping, env=env, check=True)
        assert "node1 | CHANGED" in out.stdout and "root" in out.stdout  # ops, then sudo
        known = tmp_path / "data" / "gpufleet" / "lab" / "itest-ssh" / "ssh" / "known_hosts"
        line = known.read_text().split()
        known.write_text(
            f"{line[0]} {line[1]} AAAAC3NzaC1lZDI1NTE5AAAAIF6pXxU0mG6cQ3u0c2n2sJ3I0xQ8v3Dq9x0S3rK1c5xZ\n"
        )
        # A fresh connection (no multiplexed master from the run above): the changed key is refused.
        refused = run(ping, env={**env, "ANSIBLE_SSH_ARGS": "-o ControlMaster=no"})
        assert refused.returncode != 0
        assert "Host key verification failed" in refused.stdout + refused.stderr
    finally:
        gpufleet("lab", "down", "--name", "itest-ssh", "--inventory", inv, env=env)


def test_apply_runs_a_playbook_on_the_lab_through_ansible_runner(lab, tmp_path):
    """`gpufleet apply` (what `make demo` runs site.yml with) on a real node: ansible-runner's event
    stream gives the host's counts, the run keeps events.jsonl and summary.json, and a failing task
    gives exit 2 with the host, task and message in the final table."""
    runs = tmp_path / "runs"
    env = {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin"}
    out = gpufleet("apply", "playbooks/gpu_summary.yml", "-i", lab["inventory"], "--runs-dir", runs, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (run_dir,) = runs.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    counts = summary["hosts"]["node1"]["counts"]
    assert counts["failed"] == 0 and counts["ok"] >= 3, summary
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "runner_on_ok" and e["event_data"]["host"] == "node1" for e in events)
    assert "\x1b[" not in out.stdout + out.stderr, "off a terminal the view is plain"

    bad = tmp_path / "fail.yml"
    bad.write_text(
        "- name: A task that fails\n  hosts: gpu_nodes\n  gather_facts: false\n  tasks:\n"
        "    - name: Refuse\n      ansible.builtin.fail:\n        msg: refused on purpose\n"
    )
    out = gpufleet("apply", bad, "-i", lab["inventory"], "--runs-dir", runs, env=env)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    text = " ".join((out.stdout + out.stderr).split())
    assert "node1" in text and "Refuse" in text and "refused on purpose" in text
