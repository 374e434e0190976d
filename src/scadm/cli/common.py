"""Shared helpers for the CLI: the consoles, and how a failure is told to the user.

Every failure is one line on stderr. A failure the user can fix (a bad value, a missing or
unusable file, a usage error) says what was wrong and what to do. Anything unexpected says
which command failed, the exception's type and message, and that ``--debug`` shows the
traceback. Output is never wrapped in mid-line, so logs stay greppable.
"""

from __future__ import annotations

import sys
import traceback
import warnings

import typer
from rich.console import Console
from rich.markup import escape

from .. import checks
from ..fetch import FetchError

DEBUG = False
console = Console(stderr=False, soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

class UserError(Exception):
    """An error the user can fix; printed as one line without a traceback."""


#: failures whose message is already written for the user
USER_ERRORS = (UserError, FetchError, *checks.USER_ERRORS)
_one_line = checks.one_line


def fail(exc: BaseException, doing: str = "scadm") -> None:
    """Print an exception as one line (or a traceback with --debug) and exit non-zero.

    `doing`: what was being done (the command line), named for unexpected failures.
    """
    if isinstance(exc, typer.Exit):
        sys.exit(exc.exit_code)
    if isinstance(exc, (typer.Abort, KeyboardInterrupt)):
        err_console.print("error: interrupted", highlight=False)
        sys.exit(130)
    if isinstance(exc, typer.TyperException) and hasattr(exc, "format_message"):  # usage errors
        err_console.print(f"[bold red]error:[/] {escape(_one_line(exc.format_message()))} (see {escape(doing)} --help)",
                          highlight=False, markup=True)
        sys.exit(getattr(exc, "exit_code", 2))
    if DEBUG:
        traceback.print_exception(exc)
        sys.exit(1)
    if isinstance(exc, USER_ERRORS):
        err_console.print(f"[bold red]error:[/] {escape(_one_line(str(exc) or exc.__class__.__name__))}", highlight=False,
                          markup=True)
    else:
        err_console.print(f"[bold red]error:[/] {escape(checks.describe(exc, doing))} (run with --debug for the traceback)",
                          highlight=False, markup=True)
    sys.exit(1)


def show_warnings_as_lines() -> None:
    """Show each distinct Python warning once, as one 'warning: ...' line on stderr (no source line, no wrapping)."""

    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        text = _one_line(str(message))
        if text not in shown:  # the same input read twice (the result, then its grid) warns once
            shown.add(text)
            err_console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False, markup=True)

    warnings.showwarning = show
