"""Stale NVIDIA CDI spec detection (plugin_utils/cdi.py) and the cdi_spec check (checks/software.py).

Inputs (tests/fixtures/cdi/PROVENANCE.md): two real ``nvidia-ctk cdi generate`` specs (575.64.03 on
one GPU with DRI nodes; 570.133.20 on an EC2 g4dn.xlarge T4, from Docker's documentation) and a
real ``ls -l /dev/nvidia*`` listing of a one-GPU host (ApolloAuto/apollo#13130), turned into the
``stat -c '%n %t %T %F'`` lines collection reads by ``stat_lines`` below. Pairing the T4 spec with
that listing is constructed (two machines; they have the same node set). Edited variants say
"derived from X, edited: ..." where they are made.
"""

import json
import re

import fake_testinfra
import pytest
import yaml
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import cdi
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core, software
from conftest import FIXTURES

from gpufleet.verify import collect

CDI = FIXTURES / "cdi"
T4_SPEC = (CDI / "docker-docs-g4dn-xlarge-t4-driver-570.133.20.yaml").read_text()
DRI_SPEC = (CDI / "nvidia-ctk-1.17.8-driver-575.64.03-1gpu.yaml").read_text()
APOLLO_LS = (CDI / "ls-l-dev-nvidia-apolloauto-13130.txt").read_text()
# The loaded driver's line as /proc/driver/nvidia/version prints it: the proprietary module's
# layout quoted in tensorflow/tensorflow#7760 ("NVRM version: NVIDIA UNIX x86_64 Kernel Module
# 375.26"), with the version of the spec under test (constructed).
NVRM = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {}  Tue Mar  5 22:42:15 UTC 2024\n"
NVRM_OPEN = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {}  Release Build  (dvs-builder@U16)\n"
SPEC = "/etc/cdi/nvidia.yaml"


def stat_lines(ls_text):
    """``ls -l`` output (with a ``/dev/nvidia-caps:`` sub-listing) -> the ``stat -c '%n %t %T %F'``
    lines collection gets for the same nodes (major/minor in hex)."""
    out, folder = [], ""
    for line in ls_text.splitlines():
        if line.endswith(":"):
            folder = line[:-1] + "/"
            out.append(f"{line[:-1]} 0 0 directory")
            continue
        match = re.match(r"([cb])\S+\s+\d+\s+\S+\s+\S+\s+(\d+),\s*(\d+)\s+\S+\s+\d+\s+\S+\s+(\S+)$", line)
        if match:
            kind, major, minor, name = match.groups()
            path = name if name.startswith("/") else folder + name
            what = "character special file" if kind == "c" else "block special file"
            out.append(f"{path} {int(major):x} {int(minor):x} {what}")
    return "\n".join(out)


APOLLO_DEV = stat_lines(APOLLO_LS)


T4_DRIVER = NVRM.format("570.133.20")


def collected(specs=((SPEC, T4_SPEC),), dev=APOLLO_DEV, driver=T4_DRIVER, toolkit=True):
    """What ``cdi.COLLECT_COMMAND`` prints for these inputs."""
    parts = [f"{cdi.MARK}toolkit /usr/bin/nvidia-ctk"] if toolkit else []
    for path, text in specs:
        parts += [f"{cdi.MARK}spec 1744707496 {path}", text]
    parts += [f"{cdi.MARK}dev", dev, f"{cdi.MARK}driver", driver]
    return "\n".join(parts) + "\n"


def judge(text, gpus=None):
    res = software.cdi_spec(gpus if gpus is not None else {"gpu_count": 1}, text)
    assert res["check"] == "cdi_spec" and res["summary"]
    if res["status"] == core.FAIL:
        assert res["action"] == core.REPROVISION and cdi.REGENERATE in res["summary"]
    return res


def with_numbers(text, node, major, minor):
    """Derived from a real spec, edited: ``node`` gets major/minor, as nvidia-ctk writes them when
    it can stat the node (toolkit internal/edits/device.go, DeviceFromPath)."""
    data = yaml.safe_load(text)
    for entry in data["containerEdits"]["deviceNodes"]:
        if entry["path"] == node:
            entry.update({"type": "c", "major": major, "minor": minor})
    return yaml.safe_dump(data)


