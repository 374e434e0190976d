"""Training commands: train-autoencoder, train, train-parser, train-classifier."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

from .. import checks
from .common import UserError, console, err_console
from .options import DeviceOpt, InDir, InFile, Integer, ModelOpt, Number, OutDir, checked


def _recipe(value: str, name: str):
    """--config: the preset or file, loaded and every value checked while the command line is parsed."""
    from ..config import load_recipe

    return load_recipe(value)


ConfigOpt = typer.Option(..., "--config", "-c", callback=checked(_recipe),
                         help="Preset name (e.g. synthetic-64, paper-256) or YAML recipe.")
DataOpt = InDir(..., "--data", help="Dataset folder in the canonical layout.", what="dataset folder")
ResumeOpt = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint.")
DryRunOpt = typer.Option(False, "--dry-run", help="Print the resolved config and exit.")


def train_autoencoder_cmd(
    recipe: str = ConfigOpt,
    data: Path = DataOpt,
    out: Path = OutDir(..., "--out", help="Run folder (checkpoints, logs, autoencoder/)."),
    resume: bool = ResumeOpt,
    max_steps: Optional[int] = Integer(None, "--max-steps", help="Override autoencoder_training.max_steps.", lo=1),
    dry_run: bool = DryRunOpt,
) -> None:
    """Train the first stage (VQ or KL autoencoder) and report PSNR/SSIM on the test split (--config: its autoencoder sections)."""
    from ..train.autoencoder import train_autoencoder

    train_autoencoder(recipe.autoencoder, recipe.autoencoder_training, data, out,
                      image_size=tuple(recipe.model.image_size), resume=resume, max_steps=max_steps,
                      dry_run=dry_run, printer=console.print)


def train_cmd(
    recipe: str = ConfigOpt,
    data: Path = DataOpt,
    out: Path = OutDir(..., "--out", help="Run folder (checkpoints, samples, loss curve, model/)."),
    autoencoder: Optional[Path] = typer.Option(None, "--autoencoder", help="First-stage folder (diffusers format), or "
                                               "vq-f4 (fetched by `scadm fetch vq-f4`); default: the config's.",
                                               callback=checked(lambda v, n: checks.input_dir(checks.fetched(v, n), n,
                                                                                              "first-stage folder"))),
    resume: bool = ResumeOpt,
    max_steps: Optional[int] = Integer(None, "--max-steps", help="Override training.max_steps.", lo=1),
    cache_latents: Optional[bool] = typer.Option(None, "--cache-latents/--no-cache-latents", help="Encode the training set once."),
    dry_run: bool = DryRunOpt,
) -> None:
    """Train the latent diffusion model (UNet + condition encoder). Works under torchrun / accelerate launch."""
    from ..train.diffusion import train_diffusion

    train_diffusion(recipe, data, out, autoencoder=autoencoder, resume=resume, max_steps=max_steps,
                    cache_latents=cache_latents, dry_run=dry_run, printer=console.print)


def distill_cmd(
    data: Path = DataOpt,
    out: Path = OutDir(..., "--out", help="Run folder (checkpoints, samples, loss curve, model/: the student)."),
    model: Optional[Path] = ModelOpt,
    config: Optional[Path] = InFile(None, "--config", "-c", help="YAML of distillation settings (scadm.train.distill."
                                    "DistillConfig's fields); default: the built-in ones.", what="config file"),
    guidance_steps: Optional[int] = Integer(None, "--guidance-steps", help="Stage A steps (guidance distillation).", lo=0),
    consistency_steps: Optional[int] = Integer(None, "--consistency-steps", help="Stage B steps (consistency "
                                               "distillation).", lo=0),
    segments: Optional[int] = Integer(None, "--segments", help="The student's steps K (1 = plain LCM).", lo=1, hi=100),
    batch_size: Optional[int] = Integer(None, "--batch-size", help="Batch size per process.", lo=1, hi=4096),
    resume: bool = ResumeOpt,
    max_steps: Optional[int] = Integer(None, "--max-steps", help="Stop this run at this global step (continue later "
                                       "with --resume).", lo=1),
    threads: Optional[int] = Integer(None, "--threads", help="CPU threads for torch.", lo=1, hi=1024),
    dry_run: bool = DryRunOpt,
) -> None:
    """Distil a model into a few-step student (guidance folded in, then consistency). Works under torchrun / accelerate launch."""
    import yaml

    from ..train.distill import distill, read_distill_config

    _set_threads(threads)
    settings = yaml.safe_load(config.read_text()) if config is not None else {}
    if settings is not None and not isinstance(settings, dict):
        raise UserError(f"{config}: expected a mapping of DistillConfig fields")
    given = dict(guidance_steps=guidance_steps, consistency_steps=consistency_steps, segments=segments,
                 batch_size=batch_size)
    dc = read_distill_config({**(settings or {}), **{k: v for k, v in given.items() if v is not None}})
    distill(model, data, out, dc, resume=resume, max_steps=max_steps, dry_run=dry_run, printer=console.print)


@contextmanager
def _progress_bar(description: str) -> Iterator:
    """A rich progress bar; yields a callback(step, total, loss)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False,
    ) as bar:
        task = None

        def update(step: int, total: int, loss: float) -> None:
            nonlocal task
            if task is None:
                task = bar.add_task(description, total=total, loss="-")
            bar.update(task, completed=step, loss=f"{loss:.4f}")

        yield update


