"""``gpufleet verify``: options declared as data, mapped onto ``gpufleet.verify.run``, result printed."""

from __future__ import annotations

import argparse
import sys
from typing import NamedTuple

from gpufleet._progress import sayer
from gpufleet.verify import api


class Option(NamedTuple):
    """One command-line option. ``param``: the ``api.run`` keyword it sets (None: the CLI's own)."""

    flags: tuple[str, ...]
    param: str | None
    kwargs: dict


OPTIONS: tuple[Option, ...] = (
    Option(
        ("-i", "--inventory"), "inventory", {"required": True, "help": "Ansible inventory file or directory"}
    ),
    Option(("-l", "--limit"), "limit", {"help": "only hosts matching this Ansible pattern"}),
    Option(
        ("--tier",),
        "tier",
        {
            "default": api.DEFAULT_TIER,
            "choices": api.TIERS,
            "help": "quick: state checks (seconds); full: plus benchmark probes (minutes); burnin: longer "
            f"probes on drained hosts (default: {api.DEFAULT_TIER})",
        },
    ),
    Option(
        ("-j", "--jobs"),
        "jobs",
        {
            "type": int,
            "default": api.DEFAULT_JOBS,
            "help": f"hosts verified at once: Ansible's forks in tier quick (default: {api.DEFAULT_JOBS})",
        },
    ),
    Option(
        ("--baselines",),
        "baselines",
        {"help": "YAML file of per-SKU baseline overrides (applied over group_vars)"},
    ),
    Option(
        ("--json",),
        "json_report",
        {"metavar": "FILE", "help": "write the JSON report here ('-' for stdout, no table)"},
    ),
    Option(("--junit",), "junit_report", {"metavar": "FILE", "help": "write a JUnit XML report here"}),
    Option(
        ("--prometheus",),
        "prometheus_report",
        {"metavar": "FILE", "help": "write a node_exporter textfile-collector file here (atomically)"},
    ),
    Option(
        ("--drain",),
        "drain",
        {"choices": api.DRAIN_KINDS, "help": "drain hosts before, undrain fit ones after"},
    ),
    Option(
        ("--drain-state",),
        "drain_state",
        {
            "metavar": "FILE",
            "default": None,
            "help": f"where gpufleet records what it drained (default: {api.DEFAULT_DRAIN_STATE})",
        },
    ),
    Option(
        ("--assume-drained",),
        "assume_drained",
        {"action": "store_true", "help": "allow tier burnin without --drain"},
    ),
    Option(
        ("--host-timeout",),
        "host_timeout_s",
        {"type": int, "metavar": "HOST_TIMEOUT", "help": "seconds one host may take before it is reported"},
    ),
    Option(
        ("-v", "--verbose"),
        None,
        {"dest": "verbose", "action": "store_true", "help": "list every check in the table"},
    ),
    Option(
        ("-q", "--quiet"),
        None,
        {"dest": "quiet", "action": "store_true", "help": "no progress lines on stderr"},
    ),
)

STDOUT = "-"  # --json - : the JSON report on stdout instead of the table


def run_kwargs(args: argparse.Namespace) -> dict:
    """The ``api.run`` keywords for parsed ``args`` (``--json -`` is the CLI's: stdout, not a file)."""
    kwargs = {o.param: getattr(args, o.param) for o in OPTIONS if o.param}
    if kwargs["json_report"] == STDOUT:
        kwargs["json_report"] = None
    return kwargs


def emit(result, args: argparse.Namespace) -> int:
    """Print a verify or diagnose result (JSON on stdout with ``--json -``, else the table) and
    return its exit code."""
    from gpufleet.verify import report as render

    if args.json_report == STDOUT:
        sys.stdout.write(render.render_json(result.report))
    else:
        print(render.render_table(result.report, verbose=args.verbose))
    return result.exit_code


def cmd_verify(args: argparse.Namespace) -> int:
    return emit(api.run(**run_kwargs(args), progress=sayer("verify", quiet=args.quiet)), args)


def add_parser(sub) -> None:
    """Add ``verify`` to the ``gpufleet`` subparsers ``sub``."""
    ver = sub.add_parser(
        "verify",
        help="health checks and benchmark probes on every inventory host, with a verdict per host",
        description="Run gpufleet's health checks (and, from tier full, the benchmark probes) on "
        "every host of an Ansible inventory in parallel (tier quick: one Ansible run reads every host; the "
        "tiers with probes: a testinfra session per host), judge them against per-GPU-SKU baselines and "
        "print a verdict per host: healthy, degraded, unhealthy, unreachable or (GPUs present but not "
        "measured by the probes) unverified, with the failing checks, "
        "measured and expected values, their source and a suggested action. Exit status 1 when any host "
        "is unhealthy or unreachable.",
    )
    for option in OPTIONS:
        kwargs = dict(option.kwargs)
        if option.param:
            kwargs.setdefault("dest", option.param)
        ver.add_argument(*option.flags, **kwargs)
    ver.set_defaults(func=cmd_verify)
