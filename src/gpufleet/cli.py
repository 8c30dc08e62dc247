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
        result = fleet.up(nodes=args.nodes, bastion=args.bastion, name=args.name, inventory=inventory)
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
        sys.stdout.write(fleet.render_inventory(args.name, hosts))
        return 0
    if args.lab_cmd == "image":
        print(ensure_image(rebuild=args.rebuild))
        return 0
    raise AssertionError(args.lab_cmd)


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
    common(up)
    down = lab_sub.add_parser("down", help="remove the lab's containers and network (never anything else)")
    common(down)
    st = lab_sub.add_parser("status", help="show the lab's containers")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    common(st, inventory=False)
    inv = lab_sub.add_parser("inventory", help="print the lab's Ansible inventory (YAML)")
    common(inv, inventory=False)
    img = lab_sub.add_parser("image", help="build the lab image if missing or its recipe changed")
    img.add_argument("--rebuild", action="store_true", help="rebuild even if up to date")
    lab.set_defaults(func=cmd_lab)
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
