"""Real photos: parse a mask, find and frame the face, paste back only the edited region.

The editing pipeline works on crops at the model's size. This module puts a photo of any
size and aspect ratio on that footing and brings the result back into it::

    photo = prepare_photo("me.jpg", size=256, parser=parser)    # mask parsed, face framed and cropped
    ... edit photo.crop / photo.crop_mask with the pipeline ...
    full = paste_back(photo, result_crop, parts=[13])          # only the hair region changes

Steps and rules (each documented in ``docs/photos.md``):

- **Loading** (:func:`load_photo`): EXIF orientation applied, greyscale and RGBA converted to
  RGB, 16-bit reduced to 8-bit, each said once as a warning; a file that is not an image is
  a one-line error.
- **The mask**: given (an id map or colour mask of the photo's size), or parsed
  (:func:`parse_photo`) by a face parser (:class:`FaceParser`), whose classes are mapped to
  the model's label set by name. Which parser: :func:`resolve_parser` (``--parser`` /
  ``$SCADM_PARSER`` / the model folder's ``parser/`` / none).
- **Framing** (:func:`frame_face`): CelebA-HQ's crop rule (Karras et al. 2018, the
  ``create_celebahq`` step of progressive GAN's dataset tool, the rule FFHQ reused), from
  landmarks taken from the mask: with ``e`` the mean of the two eye centroids, ``e2e`` the
  vector between them and ``e2m`` the vector from ``e`` to the mouth centroid, the crop is
  the square of side ``2 * max(2.0 |e2e|, 1.8 |e2m|)`` centred at ``e + 0.1 e2m``, axis-aligned
  (a tilted head stays tilted). Without both eyes and a mouth in the mask, the face's extent
  gives the square (side ``max(2.0 w, 1.6 h)``, centre ``0.085 side`` above the box's centre).
  :class:`Framing` scales the side.
- **Cropping** (:func:`crop_image`): the square is resampled to the model's size (Lanczos;
  masks nearest). Where it leaves the photo, the photo's edge pixels are repeated, for the
  image and the mask alike; those pixels are never pasted back.
- **Paste-back** (:func:`paste_back`): the generated crop is resized to the square's size in
  the photo and composited at full resolution through :func:`edit_region`: the edited parts
  grown by the feather radius ``r = 3 %`` of the square's side (at least 2 px), then a linear
  ramp back to the photo over another ``r``; or, for whole-face edits, the square itself with
  a ramp of ``r`` at its edges inside the photo. Every pixel where that weight is 0 is copied
  from the input, bit for bit.

Large photos stay cheap: only the face's square is ever resampled at full size, the parser
sees the photo at its own input size, and framing reads a mask subsampled to at most 1024 px.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import numpy as np
from PIL import Image, ImageOps

from .data.layout import DataWarning, _to_rgb, load_mask_file, open_image
from .labels import CELEBAMASK_HQ, LabelSet

__all__ = [
    "PhotoWarning",
    "Framing",
    "Box",
    "Photo",
    "FaceParser",
    "load_photo",
    "read_mask",
    "frame_face",
    "frame_mask",
    "face_class_ids",
    "crop_image",
    "crop_mask",
    "parse_photo",
    "prepare_photo",
    "edit_region",
    "paste_back",
    "feather_radius",
    "save_photo",
    "resolve_parser",
    "load_face_parser",
    "PARSER_ENV",
    "FEATHER",
    "PHOTO_EXTENSIONS",
]

PhotoLike = Union[str, os.PathLike, Image.Image, np.ndarray]

#: The environment variable naming a face parser file (step 2 of :func:`resolve_parser`).
PARSER_ENV = "SCADM_PARSER"
#: Feather radius of the paste-back, as a fraction of the face square's side (at least 2 px).
FEATHER = 0.03
#: Extensions a pasted-back photo can be written with (:func:`save_photo`).
PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
#: Framing reads the mask subsampled to at most this many pixels per side.
_FRAME_READ = 1024
#: Classes that make up "the face" (its extent, and the component the landmarks are taken from).
FACE_CLASSES = ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "mouth", "u_lip", "l_lip")
_MOUTH = ("mouth", "u_lip", "l_lip")


class PhotoWarning(DataWarning):
    """A photo was converted or its face needed padding or upsampling; the message says what."""


# ============================================================================ loading
def load_photo(image: PhotoLike, name: str = "image") -> tuple[np.ndarray, dict]:
    """A photo as upright (H, W, 3) uint8 RGB, and ``{"icc_profile": bytes | None, "source": str}``.

    EXIF orientation is applied; greyscale, palette-with-alpha, RGBA and 16-bit images are
    converted, each with one :class:`PhotoWarning`. A file that is not an image is a
    one-line ``ValueError``.
    """
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ValueError(f"{name}: an image array must be H x W x 3, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            raise ValueError(f"{name}: an image array must be uint8 (0..255), got {arr.dtype}")
        return np.ascontiguousarray(arr[..., :3]), {"icc_profile": None, "source": name}
    if isinstance(image, Image.Image):
        img, source = image, name
    else:
        from . import checks

        path = checks.input_file(image, name, "image file")
        img, source = open_image(path), str(path)
    orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
    if orientation not in (None, 1):
        warnings.warn(f"{source}: EXIF orientation {orientation} applied (the photo is turned upright)",
                      PhotoWarning, stacklevel=2)
        img = ImageOps.exif_transpose(img)
    info = {"icc_profile": img.info.get("icc_profile"), "source": source}
    mode = img.mode
    deep = mode in ("I;16", "I;16B", "I;16L", "I", "F") or _png_bit_depth(image) == 16
    if deep:
        warnings.warn(f"{source}: 16-bit image reduced to 8 bits per channel", PhotoWarning, stacklevel=2)
    if mode in ("L", "LA", "1", "I;16", "I;16B", "I;16L", "I", "F") or (mode == "P" and _grey_palette(img)):
        warnings.warn(f"{source}: greyscale image converted to RGB", PhotoWarning, stacklevel=2)
    if mode in ("RGBA", "PA", "LA") or (mode == "P" and "transparency" in img.info):
        alpha = np.asarray(img.convert("RGBA").getchannel("A"))
        opaque = bool((alpha == 255).all())
        warnings.warn(f"{source}: " + ("alpha channel dropped (the image is fully opaque)" if opaque else
                                       "image has transparency; composited on black") + ", converted to RGB",
                      PhotoWarning, stacklevel=2)
    with warnings.catch_warnings():  # the conversions were said above, in a photo's words
        warnings.simplefilter("ignore", DataWarning)
        arr = _to_rgb(img, source)
    return arr, info


def _png_bit_depth(image: Any) -> int | None:
    """The bit depth in a PNG file's header (Pillow reads 16-bit RGB PNGs as 8-bit RGB without saying so)."""
    if not isinstance(image, (str, os.PathLike)):
        return None
    with open(image, "rb") as fh:
        head = fh.read(25)
    return head[24] if len(head) == 25 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" else None


