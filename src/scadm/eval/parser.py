"""Scores of a face parser (mIoU, pixel accuracy, per-class IoU); the parsers themselves are in
:mod:`scadm.models.face_parser`."""

from __future__ import annotations

import torch
from torch import nn

from .metrics import ConfusionMatrix

__all__ = ["evaluate_parser"]


@torch.no_grad()
def evaluate_parser(
    parser: nn.Module, loader, num_classes: int, device: torch.device | str = "cpu"
) -> dict:
    """mIoU / pixel accuracy / per-class IoU of ``parser.parse`` over a loader of FaceDataset items."""
    cm = ConfusionMatrix(num_classes)
    was_training = parser.training
    parser.eval()
    for batch in loader:
        pred = parser.parse(batch["image"].to(device))
        cm.update(pred.cpu(), batch["label"])
    parser.train(was_training)
    return cm.scores()
