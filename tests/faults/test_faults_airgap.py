"""Faults on an air-gapped lab: a bastion serving the signed lab bundle and a node from the lab layer
image (one a real converge provisioned from that bundle), everything installed from the bastion.

- power loss while dpkg unpacks the CUDA toolkit,
- power loss while pip unpacks the cuDNN wheel into the runtime venv,
- the bastion stopped while the node downloads packages from it;
- power loss while a new version of the served model starts beside the one served (serve.yml): the
  run again must finish the rollout (measured on the lab: the first run UNREACHABLE, the next one
  changed=8 in 51 s, then changed=0).

Each case takes back the step under test (the toolkit packages or the wheel are removed first, so
the run has to install them again), interrupts the run at its point, then runs site.yml again and
asserts: that run succeeds, the end state is a clean converge's, and one more run changes nothing.
The cases share the lab (the bastion's setup verifies the 2.8 GB bundle once); each ends with the
node converged, as the next one expects.
"""

import json
import os
import subprocess
import time
from types import SimpleNamespace

import pytest
from faultlab import BIN, REPO, outcome, recap_of, run, sh

from gpufleet.lab import faults, fleet

LAB = "faults"
HOST = "node1"  # the node's inventory name (its container: gpufleet-faults-node1)
BUNDLE = REPO / ".cache" / "bundles" / "lab"
VENV = "/opt/gpufleet/venv"
CUDNN = "nvidia-cudnn-cu11"
# The airgap scenario's node settings (molecule/airgap/molecule.yml).
NODE_VARS = {
    "nvidia_driver_source": "debian",
    "nvidia_driver_branch": "535",
    "nvidia_driver_version": "535.261.03",
    "nccl_extra": {"NCCL_DEBUG": "WARN"},
    "infiniband_stack": "inbox",
    "infiniband_ipoib_require_device": False,
    "infiniband_ipoib_interfaces": [
        {"name": "ib0", "address": "10.99.0.11/24", "mtu": 2044, "mode": "datagram"}
    ],
}
# The parts of site.yml a case touches (the bastion is served once, by the fixture).
TAGS = "offline_repo,preflight,cuda_toolkit"
RUN_TIMEOUT = 1200
# Package downloads from the bastion at 20 MB/s on the node during the bastion case (an uplink
# that is the bottleneck, as the sites have), so the download is still under way when the
# bastion goes: on the lab's bridge a few hundred MB arrive in under a second otherwise.
DL_LIMIT = "/etc/apt/apt.conf.d/99gpufleet-faults-dl-limit"


def site(inv, *extra):
    """site.yml on the lab (bounded); (proc, recap, seconds)."""
    started = time.monotonic()
    proc = run(["ansible-playbook", "-i", inv, REPO / "playbooks" / "site.yml", *extra], timeout=RUN_TIMEOUT)
    return proc, recap_of(proc), round(time.monotonic() - started)


def playbook_in_background(inv, playbook, log, *args):
    """A playbook started and left running: the fault comes while it runs."""
    fh = open(log, "w")  # noqa: SIM115 - closed by finish()
    proc = subprocess.Popen(
        [str(BIN / "ansible-playbook"), "-i", str(inv), str(REPO / "playbooks" / playbook), *args],
        stdout=fh,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        },
    )
    proc.log, proc.fh = log, fh
    return proc


def site_in_background(inv, log):
    """site.yml (the cases' tags) started and left running."""
    return playbook_in_background(inv, "site.yml", log, "--tags", TAGS)


def finish(proc):
    """Wait (bounded) for a background run; its output as a CompletedProcess."""
    try:
        proc.wait(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
    proc.fh.close()
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.log.read_text(), "")


def half_done(node):
    return sh(
        node, "dpkg-query -W -f '${db:Status-Abbrev} ${binary:Package}\\n' | grep '^.[HUFWt]' || true"
    ).stdout.split("\n")[:-1]


def recovery_entries(node):
    text = sh(node, "cat /var/lib/gpufleet/recovery.jsonl", check=False).stdout
    return [json.loads(line) for line in text.splitlines()]


