"""Pictures people would rather look at than read: labelled image grids (paper-figure style)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from .labels import LabelSet


def _to_uint8(x: Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def image_grid(
    rows: dict[str, Tensor | np.ndarray | Sequence[Image.Image]],
    path: str | Path | None = None,
    *,
    label_set: LabelSet | None = None,
    masks: Tensor | np.ndarray | None = None,
    scale: int = 2,
    column_titles: Sequence[str] | None = None,
) -> Image.Image:
    """A grid with one captioned row per entry; optional first row of colourised masks.

    rows: caption -> images ((B, 3, H, W) tensor in [-1, 1], (B, H, W, 3) uint8 array or PIL list).
    """
    arrays: dict[str, np.ndarray] = {}
    if masks is not None and label_set is not None:
        m = masks.cpu().numpy() if isinstance(masks, Tensor) else np.asarray(masks)
        arrays["mask"] = np.stack([label_set.colorize(mi) for mi in m])
    for name, imgs in rows.items():
        if isinstance(imgs, Tensor):
            arrays[name] = _to_uint8(imgs)
        elif isinstance(imgs, np.ndarray):
            arrays[name] = imgs
        else:
            arrays[name] = np.stack([np.asarray(i.convert("RGB")) for i in imgs])
    cols = max(a.shape[0] for a in arrays.values())
    h, w = next(iter(arrays.values())).shape[1:3]
    h, w = h * scale, w * scale
    font = ImageFont.load_default()
    label_w = max(110, 7 * max(len(k) for k in arrays) + 10)
    title_h = 16 if column_titles else 0
    canvas = Image.new("RGB", (label_w + cols * (w + 2), title_h + len(arrays) * (h + 2)), "white")
    draw = ImageDraw.Draw(canvas)
    if column_titles:
        for c, title in enumerate(column_titles):
            draw.text((label_w + c * (w + 2) + 2, 2), str(title), fill="black", font=font)
    for r, (name, arr) in enumerate(arrays.items()):
        y = title_h + r * (h + 2)
        draw.text((4, y + h // 2 - 6), name, fill="black", font=font)
        for c in range(arr.shape[0]):
            tile = Image.fromarray(arr[c]).resize((w, h), Image.NEAREST)
            canvas.paste(tile, (label_w + c * (w + 2), y))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        canvas.save(path)
    return canvas
