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
    from . import data, edit, eval_cmds, model, train

    for module in (model, data, train, edit, eval_cmds):
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    args = sys.argv[1:] if argv is None else argv
    common.DEBUG = "--debug" in args
    try:
        result = app(args=args, prog_name="scadm", standalone_mode=False)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - click's usage errors and Exit come through here too
        common.fail(exc)
    else:
        if isinstance(result, int) and result:
            sys.exit(result)
