"""Training of the compact face parser (``scadm train-parser``); the network, its loading and its
scores are in :mod:`scadm.models.face_parser` and :mod:`scadm.eval.parser`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..data.dataset import FaceDataset
from ..eval.parser import evaluate_parser
from ..models.face_parser import CompactParser, dataset_domain, save_compact_parser
from .loop import fit, pick_device, shuffled_loader


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice, averaged over the classes present in the batch's targets."""
    probs = logits.float().softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    dice = 1 - (2 * inter + smooth) / (denom + smooth)
    present = onehot.sum(dim=(0, 2, 3)) > 0
    return dice[present].mean()


def train_parser(
    data: str | os.PathLike,
    out: str | os.PathLike,
    steps: int = 3000,
    size: int | None = None,
    batch_size: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    width: int = 24,
    seed: int = 0,
    workers: int = 0,
    device: str | torch.device | None = None,
    eval_split: str = "test",
    progress: Callable[[int, int, float], None] | None = None,
    dice_weight: float = 1.0,
) -> dict:
    """Train a :class:`CompactParser` on the train split of a prepared dataset and score it on ``eval_split``.

    Cross-entropy plus a soft Dice loss (``dice_weight``; it makes small parts such as the nose,
    mouth or earrings learn early, which is what mIoU rewards), AdamW with a one-cycle cosine schedule, flip augmentation (left/right classes
    swapped by FaceDataset). Writes ``parser.safetensors`` and ``parser.json`` to ``out`` and
    returns the JSON content. ``progress(step, steps, loss)`` is called after every step.
    """
    if steps < 1:
        raise ValueError("--steps must be at least 1")
    dev = pick_device(device)
    torch.manual_seed(seed)
    train_set = FaceDataset(data, "train", size=size, flip=True, with_attributes=False)
    test_set = FaceDataset(data, eval_split, size=size, flip=False, with_attributes=False)
    num_classes = train_set.num_classes
    loader = shuffled_loader(train_set, batch_size, workers, seed)
    model = CompactParser(num_classes, width).to(dev)

    def loss_fn(batch: dict) -> torch.Tensor:
        logits = model(batch["image"].to(dev))
        target = batch["label"].to(dev)
        return F.cross_entropy(logits, target) + dice_weight * soft_dice_loss(logits, target)

    loss_ema, train_seconds = fit(model, loader, loss_fn, steps, lr, weight_decay, progress)
    test_loader = DataLoader(test_set, batch_size=64, shuffle=False, num_workers=workers)
    scores = evaluate_parser(model, test_loader, num_classes, dev)
    info = {
        "label_set": train_set.label_set.to_dict(),
        "data": str(Path(data)),
        "domain": dataset_domain(data),
        "size": list(train_set.size) if train_set.size else None,
        "train": {
            "steps": steps, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "seed": seed,
            "dice_weight": dice_weight, "final_loss_ema": loss_ema, "seconds": round(train_seconds, 2), "device": str(dev),
            "num_train": len(train_set), "parameters": sum(p.numel() for p in model.parameters()),
        },
        "metrics": {"split": eval_split, "num_images": len(test_set), **scores},
    }
    save_compact_parser(model.cpu(), out, info)
    return {"kind": "compact-parser", "config": model.architecture(), **info}
