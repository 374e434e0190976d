"""Shared helpers for the CLI: error reporting and consoles."""

from __future__ import annotations

import sys
import traceback

import click
from rich.console import Console

DEBUG = False
console = Console(stderr=False)
err_console = Console(stderr=True)


class UserError(Exception):
    """An error the user can fix; printed as one line without a traceback."""


def fail(exc: BaseException) -> None:
    """Print an exception as one line (or a traceback with --debug) and exit non-zero."""
    if isinstance(exc, click.exceptions.Exit):
        sys.exit(exc.exit_code)
    if isinstance(exc, click.exceptions.Abort):
        err_console.print("aborted")
        sys.exit(130)
    if isinstance(exc, click.ClickException):
        exc.show()
        sys.exit(exc.exit_code)
    if DEBUG:
        traceback.print_exception(exc)
    else:
        msg = str(exc) or exc.__class__.__name__
        if not isinstance(exc, (UserError, ValueError, FileNotFoundError, FileExistsError, KeyError)):
            msg = f"{exc.__class__.__name__}: {msg}"
        err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        if not isinstance(exc, (UserError, ValueError, FileNotFoundError, FileExistsError, KeyError)):
            err_console.print("(run with --debug for the traceback)", style="dim")
    sys.exit(1)
