"""The `scadm` command. One module per family of subcommands; each has `register(app)`.

Errors that users can fix (bad paths, bad values) are printed as one line, with exit code
1 and no traceback; `scadm --debug ...` shows the traceback.
"""

from __future__ import annotations

import sys

import typer

from . import common

app = typer.Typer(
    name="scadm",
    help="Controllable face synthesis and editing with semantic latent diffusion (SCA-DM).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    common.DEBUG = debug


def _register_all() -> None:
    from . import convert, data, edit, eval_cmds, fetch, model, parse, train, web

    for module in (model, fetch, data, train, edit, parse, eval_cmds, convert, web):
        module.register(app)


_register_all()


def _command_words(args: list[str]) -> str:
    """'scadm edit swap' for ['edit', 'swap', '--target', ...]: what was being done."""
    words = []
    for a in args:
        if a.startswith("-"):
            if words:
                break
            continue
        words.append(a)
        if len(words) == 2:
            break
    return " ".join(["scadm", *words])


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    args = sys.argv[1:] if argv is None else argv
    common.DEBUG = "--debug" in args
    common.show_warnings_as_lines()
    try:
        result = app(args=args, prog_name="scadm", standalone_mode=False)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - usage errors, Exit and every failure come through here
        common.fail(exc, _command_words(args))
    else:
        if isinstance(result, int) and result:
            sys.exit(result)
