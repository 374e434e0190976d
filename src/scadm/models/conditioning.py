"""Condition encoders: raw inputs (mask, reference image, ...) -> :class:`~scadm.conditions.Conditions`.

Each conditioning scheme is a strategy with the same two methods, so the UNet, the trainer
and the samplers never depend on which one a model uses:

- ``forward(mask, image=None, ...)``: the conditions for a batch;
- ``null(mask, mode)``: the null condition of classifier-free guidance.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..conditions import Conditions
from ..config import ConditioningConfig
from .style_encoder import MultiResolutionStyleEncoder


class ConditionEncoder(nn.Module):
    """Base class of the conditioning strategies."""

    def forward(self, mask: Tensor, image: Tensor | None = None) -> Conditions:  # pragma: no cover - interface
        raise NotImplementedError

    def null(self, mask: Tensor, mode: str = "style") -> Conditions:  # pragma: no cover - interface
        raise NotImplementedError


class StyleConditioning(ConditionEncoder):
    """SCA-DM: SPADE sees the mask, cross-attention sees the style tokens E_s(x, M_x).

    ``image=None`` means the empty style: E_s applied to an all-zero image with the true mask
    (what style dropout teaches during training).
    """

    def __init__(self, cfg: ConditioningConfig) -> None:
        super().__init__()
        assert cfg.style_encoder is not None
        self.style_encoder = MultiResolutionStyleEncoder(cfg.style_encoder)

    def tokens(self, mask: Tensor, image: Tensor | None) -> Tensor:
        if image is None:
            image = mask.new_zeros(mask.shape[0], self.style_encoder.cfg.in_channels, *mask.shape[-2:])
        return self.style_encoder(image, mask)

    def forward(self, mask: Tensor, image: Tensor | None = None) -> Conditions:
        return Conditions(mask=mask, tokens=self.tokens(mask, image))

    def null(self, mask: Tensor, mode: str = "style") -> Conditions:
        """'style': empty style with the same mask (default); 'full': empty style and a zero mask (Eq. 4 as written)."""
        if mode == "style":
            return self.forward(mask, None)
        if mode == "full":
            return self.forward(torch.zeros_like(mask), None)
        raise ValueError(f"unknown null condition {mode!r}; expected 'style' or 'full'")


class MaskOnlyConditioning(ConditionEncoder):
    """No tokens: SPADE-only (SDM-like) or, with no SPADE either, an unconditional model."""

    def forward(self, mask: Tensor, image: Tensor | None = None) -> Conditions:
        return Conditions(mask=mask, tokens=None)

    def null(self, mask: Tensor, mode: str = "style") -> Conditions:
        return Conditions(mask=torch.zeros_like(mask) if mode == "full" else mask, tokens=None)


def build_conditioning(cfg: ConditioningConfig) -> ConditionEncoder:
    if cfg.type == "style":
        return StyleConditioning(cfg)
    if cfg.type == "none":
        return MaskOnlyConditioning()
    raise ValueError(f"unknown conditioning type {cfg.type!r}")
