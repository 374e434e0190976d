"""The conditioning bundle that flows from the condition encoders to the denoiser.

Samplers and guidance never look inside a condition: they only concatenate two of them
(for the doubled classifier-free-guidance batch) with :func:`cat_conditions` and pass the
result to the model function.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor

__all__ = ["ConditionInputs", "Conditions", "cat_conditions", "index_conditions"]


@dataclass
class ConditionInputs:
    """The raw inputs of a condition encoder, before encoding (what training's condition dropout acts on).

    mask:       (B, C, H, W) one-hot semantic mask at image resolution.
    image:      (B, 3, H, W) style image in [-1, 1], or None (the empty style).
    attributes: (B, A) signed attributes (+1 / -1, 0 = unknown), or None (the null attributes).
    """

    mask: Tensor
    image: Tensor | None = None
    attributes: Tensor | None = None


@dataclass
class Conditions:
    """What the denoiser eps(z_t, t, cond) is conditioned on.

    mask:   (B, C, H, W) one-hot semantic mask at image resolution, or None. Drives SPADE
            (shape) and the mask-conditioned cross-attention (which pixel sees which token).
    tokens: (B, N, D) cross-attention context, or None: style tokens (SCA-DM), attribute and
            mask tokens (multi-conditioning), or both.
    """

    mask: Tensor | None = None
    tokens: Tensor | None = None

    @property
    def batch_size(self) -> int:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                return v.shape[0]
        raise ValueError("empty Conditions have no batch size")

    def to(self, *args: Any, **kwargs: Any) -> "Conditions":
        return replace(self, **{f.name: _to(getattr(self, f.name), *args, **kwargs) for f in fields(self)})


def _to(v: Any, *args: Any, **kwargs: Any) -> Any:
    return v.to(*args, **kwargs) if isinstance(v, Tensor) else v


def cat_conditions(a: Any, b: Any) -> Any:
    """Concatenate two conditions of the same structure along the batch dimension.

    Works on tensors, None, dicts, lists/tuples and dataclasses (Conditions or a model's
    prepared, time-invariant conditioning), recursively.
    """
    if a is None and b is None:
        return None
    if isinstance(a, Tensor):
        return torch.cat([a, b], dim=0)
    if isinstance(a, dict):
        if a.keys() != b.keys():
            raise ValueError("cannot concatenate conditions with different keys")
        return type(a)((k, cat_conditions(a[k], b[k])) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a)(cat_conditions(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "__dataclass_fields__"):
        return replace(a, **{f.name: cat_conditions(getattr(a, f.name), getattr(b, f.name)) for f in fields(a)})
    if a is b or a == b:
        return a  # non-batched metadata shared by both halves
    raise TypeError(f"cannot concatenate conditions of type {type(a).__name__}")


def index_conditions(c: Any, idx: slice | Tensor | list[int]) -> Any:
    """Select batch entries of a condition (same structures as :func:`cat_conditions`)."""
    if c is None:
        return None
    if isinstance(c, Tensor):
        return c[idx]
    if isinstance(c, dict):
        return type(c)((k, index_conditions(v, idx)) for k, v in c.items())
    if isinstance(c, (list, tuple)):
        return type(c)(index_conditions(v, idx) for v in c)
    if hasattr(c, "__dataclass_fields__"):
        return replace(c, **{f.name: index_conditions(getattr(c, f.name), idx) for f in fields(c)})
    return c


def conditions_batch(c: Any) -> int | None:
    """The batch size of a condition (its first tensor's), or None when it holds no tensor."""
    if isinstance(c, Tensor):
        return c.shape[0]
    items = c.values() if isinstance(c, dict) else c if isinstance(c, (list, tuple)) else (
        [getattr(c, f.name) for f in fields(c)] if hasattr(c, "__dataclass_fields__") else [])
    for v in items:
        b = conditions_batch(v)
        if b is not None:
            return b
    return None


def repeat_conditions(c: Any, times: int) -> Any:
    """A condition of batch B as one of batch times x B: rows 0..B-1, then 0..B-1 again, ..."""
    b = conditions_batch(c)
    if times == 1 or b is None:
        return c
    return index_conditions(c, torch.arange(b).repeat(times))

