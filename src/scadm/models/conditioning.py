"""Condition encoders: raw inputs (mask, reference image, attributes) -> :class:`~scadm.conditions.Conditions`.

Each conditioning scheme is a strategy with the same two methods, so the UNet, the trainer
and the samplers never depend on which one a model uses:

- ``forward(mask, image=None, attributes=None)``: the conditions for a batch;
- ``null(mask, mode)``: the null condition of classifier-free guidance.

Attributes are *signed*: +1 present, -1 absent, 0 unknown. The null attributes (condition
dropout, guidance) are all zeros, which no real attribute vector is.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..conditions import Conditions
from ..config import AttributeEncoderConfig, ConditioningConfig, MaskEncoderConfig
from ..nn.resnet import ResNet18
from .style_encoder import MultiResolutionStyleEncoder


def signed_attributes(attributes: Tensor) -> Tensor:
    """0/1 attribute vectors -> -1/+1 (the encoders' input; 0 is reserved for 'unknown / dropped')."""
    return attributes.float() * 2 - 1


# ---------------------------------------------------------------------------
# encoders
# ---------------------------------------------------------------------------
class AttributeEncoder(nn.Module):
    """40 signed attributes -> MLP -> one token (B, 1, dim)."""

    def __init__(self, cfg: AttributeEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mlp = nn.Sequential(nn.Linear(cfg.num_attributes, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.dim))

    def forward(self, attributes: Tensor) -> Tensor:
        if attributes.shape[-1] != self.cfg.num_attributes:
            raise ValueError(f"got {attributes.shape[-1]} attributes; the model expects {self.cfg.num_attributes}")
        return self.mlp(attributes.float())[:, None]


class MaskTokenEncoder(nn.Module):
    """One-hot mask without background (C - 1 channels) -> ResNet-18 -> tokens.

    ``m``: the globally pooled feature, 1 token; ``m_np``: the last feature map, (H/32)(W/32)
    tokens (64 at 256 px), row-major.
    """

    def __init__(self, cfg: MaskEncoderConfig, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.resnet = ResNet18(in_channels=num_classes - 1, num_classes=None)
        self.proj = nn.Identity() if cfg.dim == 512 else nn.Linear(512, cfg.dim)

    def forward(self, mask: Tensor) -> Tensor:
        x = mask[:, 1:]  # background excluded
        if self.cfg.variant == "m":
            tokens = self.resnet.forward_pooled(x)[:, None]  # (B, 1, 512)
        else:
            tokens = self.resnet.forward_spatial(x).flatten(2).transpose(1, 2)  # (B, h*w, 512)
        return self.proj(tokens)


class ConditionEncoder(nn.Module):
    """Base class of the conditioning strategies."""

    needs_attributes = False

    def forward(self, mask: Tensor, image: Tensor | None = None,
                attributes: Tensor | None = None) -> Conditions:  # pragma: no cover - interface
        raise NotImplementedError

    def null(self, mask: Tensor, mode: str = "style") -> Conditions:  # pragma: no cover - interface
        raise NotImplementedError


def _null_attributes(mask: Tensor, n: int) -> Tensor:
    return mask.new_zeros(mask.shape[0], n)


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

    def forward(self, mask: Tensor, image: Tensor | None = None, attributes: Tensor | None = None) -> Conditions:
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

    def forward(self, mask: Tensor, image: Tensor | None = None, attributes: Tensor | None = None) -> Conditions:
        return Conditions(mask=mask, tokens=None)

    def null(self, mask: Tensor, mode: str = "style") -> Conditions:
        return Conditions(mask=torch.zeros_like(mask) if mode == "full" else mask, tokens=None)


class StyleAttributeConditioning(StyleConditioning):
    """SCA-DM + attributes: the masked style tokens, then one attribute token that every pixel sees."""

    needs_attributes = True

    def __init__(self, cfg: ConditioningConfig) -> None:
        super().__init__(cfg)
        self.attribute_encoder = AttributeEncoder(cfg.attributes)

    def forward(self, mask: Tensor, image: Tensor | None = None, attributes: Tensor | None = None) -> Conditions:
        if attributes is None:
            attributes = _null_attributes(mask, self.attribute_encoder.cfg.num_attributes)
        tokens = torch.cat([self.tokens(mask, image), self.attribute_encoder(attributes)], dim=1)
        return Conditions(mask=mask, tokens=tokens)

    def null(self, mask: Tensor, mode: str = "style") -> Conditions:
        if mode not in ("style", "full"):
            raise ValueError(f"unknown null condition {mode!r}; expected 'style' or 'full'")
        return self.forward(torch.zeros_like(mask) if mode == "full" else mask, None, None)


class TokenConditioning(ConditionEncoder):
    """The multi-conditioning paper's encoders: attributes (`a`), mask tokens (`m`, `m_np`) or both (`mc`),
    concatenated along the token axis (attribute token first) for plain cross-attention."""

    def __init__(self, cfg: ConditioningConfig, num_classes: int) -> None:
        super().__init__()
        self.attribute_encoder = AttributeEncoder(cfg.attributes) if cfg.type in ("attributes", "multi") else None
        self.mask_encoder = MaskTokenEncoder(cfg.mask_encoder, num_classes) if cfg.type in ("mask_tokens", "multi") else None
        self.needs_attributes = self.attribute_encoder is not None

    def forward(self, mask: Tensor, image: Tensor | None = None, attributes: Tensor | None = None) -> Conditions:
        tokens = []
        if self.attribute_encoder is not None:
            if attributes is None:
                attributes = _null_attributes(mask, self.attribute_encoder.cfg.num_attributes)
            tokens.append(self.attribute_encoder(attributes))
        if self.mask_encoder is not None:
            tokens.append(self.mask_encoder(mask))
        return Conditions(mask=mask, tokens=torch.cat(tokens, dim=1))

    def null(self, mask: Tensor, mode: str = "style") -> Conditions:
        """Null attributes and, for mask tokens, a zero mask (what condition dropout teaches)."""
        zero_mask = torch.zeros_like(mask) if (self.mask_encoder is not None or mode == "full") else mask
        return self.forward(zero_mask, None, None)


def build_conditioning(cfg: ConditioningConfig, num_classes: int = 19) -> ConditionEncoder:
    if cfg.type == "style":
        return StyleConditioning(cfg)
    if cfg.type == "style+attributes":
        return StyleAttributeConditioning(cfg)
    if cfg.type in ("attributes", "mask_tokens", "multi"):
        return TokenConditioning(cfg, num_classes)
    if cfg.type == "none":
        return MaskOnlyConditioning()
    raise ValueError(f"unknown conditioning type {cfg.type!r}")
