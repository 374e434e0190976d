"""The semantic mask at each feature size: the one place a one-hot mask is resized.

A network that needs the mask at several feature sizes (the UNet: SPADE and the masked
cross-attention at every level; the style encoder: its masked average pooling at every
decoder level) builds one :class:`MaskPyramid` from the full-resolution one-hot mask and asks
it for each size; each size is resized once, with the network's ``mask_resize`` mode. The
layers themselves never resize: they take the mask at their own size and raise on any other
(:func:`check_mask_size`), so a resize mode can never be bypassed silently.

Modes (``mask_resize`` in the UNet and style-encoder configs):

- ``nearest`` (the released code) keeps the mask one-hot: each pixel takes the class at one
  sampled point, so a part thinner than the stride can vanish (at 64 px, the mouth is lost in
  a third of the faces at 16x16);
- ``area`` averages: each pixel holds the fraction of it each class covers (the channels still
  sum to 1), so every part keeps its weight.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["MASK_RESIZE", "MaskPyramid", "check_mask_size", "resize_mask"]

#: how a full-resolution one-hot mask is brought to a feature map's size
MASK_RESIZE = ("nearest", "area")


def resize_mask(mask: Tensor, size: tuple[int, int], mode: str = "nearest") -> Tensor:
    """A (B, C, H, W) one-hot mask at `size` (returned as it is when it already has that size)."""
    size = tuple(int(s) for s in size)
    if tuple(mask.shape[-2:]) == size:
        return mask
    if mode not in MASK_RESIZE:
        raise ValueError(f"mask resize mode must be one of {', '.join(MASK_RESIZE)}, not {mode!r}")
    return F.interpolate(mask, size=size, mode=mode)


class MaskPyramid:
    """A one-hot mask (B, C, H, W) and its resizes to feature sizes, each computed once."""

    def __init__(self, mask: Tensor, mode: str = "nearest") -> None:
        self.mask = mask
        self.mode = mode
        self._sizes: dict[tuple[int, int], Tensor] = {}

    def at(self, size: tuple[int, int]) -> Tensor:
        """The mask at `size` (H, W)."""
        size = (int(size[0]), int(size[1]))
        if size not in self._sizes:
            self._sizes[size] = resize_mask(self.mask, size, self.mode)
        return self._sizes[size]


def check_mask_size(mask: Tensor, size: tuple[int, int], layer: str) -> Tensor:
    """`mask` unchanged, or a clear error when it is not at the feature size `size`."""
    if tuple(mask.shape[-2:]) != tuple(size):
        raise ValueError(
            f"{layer} got a mask of {tuple(mask.shape[-2:])} for features of {tuple(size)}: masks reach the "
            "layers at their own size (resize with scadm.nn.masks.MaskPyramid)"
        )
    return mask
