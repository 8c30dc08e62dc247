"""``gpufleet serve rollback``: the apply options that make sense here, mapped onto ``gpufleet.serve``."""

from __future__ import annotations

import argparse
import sys

from gpufleet.apply import api as apply_api
from gpufleet.apply.cli import OPTIONS as APPLY_OPTIONS
from gpufleet.apply.cli import add_options, exit_status_epilog, parse_extra_vars, runner_failure

OPTIONS = tuple(o for o in APPLY_OPTIONS if o.flags[0] not in ("playbook", "-t", "--fast"))


def cmd_rollback(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gpufleet import serve
    from gpufleet.apply import view as views

    kwargs = {o.param: getattr(args, o.param) for o in OPTIONS if o.param}
    kwargs["extra_vars"] = parse_extra_vars(args.extra_vars) or None
    view = views.PlainView() if args.plain else views.default_view()
    result = serve.rollback(**kwargs, view=view)
    views.print_final(result.state, Console(highlight=False), run_dir=str(result.run_dir))
    if result.exit_code == apply_api.EXIT_RUNNER:
        print(runner_failure("gpufleet serve rollback", result), file=sys.stderr)
    return result.exit_code


def add_parser(sub) -> None:
    """Add ``serve`` (with ``rollback``) to the ``gpufleet`` subparsers ``sub``."""
    serve = sub.add_parser(
        "serve",
        help="serving operations (playbooks/serve.yml): rollback",
        description="Serving operations over playbooks/serve.yml; `gpufleet apply gpufleet.cluster.serve -i "
        "INV` rolls out the versions the inventory names.",
    )
    ops = serve.add_subparsers(dest="serve_cmd", required=True)
    cmd = ops.add_parser(
        "rollback",
        help="serve each model's previous version again",
        description="Serve each model's previous version again on the nodes of the inventory: verified "
        "against its signed manifest and ready (health, /v1/models, one token, its recorded golden answer) "
        "before the front switches back - at once where it kept running - with all of the model's traffic (a "
        "split is dropped). Runs playbooks/serve.yml with "
        "llm_serve_rollback=true through ansible-runner, shown and recorded like gpufleet apply.",
        epilog=exit_status_epilog(apply_api.EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # argparse exits 2 on a usage error; 2 means failed hosts here, so bad usage is 1
    add_options(cmd, OPTIONS, apply_api.EXIT_USAGE)
    cmd.set_defaults(func=cmd_rollback)