def _set_threads(threads: Optional[int]) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _default_out(kind: str) -> Path:
    return Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_out(out: Path, names: tuple[str, ...]) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    if out.is_dir() and any((out / n).exists() for n in names):
        raise FileExistsError(f"{out} already holds a trained model ({', '.join(names)}); choose another --out")


# the options the parser and the classifier share
_SizeOpt = Integer(None, "--size", help="Train/test at this square size (default: stored size).", lo=8, hi=4096)
_BatchOpt = Integer(32, "--batch-size", help="Batch size.", lo=1, hi=4096)
_SeedOpt = Integer(0, "--seed", help="Seed.", lo=0)
_WorkersOpt = Integer(0, "--workers", help="DataLoader worker processes.", lo=0, hi=256)
_ThreadsOpt = Integer(None, "--threads", help="CPU threads for torch (default: torch's choice; 1 is often fastest on a busy small machine).",
                      lo=1, hi=1024)


def _train_network(kind: str, out: Optional[Path], threads: Optional[int], train, **kwargs) -> tuple[dict, Path]:
    """Run `train(data..., out, progress=...)` for an evaluation network with a progress bar; -> (result, out)."""
    _set_threads(threads)
    out = out or _default_out(kind)
    _check_out(out, (f"{kind}.safetensors", f"{kind}.json"))
    with _progress_bar(f"train-{kind}") as cb:
        return train(out=out, progress=cb, **kwargs), out


def train_parser_cmd(
    data: Path = InDir(..., "--data", help="Prepared dataset folder (train and test splits).", what="dataset folder"),
    out: Optional[Path] = OutDir(None, "--out", help="Run folder (default runs/parser-<time>)."),
    steps: int = Integer(3000, "--steps", help="Training steps.", lo=1),
    size: Optional[int] = _SizeOpt, batch_size: int = _BatchOpt,
    lr: float = Number(3e-3, "--lr", help="Peak learning rate (AdamW, one-cycle cosine).", lo=1e-12, hi=10),
    width: int = Integer(24, "--width", help="Base width of the compact U-Net.", lo=4, hi=1024),
    seed: int = _SeedOpt, workers: int = _WorkersOpt, device: Optional[str] = DeviceOpt,
    threads: Optional[int] = _ThreadsOpt,
) -> None:
    """Train the compact face parser; reports test-split mIoU and pixel accuracy (the ceiling for generated images)."""
    from ..train.parser import train_parser

    result, out = _train_network("parser", out, threads, train_parser, data=data, steps=steps, size=size,
                                 batch_size=batch_size, lr=lr, width=width, seed=seed, workers=workers, device=device)
    m = result["metrics"]
    console.print(
        f"test mIoU {m['miou']:.4f}, pixel accuracy {m['pixel_accuracy']:.4f} on {m['num_images']} images "
        f"({result['train']['seconds']:.0f} s training); saved {out / 'parser.safetensors'} and {out / 'parser.json'}",
        highlight=False,
    )


def train_classifier_cmd(
    data: Path = InDir(..., "--data", help="Prepared dataset folder with attributes.csv.", what="dataset folder"),
    out: Optional[Path] = OutDir(None, "--out", help="Run folder (default runs/classifier-<time>)."),
    steps: int = Integer(2000, "--steps", help="Training steps.", lo=1),
    size: Optional[int] = _SizeOpt, batch_size: int = _BatchOpt,
    lr: float = Number(1e-3, "--lr", help="Peak learning rate (AdamW, one-cycle cosine).", lo=1e-12, hi=10),
    init: Optional[Path] = InFile(None, "--init", help="Local torchvision resnet18-f37072fd.pth to start from (never downloaded).",
                                  what="weight file"),
    seed: int = _SeedOpt, workers: int = _WorkersOpt, device: Optional[str] = DeviceOpt,
    threads: Optional[int] = _ThreadsOpt,
) -> None:
    """Train the ResNet-18 attribute classifier (40 attributes, BCE); reports mean test accuracy."""
    from ..train.classifier import train_classifier

    result, out = _train_network("classifier", out, threads, train_classifier, data=data, steps=steps, size=size,
                                 batch_size=batch_size, lr=lr, init=init, seed=seed, workers=workers, device=device)
    m = result["metrics"]
    console.print(
        f"test mean attribute accuracy {m['mean_accuracy']:.4f} (majority baseline {m['majority_baseline']:.4f}) "
        f"on {m['num_images']} images; saved {out / 'classifier.safetensors'} and {out / 'classifier.json'}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("train-autoencoder")(train_autoencoder_cmd)
    app.command("train")(train_cmd)
    app.command("distill")(distill_cmd)
    app.command("train-parser")(train_parser_cmd)
    app.command("train-classifier")(train_classifier_cmd)
