"""`netgap`: the command table, and errors turned into exit codes in one place."""

import argparse
import sys
from collections.abc import Sequence

from netgap.argtypes import OneLineParser
from netgap.commands import COMMANDS
from netgap.errors import NetgapError


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="netgap",
        description="A lab for finding network latency between traced services.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        doc = (command.__doc__ or "").strip()
        sub = subparsers.add_parser(
            name,
            help=doc.splitlines()[0] if doc else None,
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(sub)
        sub.set_defaults(run=command.run, command_name=name)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.run(args)
    except NetgapError as exc:
        # A nested command (`fault k8s`) sets its whole name; argparse keeps the innermost.
        print(f"netgap {args.command_name}: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code)