# --- parsing ---------------------------------------------------------------------------------------


def test_real_specs_are_read_with_their_nodes_and_driver_version():
    spec = cdi.read(cdi.load(DRI_SPEC, SPEC), SPEC)
    assert spec["cdi_version"] == "0.5.0" and spec["kind"] == cdi.KIND
    assert spec["devices"] == ["0", "GPU-520e01f2-cf30-6396-abef-e8e9a5233b0e", "all"]
    nodes = {n["host_path"]: n for n in spec["nodes"]}
    assert set(nodes) >= {"/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/dri/card1"}
    assert nodes["/dev/nvidia0"]["devices"] == ["0", "GPU-520e01f2-cf30-6396-abef-e8e9a5233b0e", "all"]
    assert nodes["/dev/nvidia0"]["major"] is None  # nvidia-ctk 1.17.8 wrote paths only
    # libnvidia-egl-gbm.so.1.1.2 / egl-wayland 1.1.19 are not driver versions
    assert list(spec["versions"]) == ["575.64.03"]
    assert cdi.read(cdi.load(T4_SPEC), SPEC)["versions"].keys() == {"570.133.20"}


def test_dev_listing_and_driver_version_lines():
    dev = cdi.parse_dev(APOLLO_DEV)
    assert dev["/dev/nvidia-uvm"] == {"major": 235, "minor": 0, "type": "c"}
    assert dev["/dev/nvidiactl"]["minor"] == 255 and dev["/dev/nvidia-caps/nvidia-cap2"]["major"] == 238
    assert "/dev/nvidia-caps" not in dev and cdi.gpu_nodes(dev) == ["/dev/nvidia0"]
    assert cdi.driver_version(NVRM.format("535.161.08")) == "535.161.08"
    assert cdi.driver_version(NVRM_OPEN.format("595.84")) == "595.84"
    assert cdi.driver_version("") is None


# --- the check -------------------------------------------------------------------------------------


def test_matching_spec_passes_saying_what_was_compared():
    res = judge(collected())
    assert res["status"] == core.PASS
    assert "5 nodes present" in res["summary"] and "1 GPU node" in res["summary"]
    assert "driver 570.133.20" in res["summary"] and res["measured"] == "570.133.20"
    assert res["details"][0]["written"] == "2025-04-15 08:58 UTC"


def test_renumbered_node_fails_naming_it_with_both_numbers():
    # derived from the T4 spec, edited: nvidia-uvm recorded as 243:0, the major ApolloAuto#13130 saw
    # before the driver reload that made it 235
    stale = with_numbers(T4_SPEC, "/dev/nvidia-uvm", 243, 0)
    res = judge(collected(specs=[(SPEC, stale)]))
    assert res["status"] == core.FAIL
    assert "/dev/nvidia-uvm is 235:0 in /dev" in res["summary"] and "says 243:0" in res["summary"]
    assert res["measured"] == {"/dev/nvidia-uvm": "235:0"} and res["expected"] == {"/dev/nvidia-uvm": "243:0"}
    # the same spec with the node's real numbers passes and says it compared them
    res = judge(collected(specs=[(SPEC, with_numbers(T4_SPEC, "/dev/nvidia-uvm", 235, 0))]))
    assert res["status"] == core.PASS and "1 with major:minor compared" in res["summary"]


def test_minor_without_major_is_compared_alone():
    data = yaml.safe_load(T4_SPEC)
    data["containerEdits"]["deviceNodes"][3]["minor"] = 254  # derived, edited: nvidiactl's minor wrong
    res = judge(collected(specs=[(SPEC, yaml.safe_dump(data))]))
    assert res["status"] == core.FAIL and "/dev/nvidiactl is 195:255 in /dev" in res["summary"]
    assert "says *:254" in res["summary"]


