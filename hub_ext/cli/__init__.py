"""``hub-ext``: the command line of the course hub.

One module of this package per command group (:data:`COMMANDS`), imported only when one of
its commands runs: ``hub-ext --help`` imports none of them. A module provides
``add_commands(subparsers)``, which adds each of its commands with
:func:`add_command` and the function that runs it. A command's ``func(args)`` returns the
exit status; its docstring is the command's description.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys

__all__ = ["COMMANDS", "add_command", "build_parser", "main"]

#: command -> (its module in this package, its one-line help), in the order ``--help`` lists them
COMMANDS: dict[str, tuple[str, str]] = {
    "check-catalog": ("catalog", "validate a course catalog and summarise it"),
    "check-notebook": ("analytics", "check an annotated notebook's routes (offline)"),
    "publish": ("analytics", "publish (or replace) a notebook as a course's analytics API"),
    "withdraw": ("analytics", "withdraw a course's analytics API"),
    "import-roster": (
        "roster",
        "import a course roster (plain CSV or a Moodle participants export)",
    ),
    "import": ("events", "import learning events from CSV exports"),
    "events": ("events", "manage the event store and its xAPI sources"),
}


def add_command(subparsers, name: str, func=None, **kwargs) -> argparse.ArgumentParser:
    """Add the sub-command ``name`` of :data:`COMMANDS`, with its help from there; ``func``
    runs it, and its docstring is the command's description (``--help``)."""
    if func is not None:
        kwargs.setdefault("description", inspect.getdoc(func))
    parser = subparsers.add_parser(name, help=COMMANDS[name][1], **kwargs)
    if func is not None:
        parser.set_defaults(func=func)
    return parser


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``hub-ext``; only ``command``'s module is imported (and adds its options).

    The other commands are listed by name and help, without their options.
    """
    parser = argparse.ArgumentParser(prog="hub-ext", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = COMMANDS[command][0] if command in COMMANDS else None
    for name, (module, help_) in COMMANDS.items():
        if module != wanted:
            subparsers.add_parser(name, help=help_, add_help=False)
        elif name == _first_of(module):  # the module adds all of its commands
            importlib.import_module(f"{__name__}.{module}").add_commands(subparsers)
    return parser


def _first_of(module: str) -> str:
    return next(name for name, (m, _) in COMMANDS.items() if m == module)


def _command(argv: list[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(argv)).parse_args(argv)
    try:
        return args.func(args) or 0
    except BrokenPipeError:  # e.g. ``hub-ext check-catalog | head``: the reader has gone
        # what the Python docs advise: no second error while flushing at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
