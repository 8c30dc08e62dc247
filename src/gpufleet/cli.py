"""The ``gpufleet`` command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gpufleet import __version__
from gpufleet.errors import GpufleetError


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
        )
        rows = fleet.status(args.name)
        print(_table(rows, ["host", "role", "container", "state", "systemd", "ip"]))
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
            print(_table(rows, ["host", "role", "container", "state", "systemd", "ip"]))
        else:
            print(f"lab '{args.name}' has no containers; start it with 'gpufleet lab up'")
        return 0
    if args.lab_cmd == "inventory":
        hosts = fleet.current_hosts(args.name)
        if not hosts:
            raise fleet.LabError(f"lab '{args.name}' has no containers; start it with 'gpufleet lab up'")
        sys.stdout.write(fleet.render_inventory(args.name, hosts, fleet.current_airgap(args.name)))
        return 0
    if args.lab_cmd == "image":
        print(ensure_image(rebuild=args.rebuild))
        return 0
    if args.lab_cmd == "ssh":
        from gpufleet.lab import ssh

        directory = Path(args.dir) if args.dir else ssh.default_dir(args.name)
        addresses = ssh.grant(args.containers, directory)
        print(json.dumps({"dir": str(directory), "user": ssh.USER, "addresses": addresses}, indent=2))
        return 0
    raise AssertionError(args.lab_cmd)


DRAIN_STATE = "/var/lib/gpufleet/drain-state.json"


def _node_names(hosts: dict[str, dict], kind: str) -> dict[str, str]:
    var = "gpufleet_slurm_node" if kind == "slurm" else "gpufleet_k8s_node"
    return {h: str(hv.get(var) or h) for h, hv in hosts.items()}


def cmd_verify(args: argparse.Namespace) -> int:
    from gpufleet.verify import report as render
    from gpufleet.verify import runner

    if args.tier == "burnin" and not (args.drain or args.assume_drained):
        raise runner.VerifyError(
            "tier burnin loads every GPU for minutes: drain the hosts first (--drain slurm|kubernetes) "
            "or say they are already out of service (--assume-drained)"
        )
    if args.drain_state and not args.drain:
        raise runner.VerifyError("--drain-state needs --drain slurm|kubernetes")

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"gpufleet verify: {msg}", file=sys.stderr, flush=True)

    drainer = None
    nodes: dict[str, str] = {}

    def before(hosts: dict[str, dict]) -> None:
        nonlocal drainer, nodes
        if not args.drain:
            return
        from gpufleet.verify import drain

        drainer = drain.make_drainer(args.drain, args.drain_state or DRAIN_STATE)
        nodes = _node_names(hosts, args.drain)
        done = drainer.drain(list(nodes.values()), f"gpufleet verify {args.tier}")
        progress(
            f"{args.drain}: drained {', '.join(done['drained']) or 'none'}"
            + (
                f"; already out of service (left alone): {', '.join(done['already'])}"
                if done["already"]
                else ""
            )
            + "".join(f"; {n}: {e}" for n, e in done["errors"].items())
        )

    report = runner.run(
        args.inventory,
        limit=args.limit,
        tier=args.tier,
        jobs=args.jobs,
        baselines_file=args.baselines,
        host_timeout_s=args.host_timeout,
        progress=progress,
        before=before,
    )
    if drainer is not None:
        fit = [nodes[h["host"]] for h in report["hosts"] if h["verdict"] in ("healthy", "degraded")]
        unfit = [nodes[h["host"]] for h in report["hosts"] if h["verdict"] not in ("healthy", "degraded")]
        back = drainer.undrain(fit)
        report["drain"] = {"kind": args.drain, "undrained": back["undrained"], "kept": back["kept"] + unfit,
                           "errors": back["errors"]}  # fmt: skip
        progress(
            f"{args.drain}: returned to service {', '.join(back['undrained']) or 'none'}; "
            f"kept out {', '.join(report['drain']['kept']) or 'none'}"
        )
    if args.json:
        if args.json == "-":
            sys.stdout.write(render.render_json(report))
        else:
            render.write_atomic(args.json, render.render_json(report))
    if args.junit:
        render.write_atomic(args.junit, render.render_junit(report))
    if args.prometheus:
        render.write_atomic(args.prometheus, render.render_prometheus(report))
    if args.json != "-":
        print(render.render_table(report, verbose=args.verbose))
    return runner.exit_code(report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpufleet",
        description="Provision and verify GPU fleets. Playbooks live in the gpufleet.cluster collection.",
    )
    parser.add_argument("--version", action="version", version=f"gpufleet {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)

    lab = sub.add_parser(
        "lab",
        help="the local lab fleet (Debian 12 systemd containers)",
        description="A local fleet of Debian 12 systemd containers that stands in for servers. "
        "Containers have no GPU and cannot load kernel modules; that is reported, never hidden.",
    )
    lab_sub = lab.add_subparsers(dest="lab_cmd", required=True)

    def common(p: argparse.ArgumentParser, inventory: bool = True) -> None:
        p.add_argument(
            "--name", default="lab", help="lab name; containers are gpufleet-NAME-HOST (default: lab)"
        )
        if inventory:
            p.add_argument(
                "--inventory",
                default="inventories/lab/hosts.yml",
                help="inventory file to write/remove (default: inventories/lab/hosts.yml)",
            )
            p.add_argument("--no-inventory", action="store_true", help="do not write or remove an inventory")

    up = lab_sub.add_parser("up", help="create or start the lab and write its inventory")
    up.add_argument("--nodes", type=int, default=2, help="number of GPU-node stand-ins (default: 2)")
    up.add_argument("--bastion", action="store_true", help="add a bastion host")
    up.add_argument(
        "--airgap",
        action="store_true",
        help="air-gapped lab: an internal network with no route out, and a bastion (implied) that is given "
        "--bundle as a read-only disk at /media/gpufleet-bundle and serves it to the nodes",
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
    lab.set_defaults(func=cmd_lab)

    ver = sub.add_parser(
        "verify",
        help="health checks and benchmark probes on every inventory host, with a verdict per host",
        description="Run gpufleet's testinfra health checks (and, from tier full, the benchmark probes) on "
        "every host of an Ansible inventory in parallel, judge them against per-GPU-SKU baselines and "
        "print a verdict per host: healthy, degraded, unhealthy or unreachable, with the failing checks, "
        "measured and expected values, their source and a suggested action. Exit status 1 when any host "
        "is unhealthy or unreachable.",
    )
    ver.add_argument("-i", "--inventory", required=True, help="Ansible inventory file or directory")
    ver.add_argument("-l", "--limit", help="only hosts matching this Ansible pattern")
    ver.add_argument(
        "--tier",
        default="quick",
        choices=["quick", "full", "burnin"],
        help="quick: state checks (seconds); full: plus benchmark probes (minutes); burnin: longer probes on "
        "drained hosts (default: quick)",
    )
    ver.add_argument("-j", "--jobs", type=int, default=8, help="hosts verified at once (default: 8)")
    ver.add_argument("--baselines", help="YAML file of per-SKU baseline overrides (applied over group_vars)")
    ver.add_argument("--json", metavar="FILE", help="write the JSON report here ('-' for stdout, no table)")
    ver.add_argument("--junit", metavar="FILE", help="write a JUnit XML report here")
    ver.add_argument(
        "--prometheus", metavar="FILE", help="write a node_exporter textfile-collector file here (atomically)"
    )
    ver.add_argument(
        "--drain", choices=["slurm", "kubernetes"], help="drain hosts before, undrain fit ones after"
    )
    ver.add_argument(
        "--drain-state",
        metavar="FILE",
        default=None,
        help="where gpufleet records what it drained (default: /var/lib/gpufleet/drain-state.json)",
    )
    ver.add_argument("--assume-drained", action="store_true", help="allow tier burnin without --drain")
    ver.add_argument("--host-timeout", type=int, help="seconds one host may take before it is reported")
    ver.add_argument("-v", "--verbose", action="store_true", help="list every check in the table")
    ver.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    ver.set_defaults(func=cmd_verify)

    from gpufleet.bundle.cli import add_parser as add_bundle_parser

    add_bundle_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except GpufleetError as exc:
        print(f"gpufleet: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gpufleet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
