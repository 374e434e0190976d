"""Attention layers: self-attention, cross-attention with swappable conditioning strategies,
and LDM's SpatialTransformer.

Cross-attention strategies (the way diffusers' attention processors plug into Attention):

- ``plain``: ordinary cross-attention softmax(QK^T / sqrt(d)) V (LDM; the multi-conditioning
  paper's token conditioning; SCA-DM's "without mask attention" ablation).
- ``masked``: SCA-DM's mask-conditioned cross-attention (paper Eq. 8), exactly as the released
  code computes it: each token's logit map is multiplied by its class's mask channel *before*
  the softmax, then every exact 0 is replaced by -FLT_MAX. A pixel therefore attends only to
  the tokens of its own class (plus any global tokens, e.g. an attribute token).
- ``masked_gather``: the same result computed as a gather. With one token per class the
  masked softmax is exactly one-hot, so the output at a pixel is ``to_out(W_v s_c)`` for its
  class c: no logits at all, and, since it depends only on the conditions, it is computed once
  per sampling run. With an all-zero mask the softmax is uniform and the output is the mean of
  V over the tokens; the gather reproduces that too.

Everything a strategy can compute from the conditions alone happens in ``prepare``; the
per-step ``forward`` only does what depends on the features.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masks import check_mask_size
from .resblocks import GroupNorm32, zero_module


class Attention(nn.Module):
    """Multi-head attention weights with LDM's names (to_q, to_k, to_v: no bias; to_out: Linear + Dropout)."""

    def __init__(self, query_dim: int, context_dim: int | None, heads: int, dim_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads, self.dim_head = heads, dim_head
        self.scale = dim_head**-0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))

    def split_heads(self, x: Tensor) -> Tensor:  # (B, N, h*d) -> (B, h, N, d)
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.dim_head).transpose(1, 2)

    def merge_heads(self, x: Tensor) -> Tensor:  # (B, h, N, d) -> (B, N, h*d)
        b, h, n, d = x.shape
        return x.transpose(1, 2).reshape(b, n, h * d)

    def self_attention(self, x: Tensor) -> Tensor:
        q, k, v = (self.split_heads(f(x)) for f in (self.to_q, self.to_k, self.to_v))
        return self.to_out(self.merge_heads(F.scaled_dot_product_attention(q, k, v)))


