"""Evaluation commands: train-parser, train-classifier."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

from . import common


@contextmanager
def _progress_bar(description: str) -> Iterator:
    """A rich progress bar; yields a callback(step, total, loss)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=common.err_console, transient=False,
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
        raise common.UserError(f"{out} exists and is not a folder")
    if out.is_dir() and any((out / n).exists() for n in names):
        raise FileExistsError(f"{out} already holds a trained model ({', '.join(names)}); choose another --out")


def train_parser_cmd(
    data: Path = typer.Option(..., "--data", help="Prepared dataset folder (train and test splits)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/parser-<time>)."),
    steps: int = typer.Option(3000, "--steps", min=1, help="Training steps."),
    size: Optional[int] = typer.Option(None, "--size", help="Train/test at this square size (default: stored size)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Batch size."),
    lr: float = typer.Option(3e-3, "--lr", help="Peak learning rate (AdamW, one-cycle cosine)."),
    width: int = typer.Option(24, "--width", min=4, help="Base width of the compact U-Net."),
    seed: int = typer.Option(0, "--seed", help="Seed."),
    workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu / cuda (default: cuda when available)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for torch (default: torch's choice; 1 is often fastest on a busy small machine)."),
) -> None:
    """Train the compact face parser; reports test-split mIoU and pixel accuracy (the ceiling for generated images)."""
    from ..eval.parser import train_parser

    _set_threads(threads)
    out = out or _default_out("parser")
    _check_out(out, ("parser.safetensors", "parser.json"))
    with _progress_bar("train-parser") as cb:
        result = train_parser(
            data, out, steps=steps, size=size, batch_size=batch_size, lr=lr, width=width, seed=seed,
            workers=workers, device=device, progress=cb,
        )
    m = result["metrics"]
    common.console.print(
        f"test mIoU {m['miou']:.4f}, pixel accuracy {m['pixel_accuracy']:.4f} on {m['num_images']} images "
        f"({result['train']['seconds']:.0f} s training); saved {out / 'parser.safetensors'} and {out / 'parser.json'}",
        highlight=False,
    )


def train_classifier_cmd(
    data: Path = typer.Option(..., "--data", help="Prepared dataset folder with attributes.csv."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/classifier-<time>)."),
    steps: int = typer.Option(2000, "--steps", min=1, help="Training steps."),
    size: Optional[int] = typer.Option(None, "--size", help="Train/test at this square size (default: stored size)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Batch size."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (AdamW, one-cycle cosine)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Local torchvision resnet18-f37072fd.pth to start from (never downloaded)."),
    seed: int = typer.Option(0, "--seed", help="Seed."),
    workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu / cuda (default: cuda when available)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for torch (default: torch's choice; 1 is often fastest on a busy small machine)."),
) -> None:
    """Train the ResNet-18 attribute classifier (40 attributes, BCE); reports mean test accuracy."""
    from ..eval.classifier import train_classifier

    _set_threads(threads)
    out = out or _default_out("classifier")
    _check_out(out, ("classifier.safetensors", "classifier.json"))
    with _progress_bar("train-classifier") as cb:
        result = train_classifier(
            data, out, steps=steps, size=size, batch_size=batch_size, lr=lr, init=init, seed=seed,
            workers=workers, device=device, progress=cb,
        )
    m = result["metrics"]
    common.console.print(
        f"test mean attribute accuracy {m['mean_accuracy']:.4f} (majority baseline {m['majority_baseline']:.4f}) "
        f"on {m['num_images']} images; saved {out / 'classifier.safetensors'} and {out / 'classifier.json'}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("train-parser")(train_parser_cmd)
    app.command("train-classifier")(train_classifier_cmd)
