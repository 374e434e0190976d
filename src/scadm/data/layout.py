"""The canonical dataset layout, and image / label-map loading with validation.

Every dataset (synthetic, CelebAMask-HQ, a user's folder) is read through one layout::

    DIR/images/<id>.png|jpg       RGB images
    DIR/labels/<id>.png           single-channel uint8 class ids
    DIR/labels.json               the label set (LabelSet.save); CelebAMask-HQ if absent
    DIR/attributes.csv            optional: header "id," + 40 attribute names, values 0/1
    DIR/splits/train.txt          one id per line
    DIR/splits/test.txt

Loading converts what can be converted safely (grayscale, palette, RGBA, 16-bit) with a
:class:`DataWarning`, and raises one-line errors that name the file and the problem for
everything else (missing, truncated, corrupt, decompression bomb, bad label ids).
Image sizes are given as one number or ``HxW`` (:func:`parse_size`).
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..labels import CELEBAMASK_HQ, LabelSet, get_label_set, load_label_set
from ..tempfiles import temp_path

__all__ = [
    "DataWarning",
    "DatasetLayout",
    "IMAGE_EXTENSIONS",
    "read_split",
    "write_split",
    "read_attributes",
    "write_attributes",
    "load_image",
    "load_label",
    "load_mask_file",
    "ids_from_rgb",
    "open_image",
    "parse_size",
    "save_png",
    "write_text_atomic",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class DataWarning(UserWarning):
    """A data file was converted (alpha dropped, 16-bit scaled, ...); the message names it."""


# ---------------------------------------------------------------------------- sizes
def parse_size(size: int | str | Sequence[int]) -> tuple[int, int]:
    """64 -> (64, 64); "64x96" -> (64, 96) (H x W); (H, W) -> (H, W)."""
    if isinstance(size, str):
        text = size.lower().strip()
        try:
            if "x" in text:
                h, w = (int(t) for t in text.split("x"))
            else:
                h = w = int(text)
        except ValueError:
            raise ValueError(f"size {size!r} is not understood; give one number (64) or HxW (64x96)") from None
    elif isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(t) for t in size)
    if h < 8 or w < 8:
        raise ValueError(f"size {h}x{w} is too small; use at least 8 px per side (64 or more recommended)")
    return h, w


# ---------------------------------------------------------------------------- reading files
def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image; errors name the file and say what is wrong.

    Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) stays on; images over it
    are refused rather than decoded.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: is a folder, not an image file")
    img = None
    try:
        with warnings.catch_warnings():
            # Treat the bomb *warning* (over MAX_IMAGE_PIXELS) as an error too: such files are
            # far beyond any face data set and could exhaust memory.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            img.load()
    except BaseException as exc:
        if img is not None:  # a failed decode must not leave the file open
            img.close()
        error = _decode_error(path, exc)
        if error is exc:
            raise
        raise error from None
    return img


def _decode_error(path: Path, exc: BaseException) -> BaseException:
    """The one-line error for an image that would not open or decode (KeyboardInterrupt and the like pass)."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return ValueError(f"{path}: refused as a possible decompression bomb ({exc}); "
                          "raise PIL.Image.MAX_IMAGE_PIXELS only if you trust the file")
    if isinstance(exc, UnidentifiedImageError):
        return ValueError(f"{path}: not an image file (corrupt, or a format Pillow cannot read); replace or remove it")
    if isinstance(exc, OSError):  # truncated data, broken chunks
        return ValueError(f"{path}: image file is truncated or corrupt ({exc}); replace or remove it")
    if isinstance(exc, Exception):  # any decoder failure is a bad file
        return ValueError(f"{path}: cannot decode image ({exc.__class__.__name__}: {exc})")
    return exc


