"""``gpufleet diagnose DIR``: options mapped onto ``gpufleet.verify.diagnose.diagnose``, report printed."""

from __future__ import annotations

import argparse
import textwrap

from gpufleet._progress import sayer
from gpufleet.verify import recorded
from gpufleet.verify.cli import STDOUT, emit


def _files_help() -> str:
    width = max(len(name) for name in recorded.FILES)
    lines = [f"  {name:<{width}}  {what}" for name, what in recorded.FILES.items()]
    lines.append(
        f"  {'<tool>.rc, <tool>.stderr':<{width}}  the exit status and error output of a tool that "
        "failed (e.g. ibstat.rc, ibstat.stderr)"
    )
    return "\n".join(lines)


def cmd_diagnose(args: argparse.Namespace) -> int:
    from gpufleet.verify import diagnose

    result = diagnose.diagnose(
        args.directory,
        expect=args.expect,
        host=args.host,
        json_report=None if args.json_report == STDOUT else args.json_report,
        junit_report=args.junit_report,
        progress=sayer("diagnose", quiet=args.quiet),
    )
    return emit(result, args)


def add_parser(sub) -> None:
    """Add ``diagnose`` to the ``gpufleet`` subparsers ``sub``."""
    parser = sub.add_parser(
        "diagnose",
        help="judge a directory of recorded tool outputs with verify's checks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Judge outputs recorded on a host (a support case, an nvidia-bug-report excerpt) with the "
            "very checks 'gpufleet verify' runs, and print the same report. Files are found by name:"
        )
        + f"\n\n{_files_help()}\n\n"
        + textwrap.fill(
            "Every other file is listed as not used. A check whose inputs are not recorded skips and "
            "says which file it needs. Exit status 0 healthy or degraded, 1 unhealthy, 2 bad input."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the directory of recorded outputs")
    parser.add_argument(
        "--expect", metavar="FILE", help="expectations (default: DIR/expect.yml when present)"
    )
    parser.add_argument("--host", help="the host name the report shows (default: the directory's name)")
    parser.add_argument(
        "--json",
        dest="json_report",
        metavar="FILE",
        help="write the JSON report here ('-' for stdout, no table)",
    )
    parser.add_argument("--junit", dest="junit_report", metavar="FILE", help="write a JUnit XML report here")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every check in the table")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(func=cmd_diagnose)
