"""``hub-ext``: the command line of the course hub.

Each sub-command lives next to the code it drives; a module listed in ``COMMANDS``
provides ``add_commands(subparsers)`` and registers its sub-commands with
``set_defaults(func=...)``. A command's ``func(args)`` returns the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]

#: modules that contribute sub-commands (``add_commands(subparsers)``)
COMMANDS = [
    "hub_ext.courses_cli",
    "hub_ext.analytics_cli",
    "hub_ext.roster_cli",
    "hub_ext.events_cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub-ext", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