def _grey_palette(img: Image.Image) -> bool:
    pal = np.asarray(img.getpalette() or [], dtype=np.int64).reshape(-1, 3)
    return pal.size > 0 and bool((pal[:, 0] == pal[:, 1]).all() and (pal[:, 1] == pal[:, 2]).all())


def read_mask(mask: Any, label_set: LabelSet, name: str = "mask") -> np.ndarray:
    """A mask as (H, W) uint8 ids: a file (ids or the label set's colours), a PIL image or an array."""
    if isinstance(mask, (str, os.PathLike)):
        from . import checks

        return load_mask_file(checks.input_file(mask, name, "mask file"), label_set)
    arr = np.asarray(mask)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = label_set.from_colors(arr[..., :3], source=name)
    if arr.ndim != 2:
        raise ValueError(f"{name}: a mask must be H x W class ids (or an H x W x 3 colour mask), got shape {arr.shape}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= label_set.num_classes):
        raise ValueError(f"{name}: class id {int(arr.max())} is out of range for {label_set.num_classes} classes")
    return np.ascontiguousarray(arr, dtype=np.uint8)


# ============================================================================ framing
@dataclass(frozen=True)
class Framing:
    """How a face is framed: CelebA-HQ's rule (the defaults), its square scaled by ``scale``.

    ``scale > 1`` shows more around the face (long hair, a hat); the square's centre stays.
    """

    scale: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and 0.25 <= self.scale <= 4):
            raise ValueError(f"framing scale {self.scale!r}: give a number in [0.25, 4] (1 = CelebA-HQ's framing)")


