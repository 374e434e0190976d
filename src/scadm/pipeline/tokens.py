"""Edits of style tokens and masks, pure functions (the released code's partial swap and mixing).

Style tokens are (B, N, D): one row per class, or L rows per class for the ``per_scale``
layout, plus any global (attribute) rows; ``token_classes`` (N,) names each row's class (-1 for
a global row). An edit picks rows by class:

    swap_tokens         the reference's rows of some classes (all when None) in the target's tokens
    interpolate_tokens  (1 - alpha) target + alpha reference on some classes' rows
    mix_tokens          the reference's rows of some classes, the empty style's for the rest
    mix_mask_parts      a mask with a donor mask's parts pasted in (multi-conditioning paper Sec. 5)
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor


def class_rows(token_classes: Tensor, classes: Iterable[int]) -> Tensor:
    """Bool (N,) selecting the token rows that belong to any of `classes`."""
    wanted = torch.tensor(sorted(set(int(c) for c in classes)), dtype=torch.long, device=token_classes.device)
    return torch.isin(token_classes, wanted)


def swap_tokens(target: Tensor, reference: Tensor, classes: Iterable[int] | Sequence[Iterable[int]] | None,
                token_classes: Tensor) -> Tensor:
    """Copy the reference's token rows of `classes` (all rows when None) into the target's tokens.

    `classes` may also hold one list per image of the batch (a different partial swap for each).
    """
    reference = reference.to(target.dtype).expand_as(target)
    if classes is None:
        chosen = (token_classes >= 0).expand(target.shape[0], -1)
    elif per_image(classes):
        if len(classes) != target.shape[0]:
            raise ValueError(f"got {len(classes)} part lists for {target.shape[0]} images")
        chosen = torch.stack([class_rows(token_classes, c) for c in classes])
    else:
        chosen = class_rows(token_classes, classes).expand(target.shape[0], -1)
    return torch.where(chosen[..., None], reference, target)


def interpolate_tokens(target: Tensor, reference: Tensor, alpha: float, classes: Iterable[int] | None,
                       token_classes: Tensor) -> Tensor:
    """(1 - alpha) * target + alpha * reference on the rows of `classes` (all when None)."""
    chosen = token_classes >= 0 if classes is None else class_rows(token_classes, classes)
    out = target.clone()
    out[:, chosen] = (1 - alpha) * target[:, chosen] + alpha * reference[:, chosen].to(target.dtype)
    return out


def mix_tokens(empty: Tensor, reference: Tensor, classes: Any, token_classes: Tensor) -> Tensor:
    """The reference's rows of `classes`, the empty style's (noise decides) for the rest (SCA-DM Fig. 1b)."""
    return swap_tokens(empty, reference.expand(empty.shape[0], -1, -1), classes, token_classes)


def mix_mask_parts(mask: np.ndarray, donor: np.ndarray, parts: Iterable[int]) -> np.ndarray:
    """The donor's `parts` pasted over `mask` (multi-conditioning paper Sec. 5, as class-id maps).

    Each part is first removed from `mask` (its pixels take the nearest remaining class, by
    repeated 4-neighbour growth), then the donor's pixels of that part are painted on top.
    """
    parts = sorted(set(int(p) for p in parts))
    out = mask.astype(np.int64).copy()
    hole = np.isin(out, parts)
    out[hole] = -1
    while (out < 0).any():
        grown = out.copy()
        padded = np.pad(out, 1, constant_values=-1)
        for shifted in (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]):
            fill = (grown < 0) & (shifted >= 0)
            grown[fill] = shifted[fill]
        if (grown == out).all():  # nothing left to grow from
            grown[grown < 0] = 0
        out = grown
    for p in parts:
        out[donor == p] = p
    return out.astype(np.uint8)


def per_image(classes: Any) -> bool:
    """Whether `classes` holds one class list per image."""
    return isinstance(classes, (list, tuple)) and len(classes) > 0 and isinstance(classes[0], (list, tuple))


def rows(classes: Any, batch: int) -> list:
    """The class list of each image of a batch (one list for all, or one per image)."""
    out = classes if per_image(classes) else [classes] * batch
    if len(out) != batch:
        raise ValueError(f"got parts for {len(out)} images, expected {batch}")
    return list(out)


def part_pixels(ids: Tensor, classes: Any) -> Tensor:
    """(B, H, W) bool: the pixels of the edited parts (None = every part; one list per image allowed)."""
    if classes is None:
        return torch.ones_like(ids, dtype=torch.bool)
    return torch.stack([torch.isin(m, torch.as_tensor(list(c), dtype=m.dtype, device=m.device))
                        for m, c in zip(ids, rows(classes, ids.shape[0]))])