# ---------------------------------------------------------------------------
# Cross-attention strategies
# ---------------------------------------------------------------------------
class CrossAttentionStrategy:
    """How the conditioning tokens enter a cross-attention layer.

    prepare(attn, tokens, mask, size) -> state   (time-invariant; once per sampling run)
    forward(attn, x, state) -> (B, P, query_dim)  (every step)
    """

    name = ""
    needs_features = True  # False: the output does not depend on x at all

    def prepare(self, attn: Attention, tokens: Tensor, mask: Tensor | None, size: tuple[int, int],
                token_classes: Tensor | None) -> dict[str, Tensor]:
        raise NotImplementedError

    def forward(self, attn: Attention, x: Tensor, state: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError


class PlainCrossAttention(CrossAttentionStrategy):
    """softmax(QK^T / sqrt(d)) V over all tokens."""

    name = "plain"

    def prepare(self, attn, tokens, mask, size, token_classes):
        return {"k": attn.split_heads(attn.to_k(tokens)), "v": attn.split_heads(attn.to_v(tokens))}

    def forward(self, attn, x, state):
        q = attn.split_heads(attn.to_q(x))
        return attn.to_out(attn.merge_heads(F.scaled_dot_product_attention(q, state["k"], state["v"])))


def token_mask(mask: Tensor, size: tuple[int, int], token_classes: Tensor) -> Tensor:
    """(B, C, H, W) mask -> (B, P, N): how much pixel p may see token n (0 = not at all).

    token_classes[n] is the class of token n, or -1 for a global token seen everywhere. The mask
    comes at the feature size (see :mod:`scadm.nn.masks`): one-hot (1 = its class) or, after an
    area resize, class fractions.
    """
    m = check_mask_size(mask, size, "cross-attention").flatten(2).transpose(1, 2)  # (B, P, C)
    ones = torch.ones_like(m[..., :1])
    m = torch.cat([m, ones], dim=-1)  # index -1 -> the all-ones column
    return m[..., token_classes]  # (B, P, N)


class MaskedCrossAttention(CrossAttentionStrategy):
    """SCA-DM Eq. 8 as released: logits * mask before the softmax, exact zeros -> -FLT_MAX.

    With class fractions (``mask_resize: area``) a pixel sees the tokens of every class it
    covers, each weighted by its fraction: the logit gets log(fraction) added before the
    softmax. A one-hot mask has log 1 = 0 there, which is exactly the released form.
    """

    name = "masked"

    def prepare(self, attn, tokens, mask, size, token_classes):
        if mask is None:
            raise ValueError("masked cross-attention needs a semantic mask in the conditions")
        m = token_mask(mask, size, token_classes)[:, None]  # (B, 1, P, N)
        seen = (m > 0).to(m.dtype)
        return {
            "k": attn.split_heads(attn.to_k(tokens)),
            "v": attn.split_heads(attn.to_v(tokens)),
            "seen": seen,
            "log_m": m.clamp_min(1e-12).log() * seen,  # 0 where m is 0 or 1
        }

    def forward(self, attn, x, state):
        q = attn.split_heads(attn.to_q(x))
        sim = torch.einsum("bhpd,bhnd->bhpn", q, state["k"]) * attn.scale
        sim = (sim + state["log_m"].to(sim.dtype)) * state["seen"].to(sim.dtype)
        sim = sim.masked_fill(sim == 0, -torch.finfo(sim.dtype).max)
        out = torch.einsum("bhpn,bhnd->bhpd", sim.softmax(dim=-1), state["v"])
        return attn.to_out(attn.merge_heads(out))


class MaskedGatherCrossAttention(CrossAttentionStrategy):
    """The masked strategy with one token per class, as a gather (exact for a one-hot mask).

    out(p) = sum_n w_pn to_out(W_v s_n), with w_p = the pixel's one-hot token mask (uniform
    where the mask is empty, as the softmax over all -FLT_MAX logits is). With class fractions
    (``mask_resize: area``), w_p = the fractions: the values of the classes the pixel covers,
    mixed in proportion (what the attention strategy gives when the logits are equal).
    """

    name = "masked_gather"
    needs_features = False

    def prepare(self, attn, tokens, mask, size, token_classes):
        if mask is None:
            raise ValueError("masked cross-attention needs a semantic mask in the conditions")
        w = token_mask(mask, size, token_classes).to(tokens.dtype)  # (B, P, N)
        total = w.sum(-1, keepdim=True)
        w = torch.where(total > 0, w / total.clamp_min(1), torch.full_like(w, 1.0 / w.shape[-1]))
        # Mix the values first, as the attention does (a one-hot row copies V_c exactly), then
        # project: out(p) = to_out(W_v s_c). Done once per sampling run, so the cost is no concern.
        out = attn.to_out(torch.bmm(w, attn.to_v(tokens)))  # (B, P, query_dim)
        return {"out": out}

    def forward(self, attn, x, state):
        return state["out"].to(x.dtype)


STRATEGIES: dict[str, CrossAttentionStrategy] = {
    s.name: s for s in (PlainCrossAttention(), MaskedCrossAttention(), MaskedGatherCrossAttention())
}


# ---------------------------------------------------------------------------
# Transformer
# ---------------------------------------------------------------------------
class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: Tensor) -> Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward, hidden = 4 x dim (LDM names: net.0.proj, net.2)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(dropout), nn.Linear(dim * mult, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Pre-LayerNorm residual block: self-attention, cross-attention, GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int | None, cross_attention: str,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.attn1 = Attention(dim, None, heads, dim_head, dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.strategy = None if cross_attention == "none" else STRATEGIES[cross_attention]
        if self.strategy is not None:
            self.attn2 = Attention(dim, context_dim, heads, dim_head, dropout)
            self.norm2 = nn.LayerNorm(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.cache_key = ""

    def prepare(self, tokens: Tensor | None, mask: Tensor | None, size: tuple[int, int],
                token_classes: Tensor | None) -> dict[str, Tensor] | None:
        if self.strategy is None:
            return None
        if tokens is None:
            raise ValueError("this model uses cross-attention: the conditions need tokens")
        return self.strategy.prepare(self.attn2, tokens, mask, size, token_classes)

    def forward(self, x: Tensor, prepared: dict[str, Any]) -> Tensor:
        x = x + self.attn1.self_attention(self.norm1(x))
        if self.strategy is not None:
            state = prepared[self.cache_key]
            h = self.norm2(x) if self.strategy.needs_features else x
            x = x + self.strategy.forward(self.attn2, h, state)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """LDM's SpatialTransformer: GroupNorm, 1x1 proj_in, transformer blocks, zero-init 1x1 proj_out, residual."""

    def __init__(self, channels: int, heads: int, dim_head: int, depth: int, context_dim: int | None,
                 cross_attention: str, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * dim_head
        self.norm = GroupNorm32(32, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner, heads, dim_head, context_dim, cross_attention, dropout) for _ in range(depth)
        )
        self.proj_out = zero_module(nn.Conv2d(inner, channels, 1))

    def forward(self, x: Tensor, prepared: dict[str, Any]) -> Tensor:
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x))
        y = y.flatten(2).transpose(1, 2)  # (B, HW, inner)
        for block in self.transformer_blocks:
            y = block(y, prepared)
        y = y.transpose(1, 2).reshape(b, -1, h, w)
        return x + self.proj_out(y)
