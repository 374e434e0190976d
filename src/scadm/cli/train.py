"""Training commands: train-autoencoder, train."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import console


def train_autoencoder_cmd(
    config: str = typer.Option(..., "--config", "-c", help="Preset name or YAML recipe (its autoencoder sections are used)."),
    data: Path = typer.Option(..., "--data", help="Dataset folder in the canonical layout."),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, logs, autoencoder/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Override autoencoder_training.max_steps."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit."),
) -> None:
    """Train the first stage (VQ or KL autoencoder) and report PSNR/SSIM on the test split."""
    from ..config import load_recipe
    from ..train.autoencoder import train_autoencoder

    recipe = load_recipe(config)
    train_autoencoder(recipe.autoencoder, recipe.autoencoder_training, data, out,
                      image_size=tuple(recipe.model.image_size), resume=resume, max_steps=max_steps,
                      dry_run=dry_run, printer=console.print)


def train_cmd(
    config: str = typer.Option(..., "--config", "-c", help="Preset name (e.g. synthetic-64, paper-256) or YAML recipe."),
    data: Path = typer.Option(..., "--data", help="Dataset folder in the canonical layout."),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, samples, loss curve, model/)."),
    autoencoder: Optional[Path] = typer.Option(None, "--autoencoder", help="First-stage folder (diffusers format); default: the config's."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Override training.max_steps."),
    cache_latents: Optional[bool] = typer.Option(None, "--cache-latents/--no-cache-latents", help="Encode the training set once."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit."),
) -> None:
    """Train the latent diffusion model (UNet + condition encoder). Works under torchrun / accelerate launch."""
    from ..config import load_recipe
    from ..train.diffusion import train_diffusion

    recipe = load_recipe(config)
    train_diffusion(recipe, data, out, autoencoder=autoencoder, resume=resume, max_steps=max_steps,
                    cache_latents=cache_latents, dry_run=dry_run, printer=console.print)


def register(app: typer.Typer) -> None:
    app.command("train-autoencoder")(train_autoencoder_cmd)
    app.command("train")(train_cmd)
