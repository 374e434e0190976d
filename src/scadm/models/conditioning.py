"""Condition encoders: raw inputs (mask, reference image, attributes) -> :class:`~scadm.conditions.Conditions`.

One :class:`ConditionEncoder` serves every conditioning mode: it builds the encoders of the
mode's components (style encoder, attribute MLP, mask-token ResNet) and concatenates their
tokens, so the UNet, the trainer and the samplers never depend on which mode a model uses.

Attributes are *signed*: +1 present, -1 absent, 0 unknown. The null attributes (condition
dropout, guidance) are all zeros, which no real attribute vector is.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from ..conditioning_modes import ConditioningMode, get_mode
from ..conditions import ConditionInputs, Conditions
from ..config import AttributeEncoderConfig, ConditioningConfig, MaskEncoderConfig, from_dict, to_dict
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


# ---------------------------------------------------------------------------
# the condition encoder of every mode
# ---------------------------------------------------------------------------
def _style_tokens(enc: MultiResolutionStyleEncoder, mask: Tensor, image: Tensor | None, attributes: Tensor | None) -> Tensor:
    if image is None:  # the empty style
        image = mask.new_zeros(mask.shape[0], enc.cfg.in_channels, *mask.shape[-2:])
    return enc(image, mask)


def _attribute_tokens(enc: AttributeEncoder, mask: Tensor, image: Tensor | None, attributes: Tensor | None) -> Tensor:
    if attributes is None:  # the null attributes
        attributes = mask.new_zeros(mask.shape[0], enc.cfg.num_attributes)
    return enc(attributes)


def _mask_tokens(enc: MaskTokenEncoder, mask: Tensor, image: Tensor | None, attributes: Tensor | None) -> Tensor:
    return enc(mask)


class _ComponentModule(NamedTuple):
    name: str  # the module's attribute = its weight keys (conditioner.style_encoder.* ...): saved models load unchanged
    build: Callable[[ConditioningConfig, int], nn.Module]
    tokens: Callable[..., Tensor]  # (module, mask, image, attributes) -> (B, N, D)


#: a component's config section -> its encoder (see scadm.conditioning_modes.COMPONENTS)
_COMPONENT_MODULES: dict[str, _ComponentModule] = {
    "style_encoder": _ComponentModule("style_encoder", lambda c, n: MultiResolutionStyleEncoder(c.style_encoder), _style_tokens),
    "attributes": _ComponentModule("attribute_encoder", lambda c, n: AttributeEncoder(c.attributes), _attribute_tokens),
    "mask_encoder": _ComponentModule("mask_encoder", lambda c, n: MaskTokenEncoder(c.mask_encoder, n), _mask_tokens),
}


class ConditionEncoder(ModelMixin, ConfigMixin):
    """Raw inputs -> Conditions for any registered conditioning mode (see :mod:`scadm.conditioning_modes`).

    The mode's components, in order, each give tokens; they are concatenated along the token
    axis. SPADE and the masked attention see the mask itself.

    - ``forward(mask, image=None, attributes=None)``: the conditions of a batch. ``image=None`` is
      the empty style (the style encoder on an all-zero image with the true mask, what style
      dropout teaches); ``attributes=None`` are the null attributes (all zeros).
    - ``null(mask, null_condition)``: the null condition of classifier-free guidance, the encoder
      applied to the true or a zero mask (as the mode says), no image and no attributes; for the
      released "zero" null, all-zero tokens of the same shape and a zero mask.

    A diffusers model: its config is the :class:`~scadm.config.ConditioningConfig`, ``type`` and
    each section as ``<section>_config`` (None where the mode does not use it; the names differ
    from the encoders' own, which are their weights' keys), and the label set's size ``num_classes``.
    """

    @register_to_config
    def __init__(self, type: str = "style", style_encoder_config: dict | None = None,  # noqa: A002 - the config's key
                 attributes_config: dict | None = None, mask_encoder_config: dict | None = None,
                 num_classes: int = 19) -> None:
        super().__init__()
        cfg = from_dict(ConditioningConfig, {"type": type, "style_encoder": style_encoder_config,
                                             "attributes": attributes_config, "mask_encoder": mask_encoder_config})
        self.cfg = cfg
        # where the encoder lives, also for a mode without encoders (diffusers reads a model's device and dtype)
        self.register_buffer("anchor", torch.zeros(0), persistent=False)
        self.mode: ConditioningMode = get_mode(cfg.type)
        self._components = [_COMPONENT_MODULES[section] for section in self.mode.components]
        for comp in self._components:
            setattr(self, comp.name, comp.build(cfg, num_classes))

    @classmethod
    def from_cfg(cls, cfg: ConditioningConfig, num_classes: int = 19) -> "ConditionEncoder":
        return cls(**{k if k == "type" else f"{k}_config": v for k, v in to_dict(cfg).items()}, num_classes=num_classes)

    def forward(self, mask: Tensor, image: Tensor | None = None, attributes: Tensor | None = None) -> Conditions:
        dtype = self.anchor.dtype  # inputs in the encoder's own dtype (a bf16 pipeline's)
        mask, image = mask.to(dtype), None if image is None else image.to(dtype)
        attributes = None if attributes is None else attributes.to(dtype)
        tokens = [comp.tokens(getattr(self, comp.name), mask, image, attributes) for comp in self._components]
        return Conditions(mask=mask, tokens=torch.cat(tokens, dim=1) if tokens else None)

    def encode(self, inputs: ConditionInputs) -> Conditions:
        """The conditions of a :class:`ConditionInputs` bundle (what training passes)."""
        return self(inputs.mask, inputs.image, inputs.attributes)

    def null(self, mask: Tensor, null_condition: str = "style") -> Conditions:
        keep = self.mode.null_keeps_mask(null_condition)
        null = self(mask if keep else torch.zeros_like(mask), None, None)
        if self.mode.null_zeroes_tokens(null_condition) and null.tokens is not None:
            # the released scripts' uc: zeros, not the encoder's output for any input
            null = Conditions(mask=null.mask, tokens=torch.zeros_like(null.tokens))
        return null
