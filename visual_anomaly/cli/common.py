"""The one pattern every command-line tool follows, and its one error policy.

Each tool builds a :class:`Parser` with subcommands (:func:`subcommand`); every subcommand stores its
handler with ``set_defaults(handler=...)``; :func:`run` parses, calls the handler and turns every
error a user can cause (a missing or corrupt file, a bad value) into one line naming it, exit code 2.
Library code signals such errors with ``ValueError``, ``OSError`` or ``RuntimeError`` (and their
subclasses, such as ``BundleError``); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

USER_ERRORS = (ValueError, OSError, RuntimeError)
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (with a pointer to ``--help``), exit 2."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault('formatter_class', argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f'{self.prog}: {message} (see {self.prog} --help)\n')


def subcommand(
    commands: argparse._SubParsersAction,
    name: str,
    handler: Callable[[argparse.Namespace], int | None],
    help: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` whose arguments are handed to ``handler``; its ``--help`` shows ``description``
    (a paragraph, wrapped to the terminal) or else the one-line ``help``."""
    parser = commands.add_parser(
        name, help=help, description=description or help, formatter_class=argparse.HelpFormatter
    )
    parser.set_defaults(handler=handler, command=name)
    return parser


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars unless ``--quiet``, and only on a terminal: a log file or a pipe gets none (one line per
    update otherwise)."""
    return not getattr(args, 'quiet', False) and sys.stderr.isatty()


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the chosen handler and apply the error policy; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    args = parser.parse_args(argv)
    where = ' '.join(filter(None, [parser.prog, getattr(args, 'command', None)]))
    try:
        return int(args.handler(args) or 0)
    except USER_ERRORS as error:
        print(f'{where}: {error}', file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f'{where}: interrupted', file=sys.stderr)
        return EXIT_INTERRUPTED