def test_node_gone_fails_naming_it():
    # derived from the DRI spec's host: its GPU's DRM card renumbered card1 -> card0 (constructed /dev)
    dev = "\n".join(
        [
            "/dev/nvidia0 c3 0 character special file",
            "/dev/nvidiactl c3 ff character special file",
            "/dev/nvidia-modeset c3 fe character special file",
            "/dev/nvidia-uvm 1fe 0 character special file",
            "/dev/nvidia-uvm-tools 1fe 1 character special file",
            "/dev/dri/card0 e2 0 character special file",
            "/dev/dri/renderD128 e2 80 character special file",
        ]
    )
    res = judge(collected(specs=[(SPEC, DRI_SPEC)], dev=dev, driver=NVRM_OPEN.format("575.64.03")))
    assert res["status"] == core.FAIL
    assert "/dev/dri/card1 named by /etc/cdi/nvidia.yaml (0, GPU-520e01f2" in res["summary"]
    assert "does not exist" in res["summary"] and res["measured"] == {"/dev/dri/card1": "absent"}


def test_driver_upgraded_fails_naming_both_versions():
    res = judge(collected(driver=NVRM.format("580.65.06")))
    assert res["status"] == core.FAIL
    assert "mounts driver 570.133.20" in res["summary"] and "the loaded driver is 580.65.06" in res["summary"]
    assert "/usr/lib/x86_64-linux-gnu/libcuda.so.570.133.20" in res["summary"]
    # nvidia-smi's driver_version stands in when /proc/driver/nvidia/version was not read
    res = judge(collected(driver=""), gpus={"gpu_count": 1, "driver_version": "580.65.06"})
    assert res["status"] == core.FAIL and "580.65.06" in res["summary"]
    res = judge(collected(driver=""))
    assert res["status"] == core.PASS and "libraries not compared" in res["summary"]


def test_gpu_added_but_not_in_spec_fails():
    dev = APOLLO_DEV + "\n/dev/nvidia1 c3 1 character special file"  # derived, edited: a second GPU
    res = judge(collected(dev=dev))
    assert res["status"] == core.FAIL and "GPU node /dev/nvidia1 is in /dev but in no spec" in res["summary"]
    assert "/dev/nvidia0" not in res["measured"]


def test_no_toolkit_and_no_spec_skips_with_the_reason():
    res = judge(collected(specs=[], toolkit=False))
    assert res["status"] == core.SKIP and "not installed (no nvidia-ctk)" in res["summary"]
    res = judge(collected(specs=[]))
    assert res["status"] == core.SKIP and "nvidia-ctk is installed (/usr/bin/nvidia-ctk)" in res["summary"]
    # a spec of another kind is listed, not judged
    other = json.dumps({"cdiVersion": "0.5.0", "kind": "rdma.com/ib", "devices": []})
    res = judge(collected(specs=[("/etc/cdi/rdma.json", other)], toolkit=False))
    assert res["status"] == core.SKIP and res["details"] == [
        {"spec": "/etc/cdi/rdma.json", "not_judged": "kind is not nvidia.com/gpu"}
    ]


def test_json_spec_is_judged_like_yaml():
    as_json = json.dumps(yaml.safe_load(T4_SPEC), indent=2)  # the T4 spec re-serialised (--format=json)
    assert judge(collected(specs=[("/etc/cdi/nvidia.json", as_json)]))["status"] == core.PASS
    res = judge(collected(specs=[("/etc/cdi/nvidia.json", as_json)], driver=NVRM.format("575.64.03")))
    assert res["status"] == core.FAIL and "/etc/cdi/nvidia.json mounts driver 570.133.20" in res["summary"]


