"""v4only: the admission webhook that keeps pods working where IPv6 is broken, and the commands around it.

One module of webhook/cli per command; each exposes `register(subparsers)`, which adds its parser and sets
`func`, a callable taking the parsed arguments and returning the exit status (0 done, 1 problems found,
2 bad usage/input).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from webhook import __version__
from webhook.cli.usage import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, UsageError

__all__ = ["EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE", "UsageError", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="v4only", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"v4only {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _command_registrars():
        register(subparsers)
    return parser


def _command_registrars() -> list[Callable[[Any], None]]:
    # Imported here so `v4only --help` stays cheap and each command loads only what it needs.
    from webhook.cli import certs, doctor, patch, review, serve

    return [serve.register, review.register, doctor.register, patch.register, certs.register]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except UsageError as error:
        print(f"v4only {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return status
