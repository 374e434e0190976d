"""Multi-resolution style encoder E_s (SCA-DM paper, Sec. 3.2, Eq. 5).

An RGB image (pixel space, [-1, 1]) and its one-hot mask give one style vector per class and
per level: S in R^{C x L x D}. The network is a U-Net of *grouped* convolutions (groups = C):
in the encoder the channels of class j only ever mix with channels of class j; in the decoder
that holds only for the per-class skip join (see below)::

    conv_in       3x3 conv 3 -> C*b, GroupNorm(C), ReLU                 (full resolution)
    down_i        3x3 stride-2 conv, groups=C, C*b*2^(i-1) -> C*b*2^i, GroupNorm(C), ReLU
    up_1          bilinear x2, 3x3 conv groups=C, halves the channels
    up_k (k > 1)  join(up_{k-1}, skip), bilinear x2, 3x3 conv groups=C, halves the channels
    style_k       per class j: masked average pooling of its G_k channels (Eq. 5), grouped 1x1
                  conv G_k -> D, Tanh; the mask is resized to the level's size by
                  ``mask_resize`` (nearest as released, or area: an area-weighted average)
    pixel level   (``pixel_level``, not in the released code) one more, finest level: per class j,
                  the masked mean of the input pixels (3 values), 1x1 conv 3 -> D, Tanh

The released encoder (b = 4, 6 downs, L = 5 levels at 8..128 px, D = 256, 19 classes) is
the default config and has 18.07 M parameters.

The skip join (:attr:`StyleEncoderConfig.skip_join`):
- ``block`` (released code): ``cat(decoder, skip)``, all decoder channels then all skip channels.
  Group g of the next grouped convolution reads channels [g*2G, (g+1)*2G) of that block, i.e. the
  decoder's classes 2g and 2g+1 (first half of the groups) or skip classes (second half): the
  classes mix in the decoder, and only the masked pooling makes a token class-specific.
- ``per_class``: class j's decoder channels then its skip channels, side by side, so group j
  reads only class j (the paper's "channels of class j mix only with class j"). The bundled
  synthetic-64 model was trained with it.
With ``block`` the decoder's convolutions also run in NCHW, as the released code's do, so the
tokens match it to float32 rounding (see ``styles``).
The two compute different functions with the same weights, and neither can be rewritten as the
other by permuting weights (a group of one reads channels the other splits across two groups).

Token layouts (:attr:`StyleEncoderConfig.layout`):
- ``concat`` (released code): C tokens of size L*D, the levels concatenated coarse to fine;
  token index = class index.
- ``per_scale`` (paper text): C*L tokens of size D, class-major (token c*L + l is class c,
  level l); with masked attention a pixel attends over its own class's L tokens.

Absent classes: their mask is empty, masked pooling gives 0, and the token is tanh(bias) of
the 1x1 projection, a constant learnt vector. Masked attention never lets a pixel see it
(no pixel has that class), so it only matters under plain cross-attention.

The "empty style" (noise-based generation, style dropout) is the encoder applied to an
all-zero image with the true mask: what training with style dropout teaches.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import StyleEncoderConfig
from ..nn.masks import MaskPyramid, check_mask_size
from ..nn.resblocks import upsample


def _conv_block(c_in: int, c_out: int, groups: int, num_classes: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, groups=groups),
        nn.GroupNorm(num_classes, c_out),
        nn.ReLU(),
    )


def _cat_per_class(a: Tensor, b: Tensor, num_classes: int) -> Tensor:
    """Concatenate two class-grouped feature maps so each class's channels stay contiguous (``per_class``)."""
    n, _, h, w = a.shape
    a = a.reshape(n, num_classes, -1, h, w)
    b = b.reshape(n, num_classes, -1, h, w)
    return torch.cat([a, b], dim=2).view(n, -1, h, w)


