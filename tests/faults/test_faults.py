"""Faults injected mid-run on lab nodes, then the next run: it converges, the end state is a clean
converge's, and one more run changes nothing. `make faults` runs these; the power loss during DKMS
also runs inside `make test`, in molecule/nvidia_driver's prepare."""

import json
import os
import re
import signal
import subprocess
import time

from faultlab import BIN, PLAYBOOK, converge, inventory, outcome, run, sh

DRIVER = "nvidia-kernel-dkms"
PREFLIGHT = PLAYBOOK.parent / "preflight.yml"
ENV = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOK.parents[2] / "ansible.cfg"),
       "ANSIBLE_COLLECTIONS_PATH": str(PLAYBOOK.parents[2] / ".collections")}  # fmt: skip


def clean_state(container):
    """What a clean converge leaves: nothing half done in dpkg, the module installed by DKMS."""
    assert sh(container, "dpkg --audit").stdout == ""
    half = sh(
        container,
        "dpkg-query -W -f '${db:Status-Abbrev} ${binary:Package}\\n' | grep '^.[HUFWt]'",
        check=False,
    )
    assert half.stdout == "", half.stdout
    status = sh(container, "dkms status").stdout
    assert "nvidia-current/535.261.03" in status and ": installed" in status, status
    assert ": added" not in status, status


def recovery_entries(container):
    text = sh(container, "cat /var/lib/gpufleet/recovery.jsonl", check=False).stdout
    return [json.loads(line) for line in text.splitlines()]


def online(inv):
    """The layer node goes online first (its sources pointed at the air-gapped bastion)."""
    proc, recap, _ = converge(inv)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return recap


def test_power_loss_during_dkms(node, tmp_path, record):
    from gpufleet.lab import faults

    inv = inventory(tmp_path, node)
    online(inv)
    before = len(recovery_entries(node))  # a layer node may carry records of its own
    sh(node, f"systemd-run --unit gpufleet-fault-reinstall -E DEBIAN_FRONTEND=noninteractive "
       f"apt-get install --reinstall -y {DRIVER}")  # fmt: skip
    fault = faults.power_loss(node, "dkms", delay=5, timeout=600)
    assert fault["point_still_running"]
    left = sh(node, "apt-get install -y --no-download curl 2>&1", check=False).stdout
    assert "dpkg was interrupted" in left
    record(
        fault="power loss (docker kill)",
        point="DKMS build (dpkg configure)",
        first_run="dpkg was interrupted",
    )
    proc, recap, secs = converge(inv)
    record(recovery_run=outcome(proc, recap) + f" in {secs}s")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "recovered an interrupted dpkg run" in " ".join(proc.stdout.split())  # the callback wraps lines
    proc, recap, _ = converge(inv)
    record(rerun=outcome(proc, recap))
    assert proc.returncode == 0 and recap[node]["changed"] == 0, proc.stdout[-3000:]
    clean_state(node)
    (entry,) = recovery_entries(node)[before:]
    assert entry["repaired"][0]["what"] == "dpkg"


def test_controller_killed_during_dpkg(node, tmp_path, record):
    """The controller dies (Ctrl-C twice, a dropped session) while the node's dpkg runs the DKMS
    build; dpkg goes on on the node. The next run waits for it, then converges."""
    from gpufleet.lab import faults

    inv = inventory(tmp_path, node)
    online(inv)
    controller = subprocess.Popen(
        [str(BIN / "ansible"), "-i", str(inv), "all", "-b", "-m", "ansible.builtin.command",
         "-a", f"env DEBIAN_FRONTEND=noninteractive apt-get install --reinstall -y {DRIVER}",
         "-e", "ansible_python_interpreter=/usr/bin/python3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
    )  # fmt: skip
    try:
        waited = faults.wait_for_point(node, "dkms", timeout=600)
    finally:
        controller.send_signal(signal.SIGKILL)
        controller.wait(timeout=30)
    still = run(["docker", "exec", node, "pgrep", "-f", faults.POINTS["dpkg"]]).stdout.strip()
    record(fault="controller killed (SIGKILL)", point=f"DKMS build, {waited:.0f}s in", first_run="killed")
    proc, recap, secs = converge(inv)
    record(recovery_run=outcome(proc, recap) + f" in {secs}s")
    assert proc.returncode == 0, proc.stdout[-3000:]
    proc, recap, _ = converge(inv)
    record(rerun=outcome(proc, recap))
    assert proc.returncode == 0 and recap[node]["changed"] == 0, proc.stdout[-3000:]
    clean_state(node)
    assert still, "dpkg was still running on the node when the controller died (the case under test)"


def test_disk_full(node, tmp_path, record):
    """A nearly full file system where the install writes (a 48 MiB tmpfs on /opt, never the
    machine's disk): preflight stops with the path and the space needed, nothing changed; once
    the space is freed, the next run converges."""
    inv = inventory(tmp_path, node)
    online(inv)
    sh(
        node,
        "mount -t tmpfs -o size=48m gpufleet-faults-full /opt && dd if=/dev/zero of=/opt/fill bs=1M count=40",
    )
    started = time.monotonic()
    proc = run(["ansible-playbook", "-i", inv, PREFLIGHT])
    said = re.search(r"not enough free disk on /opt: \d+ MiB free, \d+ MiB needed", proc.stdout)
    record(fault="disk nearly full (tmpfs)", point="/opt, before the install",
           first_run=f"preflight: {said.group(0)}" if said else outcome(proc, {}))  # fmt: skip
    assert proc.returncode != 0
    assert "not enough free disk on /opt" in proc.stdout and "MiB needed" in proc.stdout, proc.stdout[-3000:]
    sh(node, "umount /opt")
    proc, recap, _ = converge(inv)
    record(recovery_run=outcome(proc, recap) + f" in {round(time.monotonic() - started)}s")
    assert proc.returncode == 0, proc.stdout[-3000:]
    proc, recap, _ = converge(inv)
    record(rerun=outcome(proc, recap))
    assert recap[node]["changed"] == 0