def _to_rgb(img: Image.Image, source: str) -> np.ndarray:
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        top = float(arr.max()) if arr.size else 0.0
        # 16-bit data: scale the full 16-bit range to 8 bits (unless it only uses 8 bits).
        div = 257.0 if top > 255 else 1.0
        warnings.warn(f"{source}: {mode} image converted to 8-bit RGB", DataWarning, stacklevel=3)
        g = np.clip(np.rint(arr / div), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float64)
        alpha = rgba[..., 3:4] / 255.0
        if (alpha < 1.0).any():
            warnings.warn(
                f"{source}: image has transparency; composited on black", DataWarning, stacklevel=3
            )
        return np.rint(rgba[..., :3] * alpha).astype(np.uint8)
    if mode in ("L", "P", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    raise ValueError(f"{source}: unsupported image mode {mode!r}; save it as an 8-bit RGB PNG or JPEG")


def load_image(path: str | Path) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB (grayscale, palette, RGBA and 16-bit are converted)."""
    img = open_image(path)
    return _to_rgb(img, str(path))


def load_label(path: str | Path, num_classes: int | None = None) -> np.ndarray:
    """Read a label map of class ids as (H, W) uint8.

    Mode ``L`` gives ids, ``P`` gives palette indices, ``I;16``/``I`` ids if < 256; an RGB file
    whose three channels are equal is read as ids too. Ids >= ``num_classes`` are an error
    naming the id and the file.
    """
    img = open_image(path)
    mode = img.mode
    if mode in ("L", "P"):
        arr = np.asarray(img)
    elif mode == "1":
        arr = np.asarray(img, dtype=np.uint8)
    elif mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img)
        if arr.size and int(arr.max()) > 255:
            raise ValueError(f"{path}: label map has id {int(arr.max())} > 255; label ids must fit in 8 bits")
    elif mode in ("RGB", "RGBA", "LA"):
        rgb = np.asarray(img.convert("RGB"))
        if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
            raise ValueError(
                f"{path}: label map is a colour image; labels must be single-channel class ids "
                "(colour masks in the label set's palette are accepted by `scadm prepare folder`)"
            )
        arr = rgb[..., 0]
    else:
        raise ValueError(f"{path}: unsupported label mode {mode!r}; save class ids as an 8-bit grayscale PNG")
    arr = np.ascontiguousarray(arr).astype(np.uint8)
    if num_classes is not None and arr.size:
        top = int(arr.max())
        if top >= num_classes:
            raise ValueError(
                f"{path}: label id {top} is out of range for {num_classes} classes (ids 0..{num_classes - 1}); "
                "check the label set (labels.json) or the mask file"
            )
    return arr


def load_mask_file(path: str | Path, label_set: LabelSet | str | None = None) -> np.ndarray:
    """Read a mask as (H, W) uint8 class ids: an id-map PNG (L, P, I;16) or a colour PNG
    painted in the label set's palette. Unknown colours are an error naming them."""
    ls = get_label_set(label_set)
    img = open_image(path)
    if img.mode in ("RGB", "RGBA"):
        return ids_from_rgb(np.asarray(img.convert("RGB")), ls, str(path))
    return load_label(path, ls.num_classes)


def ids_from_rgb(rgb: np.ndarray, label_set: LabelSet, source: str) -> np.ndarray:
    """An (H, W, 3) mask as class ids: colours of the label set's palette, or an id map saved as RGB
    (r = g = b = id, greys the palette does not have). Unknown colours are an error naming them."""
    gray = (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    if gray and int(rgb.max()) < label_set.num_classes and not _all_in_palette(rgb, label_set):
        return np.ascontiguousarray(rgb[..., 0])
    return label_set.from_colors(rgb, source=source)


def _all_in_palette(rgb: np.ndarray, ls: LabelSet) -> bool:
    pal = {tuple(c) for c in ls.palette().tolist()}
    uniq = np.unique(rgb.reshape(-1, 3), axis=0)
    return all(tuple(c) in pal for c in uniq.tolist())


# ---------------------------------------------------------------------------- writing files
def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write then rename, so an interrupted run never leaves a half-written file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)  # named with this process's id: a killed run's is removed by the next (remove_stale)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    _atomic_write_bytes(Path(path), text.encode("utf-8"))


def save_png(array: np.ndarray, path: str | Path) -> None:
    """Save a uint8 (H, W) or (H, W, 3) array as PNG atomically (deterministic bytes, no metadata)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buf, format="PNG", compress_level=6)
    _atomic_write_bytes(Path(path), buf.getvalue())


def write_split(root: str | Path, split: str, ids: Iterable[str]) -> None:
    text = "".join(f"{i}\n" for i in ids)
    write_text_atomic(Path(root) / "splits" / f"{split}.txt", text)


def write_attributes(root: str | Path, rows: dict[str, np.ndarray], names: Sequence[str]) -> None:
    """Write attributes.csv (header ``id`` + names; 0/1 values), rows sorted numerically where possible."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", *names])
    for key in sorted(rows, key=_id_sort_key):
        writer.writerow([key, *(int(v) for v in rows[key])])
    write_text_atomic(Path(root) / "attributes.csv", buf.getvalue())