def converged(node):
    """What a clean converge leaves for the parts the cases take back: nothing half done in dpkg,
    the toolkit's nvcc at its home, and every file of the cuDNN wheel as its RECORD says."""
    assert sh(node, "dpkg --audit").stdout == ""
    assert half_done(node) == []
    assert "release 11.8" in sh(node, "/usr/local/cuda/bin/nvcc --version").stdout
    check = sh(node, f"{VENV}/bin/python - {CUDNN} <<'EOF'\n{RECORD_CHECK}\nEOF", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "files as recorded" in check.stdout, check.stdout


# Every file the installed distribution's RECORD lists exists with the size and sha256 recorded.
RECORD_CHECK = """
import base64, hashlib, importlib.metadata as md, sys
dist = md.distribution(sys.argv[1])
bad, n = [], 0
for f in dist.files:
    if not f.hash:
        continue
    n += 1
    p = f.locate()
    try:
        data = open(p, "rb").read()
    except OSError as e:
        bad.append(f"{f}: {e}")
        continue
    digest = base64.urlsafe_b64encode(hashlib.new(f.hash.mode, data).digest()).rstrip(b"=").decode()
    if digest != f.hash.value or (f.size is not None and len(data) != f.size):
        bad.append(f"{f}: not as recorded")
if bad:
    sys.exit(chr(10).join(bad))
print(f"{dist.metadata['Name']} {dist.version}: {n} files as recorded")
""".strip()


def once_more(inv, record):
    proc, recap, _ = site(inv, "--tags", TAGS)
    record(rerun=outcome(proc, recap))
    assert proc.returncode == 0 and recap[HOST]["changed"] == 0, proc.stdout[-3000:]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not (BUNDLE / "manifest.json").exists():
        pytest.fail(f"the air-gapped cases serve the lab bundle {BUNDLE}, not there: run 'make lab-bundle'")
    if run(["docker", "image", "inspect", "gpufleet-lab-node:current"]).returncode != 0:
        pytest.fail(
            "the air-gapped cases start from the layer image gpufleet-lab-node:current: run 'make test'"
        )
    gpufleet = BIN / "gpufleet"
    fingerprint = run([gpufleet, "bundle", "key", "--fingerprint"], check=True).stdout.strip()
    inv_dir = tmp_path_factory.mktemp("airgap-inventory")
    (inv_dir / "group_vars").mkdir()
    (inv_dir / "group_vars" / "gpu_nodes.json").write_text(json.dumps(NODE_VARS))
    inv = inv_dir / "hosts.yml"
    up = [gpufleet, "lab", "up", "--name", LAB, "--airgap", "--nodes", "1", "--bundle", BUNDLE]
    up += ["--fingerprint", fingerprint, "--node-image", "gpufleet-lab-node:current", "--inventory", inv]
    run(up, check=True)
    try:
        # The bastion verifies and serves the bundle; the node is pointed at it again.
        proc, _, secs = site(inv, "--tags", f"bundle_server,{TAGS}")
        assert proc.returncode == 0, proc.stdout[-3000:]
        print(f"\nair-gapped lab '{LAB}' served and converged in {secs} s")
        yield SimpleNamespace(
            inv=inv, node=f"gpufleet-{LAB}-{HOST}", bastion=f"gpufleet-{LAB}-bastion", logs=inv_dir
        )
    finally:
        run([gpufleet, "lab", "down", "--name", LAB, "--inventory", inv])


def take_back_the_toolkit(node):
    """Remove Debian's CUDA toolkit (nvidia-cuda-dev, and the toolkit package that needs it) so the
    run unpacks it again (about 1 GB): nothing else is removed (no autoremove)."""
    out = sh(node, "DEBIAN_FRONTEND=noninteractive apt-get remove -y nvidia-cuda-dev").stdout
    assert "Removing nvidia-cuda-toolkit" in out, out[-2000:]


def test_power_loss_during_toolkit_unpack(lab, record):
    take_back_the_toolkit(lab.node)
    before = len(recovery_entries(lab.node))
    bg = site_in_background(lab.inv, lab.logs / "toolkit-first.log")
    try:
        fault = faults.power_loss(lab.node, "dpkg-unpack", timeout=900, delay=2)
    finally:
        first = finish(bg)
    left = half_done(lab.node)
    record(
        fault="power loss (docker kill)",
        point="CUDA toolkit unpack (dpkg --unpack)",
        first_run=outcome(first, recap_of(first)) + f"; left {len(left)} package(s) half done",
    )
    assert fault["point_still_running"] and first.returncode != 0
    assert left, "the power loss left nothing half done: the case did not cut the unpack"
    proc, recap, secs = site(lab.inv, "--tags", TAGS)
    record(recovery_run=outcome(proc, recap) + f" in {secs}s")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "recovered an interrupted dpkg run" in " ".join(proc.stdout.split())
    once_more(lab.inv, record)
    converged(lab.node)
    assert any(e["repaired"][0]["what"] == "dpkg" for e in recovery_entries(lab.node)[before:])


def test_power_loss_during_wheel_install(lab, record):
    sh(lab.node, f"{VENV}/bin/pip uninstall -y -q {CUDNN}")
    bg = site_in_background(lab.inv, lab.logs / "wheel-first.log")
    try:
        fault = faults.power_loss(lab.node, "pip-unpack", timeout=900)
    finally:
        first = finish(bg)
    installed = sh(lab.node, f"{VENV}/bin/pip show -q {CUDNN}", check=False).returncode == 0
    record(
        fault="power loss (docker kill)",
        point="cuDNN wheel unpack (pip install)",
        first_run=outcome(first, recap_of(first)) + ("; pip lists it" if installed else "; not installed"),
    )
    assert fault["point_still_running"] and first.returncode != 0
    proc, recap, secs = site(lab.inv, "--tags", TAGS)
    record(recovery_run=outcome(proc, recap) + f" in {secs}s")
    assert proc.returncode == 0, proc.stdout[-3000:]
    once_more(lab.inv, record)
    converged(lab.node)


def test_bastion_stopped_during_download(lab, record):
    take_back_the_toolkit(lab.node)
    # apt's own cache still holds the .debs the node installed from: emptied, the run downloads them
    sh(lab.node, "apt-get clean")
    sh(lab.node, f"echo 'Acquire::http::Dl-Limit \"20000\";' > {DL_LIMIT}")
    bg = site_in_background(lab.inv, lab.logs / "bastion-first.log")
    try:
        fault = faults.stop(lab.bastion, "deb-download", watch=lab.node, timeout=900)
    finally:
        first = finish(bg)
        sh(lab.node, f"rm -f {DL_LIMIT}")
    fetch_error = next((ln.strip() for ln in first.stdout.splitlines() if "Failed to fetch" in ln), "")
    record(
        fault="bastion stopped (docker stop)",
        point="package download from the bastion",
        first_run=outcome(first, recap_of(first)),
    )
    assert fault["watch"] == lab.node and first.returncode != 0
    # apt names what it could not fetch, from where: the bastion (seen: "E: Failed to fetch
    # http://bastion/lab/apt/pool/nvidia-cuda-dev_... Connection timed out")
    assert "Failed to fetch http://bastion/" in fetch_error, first.stdout[-3000:]
    run(["docker", "start", lab.bastion], check=True)
    faults.wait_booted(lab.bastion)
    probe = "import urllib.request as u; u.urlopen('http://bastion/lab/manifest.json', timeout=5).read()"
    wait = f'for i in $(seq 60); do python3 -c "{probe}" 2>/dev/null && exit 0; sleep 1; done; exit 1'
    up = sh(lab.node, wait, check=False)
    assert up.returncode == 0, "the bastion did not serve the bundle again within 60 s"
    proc, recap, secs = site(lab.inv, "--tags", TAGS)
    record(recovery_run=outcome(proc, recap) + f" in {secs}s")
    assert proc.returncode == 0, proc.stdout[-3000:]
    once_more(lab.inv, record)
    converged(lab.node)


# --- serving (role llm_serve): a rollout of the lab's tiny model to its other version -------------
SERVE_STATE = "/var/lib/gpufleet/serve/tiny-llama.json"


def serving_state(node):
    return json.loads(sh(node, f"cat {SERVE_STATE}").stdout)


def rollout_vars(version):
    """The inventory's served model (lab up writes it: llama.cpp, the tiny model) at ``version``."""
    model = {
        "name": "tiny-llama", "version": version, "engine": "llamacpp", "gguf": "tiny-llama-f16.gguf",
        "max_model_len": 512, "threads": 1,
    }  # fmt: skip
    return json.dumps({"llm_serve_models": [model], "llm_serve_ready_wait": 120})


def serve(inv, extra):
    started = time.monotonic()
    proc = run(
        ["ansible-playbook", "-i", inv, REPO / "playbooks" / "serve.yml", "-e", extra], timeout=RUN_TIMEOUT
    )
    return proc, recap_of(proc), round(time.monotonic() - started)


def serve_in_background(inv, extra, log):
    return playbook_in_background(inv, "serve.yml", log, "-e", extra)


def answers_through_the_front(node, version):
    """The front answers the lab key's completion with ``version``'s recorded golden answer."""
    golden = json.loads(sh(node, f"cat /var/lib/gpufleet/serve/tiny-llama/{version}.golden.json").stdout)
    key = fleet.api_key(LAB)[0].read_text().strip()
    body = json.dumps(
        {
            "model": "tiny-llama",
            "prompt": golden["prompt"],
            "max_tokens": golden["max_tokens"],
            "temperature": 0,
        }
    )
    ask = run(
        ["docker", "exec", "-i", node, "sh", "-c",
         'IFS= read -r k; curl -sf -m 60 -H "Authorization: Bearer $k" -H "Content-Type: application/json" '
         f"--data-binary '{body}' http://127.0.0.1:8080/v1/completions"],
        input_text=key + "\n",
    )  # fmt: skip
    assert ask.returncode == 0, ask.stdout + ask.stderr
    return json.loads(ask.stdout)["choices"][0]["text"] == golden["answer"]


def test_power_loss_while_a_new_model_version_starts(lab, record):
    """A rollout to the model's other version, the node's power cut as soon as that version's engine
    starts (the weights loading beside the served version, before or while the front switches): the
    run again finishes the rollout - the new version current, the old one previous, the front answering
    with the new version's recorded answer - and one more run changes nothing."""
    before = serving_state(lab.node)
    old = before["current"]
    new = "2" if old == "1" else "1"
    # A rollback keeps the other version running (if one ran): stopped, so the rollout starts it.
    sh(lab.node, f"systemctl stop gpufleet-serve-tiny-llama-{new}.service", check=False)
    extra = rollout_vars(new)
    bg = serve_in_background(lab.inv, extra, lab.logs / "serve-first.log")
    try:
        fault = faults.power_loss(lab.node, "serve-engine-start", timeout=600)
    finally:
        first = finish(bg)
    after_fault = serving_state(lab.node)
    record(
        fault="power loss (docker kill)",
        point=f"tiny-llama version {new} starting beside version {old} (serve.yml)",
        first_run=outcome(first, recap_of(first)) + f"; state then: current {after_fault.get('current')}",
    )
    assert first.returncode != 0, "the power loss did not cut the run"
    proc, recap, secs = serve(lab.inv, extra)
    record(recovery_run=outcome(proc, recap) + f" in {secs}s")
    assert proc.returncode == 0, proc.stdout[-3000:]
    state = serving_state(lab.node)
    assert (state["current"], state["previous"]) == (new, old), state
    assert answers_through_the_front(lab.node, new)
    proc, recap, _ = serve(lab.inv, extra)
    record(rerun=outcome(proc, recap))
    assert proc.returncode == 0 and recap[HOST]["changed"] == 0, proc.stdout[-3000:]
    assert fault["point"] == "serve-engine-start"