@dataclass(frozen=True)
class Box:
    """A square in photo pixels: columns ``x0 .. x0 + side - 1``, rows ``y0 .. y0 + side - 1`` (may leave the photo)."""

    x0: int
    y0: int
    side: int

    def __str__(self) -> str:
        return f"{self.side} px square at x {self.x0}, y {self.y0}"

    def visible(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the part inside a photo of that size (x1, y1 exclusive)."""
        return max(self.x0, 0), max(self.y0, 0), min(self.x0 + self.side, width), min(self.y0 + self.side, height)

    def padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Pixels of the square outside the photo: (left, top, right, bottom)."""
        return (max(-self.x0, 0), max(-self.y0, 0), max(self.x0 + self.side - width, 0),
                max(self.y0 + self.side - height, 0))

    def close_to(self, other: "Box", tol: float = 0.02) -> bool:
        t = tol * max(self.side, other.side)
        return (abs(self.x0 + self.side / 2 - other.x0 - other.side / 2) <= t
                and abs(self.y0 + self.side / 2 - other.y0 - other.side / 2) <= t and abs(self.side - other.side) <= t)


def _class_ids(label_set: LabelSet, names: Iterable[str]) -> list[int]:
    return [label_set.names.index(n) for n in names if n in label_set.names]


def face_class_ids(label_set: LabelSet) -> list[int]:
    ids = _class_ids(label_set, FACE_CLASSES)
    if "skin" not in label_set.names:
        raise ValueError(f"the label set {label_set.name!r} has no face classes (skin, eyes, mouth ...): photos can be "
                         "framed only for face label sets; give crops at the model's size instead")
    return ids


def frame_face(mask: np.ndarray, label_set: LabelSet = CELEBAMASK_HQ, framing: Framing = Framing(),
               source: str = "mask") -> Box:
    """The face's square in a mask of class ids (CelebA-HQ's framing; see the module's docstring).

    The face is the largest connected region of face classes; with several faces, the
    largest is framed. No face classes at all is a one-line ``ValueError``.
    """
    from scipy import ndimage

    h, w = mask.shape
    k = max(1, math.ceil(max(h, w) / _FRAME_READ))  # read every k-th pixel: bounded time and memory
    small = mask[k // 2::k, k // 2::k]
    face = np.isin(small, face_class_ids(label_set))
    if not face.any():
        raise ValueError(f"{source}: no face in the mask (no {', '.join(FACE_CLASSES[:2])}, eye or mouth pixels); "
                         "give a mask with the face, or a parser that finds it")
    labels, n = ndimage.label(face)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        face = labels == int(sizes.argmax())

    def to_photo(v: np.ndarray) -> np.ndarray:  # subsampled (x, y) -> photo pixel coordinates
        return v * k + k // 2

    ys, xs = np.nonzero(face)
    bw, bh = (xs.max() - xs.min() + 1) * k, (ys.max() - ys.min() + 1) * k
    extent_side = max(2.0 * bw, 1.6 * bh)
    extent_centre = to_photo(np.array([(xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2])) - [0, 0.085 * extent_side]

    def centroid(names: Sequence[str]) -> np.ndarray | None:
        ids = _class_ids(label_set, names)
        sel = face & np.isin(small, ids) if ids else None
        if sel is None or not sel.any():
            return None
        yy, xx = np.nonzero(sel)
        return to_photo(np.array([xx.mean(), yy.mean()]))

    le, re, mouth = centroid(["l_eye"]), centroid(["r_eye"]), centroid(_MOUTH)
    side, centre = extent_side, extent_centre
    if le is not None and re is not None and mouth is not None:
        eyes = (le + re) / 2
        e2e, e2m = le - re, mouth - eyes
        landmark_side = 2 * max(2.0 * float(np.hypot(*e2e)), 1.8 * float(np.hypot(*e2m)))
        if 0.5 * extent_side <= landmark_side <= 2 * extent_side:  # landmarks that disagree with the face are noise
            side, centre = landmark_side, eyes + 0.1 * e2m
    side = max(int(round(side * framing.scale)), 1)
    if side < 8:
        raise ValueError(f"{source}: the face is too small to frame ({side} px square); use a larger photo")
    return Box(int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2)), side)


# ============================================================================ cropping
def _square(arr: np.ndarray, box: Box) -> np.ndarray:
    """The box's pixels, the photo's edge repeated where the box leaves it."""
    h, w = arr.shape[:2]
    x0, y0, x1, y1 = box.visible(h, w)
    if x0 >= x1 or y0 >= y1:
        raise ValueError(f"the face square {box} lies outside the {w}x{h} photo")
    sub = arr[y0:y1, x0:x1]
    left, top, right, bottom = box.padding(h, w)
    if left or top or right or bottom:
        pad = ((top, bottom), (left, right)) + ((0, 0),) * (arr.ndim - 2)
        sub = np.pad(sub, pad, mode="edge")
    return sub


def crop_image(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The box of an (H, W, 3) uint8 photo resampled to (size, size, 3) (Lanczos, antialiased).

    A box more than 4x the output is first reduced by an integer factor (block averages, as
    Pillow's ``reducing_gap`` does) and padded at that scale, so a large square is never
    padded at full resolution.
    """
    h, w = image.shape[:2]
    f = box.side // (2 * size)
    if f < 2:
        sub = Image.fromarray(np.ascontiguousarray(_square(image, box)))
        return np.asarray(sub.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)
    x0, y0, x1, y1 = box.visible(h, w)
    if x0 >= x1 or y0 >= y1:
        raise ValueError(f"the face square {box} lies outside the {w}x{h} photo")
    reduced = np.asarray(Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1])).reduce(f))
    rx, ry = (x0 - box.x0) / f, (y0 - box.y0) / f  # where the visible part starts in the square, reduced px
    left, top = math.ceil(rx), math.ceil(ry)
    right = max(math.ceil(box.side / f - rx - reduced.shape[1]), 0)
    bottom = max(math.ceil(box.side / f - ry - reduced.shape[0]), 0)
    if left or top or right or bottom:
        reduced = np.pad(reduced, ((top, bottom), (left, right), (0, 0)), mode="edge")
    src = (left - rx, top - ry, left - rx + box.side / f, top - ry + box.side / f)
    out = Image.fromarray(reduced).resize((size, size), Image.Resampling.LANCZOS, box=src)
    return np.asarray(out, dtype=np.uint8)


def _nearest(start: int, side: int, n: int, lo: int, hi: int) -> np.ndarray:
    """Source indices of n nearest-neighbour samples across [start, start + side), clipped to [lo, hi)."""
    return np.clip(np.floor(start + (np.arange(n) + 0.5) * side / n).astype(np.int64), lo, hi - 1)


def crop_mask(mask: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The box of an (H, W) id mask at (size, size), nearest neighbour (the edge repeated outside the photo)."""
    h, w = mask.shape
    ys, xs = _nearest(box.y0, box.side, size, 0, h), _nearest(box.x0, box.side, size, 0, w)
    return np.ascontiguousarray(mask[np.ix_(ys, xs)], dtype=np.uint8)


def _paste_ids(full: np.ndarray, ids: np.ndarray, box: Box) -> None:
    """Write (S, S) ids parsed from the box into the full-resolution mask (nearest, clipped to the photo)."""
    h, w = full.shape
    x0, y0, x1, y1 = box.visible(h, w)
    s = ids.shape[0]
    ys = _nearest(0, s, box.side, 0, s)[y0 - box.y0:y1 - box.y0]
    xs = _nearest(0, s, box.side, 0, s)[x0 - box.x0:x1 - box.x0]
    full[y0:y1, x0:x1] = ids[np.ix_(ys, xs)]


# ============================================================================ parsing
class FaceParser:
    """A face parser that gives ids in a model's label set.

    Wraps :class:`~scadm.models.face_parser.BiSeNetParser` (face-parsing.PyTorch's ``79999_iter.pth``,
    whose label order it already maps to CelebAMask-HQ's official order) or a
    :class:`~scadm.models.face_parser.CompactParser` (``scadm train-parser``), and maps its classes to
    `label_set` by name. ``input_size``: the side of the square it sees (BiSeNet 512; a compact
    parser its training size, else `default_size`).
    """

    def __init__(self, net: Any, label_set: LabelSet = CELEBAMASK_HQ, source: str = "parser",
                 default_size: int = 512, device: Any = "cpu") -> None:
        import torch

        self.net = net.eval().to(device)
        self.device = torch.device(device)
        self.source = source
        names = tuple(getattr(net, "label_names", ()) or ())
        if not names:
            names = CELEBAMASK_HQ.names if net.num_classes == CELEBAMASK_HQ.num_classes else ()
        missing = [n for n in names if n not in label_set.names]
        if not names or missing:
            raise ValueError(f"{source}: its classes ({', '.join(missing or names) or 'unnamed'}) are not in the "
                             f"model's label set {label_set.name!r}; use a parser trained on that label set, or --mask")
        self.lut = np.array([label_set.names.index(n) for n in names], dtype=np.uint8)
        size = int(getattr(net, "input_size", None) or default_size)
        self.input_size = size + (-size) % 8  # the compact parser needs sides divisible by 8

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """(S, S, 3) uint8 -> (S, S) uint8 ids in the label set."""
        import torch

        x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float().to(self.device) / 127.5 - 1
        with torch.no_grad():
            ids = self.net.parse(x)[0].cpu().numpy()
        return self.lut[ids]


def load_face_parser(spec: Any, label_set: LabelSet = CELEBAMASK_HQ, default_size: int = 512,
                     device: Any = "cpu", source: str | None = None) -> FaceParser:
    """A :class:`FaceParser` from a path (BiSeNet ``.pth`` or a compact-parser folder), a parser module, or itself."""
    if isinstance(spec, FaceParser):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        from .models.face_parser import load_parser

        return FaceParser(load_parser(spec), label_set, source or str(spec), default_size, device)
    return FaceParser(spec, label_set, source or type(spec).__name__, default_size, device)


def _parser_hint(mask_option: str | None = "--mask") -> str:
    """What to do instead of (or about) parsing: give the mask, or a photo parser and where it comes from."""
    from .models.face_parser import BISENET_WEIGHTS

    mask = f"give the face's mask ({mask_option}), or " if mask_option else ""
    return f"{mask}run `scadm fetch parser` and add --parser parser (or any {BISENET_WEIGHTS}, or ${PARSER_ENV})"


#: where a parser came from when it is the model folder's own (see resolve_parser)
OWN_PARSER = "the model's own face_parser"


def own_parser_folder(model_folder: str | os.PathLike | None) -> Path | None:
    """A model folder's own parser: its ``face_parser/`` component, or ``parser/`` (scadm < 0.2); else None."""
    if model_folder is None:
        return None
    for name in ("face_parser", "parser"):
        own = Path(model_folder) / name
        if own.is_dir():
            return own
    return None


def resolve_parser(parser: Any = None, model_folder: str | os.PathLike | None = None) -> tuple[Any, str] | None:
    """Which face parser to use, by one rule: the given one (``--parser``), else ``$SCADM_PARSER``,
    else the model folder's own (``face_parser/``) unless it knows only scadm's synthetic faces (the
    bundled model's: it runs on a photo only when named with ``--parser``), else, for a model trained
    on photos, the parser ``scadm fetch parser`` downloaded, else None. Returns (path or parser
    object, where it came from)."""
    if parser is not None:
        return parser, "--parser"
    env = os.environ.get(PARSER_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"${PARSER_ENV} {p}: no such parser file; {_parser_hint()}")
        return p, f"${PARSER_ENV}"
    own = own_parser_folder(model_folder)
    if own is not None:
        from .models.face_parser import SYNTHETIC_DOMAIN, parser_domain

        pths = sorted(own.glob("*.pth"))
        spec = pths[0] if pths and not any((own / f).is_file() for f in ("parser.json", "config.json")) else own
        if parser_domain(spec) != SYNTHETIC_DOMAIN:
            return spec, OWN_PARSER
    if model_folder is not None and _photo_model(model_folder):
        from .fetch import resolve

        got = resolve("parser")
        if got is not None:
            return got, FETCHED_PARSER
    return None


#: where a parser came from when it is the one `scadm fetch parser` downloaded
FETCHED_PARSER = "the fetched parser (scadm fetch parser)"


def _photo_model(model_folder: str | os.PathLike) -> bool:
    """Whether a model folder's model was trained on photos (not on scadm's synthetic faces)."""
    from .models.face_parser import SYNTHETIC_DOMAIN
    from .models.ldm import read_model_config

    try:
        domain = read_model_config(model_folder).domain
    except (OSError, ValueError):
        return False
    return domain is not None and domain != SYNTHETIC_DOMAIN


#: a parsed face's eyes, nose and mouth must each cover at least this fraction of its skin
_MIN_PART = 0.002


def implausible_face(mask: np.ndarray, box: Box, label_set: LabelSet = CELEBAMASK_HQ) -> str | None:
    """Why a parsed mask is not a face the model could mean (None: it is plausible).

    Inside the face's square: skin, the eyes (or glasses), the nose and the mouth (or lips) are
    present, each covering at least 0.2 % of the skin, with the eyes above the nose above the
    mouth and all three inside the skin's extent. A parser shown what it was not trained on (a
    synthetic-face parser on a photo, a photo of no face) fails this; a real face passes it.
    """
    if "skin" not in label_set.names:
        return None  # not a face label set: nothing to check against
    h, w = mask.shape
    x0, y0, x1, y1 = box.visible(h, w)
    k = max(1, math.ceil(max(x1 - x0, y1 - y0) / _FRAME_READ))
    sq = mask[y0:y1:k, x0:x1:k]
    skin = sq == label_set.index("skin")
    if skin.sum() < 16:
        return "no skin around the face"
    centre = {}
    for what, names in (("eyes", ("l_eye", "r_eye", "eye_g")), ("nose", ("nose",)), ("mouth", _MOUTH)):
        sel = np.isin(sq, _class_ids(label_set, names))
        if sel.sum() < max(1.0, _MIN_PART * skin.sum()):
            return f"no {what} inside the face"
        yy, xx = np.nonzero(sel)
        centre[what] = (yy.mean(), xx.mean())
    if not centre["eyes"][0] < centre["nose"][0] < centre["mouth"][0]:
        return "the eyes, nose and mouth are not one above the other"
    ys, xs = np.nonzero(skin)
    if not all(ys.min() <= cy <= ys.max() and xs.min() <= cx <= xs.max() for cy, cx in centre.values()):
        return "the eyes, nose and mouth lie outside the skin"
    return None


def check_parsed_face(mask: np.ndarray, box: Box, parser: str, source: str, label_set: LabelSet = CELEBAMASK_HQ,
                      mask_option: str | None = "--mask") -> None:
    """A one-line ValueError when a parsed mask is not a plausible face (:func:`implausible_face`)."""
    why = implausible_face(mask, box, label_set)
    if why is not None:
        raise ValueError(f"{source}: the parsed mask is not a plausible face ({why}; parsed by {parser}), so no edit "
                         f"of it could mean anything: {_parser_hint(mask_option)}")


def no_parser_error(what: str = "the photo", mask_option: str | None = "--mask",
                    model_folder: str | os.PathLike | None = None) -> ValueError:
    need = "needs its mask, or a face parser to parse one," if mask_option else "needs a face parser to be parsed,"
    return ValueError(f"{what} {need} and none is set{_synthetic_parser_note(model_folder)}: "
                      f"{_parser_hint(mask_option)}")


def _synthetic_parser_note(model_folder: str | os.PathLike | None) -> str:
    """Why a model folder's own parser was not used (it knows only synthetic faces), or ''."""
    from .models.face_parser import SYNTHETIC_DOMAIN, parser_domain

    own = own_parser_folder(model_folder)
    if own is None or parser_domain(own) != SYNTHETIC_DOMAIN:
        return ""
    return f" (the model's own parser knows only {SYNTHETIC_DOMAIN}; --parser {own} runs it anyway)"


def parse_photo(image: np.ndarray, parser: FaceParser, label_set: LabelSet = CELEBAMASK_HQ,
                framing: Framing = Framing(), passes: int = 8, source: str = "photo",
                mask_option: str | None = "--mask") -> tuple[np.ndarray, Box]:
    """Parse a photo coarse to fine -> (full-resolution (H, W) id mask, the face's square).

    The parser first sees the whole photo (letterboxed into its input square); the face is
    framed from that, and the face's square is parsed again at the parser's input size, so it
    sees the face at the scale it was trained on; this repeats (at most `passes` times) until
    the square moves by less than 2 % of its side. A face far smaller than the photo is seen small
    at first, so the first squares are too large and each pass closes in by 10-30 %: converging
    on a face that fills a third of the photo's side takes 4-6 passes. The returned mask is the coarse parse with
    the last fine parse written over the face's square; :func:`frame_face` of it gives the box.
    """
    h, w = image.shape[:2]
    s = parser.input_size
    full = np.zeros((h, w), dtype=np.uint8)
    whole, small = _letterbox(image, s)
    _paste_ids(full, parser(small), whole)
    try:
        box = frame_face(full, label_set, framing, source=source)
    except ValueError:
        raise ValueError(f"{source}: the parser ({parser.source}) found no face; {_parser_hint(mask_option)}") from None
    for _ in range(passes):
        fine = Box(*_parse_square(box, framing))
        _paste_ids(full, parser(crop_image(image, fine, s)), fine)
        new = frame_face(full, label_set, framing, source=source)
        done = new.close_to(box)
        box = new
        if done:
            break
    return full, box


def _letterbox(image: np.ndarray, s: int) -> tuple[Box, np.ndarray]:
    """The whole photo in an (s, s) square (its edges repeated), resized before padding so that a large
    photo is never padded at full resolution; and the square's box in photo pixels."""
    h, w = image.shape[:2]
    side = max(h, w)
    nw, nh = max(1, round(w * s / side)), max(1, round(h * s / side))
    small = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.LANCZOS, reducing_gap=3.0))
    top, left = (s - nh) // 2, (s - nw) // 2
    small = np.pad(small, ((top, s - nh - top), (left, s - nw - left), (0, 0)), mode="edge")
    return Box((w - side) // 2, (h - side) // 2, side), small


def _parse_square(box: Box, framing: Framing) -> tuple[int, int, int]:
    """The square a fine parse sees: the face's square at CelebA-HQ's framing (parsers are trained on such crops)."""
    side = max(int(round(box.side / framing.scale)), 8)
    cx, cy = box.x0 + box.side / 2, box.y0 + box.side / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


# ============================================================================ the photo
@dataclass
class Photo:
    """A photo made ready for the model: its face's square cut out at the model's size.

    ``image``/``mask``: the full-resolution upright photo (H, W, 3) and its id mask (H, W);
    ``box``: the face's square in photo pixels; ``crop``/``crop_mask``: that square at the
    model's size; ``mask_source``: ``"given"`` or the parser that made the mask.
    """

    image: np.ndarray
    mask: np.ndarray
    box: Box
    crop: np.ndarray
    crop_mask: np.ndarray
    label_set: LabelSet = CELEBAMASK_HQ
    mask_source: str = "given"
    icc_profile: bytes | None = None
    source: str = "photo"

    @property
    def size(self) -> int:
        return int(self.crop.shape[0])

    @classmethod
    def of_crop(cls, image: np.ndarray, mask: np.ndarray, label_set: LabelSet = CELEBAMASK_HQ) -> "Photo":
        """A face already cut at the model's (square) size, as a photo whose face square is all of it: nothing
        is framed or resampled, and an edit pasted back keeps every pixel it did not change."""
        h, w = mask.shape
        if image.shape[:2] != (h, w) or h != w:
            raise ValueError(f"a crop is a square image with its mask, got {image.shape[1]}x{image.shape[0]} and {w}x{h}")
        return cls(image, mask, Box(0, 0, h), image, mask, label_set, "given", None, "crop")

    def with_mask(self, mask: np.ndarray) -> np.ndarray:
        """Another mask of this photo (an edited one, same size) cut to the face's square at the model's size."""
        m = read_mask(mask, self.label_set, "mask")
        m = _fit_mask(m, self.image.shape[:2], "mask")
        return crop_mask(m, self.box, self.size)


def _fit_mask(mask: np.ndarray, shape: tuple[int, int], name: str, source: str = "the photo") -> np.ndarray:
    """A mask brought to the photo's size: equal, or the same aspect ratio (nearest, with a warning)."""
    h, w = shape
    mh, mw = mask.shape
    if (mh, mw) == (h, w):
        return mask
    if (mh, mw) == (w, h) and h != w:
        raise ValueError(f"{name} is {mw}x{mh} but {source} is {w}x{h} once turned upright (its EXIF orientation); "
                         "draw the mask on the upright photo (`scadm parse` writes one)")
    if abs(mh / mw - h / w) > 0.01:
        raise ValueError(f"{name} is {mw}x{mh} but {source} is {w}x{h} (another aspect ratio): give a mask of the "
                         "photo's size")
    warnings.warn(f"{name} resized from {mw}x{mh} to the photo's {w}x{h} (nearest)", PhotoWarning, stacklevel=3)
    return np.asarray(Image.fromarray(mask).resize((w, h), Image.Resampling.NEAREST))


def prepare_photo(image: PhotoLike, mask: Any = None, *, size: int | Sequence[int],
                  label_set: LabelSet = CELEBAMASK_HQ, parser: Any = None, framing: Framing = Framing(),
                  name: str = "image", mask_option: str = "--mask") -> Photo:
    """Load a photo, take its mask (given, or parsed by `parser`), frame the face and cut it out.

    `size`: the model's image size (square). `parser`: a :class:`FaceParser`, a parser path or
    module; needed only without `mask` (else a one-line error says where to get one). A parsed
    mask that is not a plausible face (:func:`implausible_face`) is a one-line error naming the
    photo and `mask_option` (the option that gives this photo's mask).
    """
    n = _square_size(size)
    arr, info = load_photo(image, name)
    source = info["source"]
    if mask is None:
        if parser is None:
            raise no_parser_error(source, mask_option)
        fp = load_face_parser(parser, label_set, default_size=n)
        full, box = parse_photo(arr, fp, label_set, framing, source=source, mask_option=mask_option)
        check_parsed_face(full, box, fp.source, source, label_set, mask_option=mask_option)
        mask_source = f"parsed by {fp.source}"
    else:
        full = _fit_mask(read_mask(mask, label_set, "mask"), arr.shape[:2], "mask", source)
        box = frame_face(full, label_set, framing, source=str(mask) if isinstance(mask, (str, os.PathLike)) else "mask")
        mask_source = "given"
    photo = Photo(arr, full, box, crop_image(arr, box, n), crop_mask(full, box, n), label_set, mask_source,
                  info["icc_profile"], source)
    _warn_framing(photo)
    return photo


def _square_size(size: int | Sequence[int]) -> int:
    if isinstance(size, (int, np.integer)):
        return int(size)
    h, w = (int(s) for s in size)
    if h != w:
        raise ValueError(f"photos are framed as squares, but the model works at {h}x{w}; give crops at that size")
    return h


def _warn_framing(photo: Photo) -> None:
    h, w = photo.image.shape[:2]
    pad = photo.box.padding(h, w)
    if any(pad):
        warnings.warn(f"{photo.source}: the face's square leaves the photo by {max(pad)} px; the missing part is padded "
                      "with the photo's edge pixels (never pasted back)", PhotoWarning, stacklevel=3)
    if photo.box.side < photo.size:
        warnings.warn(f"{photo.source}: the face's square is {photo.box.side} px, smaller than the model's {photo.size} "
                      "px; it is upsampled, so the edit is softer than the photo", PhotoWarning, stacklevel=3)


def frame_mask(mask: Any, size: int | Sequence[int], label_set: LabelSet = CELEBAMASK_HQ,
               framing: Framing = Framing(), name: str = "mask") -> tuple[np.ndarray, Box]:
    """A mask of a photo (no image) framed like a photo: (its face's square at the model's size, the box)."""
    m = read_mask(mask, label_set, name)
    box = frame_face(m, label_set, framing, source=str(mask) if isinstance(mask, (str, os.PathLike)) else name)
    return crop_mask(m, box, _square_size(size)), box


# ============================================================================ paste-back
def feather_radius(side: int) -> int:
    """The paste-back's feather radius for a face square of `side` photo pixels."""
    return max(2, int(round(FEATHER * side)))


def _edge_ramp(n: int, r: int, low_inside: bool, high_inside: bool) -> np.ndarray:
    i = np.arange(n, dtype=np.float32)
    ramp = np.ones(n, dtype=np.float32)
    if low_inside:
        ramp = np.minimum(ramp, (i + 0.5) / r)
    if high_inside:
        ramp = np.minimum(ramp, (n - i - 0.5) / r)
    return np.clip(ramp, 0, 1)


def edit_region(photo: Photo, parts: Iterable[int] | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """The paste-back weight over the face's square, (side, side) float32 in [0, 1].

    `parts` None: the square itself, ramped over the feather radius at its edges inside the
    photo (reconstruction, total swap, generation, mask edits). Else the pixels of `parts` in
    the generation mask (`mask`, default the photo's), grown by the radius and feathered over
    another radius (partial swap, interpolation, mix), times that edge ramp.
    """
    h, w = photo.image.shape[:2]
    box, s = photo.box, photo.box.side
    r = feather_radius(s)
    left, top, right, bottom = box.padding(h, w)
    ax = _edge_ramp(s, r, left == 0 and box.x0 > 0, right == 0 and box.x0 + s < w)
    ay = _edge_ramp(s, r, top == 0 and box.y0 > 0, bottom == 0 and box.y0 + s < h)
    edge = np.minimum(ay[:, None], ax[None, :])
    if parts is None:
        return edge
    from scipy import ndimage

    sel = np.isin(_square(photo.mask if mask is None else mask, box), sorted({int(p) for p in parts}))
    out = np.zeros((s, s), dtype=np.float32)
    if not sel.any():
        names = ", ".join(photo.label_set.names[int(p)] for p in sorted(set(parts)))
        warnings.warn(f"{photo.source}: none of the edited parts ({names}) is in the face's square of the mask; "
                      "the photo is unchanged", PhotoWarning, stacklevel=3)
        return out
    ys, xs = np.nonzero(sel)
    m = 2 * r + 1  # the weight reaches 0 at 2r from the parts: the distance is needed only that far
    y0, y1, x0, x1 = max(ys.min() - m, 0), min(ys.max() + m + 1, s), max(xs.min() - m, 0), min(xs.max() + m + 1, s)
    dist = ndimage.distance_transform_edt(~sel[y0:y1, x0:x1])
    out[y0:y1, x0:x1] = np.clip(2.0 - dist / r, 0, 1)
    return out * edge


def paste_back(photo: Photo, result: Any, parts: Iterable[int] | None = None,
               mask: np.ndarray | None = None) -> np.ndarray:
    """The generated crop composited into the full-resolution photo -> (H, W, 3) uint8.

    `result`: the generated crop (PIL image or (N, N, 3) uint8 array). Only the
    :func:`edit_region` (of `parts`; None = the face's square) changes; every other pixel is
    the input's, bit for bit.
    """
    gen = result if isinstance(result, Image.Image) else Image.fromarray(np.asarray(result, dtype=np.uint8))
    alpha = edit_region(photo, parts, mask)
    out = photo.image.copy()
    if not (alpha > 0).any():
        return out
    h, w = out.shape[:2]
    box = photo.box
    ys, xs = np.nonzero(alpha > 0)
    # only the rows and columns that change are resampled and blended (bounded memory for large photos)
    ry0, ry1 = max(ys.min(), -box.y0, 0), min(ys.max() + 1, h - box.y0)
    rx0, rx1 = max(xs.min(), -box.x0, 0), min(xs.max() + 1, w - box.x0)
    if ry0 >= ry1 or rx0 >= rx1:
        return out
    scale = gen.width / box.side
    big = gen.convert("RGB").resize((int(rx1 - rx0), int(ry1 - ry0)), Image.Resampling.BICUBIC,
                                    box=(rx0 * scale, ry0 * scale, rx1 * scale, ry1 * scale))
    a = alpha[ry0:ry1, rx0:rx1, None]
    y0, x0 = box.y0 + ry0, box.x0 + rx0
    orig = out[y0:y0 + (ry1 - ry0), x0:x0 + (rx1 - rx0)]
    blend = np.rint(orig + (np.asarray(big, dtype=np.float32) - orig) * a).clip(0, 255).astype(np.uint8)
    orig[...] = np.where(a > 0, blend, orig)
    return out


def save_photo(array: np.ndarray, path: str | os.PathLike, icc_profile: bytes | None = None) -> Path:
    """Write a photo atomically by its extension: PNG (lossless), JPEG (quality 95, 4:4:4), WebP, TIFF, BMP;
    the input's colour profile is kept."""
    import io

    from .data.layout import _atomic_write_bytes

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in PHOTO_EXTENSIONS:
        raise ValueError(f"{path}: cannot write {ext or 'a file without extension'}; use one of {', '.join(PHOTO_EXTENSIONS)}")
    img = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8))
    kwargs: dict[str, Any] = {"icc_profile": icc_profile} if icc_profile else {}
    if ext in (".jpg", ".jpeg"):
        kwargs.update(format="JPEG", quality=95, subsampling=0)
    elif ext == ".webp":
        kwargs.update(format="WEBP", quality=95)
    elif ext == ".png":
        kwargs.update(format="PNG", compress_level=6)
    else:
        kwargs.update(format={".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}[ext])
        if ext == ".bmp":
            kwargs.pop("icc_profile", None)
    buf = io.BytesIO()
    img.save(buf, **kwargs)
    _atomic_write_bytes(path, buf.getvalue())
    return path