def test_several_spec_files_are_judged_together():
    # derived: the T4 spec's GPU node in /var/run/cdi, its control nodes in /etc/cdi (edited split)
    data = yaml.safe_load(T4_SPEC)
    gpu_only = {"cdiVersion": "0.5.0", "kind": cdi.KIND, "devices": data.pop("devices")}
    specs = [
        (SPEC, yaml.safe_dump({**data, "devices": []})),
        ("/var/run/cdi/nvidia.json", json.dumps(gpu_only)),
    ]
    res = judge(collected(specs=specs))
    assert res["status"] == core.PASS and "/etc/cdi/nvidia.yaml, /var/run/cdi/nvidia.json" in res["summary"]
    stale = json.dumps(
        {
            **gpu_only,
            "devices": [{"name": "1", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia1"}]}}],
        }
    )
    res = judge(collected(specs=[specs[0], ("/var/run/cdi/nvidia.json", stale)]))
    assert (
        res["status"] == core.FAIL and "/dev/nvidia1 named by /var/run/cdi/nvidia.json (1)" in res["summary"]
    )
    assert "GPU node /dev/nvidia0 is in /dev but in no spec" in res["summary"]


def test_host_path_is_the_node_compared_and_other_nodes_are_not_judged():
    spec = {
        "cdiVersion": "0.5.0",
        "kind": cdi.KIND,
        "devices": [
            {
                "name": "0",
                "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0", "hostPath": "/dev/nvidia3"}]},
            },
            {
                "name": "all",
                "containerEdits": {"deviceNodes": [{"path": "/dev/dxg", "major": 10, "minor": 258}]},
            },
        ],
    }  # constructed: a container's nvidia0 backed by the host's nvidia3, and WSL's /dev/dxg
    dev = "/dev/nvidia3 c3 3 character special file"
    res = judge(collected(specs=[(SPEC, json.dumps(spec))], dev=dev))
    assert res["status"] == core.PASS and "1 node present" in res["summary"]
    assert {"not_compared": "/dev/dxg"} in res["details"]
    res = judge(collected(specs=[(SPEC, json.dumps(spec))], dev="/dev/nvidia0 c3 0 character special file"))
    assert res["status"] == core.FAIL and "/dev/nvidia3 named by" in res["summary"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (T4_SPEC[: T4_SPEC.index("  mounts:") + 30], "has no kind"),  # cut off mid-write (kind is last)
        ("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: [name: all\n", "is not valid YAML"),
        (json.dumps(yaml.safe_load(T4_SPEC))[:500], "is not valid JSON"),
        ("- just\n- a list\n", "the top level is list"),
        (
            "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: '0'\n  containerEdits:\n"
            "    deviceNodes:\n    - hostPath: /dev/nvidia0\n",
            "a deviceNode of device '0' has no path",
        ),
        (
            "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: '0'\n  containerEdits:\n"
            "    deviceNodes:\n    - path: /dev/nvidia0\n      major: c3\n",
            "the major of /dev/nvidia0 is 'c3'",
        ),
        ("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: {name: all}\n", "devices is dict"),
    ],
    ids=["truncated-yaml", "bad-yaml", "truncated-json", "list", "no-path", "hex-major", "devices-mapping"],
)
def test_malformed_spec_fails_with_a_clear_error(text, says):
    res = judge(collected(specs=[(SPEC, text)]))
    assert res["status"] == core.FAIL and res["summary"].startswith(SPEC) and says in res["summary"]


def test_spec_without_gpu_nodes_in_dev_explains_why():
    dev = "/dev/nvidiactl c3 ff character special file"
    res = judge(collected(dev=dev), gpus={"gpu_count": 0})
    assert res["status"] == core.SKIP and "no GPU on this host" in res["summary"]
    assert "names 5 device nodes" in res["summary"] and cdi.REGENERATE in res["summary"]
    res = judge(collected(dev=""), gpus={"gpu_count": 2})
    assert res["status"] == core.SKIP and "2 GPUs on PCI but no /dev/nvidia<N>" in res["summary"]


def test_state_not_read_skips_naming_the_error():
    res = software.cdi_spec({"gpu_count": 1}, None, "timeout: sending signal TERM")
    assert res["status"] == core.SKIP and "timeout" in res["summary"]


# --- collection --------------------------------------------------------------------------------


class _Out:
    def __init__(self, rc=0, stdout="", stderr=""):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr


class CdiHost(fake_testinfra.FakeHost):
    """Answers the CDI command; every other command fails (constructed)."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def shell(self, cmd):
        if "gpufleet-cdi" in cmd:
            return self.out
        return _Out(rc=1, stderr="constructed failure")


def test_collection_reads_the_cdi_state_in_one_command():
    host = CdiHost(_Out(stdout=collected()))
    state = collect.collect(host, {}, services=[])
    assert state["cdi"] == collected() and "cdi" not in state["errors"]
    assert sum("gpufleet-cdi" in c for c in host.module_commands + host.remote) == 1
    state = collect.collect(CdiHost(_Out(rc=124, stderr="timed out")), {}, services=[])
    assert state["cdi"] is None and state["errors"]["cdi"] == "timed out"
