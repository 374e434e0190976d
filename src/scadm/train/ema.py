"""Exponential moving average of a model's parameters."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EMA:
    """Exponential moving average of a module's parameters (LDM's LitEma, with its warm-up)."""

    def __init__(self, module: nn.Module, decay: float = 0.9999, warmup: bool = True) -> None:
        self.decay, self.warmup = decay, warmup
        self.num_updates = 0
        self.shadow = {k: p.detach().clone().float() for k, p in module.named_parameters() if p.requires_grad}

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.num_updates += 1
        d = self.current_decay()
        for k, p in module.named_parameters():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(p.detach().float(), alpha=1 - d)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        for k, p in module.named_parameters():
            if k in self.shadow:
                p.copy_(self.shadow[k].to(p.dtype))

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, sd: dict[str, Tensor], num_updates: int) -> None:
        missing = set(self.shadow) - set(sd)
        if missing:
            raise ValueError(f"EMA checkpoint lacks {len(missing)} parameters (e.g. {sorted(missing)[:2]})")
        self.shadow = {k: sd[k].float().clone() for k in self.shadow}
        self.num_updates = num_updates
