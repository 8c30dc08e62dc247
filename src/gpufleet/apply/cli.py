"""``gpufleet apply``: options declared as data, mapped onto ``gpufleet.apply.run``, result shown."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import yaml

from gpufleet.apply import api


class Option(NamedTuple):
    """One command-line option. ``param``: the ``api.run`` keyword it sets (None: the CLI's own)."""

    flags: tuple[str, ...]
    param: str | None
    kwargs: dict


OPTIONS: tuple[Option, ...] = (
    Option(
        ("playbook",),
        "playbook",
        {"help": "playbook file, or a collection playbook such as gpufleet.cluster.site"},
    ),
    Option(
        ("-i", "--inventory"), "inventory", {"required": True, "help": "Ansible inventory file or directory"}
    ),
    Option(("-l", "--limit"), "limit", {"help": "only hosts matching this Ansible pattern"}),
    Option(("-t", "--tags"), "tags", {"help": "only tasks with these tags (comma-separated)"}),
    Option(
        ("-C", "--check"),
        "check",
        {"action": "store_true", "help": "check mode: report what would change, change nothing"},
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
        ("--fast",),
        None,
        {
            "dest": "fast",
            "action": "store_true",
            "help": "site.yml: skip the offline sources, preflight and the GPU stack (driver, CUDA, NCCL, "
            "InfiniBand, container engine) on hosts whose receipt from the last full --fast run still holds "
            "(nothing they manage changed, same settings); other hosts run in full (sets "
            "gpufleet_fast_path=true)",
        },
    ),
    Option(
        ("--runs-dir",),
        "runs_dir",
        {
            "metavar": "DIR",
            "default": api.DEFAULT_RUNS_DIR,
            "help": f"where each run's directory <id>/ is made (default: {api.DEFAULT_RUNS_DIR})",
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


def parse_extra_vars(items: list[str]) -> dict:
    """``-e`` values as ansible-playbook takes them: ``k=v k2=v2``, a JSON/YAML mapping, ``@file``."""
    merged: dict = {}
    for item in items:
        item = item.strip()
        if item.startswith("@"):
            path = Path(item[1:]).expanduser()
            if not path.is_file():
                raise api.ApplyInputError(f"extra vars file {str(path)!r} not found")
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        elif item.startswith("{"):
            try:
                data = yaml.safe_load(item)  # JSON is YAML
            except yaml.YAMLError as exc:
                raise api.ApplyInputError(f"extra vars {item!r}: not a mapping ({exc})") from exc
        else:
            import shlex

            data = {}
            for word in shlex.split(item):
                key, sep, value = word.partition("=")
                if not sep or not key:
                    raise api.ApplyInputError(f"extra vars {word!r}: expected KEY=VALUE, a mapping or @FILE")
                data[key] = value
        if not isinstance(data, dict):
            raise api.ApplyInputError(f"extra vars {item!r}: not a mapping")
        merged.update(data)
    return merged


def run_kwargs(args: argparse.Namespace) -> dict:
    """The ``api.run`` keywords for parsed ``args``."""
    kwargs = {o.param: getattr(args, o.param) for o in OPTIONS if o.param}
    extra = parse_extra_vars(args.extra_vars)
    if getattr(args, "fast", False):
        extra["gpufleet_fast_path"] = True
    kwargs["extra_vars"] = extra or None
    return kwargs


def cmd_apply(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gpufleet.apply import view as views

    kwargs = run_kwargs(args)
    view = views.PlainView() if args.plain else views.default_view()
    result = api.run(**kwargs, view=view)
    views.print_final(result.state, Console(highlight=False), run_dir=str(result.run_dir))
    if result.exit_code == api.EXIT_RUNNER:
        print(runner_failure("gpufleet apply", result), file=sys.stderr)
    return result.exit_code


def runner_failure(prog: str, result: api.ApplyResult) -> str:
    """What ``prog`` (``gpufleet apply``, ``gpufleet upgrade``) says when ansible-runner or Ansible
    itself failed: the runner's status, ansible-playbook's rc and where its output is."""
    return (
        f"{prog}: ansible-runner status {result.status}, ansible-playbook rc {result.rc}; "
        f"its output: {result.run_dir / 'artifacts' / result.id / 'stdout'}"
    )


def add_options(cmd: argparse.ArgumentParser, options: tuple[Option, ...], usage_exit: int) -> None:
    """Add ``options`` to the subcommand ``cmd``; a usage error exits ``usage_exit`` (argparse's own 2
    means failed hosts for the commands that run playbooks) with argparse's message."""
    for option in options:
        kwargs = dict(option.kwargs)
        if option.param and option.flags[0].startswith("-"):
            kwargs.setdefault("dest", option.param)
        cmd.add_argument(*option.flags, **kwargs)

    def usage_error(message: str):
        cmd.print_usage(sys.stderr)
        cmd.exit(usage_exit, f"{cmd.prog}: error: {message}\n")

    cmd.error = usage_error


def exit_status_epilog(codes: dict[int, str]) -> str:
    """The ``--help`` epilog: one line per exit code."""
    return "exit status:\n" + "\n".join(f"  {code}  {what}" for code, what in sorted(codes.items()))


EPILOG = exit_status_epilog(api.EXIT_CODES)


def add_parser(sub) -> None:
    """Add ``apply`` to the ``gpufleet`` subparsers ``sub``."""
    app = sub.add_parser(
        "apply",
        help="run a playbook on a fleet through ansible-runner, with a live per-host view",
        description="Run an Ansible playbook on the hosts of an inventory through ansible-runner. On a "
        "terminal a live view shows one line per host (state, role : task, ok/changed/failed/unreachable "
        "counts, elapsed), or hosts per state and the failing hosts when the fleet is larger than the "
        "screen; elsewhere one plain line per failure and per host at the end. Then a table of the failed "
        "and unreachable hosts with the failing task and message. Every run keeps runs/<id>/: "
        "ansible-runner's artifacts, events.jsonl (every event) and summary.json.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # argparse exits 2 on a usage error; for apply, 2 means failed hosts, so bad usage is 1
    add_options(app, OPTIONS, api.EXIT_USAGE)
    app.set_defaults(func=cmd_apply)
