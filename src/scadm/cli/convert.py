"""Import commands: `scadm convert sca-dm`, `scadm convert vq-f4` (foreign checkpoints -> scadm folders)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import console
from .options import Choice

convert_app = typer.Typer(
    help="Import the SCA-DM authors' checkpoint or LDM's VQ-f4 first stage (nothing is downloaded or executed).",
    no_args_is_help=True,
)

_CONFIG_HELP = "The architecture to expect: a preset name or a YAML file (default paper-256, the released model)."


def _print(report) -> None:
    for line in report.lines():
        console.print(line, highlight=False)


@convert_app.command("sca-dm")
def sca_dm(
    ckpt: Path = typer.Argument(..., help="The authors' Lightning checkpoint (last.ckpt, epoch=000235.ckpt)."),
    out: Path = typer.Argument(..., help="New model folder to write (must not exist, or be empty)."),
    weights: str = Choice("ema", "--weights", options=("ema", "raw"),
                          help="ema: the UNet's EMA copy (the FID script); raw: the trained weights (the gradio demo)."),
    first_stage: Optional[Path] = typer.Option(
        None, "--first-stage", help="LDM's vq-f4 model.ckpt or a diffusers VQModel folder (default: the "
                                    "checkpoint's own first_stage_model.*)."),
    config: str = typer.Option("paper-256", "--config", "-c", help=_CONFIG_HELP),
) -> None:
    """The authors' SCA-DM checkpoint -> a scadm model folder (sampling defaults: their FID script's)."""
    from ..convert import convert_scadm

    with console.status(f"converting {ckpt}"):
        report = convert_scadm(ckpt, out, weights=weights, first_stage=first_stage, config=config)
    _print(report)
    console.print(f"use it with --model {out}", highlight=False)


@convert_app.command("vq-f4")
def vq_f4(
    ckpt: Path = typer.Argument(..., help="LDM's models/first_stage_models/vq-f4/model.ckpt."),
    out: Path = typer.Argument(..., help="New diffusers VQModel folder to write (must not exist, or be empty)."),
    config: str = typer.Option("paper-256", "--config", "-c", help=_CONFIG_HELP + " Its autoencoder section is expected."),
) -> None:
    """LDM's VQ-f4 (taming layout) -> a diffusers VQModel folder (--first-stage, --autoencoder)."""
    from ..convert import convert_vq

    with console.status(f"converting {ckpt}"):
        report = convert_vq(ckpt, out, config=config)
    _print(report)


def register(app: typer.Typer) -> None:
    app.add_typer(convert_app, name="convert")
