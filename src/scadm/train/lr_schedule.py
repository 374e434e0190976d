"""Learning-rate multipliers of the autoencoder and diffusion training: warm-up, then constant or decaying."""

from __future__ import annotations

import math


def warmup_factor(step: int, warmup_steps: int) -> float:
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


LR_DECAYS = ("none", "linear", "cosine")


def lr_factor(step: int, warmup_steps: int, max_steps: int, decay: str = "none") -> float:
    """The learning-rate multiplier at ``step`` (0-based): linear warm-up over ``warmup_steps``,
    then constant (``none``, LDM's recipe) or decaying to 0 at ``max_steps`` (``linear``, ``cosine``).
    A function of the step alone, so a resumed run follows the same schedule."""
    if decay not in LR_DECAYS:
        raise ValueError(f"training.lr_decay must be one of {', '.join(LR_DECAYS)}, got {decay!r}")
    f = warmup_factor(step, warmup_steps)
    if decay == "none" or step < warmup_steps:
        return f
    left = max(0.0, 1.0 - (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return f * (left if decay == "linear" else 0.5 * (1.0 - math.cos(math.pi * left)))
