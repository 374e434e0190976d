"""Torch Dataset over the canonical layout, plus mask helpers.

An item is a dict::

    image       float32 (3, H, W) in [-1, 1]
    label       int64 (H, W) class ids
    one_hot     float32 (C, H, W)            only with one_hot=True
    attributes  float32 (40,) 0/1            when attributes.csv exists and with_attributes
    id          str

Resizing uses bicubic (antialiased) for images and nearest for labels. The random
horizontal flip mirrors the image and the label map *and* swaps the left/right classes
(``LabelSet.flip_permutation``: l_eye <-> r_eye, l_brow <-> r_brow, l_ear <-> r_ear), since
a mirrored left eye is a right eye. The coin is ``torch.rand``, so a seeded DataLoader
(``torch.manual_seed`` / ``generator=``) gives the same flips every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..labels import LabelSet, get_label_set
from .layout import DatasetLayout, load_image, load_label, load_mask_file, parse_size

__all__ = ["FaceDataset", "one_hot", "load_mask_file", "resize_pair"]


def one_hot(label: torch.Tensor | np.ndarray, num_classes: int) -> torch.Tensor:
    """(H, W) or (B, H, W) class ids -> (C, H, W) or (B, C, H, W) float32 one-hot."""
    lab = torch.as_tensor(np.asarray(label) if isinstance(label, np.ndarray) else label).long()
    if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= num_classes):
        raise ValueError(f"label id {int(lab.max())} is out of range for {num_classes} classes")
    oh = torch.nn.functional.one_hot(lab, num_classes).to(torch.float32)
    return oh.movedim(-1, -3).contiguous()


def resize_pair(
    image: np.ndarray, label: np.ndarray, size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Resize an (H, W, 3) uint8 image (bicubic, antialiased) and its label map (nearest) to (H, W)."""
    if size is None:
        return image, label
    h, w = size
    if image.shape[:2] != (h, w):
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))
    if label.shape[:2] != (h, w):
        label = np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))
    return image, label


class FaceDataset(Dataset):
    """A split of a dataset folder in the canonical layout (see :mod:`scadm.data.layout`).

    Args:
        root: dataset folder.
        split: name of a file in ``root/splits`` ("train", "test", ...).
        size: None (keep the stored size), an int (square) or (H, W).
        flip: random horizontal flip with left/right class swap; None = on for "train" only.
        one_hot: also return ``one_hot`` (C, H, W).
        with_attributes: return ``attributes`` when ``attributes.csv`` exists.
        label_set: overrides ``root/labels.json``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        size: int | str | Sequence[int] | None = None,
        flip: bool | None = None,
        one_hot: bool = False,
        with_attributes: bool = True,
        label_set: LabelSet | str | None = None,
    ) -> None:
        self.layout = DatasetLayout(root)
        self.root = self.layout.root
        self.split = split
        self.ids = self.layout.ids(split)
        if not self.ids:
            raise ValueError(f"{self.root}/splits/{split}.txt lists no ids; the split is empty")
        self.size = None if size is None else parse_size(size)
        self.flip = (split == "train") if flip is None else bool(flip)
        self.one_hot = one_hot
        self.label_set = get_label_set(label_set) if label_set is not None else self.layout.label_set()
        self.num_classes = self.label_set.num_classes
        self._perm = torch.as_tensor(self.label_set.flip_permutation(), dtype=torch.long)
        self.attribute_names: list[str] | None = None
        self._attrs: dict[str, np.ndarray] | None = None
        if with_attributes:
            found = self.layout.attributes()
            if found is not None:
                self.attribute_names, self._attrs = found

    @property
    def has_attributes(self) -> bool:
        return self._attrs is not None

    def __len__(self) -> int:
        return len(self.ids)

    def load_arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The (image, label) numpy arrays of item ``i``, validated and resized, before flipping."""
        key = self.ids[i]
        img_path, lab_path = self.layout.image_path(key), self.layout.label_path(key)
        image = load_image(img_path)
        label = load_label(lab_path, self.num_classes)
        if image.shape[:2] != label.shape[:2]:
            raise ValueError(
                f"{lab_path}: label map is {label.shape[1]}x{label.shape[0]} (WxH) but its image "
                f"{img_path} is {image.shape[1]}x{image.shape[0]}; they must match"
            )
        return resize_pair(image, label, self.size)

    def __getitem__(self, i: int) -> dict:
        key = self.ids[i]
        image_np, label_np = self.load_arrays(i)
        image = torch.from_numpy(np.array(image_np, dtype=np.uint8))  # copy: arrays from Pillow are read-only
        image = image.permute(2, 0, 1).float() / 127.5 - 1.0
        label = torch.from_numpy(np.array(label_np, dtype=np.int64))
        if self.flip and bool(torch.rand(()) < 0.5):
            image = image.flip(-1)
            label = self._perm[label.flip(-1)]
        item = {"image": image, "label": label, "id": key}
        if self.one_hot:
            item["one_hot"] = one_hot(label, self.num_classes)
        if self._attrs is not None:
            if key not in self._attrs:
                raise ValueError(f"{self.root}/attributes.csv has no row for id {key!r}; add it or pass with_attributes=False")
            item["attributes"] = torch.from_numpy(self._attrs[key].copy())
        return item
