"""``gpufleet lab up|down|status|inventory|ssh|image|tiny-model|tiny-image|engine-wheel|layer|fault``:
the parser and the commands over ``gpufleet.lab``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gpufleet.lab.fleet import BUNDLE_MOUNT, DEFAULT_INVENTORY, DEFAULT_NAME, DEFAULT_NODES

STATUS_COLUMNS = ["host", "role", "container", "state", "systemd", "ip"]


def _table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def cmd_lab(args: argparse.Namespace) -> int:
    from gpufleet.lab import fleet
    from gpufleet.lab.image import ensure_image

    inventory = None
    if getattr(args, "inventory", None) and not args.no_inventory:
        inventory = Path(args.inventory)
    if args.lab_cmd == "up":
        result = fleet.up(
            nodes=args.nodes,
            bastion=args.bastion,
            name=args.name,
            inventory=inventory,
            airgap=args.airgap,
            bundle=args.bundle,
            fingerprint=args.fingerprint,
            ssh=args.ssh,
            node_image=args.node_image,
        )
        rows = fleet.status(args.name)
        print(_table(rows, STATUS_COLUMNS))
        if result.get("inventory"):
            print(f"\ninventory: {result['inventory']}  (ansible-playbook -i {result['inventory']} ...)")
        return 0
    if args.lab_cmd == "down":
        fleet.down(name=args.name, inventory=inventory)
        return 0
    if args.lab_cmd == "status":
        rows = fleet.status(args.name)
        if args.json:
            print(json.dumps(rows, indent=2))
        elif rows:
            print(_table(rows, STATUS_COLUMNS))
        else:
            print(f"lab '{args.name}' has no containers; start it with 'gpufleet lab up'")
        return 0
    if args.lab_cmd == "inventory":
        hosts = fleet.current_hosts(args.name)
        if not hosts:
            raise fleet.LabError(f"lab '{args.name}' has no containers; start it with 'gpufleet lab up'")
        sys.stdout.write(
            fleet.render_inventory(
                args.name, hosts, fleet.current_airgap(args.name), fleet.current_ssh(args.name)
            )
        )
        return 0
    if args.lab_cmd == "ssh":
        from gpufleet.lab import ssh

        directory = Path(args.dir) if args.dir else ssh.default_dir(args.name)
        addresses = ssh.grant(args.containers, directory)
        print(json.dumps({"dir": str(directory), "user": ssh.USER, "addresses": addresses}, indent=2))
        return 0
    if args.lab_cmd == "image":
        print(ensure_image(rebuild=args.rebuild))
        return 0
    if args.lab_cmd == "tiny-image":
        from gpufleet.lab import tiny_image

        r = tiny_image.ensure()
        print(f"lab image {r['name']}: {r['id']} ({'made' if r['made'] else 'already there'})")
        return 0
    if args.lab_cmd == "ask":
        from gpufleet.lab import ask

        r = ask.ask(args.name, node=args.node, prompt=args.prompt, tokens=args.tokens)
        print(f"with the lab's key ({r['key_file']}): HTTP {r['status']}: {args.prompt!r} -> {r['text']!r}")
        print(f"  audit line: {r['audit']}")
        print(f"without a key: HTTP {r['refused_status']}: {r['refusal']}")
        return 0 if r["refused_status"] == 401 else 1
    if args.lab_cmd == "bundle-inputs":
        from gpufleet.lab import inputs

        inputs.prepare(args.root)
        return 0
    if args.lab_cmd == "engine-wheel":
        from gpufleet.lab import engine_wheel

        r = engine_wheel.ensure(args.dest, jobs=args.jobs)
        state = f"built in {r['seconds']:.0f} s" if r["built"] else "already there"
        print(f"lab engine wheel: {r['path']} ({state})")
        return 0
    if args.lab_cmd == "tiny-model":
        from gpufleet.lab import tiny_model

        r = tiny_model.write(args.directory, seed=tiny_model.SEED if args.seed is None else args.seed)
        state = f"{r['written']} written" if r["written"] else "already up to date"
        print(f"lab model in {r['path']}: {r['files']} files, {r['bytes']} bytes ({state})")
        return 0
    if args.lab_cmd == "layer":
        from gpufleet.lab import layers

        if args.layer_cmd == "commit":
            print(
                layers.commit(
                    args.container,
                    args.layer,
                    root=args.root,
                    unless_current=args.unless_current,
                    detach=args.detach,
                    pause=args.pause,
                )
            )
        elif args.layer_cmd == "check":
            print(layers.check(args.layer, root=args.root))
        else:
            print(layers.layer_key(args.layer, root=args.root))
        return 0
    if args.lab_cmd == "fault":
        from gpufleet.lab import faults

        if args.fault_cmd == "power-loss":
            result = faults.power_loss(args.container, args.during, timeout=args.timeout, delay=args.delay)
        else:
            result = faults.stop(
                args.container, args.during, watch=args.watch, timeout=args.timeout, down_s=args.down
            )
        print(json.dumps(result))
        return 0
    raise AssertionError(args.lab_cmd)


def add_parser(sub) -> None:
    """Add ``lab`` and its subcommands to the ``gpufleet`` subparsers ``sub``."""
    lab = sub.add_parser(
        "lab",
        help="the local lab fleet (Debian 12 systemd containers)",
        description="A local fleet of Debian 12 systemd containers that stands in for servers. "
        "Containers have no GPU and cannot load kernel modules; that is reported, never hidden.",
    )
    lab_sub = lab.add_subparsers(dest="lab_cmd", required=True)

    def common(p: argparse.ArgumentParser, inventory: bool = True) -> None:
        p.add_argument(
            "--name",
            default=DEFAULT_NAME,
            help=f"lab name; containers are gpufleet-NAME-HOST (default: {DEFAULT_NAME})",
        )
        if inventory:
            p.add_argument(
                "--inventory",
                default=str(DEFAULT_INVENTORY),
                help=f"inventory file to write/remove (default: {DEFAULT_INVENTORY})",
            )
            p.add_argument("--no-inventory", action="store_true", help="do not write or remove an inventory")

    up = lab_sub.add_parser("up", help="create or start the lab and write its inventory")
    up.add_argument(
        "--nodes",
        type=int,
        default=DEFAULT_NODES,
        help=f"number of GPU-node stand-ins (default: {DEFAULT_NODES})",
    )
    up.add_argument("--bastion", action="store_true", help="add a bastion host")
    up.add_argument(
        "--airgap",
        action="store_true",
        help="air-gapped lab: an internal network with no route out, and a bastion (implied) that is given "
        f"--bundle as a read-only disk at {BUNDLE_MOUNT} and serves it to the nodes",
    )
    up.add_argument(
        "--bundle",
        metavar="DIR",
        help="with --airgap: the offline bundle directory ('gpufleet bundle build -o')",
    )
    up.add_argument(
        "--fingerprint",
        metavar="FPR",
        help="with --airgap: the bundle signing key's fingerprint, from 'gpufleet bundle key --fingerprint' "
        "on the build machine (written to the inventory as gpufleet_bundle_fingerprint)",
    )
    up.add_argument(
        "--ssh",
        action="store_true",
        help="reach the hosts over SSH as the unprivileged operator 'ops' with sudo, as real fleets are "
        "reached, with each host key pinned in a known_hosts file the lab writes "
        "(~/.local/share/gpufleet/lab/NAME/ssh/), instead of through docker",
    )
    up.add_argument(
        "--node-image",
        metavar="IMAGE",
        help="create the node stand-ins from IMAGE, a converged node committed by 'gpufleet lab layer' "
        "(make test leaves gpufleet-lab-node:current), instead of the bare lab image",
    )
    common(up)
    down = lab_sub.add_parser("down", help="remove the lab's containers and network (never anything else)")
    common(down)
    st = lab_sub.add_parser("status", help="show the lab's containers")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    common(st, inventory=False)
    inv = lab_sub.add_parser("inventory", help="print the lab's Ansible inventory (YAML)")
    common(inv, inventory=False)
    sh = lab_sub.add_parser(
        "ssh",
        help="let the operator 'ops' in to lab containers over SSH and pin their host keys",
        description="Installs the lab operator's key (made once) in each container and writes "
        "DIR/known_hosts from the host key each container's sshd serves, read over docker exec. "
        "Prints the containers' addresses as JSON. For containers the lab did not create, such as "
        "Molecule's.",
    )
    sh.add_argument("containers", nargs="+", metavar="CONTAINER", help="container names")
    sh.add_argument("--dir", help="where the key and known_hosts go (default: the lab's own, see --name)")
    common(sh, inventory=False)
    img = lab_sub.add_parser("image", help="build the lab image if missing or its recipe changed")
    img.add_argument("--rebuild", action="store_true", help="rebuild even if up to date")
    tiny = lab_sub.add_parser(
        "tiny-model",
        help="write the lab's tiny Llama-architecture model (seeded random weights) into a directory",
        description="A complete model directory (config, two safetensors shards with their index, "
        "tokenizer) made here from a fixed seed, so the lab bundle, the model store and the serving "
        "roles have a real model without a download. Files already right are not rewritten.",
    )
    tiny.add_argument("directory", help="directory to write (created; must hold nothing else)")
    tiny.add_argument(
        "--seed",
        type=int,
        default=None,
        help="another seed: another model of the same shape (the lab's second version, for rollouts)",
    )
    lab_sub.add_parser(
        "tiny-image",
        help="make the lab's few-kilobyte container image (docker import) unless it is there",
        description="The image the lab bundle carries (images: in bundles/lab.yml), so the air-gapped "
        "nodes load a real image from the bastion. Made once and kept: its ID stays the same.",
    )
    from gpufleet.lab.engine_wheel import DEFAULT_DEST, PACKAGE, VERSION

    ew = lab_sub.add_parser(
        "engine-wheel",
        help=f"build the lab engine's wheel ({PACKAGE} {VERSION}) from its pinned sdist unless it is there",
        description=f"The package index has no Linux wheel of {PACKAGE}, only an sdist that compiles "
        "llama.cpp (minutes of every core). This downloads that sdist with its sha256 pinned, builds the "
        "wheel once (needs cmake, gcc, g++: 'make host-deps') and keeps it; the lab bundle carries it "
        "(wheels.files in bundles/lab.yml) for the lab's 'serve' venv. A wheel already there is kept.",
    )
    ew.add_argument("--dest", default=DEFAULT_DEST, help=f"directory of the wheel (default: {DEFAULT_DEST})")
    ew.add_argument(
        "--jobs", type=int, metavar="N", help="parallel compile jobs (default: every CPU of this machine)"
    )
    ak = lab_sub.add_parser(
        "ask",
        help="one completion through the air-gapped lab's front with the lab's key, one without a key",
        description="Asks the lab's served model (the tiny model, llama.cpp behind the front) for a "
        "completion with the lab's API key (made by 'lab up --airgap', kept beside the lab's SSH key; only "
        "its digest is in the inventory), prints the answer and the front's audit line, then shows that a "
        "request without a key is refused (exit status 1 if it is not).",
    )
    ak.add_argument("--name", default=DEFAULT_NAME, help=f"lab name (default: {DEFAULT_NAME})")
    ak.add_argument("--node", default="node1", help="node whose front to ask (default: node1)")
    ak.add_argument("--prompt", default="The fleet is", help="the prompt")
    ak.add_argument("--tokens", type=int, default=16, help="tokens to generate (default: 16)")
    bi = lab_sub.add_parser(
        "bundle-inputs",
        help="make what the lab bundle carries: engine wheel, the tiny model (two versions), tiny image",
        description="Everything bundles/lab.yml carries that is made here, each step a no-op when its output "
        "is already right: the lab engine's wheel (engine-wheel), the tiny model as version 1 "
        "(.cache/models/tiny-llama) and version 2 (.cache/models/tiny-llama-2, another seed; for rollouts), "
        "and the tiny image. Run before 'gpufleet bundle build bundles/lab.yml'.",
    )
    bi.add_argument("--root", default=".", help="the checkout holding .cache/ (default: here)")
    lay = lab_sub.add_parser(
        "layer",
        help="commit a converged lab node as an image keyed by what made it; check such an image",
        description="Layered lab images (gpufleet.lab.layers): a node a real converge provisioned, "
        "committed once per test run, so scenarios that need 'a provisioned node' start from it "
        "instead of repeating the driver's DKMS build. 'check' refuses an image made from other "
        "inputs (roles, bundle, lab image) than this checkout's.",
    )
    lay_sub = lay.add_subparsers(dest="layer_cmd", required=True)
    for cmd, text in (
        ("commit", "commit CONTAINER as the layer's image (tagged with its key and :current)"),
        ("check", "print the layer's :current image if it was made from this checkout, else fail"),
        ("key", "print the layer's key for this checkout"),
    ):
        p = lay_sub.add_parser(cmd, help=text)
        if cmd == "commit":
            p.add_argument("container", metavar="CONTAINER", help="the converged container")
            p.add_argument("--as", dest="layer", required=True, metavar="LAYER", help="layer name (node)")
            p.add_argument(
                "--unless-current",
                action="store_true",
                help="when an image with this checkout's key exists, only tag it :current "
                "(says 'not committed again')",
            )
            p.add_argument(
                "--detach",
                action="store_true",
                help="commit in a background process, without pausing the node, and return at once "
                "(a second --detach while it runs commits nothing; 'check' fails until it is done)",
            )
            p.add_argument(
                "--no-pause", dest="pause", action="store_false", help="commit without pausing the node"
            )
        else:
            p.add_argument("layer", metavar="LAYER", help="layer name (node)")
        p.add_argument("--root", default=".", help="the checkout whose inputs key the layer (default: .)")
    flt = lab_sub.add_parser(
        "fault",
        help="inject a fault into a lab node at a chosen point of a run (fault-injection tests)",
        description="Wait (bounded by --timeout) until a process of the chosen point runs on the node, "
        "then inject the fault. Points: dkms (the NVIDIA module's DKMS make), dpkg, pip (pip install), "
        "apt-download (apt fetching packages). A point that never comes is an error, and nothing is "
        "done then. Lab only: gpufleet never does this to a fleet.",
    )
    flt_sub = flt.add_subparsers(dest="fault_cmd", required=True)
    from gpufleet.lab.faults import FILE_POINTS, POINTS

    for cmd, text in (
        ("power-loss", "kill CONTAINER (every process, as a power cut) during the point, then start it"),
        ("stop", "stop CONTAINER (a bastion) while --watch runs the point; start it after --down seconds"),
    ):
        p = flt_sub.add_parser(cmd, help=text, description=text)
        p.add_argument("container", metavar="CONTAINER")
        p.add_argument(
            "--during", required=True, choices=sorted([*POINTS, *FILE_POINTS]), help="the point of the run"
        )
        p.add_argument("--timeout", type=float, default=1200, help="seconds to wait for it (default 1200)")
        if cmd == "power-loss":
            p.add_argument("--delay", type=float, default=0, help="seconds into the point (default 0)")
        else:
            p.add_argument("--watch", required=True, metavar="NODE", help="the node whose point is awaited")
            p.add_argument("--down", type=float, default=0, help="seconds stopped (0: stays stopped)")
    lab.set_defaults(func=cmd_lab)
