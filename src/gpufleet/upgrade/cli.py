"""``gpufleet upgrade``: options declared as data, mapped onto ``gpufleet.upgrade.run``, report shown."""

from __future__ import annotations

import argparse
import sys

from gpufleet.apply.cli import Option, add_options, exit_status_epilog, parse_extra_vars, runner_failure
from gpufleet.upgrade import api

OPTIONS: tuple[Option, ...] = (
    Option(
        ("-i", "--inventory"), "inventory", {"required": True, "help": "Ansible inventory file or directory"}
    ),
    Option(
        ("--batches",),
        "batches",
        {
            "metavar": "N[,N%...]",
            "help": "batch sizes, hosts or percentages; the last repeats (default: 1,10%%,25%%)",
        },
    ),
    Option(
        ("--resume",),
        "resume",
        {"metavar": "RUN_ID", "help": "continue a stopped rollout: each host goes on from its recorded step"},
    ),
    Option(("-l", "--limit"), "limit", {"help": "only hosts matching this Ansible pattern"}),
    Option(
        ("-C", "--check"),
        "check",
        {"action": "store_true", "help": "check mode: show what would be done; drain and change nothing"},
    ),
    Option(
        ("--drain",),
        "drain",
        {
            "choices": api.DRAIN_BACKENDS,
            "help": "drain backend (default: the inventory's gpufleet_drain_backend, else none)",
        },
    ),
    Option(
        ("--verify-tier",), "verify_tier", {"help": "gpufleet verify tier after each host (default: quick)"}
    ),
    Option(
        ("-e", "--extra-vars"),
        None,
        {
            "dest": "extra_vars",
            "action": "append",
            "default": [],
            "metavar": "VARS",
            "help": "KEY=VALUE (several separated by spaces), a JSON/YAML mapping, or @FILE; repeatable",
        },
    ),
    Option(
        ("--runs-dir",),
        "runs_dir",
        {
            "metavar": "DIR",
            "default": api.apply_api.DEFAULT_RUNS_DIR,
            "help": "where each run's directory is made",
        },
    ),
    Option(
        ("--timeout",),
        "timeout",
        {"type": int, "metavar": "SECONDS", "help": "stop the run after this long (exit code 3)"},
    ),
    Option(
        ("--plain",),
        None,
        {"dest": "plain", "action": "store_true", "help": "plain lines, no live view, even on a terminal"},
    ),
)


def run_kwargs(args: argparse.Namespace) -> dict:
    """The ``api.run`` keywords for parsed ``args``."""
    kwargs = {o.param: getattr(args, o.param) for o in OPTIONS if o.param}
    kwargs["extra_vars"] = parse_extra_vars(args.extra_vars) or None
    return kwargs


def cmd_upgrade(args: argparse.Namespace) -> int:
    from gpufleet.apply import view as views

    view = views.PlainView() if args.plain else views.default_view()
    result = api.run(**run_kwargs(args), view=view)
    print(result.text)
    print(f"report: {result.report_file}")
    if result.exit_code == api.EXIT_RUNNER:
        print(runner_failure("gpufleet upgrade", result.apply), file=sys.stderr)
    return result.exit_code


EPILOG = exit_status_epilog(api.EXIT_CODES)


def add_parser(sub) -> None:
    """Add ``upgrade`` to the ``gpufleet`` subparsers ``sub``."""
    cmd = sub.add_parser(
        "upgrade",
        help="rolling upgrade of driver, CUDA and NCCL in batches: drain, upgrade, verify, undrain",
        description="Upgrade the GPU nodes in batches (playbooks/upgrade.yml through ansible-runner): each "
        "host is drained (only when in service), stops serving, gets driver/CUDA/NCCL (a reboot only when "
        "the kernel module changed), is verified with gpufleet verify and returned to service only when "
        "this run drained it. A failed or unreachable host stops the rollout before the next batch and "
        "stays drained; --resume RUN_ID continues where a rollout stopped. The report (per host: step, "
        "drained by us, verdict, reason) is printed and written to runs/<id>/upgrade-report.json.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # argparse exits 2 on a usage error; for upgrade, 2 means a stopped rollout, so bad usage is 1
    add_options(cmd, OPTIONS, api.EXIT_USAGE)
    cmd.set_defaults(func=cmd_upgrade)
