"""Test doubles for the drain hooks: fake ``scontrol`` and ``kubectl`` executables.

``fake-scontrol`` and ``fake-kubectl`` are small Python programs written into tmp_path.
They keep the cluster's node state in a JSON file (``cluster.json``) and log every call, so a test
can set up what an admin did, run the drainer through the real subprocess runner, and check both
the result and which commands were (not) sent. Output follows the real tools' shapes:
``scontrol show node NAME --oneline`` (one line, ``State=IDLE+DRAIN``, ``Reason=TEXT [user@time]``)
and ``kubectl get node NAME -o json`` (``spec.unschedulable``, ``metadata.annotations``).

Fixtures ``slurm`` and ``kube``; a test module beside this one imports them with
``from fake_schedulers import kube_fixture, slurm_fixture  # noqa: F401`` (only one of them as needed).
"""

import json
import sys
import textwrap

import pytest

FAKE_SCONTROL = textwrap.dedent(
    """\
    #!{python}
    # fake-scontrol: a test double for Slurm's scontrol, node state in {db!r}
    import json, sys, time
    DB = {db!r}
    with open(DB) as f:
        db = json.load(f)
    args = sys.argv[1:]
    db["calls"].append(args)
    def save():
        with open(DB, "w") as f:
            json.dump(db, f)
    save()
    if args[:2] == ["show", "node"]:
        name, op = args[2], "show"
    elif args and args[0] == "update":
        name, op = args[1].split("=", 1)[1], "update"
    else:
        print("fake-scontrol: unsupported " + " ".join(args), file=sys.stderr); sys.exit(2)
    if op in db.get("hang", {{}}).get(name, []):
        time.sleep(60)
    if op in db.get("fail", {{}}).get(name, {{}}):
        print(db["fail"][name][op], file=sys.stderr); sys.exit(1)
    node = db["nodes"].get(name)
    if node is None:
        print("Node %s not found" % name); sys.exit(1)
    if op == "show":
        reason = ""
        if node.get("reason"):
            reason = " Reason=%s [%s@2026-11-21T09:00:00]" % (node["reason"], node.get("by", "root"))
        print("NodeName=%s Arch=x86_64 CoresPerSocket=32 CPUAlloc=0 CPUTot=64 Gres=gpu:8 "
              "NodeAddr=%s NodeHostName=%s OS=Linux 6.1.0-27-amd64 RealMemory=2000000 "
              "State=%s ThreadsPerCore=2 TmpDisk=0 Weight=1 Partitions=gpu "
              "BootTime=2026-11-20T08:00:00 SlurmdStartTime=2026-11-20T08:01:00 "
              "CfgTRES=cpu=64,mem=2000000M,billing=64,gres/gpu=8 AllocTRES= CapWatts=n/a "
              "CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s%s"
              % (name, name, name, node["state"], reason))
        sys.exit(0)
    fields = dict(a.split("=", 1) for a in args[1:])
    base = [w for w in node["state"].split("+") if w not in ("DRAIN", "DRAINING", "DRAINED")]
    if fields["State"] == "DRAIN":
        node["state"] = "+".join(base + ["DRAIN"])
        node["reason"], node["by"] = fields["Reason"], "root"
    elif fields["State"] == "RESUME":
        if "DRAIN" not in node["state"]:
            print("slurm_update error: Invalid node state specified", file=sys.stderr); sys.exit(1)
        node["state"] = "+".join(base)
        node["reason"] = None
    save()
    """
)

FAKE_KUBECTL = textwrap.dedent(
    """\
    #!{python}
    # fake-kubectl: a test double for kubectl, node objects in {db!r}
    import json, sys, time
    DB = {db!r}
    with open(DB) as f:
        db = json.load(f)
    args = sys.argv[1:]
    db["calls"].append(args)
    def save():
        with open(DB, "w") as f:
            json.dump(db, f)
    save()
    op = args[0]
    name = args[2] if op in ("get", "annotate") else args[1]
    if op in db.get("hang", {{}}).get(name, []):
        time.sleep(60)
    if op in db.get("fail", {{}}).get(name, {{}}):
        print(db["fail"][name][op], file=sys.stderr); sys.exit(1)
    node = db["nodes"].get(name)
    if node is None:
        print('Error from server (NotFound): nodes "%s" not found' % name, file=sys.stderr); sys.exit(1)
    meta = node.setdefault("metadata", {{"name": name}})
    if op == "get":
        print(json.dumps(node, indent=4)); sys.exit(0)
    if op == "cordon":
        node.setdefault("spec", {{}})["unschedulable"] = True
        print("node/%s cordoned" % name)
    elif op == "uncordon":
        node.setdefault("spec", {{}}).pop("unschedulable", None)
        print("node/%s uncordoned" % name)
    elif op == "annotate":
        ann = meta.setdefault("annotations", {{}})
        for a in args[3:]:
            if a == "--overwrite":
                continue
            if a.endswith("-"):
                ann.pop(a[:-1], None)
            else:
                k, v = a.split("=", 1)
                if k in ann and "--overwrite" not in args:
                    print("error: overwrite is false", file=sys.stderr); sys.exit(1)
                ann[k] = v
        print("node/%s annotated" % name)
    save()
    """
)


class FakeCluster:
    """The JSON node database behind a fake executable, plus the executable's path."""

    def __init__(self, tmp_path, template, name, nodes):
        self.db = tmp_path / f"{name}-cluster.json"
        self.db.write_text(json.dumps({"nodes": nodes, "calls": [], "fail": {}, "hang": {}}))
        self.exe = tmp_path / f"fake-{name}"
        self.exe.write_text(template.format(python=sys.executable, db=str(self.db)))
        self.exe.chmod(0o755)

    def load(self):
        return json.loads(self.db.read_text())

    def node(self, name):
        return self.load()["nodes"][name]

    def set(self, key, value):
        data = self.load()
        data[key] = value
        self.db.write_text(json.dumps(data))

    def edit_node(self, name, **changes):
        data = self.load()
        data["nodes"][name].update(changes)
        self.db.write_text(json.dumps(data))

    def calls(self, verb=None):
        return [c for c in self.load()["calls"] if verb is None or c[0] == verb]

    def clear_calls(self):
        self.set("calls", [])


@pytest.fixture(name="slurm")
def slurm_fixture(tmp_path):
    return FakeCluster(
        tmp_path,
        FAKE_SCONTROL,
        "scontrol",
        {
            "gpu01": {"state": "IDLE"},
            "gpu02": {"state": "MIXED"},
            "gpu03": {"state": "IDLE+DRAIN", "reason": "bad PSU, ticket 4711", "by": "alice"},
            "gpu04": {"state": "DOWN", "reason": "Not responding", "by": "slurm"},
        },
    )


@pytest.fixture(name="kube")
def kube_fixture(tmp_path):
    return FakeCluster(
        tmp_path,
        FAKE_KUBECTL,
        "kubectl",
        {
            "gpu01": {"metadata": {"name": "gpu01", "annotations": {"team": "ml"}}, "spec": {}},
            "gpu02": {"metadata": {"name": "gpu02"}, "spec": {"podCIDR": "10.0.2.0/24"}},
            "gpu03": {
                "metadata": {"name": "gpu03", "annotations": {"ops/why": "NIC swap"}},
                "spec": {"unschedulable": True},
            },
        },
    )