def _id_sort_key(key: str) -> tuple:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


# ---------------------------------------------------------------------------- layout
def read_split(root: str | Path, split: str) -> list[str]:
    """Ids listed in ``root/splits/<split>.txt`` (blank lines and ``#`` comments ignored)."""
    root = Path(root)
    path = root / "splits" / f"{split}.txt"
    if not path.is_file():
        have = sorted(p.stem for p in (root / "splits").glob("*.txt")) if (root / "splits").is_dir() else []
        hint = f"available splits: {', '.join(have)}" if have else "the folder has no splits/ directory; prepare it with `scadm prepare` or `scadm synth`"
        raise FileNotFoundError(f"{path}: split {split!r} not found; {hint}")
    ids = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            ids.append(line)
    return ids


def read_attributes(root: str | Path) -> tuple[list[str], dict[str, np.ndarray]] | None:
    """(attribute names, {id: float32 0/1 vector}) from ``root/attributes.csv``, or None if absent."""
    path = Path(root) / "attributes.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: file is empty; expected a header 'id,<attribute names>'") from None
        if not header or header[0].strip() != "id":
            raise ValueError(f"{path}: first column must be 'id', got {header[:1]}")
        names = [h.strip() for h in header[1:]]
        rows: dict[str, np.ndarray] = {}
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{lineno}: expected {len(header)} columns, got {len(row)}")
            try:
                vals = np.array([float(v) for v in row[1:]], dtype=np.float32)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: attribute values must be numbers (0/1)") from None
            rows[row[0].strip()] = (vals > 0).astype(np.float32)
    return names, rows


class DatasetLayout:
    """A dataset folder in the canonical layout."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: dataset folder does not exist")
        missing = [d for d in ("images", "labels") if not (self.root / d).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"{self.root}: not a dataset folder (missing {', '.join(d + '/' for d in missing)}); "
                "create one with `scadm synth`, `scadm prepare celebamask-hq` or `scadm prepare folder`"
            )

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def labels_dir(self) -> Path:
        return self.root / "labels"

    def label_set(self) -> LabelSet:
        path = self.root / "labels.json"
        return load_label_set(path) if path.is_file() else CELEBAMASK_HQ

    def ids(self, split: str) -> list[str]:
        return read_split(self.root, split)

    def image_path(self, key: str) -> Path:
        for ext in (".png", ".jpg", ".jpeg"):
            p = self.images_dir / f"{key}{ext}"
            if p.is_file():
                return p
        raise FileNotFoundError(f"{self.images_dir}/{key}.png|jpg: image for id {key!r} is missing")

    def label_path(self, key: str) -> Path:
        p = self.labels_dir / f"{key}.png"
        if not p.is_file():
            raise FileNotFoundError(f"{p}: label map for id {key!r} is missing")
        return p

    def attributes(self) -> tuple[list[str], dict[str, np.ndarray]] | None:
        return read_attributes(self.root)
