"""The ``gpufleet`` command: assembles the command groups' parsers and reports their errors."""

from __future__ import annotations

import argparse
import sys

from gpufleet import __version__
from gpufleet.errors import GpufleetError


def build_parser() -> argparse.ArgumentParser:
    """The ``gpufleet`` parser: each command group adds its own (``gpufleet.<group>.cli.add_parser``)."""
    from gpufleet.apply.cli import add_parser as add_apply
    from gpufleet.bundle.cli import add_parser as add_bundle
    from gpufleet.lab.cli import add_parser as add_lab
    from gpufleet.models.cli import add_parser as add_model
    from gpufleet.plan.cli import add_parser as add_plan
    from gpufleet.serve.cli import add_parser as add_serve
    from gpufleet.upgrade.cli import add_parser as add_upgrade
    from gpufleet.verify.cli import add_parser as add_verify
    from gpufleet.verify.diagnose_cli import add_parser as add_diagnose

    parser = argparse.ArgumentParser(
        prog="gpufleet",
        description="Provision and verify GPU fleets. Playbooks live in the gpufleet.cluster collection.",
    )
    parser.add_argument("--version", action="version", version=f"gpufleet {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for add_group in (
        add_lab,
        add_apply,
        add_upgrade,
        add_verify,
        add_diagnose,
        add_bundle,
        add_model,
        add_plan,
        add_serve,
    ):
        add_group(sub)
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
