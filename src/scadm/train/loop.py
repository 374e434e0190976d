"""The small supervised loop that trains the evaluation networks (``scadm train-parser``,
``scadm train-classifier``): a shuffled loader cycled for a fixed number of steps, AdamW with a
one-cycle cosine schedule, a running loss for the progress callback.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


def pick_device(device: str | torch.device | None) -> torch.device:
    """``device`` as given, else cuda when available, else cpu."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def shuffled_loader(dataset: Dataset, batch_size: int, workers: int, seed: int) -> DataLoader:
    """Shuffled batches in an order drawn from ``seed``; a split smaller than one batch is one batch."""
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=min(batch_size, len(dataset)), shuffle=True, drop_last=len(dataset) >= batch_size,
        num_workers=workers, generator=g, persistent_workers=workers > 0,
    )


def _cycle(loader: DataLoader) -> Iterator:
    while True:
        yield from loader


def fit(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: Callable[[dict], torch.Tensor],
    steps: int,
    lr: float,
    weight_decay: float,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[float, float]:
    """Train ``model`` for ``steps`` steps on ``loss_fn(batch)``, cycling ``loader``: AdamW, one-cycle
    cosine schedule peaking at ``lr`` after 10% of the steps. ``progress(step, steps, loss)`` is called
    after every step with an exponential moving average of the loss. Raises ValueError when the loss
    stops being finite. Returns (that average at the end, seconds spent)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    start = time.time()
    it = _cycle(loader)
    loss_ema = None
    model.train()
    for step in range(1, steps + 1):
        loss = loss_fn(next(it))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        v = loss.item()
        if not math.isfinite(v):
            raise ValueError(f"training diverged at step {step} (loss {v}); lower --lr")
        loss_ema = v if loss_ema is None else 0.95 * loss_ema + 0.05 * v
        if progress is not None:
            progress(step, steps, loss_ema)
    return loss_ema, time.time() - start
