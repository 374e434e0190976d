"""Label sets: class names, ids, display colours, left/right pairs and order mappings;
and the names of the 40 CelebA attributes (:data:`ATTRIBUTE_NAMES`).

Label ids are what the models see (integer PNGs, one class per pixel); colours are for
display and for painting masks by hand. The default set is CelebAMask-HQ's 19 classes in
the official order used by SCA-DM. Any other set (DeepFashion, a user's N classes) is a
small JSON or YAML file::

    {"name": "my-set",
     "classes": ["background", "skin", ...],
     "colors": [[0, 0, 0], [204, 0, 0], ...],          # optional
     "flip_pairs": [["l_eye", "r_eye"], ...]}          # optional
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

__all__ = [
    "ATTRIBUTE_NAMES",
    "LabelSet",
    "CELEBAMASK_HQ",
    "FACE_PARSING_NAMES",
    "FACE_PARSING_TO_OFFICIAL",
    "CELEBAMASK_HQ_PART_ORDER",
    "get_label_set",
    "load_label_set",
]


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of semantic classes; class id = position in `names`."""

    name: str
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.names) == 0:
            raise ValueError(f"label set {self.name!r} has no classes")
        if len(set(self.names)) != len(self.names):
            dup = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"label set {self.name!r} repeats class names {dup}")
        if len(self.colors) != len(self.names):
            raise ValueError(
                f"label set {self.name!r} has {len(self.names)} classes but {len(self.colors)} colours"
            )
        if len(set(self.colors)) != len(self.colors):
            raise ValueError(f"label set {self.name!r}: two classes share a colour; colours must be unique")
        for a, b in self.flip_pairs:
            if not (0 <= a < len(self.names) and 0 <= b < len(self.names)):
                raise ValueError(f"label set {self.name!r}: flip pair ({a}, {b}) is out of range")

    # ------------------------------------------------------------------ lookups
    @property
    def num_classes(self) -> int:
        return len(self.names)

    def index(self, part: str | int) -> int:
        """Class id of a part given by name or id; a clear error lists the valid names."""
        if isinstance(part, (int, np.integer)):
            if 0 <= int(part) < self.num_classes:
                return int(part)
            raise ValueError(f"class id {part} is out of range 0..{self.num_classes - 1} for label set {self.name!r}")
        key = str(part).strip()
        if key.isdigit():
            return self.index(int(key))
        if key in self.names:
            return self.names.index(key)
        raise ValueError(f"unknown part {key!r}; valid parts: {', '.join(self.names)}")

    def indices(self, parts: Iterable[str | int] | str) -> list[int]:
        """Ids of several parts; accepts a comma-separated string too (``"l_eye,hair"``)."""
        if isinstance(parts, str):
            parts = [p for p in parts.split(",") if p.strip()]
        return [self.index(p) for p in parts]

    def flip_permutation(self) -> np.ndarray:
        """perm[c] = the class that c becomes in a horizontally flipped image."""
        perm = np.arange(self.num_classes)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    # ------------------------------------------------------------------ colours
    def palette(self) -> np.ndarray:
        """(num_classes, 3) uint8 colours."""
        return np.asarray(self.colors, dtype=np.uint8)

    def colorize(self, ids: np.ndarray) -> np.ndarray:
        """(H, W) class ids -> (H, W, 3) uint8 colour image."""
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_classes):
            raise ValueError(f"label id {int(ids.max())} is out of range for {self.num_classes} classes")
        return self.palette()[ids]

    def from_colors(self, rgb: np.ndarray, source: str = "mask") -> np.ndarray:
        """(H, W, 3) colour mask in this set's palette -> (H, W) uint8 class ids.

        Unknown colours are an error naming them (up to five), never silently mapped.
        """
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] < 3:
            raise ValueError(f"{source}: a colour mask must be an RGB image, got shape {rgb.shape}")
        code = _pack_rgb(rgb[..., :3])
        table = {int(c): i for i, c in enumerate(_pack_rgb(self.palette()[None])[0])}
        uniq, inverse = np.unique(code, return_inverse=True)
        lut = np.full(len(uniq), -1, dtype=np.int64)
        unknown = []
        for j, c in enumerate(uniq):
            if int(c) in table:
                lut[j] = table[int(c)]
            else:
                unknown.append(tuple(int(v) for v in _unpack_rgb(int(c))))
        if unknown:
            shown = ", ".join(str(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise ValueError(
                f"{source}: {len(unknown)} colour(s) not in the {self.name!r} palette: {shown}; "
                "paint masks with the colours `scadm labels` prints, or give an id-map PNG"
            )
        return lut[inverse].reshape(code.shape).astype(np.uint8)

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "classes": list(self.names),
            "colors": [list(c) for c in self.colors],
            "flip_pairs": [[self.names[a], self.names[b]] for a, b in self.flip_pairs],
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict, source: str = "label set") -> "LabelSet":
        if not isinstance(data, dict) or "classes" not in data:
            raise ValueError(f"{source}: expected a mapping with a 'classes' list of names")
        names = tuple(str(n) for n in data["classes"])
        colors = data.get("colors")
        if colors is None:
            colors = default_colors(len(names))
        colors = tuple(tuple(int(v) for v in c) for c in colors)
        if any(len(c) != 3 or min(c) < 0 or max(c) > 255 for c in colors):
            raise ValueError(f"{source}: each colour must be three integers in 0..255")
        pairs = []
        for pair in data.get("flip_pairs", []):
            if len(pair) != 2:
                raise ValueError(f"{source}: flip pair {pair} must have two entries")
            a, b = (names.index(p) if isinstance(p, str) and p in names else p for p in pair)
            if not isinstance(a, int) or not isinstance(b, int):
                raise ValueError(f"{source}: flip pair {pair} names an unknown class")
            pairs.append((a, b))
        return cls(name=str(data.get("name", Path(source).stem)), names=names, colors=colors, flip_pairs=tuple(pairs))


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _unpack_rgb(code: int) -> tuple[int, int, int]:
    return (code >> 16) & 255, (code >> 8) & 255, code & 255


def default_colors(n: int) -> list[tuple[int, int, int]]:
    """Distinct colours for a user label set that gives none (PASCAL VOC's bit-interleaving scheme)."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


# ---------------------------------------------------------------------------
# CelebAMask-HQ, official order (SCA-DM, SDM, MaskGAN's released masks)
# ---------------------------------------------------------------------------
_CELEBA_NAMES = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)
# The colour map of the CelebAMask-HQ release's visualisation script.
_CELEBA_COLORS = (
    (0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204), (0, 255, 255),
    (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0), (0, 0, 153), (0, 0, 204),
    (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51), (0, 204, 0),
)

CELEBAMASK_HQ = LabelSet(
    name="celebamask-hq",
    names=_CELEBA_NAMES,
    colors=_CELEBA_COLORS,
    flip_pairs=((4, 5), (6, 7), (8, 9)),
)

#: The raw release's part files, painted in this order (id = position + 1; later overwrite earlier).
CELEBAMASK_HQ_PART_ORDER = _CELEBA_NAMES[1:]

#: face-parsing.PyTorch (zllrunning) BiSeNet output order.
FACE_PARSING_NAMES = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)
#: parser id -> official id
FACE_PARSING_TO_OFFICIAL = np.array([_CELEBA_NAMES.index(n) for n in FACE_PARSING_NAMES], dtype=np.int64)

# ---------------------------------------------------------------------------
# CelebA attributes (the 40 binary attributes of CelebA / CelebAMask-HQ)
# ---------------------------------------------------------------------------
#: The 40 CelebA attribute names in the standard order (that of CelebA's and CelebAMask-HQ's annotation files).
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)

_BUILTIN = {"celebamask-hq": CELEBAMASK_HQ}


def load_label_set(path: str | Path) -> LabelSet:
    """Read a label set from a JSON or YAML file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label set file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error becomes one clear message
        raise ValueError(f"{path}: cannot parse label set ({exc.__class__.__name__}: {exc})") from None
    return LabelSet.from_dict(data, source=str(path))


def get_label_set(spec: str | Path | LabelSet | None = None) -> LabelSet:
    """A label set from a built-in name, a file path, or an existing LabelSet (None = CelebAMask-HQ)."""
    if spec is None:
        return CELEBAMASK_HQ
    if isinstance(spec, LabelSet):
        return spec
    if str(spec) in _BUILTIN:
        return _BUILTIN[str(spec)]
    return load_label_set(spec)

