"""Training of the attribute classifier (``scadm train-classifier``); the network, its loading and
its scores are in :mod:`scadm.eval.classifier`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..data.dataset import FaceDataset
from ..eval.classifier import AttributeClassifier, evaluate_classifier, save_classifier
from .loop import fit, pick_device, shuffled_loader


def train_classifier(
    data: str | os.PathLike,
    out: str | os.PathLike,
    steps: int = 2000,
    size: int | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    init: str | os.PathLike | None = None,
    workers: int = 0,
    device: str | torch.device | None = None,
    eval_split: str = "test",
    progress: Callable[[int, int, float], None] | None = None,
) -> dict:
    """Train an :class:`AttributeClassifier` (BCE, AdamW, one-cycle cosine, flip augmentation) and
    score it on ``eval_split``. Writes ``classifier.safetensors`` + ``classifier.json`` to ``out``."""
    if steps < 1:
        raise ValueError("--steps must be at least 1")
    dev = pick_device(device)
    torch.manual_seed(seed)
    train_set = FaceDataset(data, "train", size=size, flip=True, with_attributes=True)
    if train_set.attribute_names is None:
        raise ValueError(f"{data}: no attributes.csv; the attribute classifier needs per-image attributes")
    test_set = FaceDataset(data, eval_split, size=size, flip=False, with_attributes=True)
    names = list(train_set.attribute_names)
    model = AttributeClassifier(len(names))
    model.attribute_names = tuple(names)
    if init is not None:
        model.load_torchvision(init)
    model.to(dev)
    loader = shuffled_loader(train_set, batch_size, workers, seed)

    def loss_fn(batch: dict) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model(batch["image"].to(dev)), batch["attributes"].to(dev).float())

    loss_ema, seconds = fit(model, loader, loss_fn, steps, lr, weight_decay, progress)
    scores = evaluate_classifier(model, DataLoader(test_set, batch_size=64, num_workers=workers), dev)
    info = {
        "kind": "attribute-classifier",
        "config": model.config(),
        "attribute_names": names,
        "data": str(Path(data)),
        "size": list(train_set.size) if train_set.size else None,
        "train": {
            "steps": steps, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "seed": seed,
            "init": str(init) if init else None, "final_loss_ema": loss_ema, "seconds": round(seconds, 2),
            "device": str(dev), "num_train": len(train_set),
        },
        "metrics": {"split": eval_split, "num_images": len(test_set), **scores},
    }
    save_classifier(model, out, info)
    return info