class MultiResolutionStyleEncoder(nn.Module):
    """E_s(x, M_x) -> style tokens (B, N, token_dim)."""

    def __init__(self, cfg: StyleEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        C, b = cfg.num_classes, cfg.channels_per_class
        width = [C * b * 2**i for i in range(cfg.num_down + 1)]  # channels at each encoder level
        self.conv_in = _conv_block(cfg.in_channels, width[0], 1, C)
        self.down = nn.ModuleList(_conv_block(width[i], width[i + 1], C, C, stride=2) for i in range(cfg.num_down))
        # decoder level k (1-based) outputs width[num_down - k] channels
        self.up = nn.ModuleList()
        for k in range(1, cfg.num_levels + 1):
            c_in = width[cfg.num_down] if k == 1 else 2 * width[cfg.num_down - k + 1]
            self.up.append(_conv_block(c_in, width[cfg.num_down - k], C, C))
        self.style = nn.ModuleList(
            nn.Conv1d(width[cfg.num_down - k], C * cfg.style_dim, 1, groups=C) for k in range(1, cfg.num_levels + 1)
        )
        if cfg.pixel_level:
            self.pixel_style = nn.Conv1d(C * cfg.in_channels, C * cfg.style_dim, 1, groups=C)

    @property
    def num_tokens(self) -> int:
        return self.cfg.num_classes * (self.cfg.levels if self.cfg.layout == "per_scale" else 1)

    @property
    def token_dim(self) -> int:
        return self.cfg.style_dim * (1 if self.cfg.layout == "per_scale" else self.cfg.levels)

    def styles(self, image: Tensor, mask: Tensor) -> Tensor:
        """S in R^{B x C x L x D}: image (B, 3, H, W) in [-1, 1], mask (B, C, H, W) one-hot."""
        C = self.cfg.num_classes
        if mask.shape[1] != C:
            raise ValueError(f"mask has {mask.shape[1]} channels; the style encoder expects {C} classes")
        if image.shape[-2:] != mask.shape[-2:]:
            raise ValueError(f"image {tuple(image.shape[-2:])} and mask {tuple(mask.shape[-2:])} sizes differ")
        feats = [self.conv_in(image)]
        for layer in self.down:
            feats.append(layer(feats[-1]))
        h = feats[-1]
        masks = MaskPyramid(mask, self.cfg.mask_resize)  # the mask at each level's size, resized once
        per_level = []
        for k, (up, proj) in enumerate(zip(self.up, self.style), start=1):
            if k > 1:
                skip = feats[self.cfg.num_down - k + 1]
                # None = the current schema's default, the released block join (see StyleEncoderConfig)
                h = _cat_per_class(h, skip, C) if self.cfg.skip_join == "per_class" else torch.cat([h, skip], dim=1)
            target = feats[self.cfg.num_down - k].shape[-2:]
            h = upsample(h, target, mode="bilinear")  # channels-last on the CPU (a faster resize)
            if self.cfg.skip_join != "per_class":
                # The released encoder, computed as released: its convolutions in NCHW. Channels-last
                # grouped convolutions round differently, up to 2e-5 (relative) off the float64 result
                # on flat inputs such as the all-zero image, against 4e-7 in NCHW. The per-class join
                # keeps the channels-last path its models were trained and tested with.
                h = h.contiguous()
            h = up(h)
            per_level.append(torch.tanh(proj(self._masked_pool(h, masks.at(h.shape[-2:])))).view(h.shape[0], C, -1))  # (B, C, D)
        if self.cfg.pixel_level:  # each class's mean input colour over its region, at full resolution
            m = mask.to(image.dtype).flatten(2)  # (B, C, H*W)
            means = torch.einsum("bkp,bcp->bck", image.flatten(2), m) / (m.sum(dim=-1, keepdim=True) + 1e-5)
            n = image.shape[0]
            per_level.append(torch.tanh(self.pixel_style(means.reshape(n, -1, 1))).view(n, C, -1))
        return torch.stack(per_level, dim=2)  # (B, C, L, D), coarse to fine

    def _masked_pool(self, h: Tensor, mask: Tensor) -> Tensor:
        """Eq. 5: per class, average its channel group over its mask region (mask at h's size) -> (B, C*G, 1)."""
        n, ch, hh, ww = h.shape
        C = self.cfg.num_classes
        m = check_mask_size(mask, (hh, ww), "style pooling").to(h.dtype).flatten(2)  # (B, C, h*w)
        f = h.reshape(n, C, ch // C, hh * ww)
        # a batched matrix product rather than a broadcast multiply: no (B, C, G, h, w) temporary
        pooled = torch.einsum("bcgp,bcp->bcg", f, m) / (m.sum(dim=-1, keepdim=True) + 1e-5)  # (B, C, G)
        return pooled.reshape(n, ch, 1)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """Style tokens in the configured layout: (B, C, L*D) for concat, (B, C*L, D) for per_scale."""
        s = self.styles(image, mask)
        b, c, l, d = s.shape
        return s.reshape(b, c, l * d) if self.cfg.layout == "concat" else s.reshape(b, c * l, d)
