"""Procedural synthetic faces with exact semantic masks and ground-truth styles.

This is the project's embedded default dataset (it needs no download) and the ground
truth for its benchmarks: every pixel's class is known exactly, and so is the style
(base colour + texture) of every region, so edits can be measured.

Each face is drawn from random *factors* (geometry, accessories, hair style, colours,
textures) with ``numpy.random.default_rng([seed, index])``, so a face depends only on
``(seed, index)`` and on nothing global. All shapes are defined on coordinate grids in
normalised units (fractions of ``min(H, W)``, then of the head width), so any output size
works, square or not, and the proportions stay the same.

Conventions
-----------
* Classes: the 19 CelebAMask-HQ classes in the official order (:data:`scadm.labels.CELEBAMASK_HQ`).
* ``l_eye``, ``l_brow``, ``l_ear`` are the *person's* left, which is on the *image right*
  (as in CelebAMask-HQ).
* Proportions are stylised for a factor-4 autoencoder: at 64 px an eye is >= 8 px wide,
  lips, brows and necklaces are >= 4 px thick, earrings >= 4 px across.
* Frequencies: glasses 20 %, hat 15 %, earrings 25 %, necklace 20 %; hair short 35 %,
  long 35 %, bangs 20 %, bald 10 %; mouth open 40 %.
* Style of each region: ``{"class", "color": [r, g, b], "texture": flat|gradient|stripes|noise,
  "params": {...}}``. Textures and shading are modulations whose mean over the rendered
  region is removed, so the region's mean colour equals ``color`` up to rounding and rare
  clipping. ``params`` always has ``amplitude`` (peak modulation in 0..255 units) and
  ``shading`` (strength of the darkening towards the head edge, 0 if none); ``gradient``
  adds ``direction`` (degrees), ``stripes`` adds ``direction``, ``frequency`` (cycles per
  image height) and ``phase``; ``noise`` adds ``scale`` (cells per image height).

Attributes (the 40 CelebA names, :data:`scadm.labels.ATTRIBUTE_NAMES`), derived from the factors:

==================== ==========================================================
Eyeglasses           glasses drawn
Wearing_Hat          hat drawn
Wearing_Earrings     earrings drawn
Wearing_Necklace     necklace drawn
Mouth_Slightly_Open  mouth open
Smiling              mouth corners curved up (smile > 0.12)
Bangs / Bald         hair style "bangs" / "bald"
Receding_Hairline    short hair with a receding hairline
Black/Blond/Brown/   hair colour family (not for bald faces; "other" colours
Gray_Hair            set none)
Pale_Skin            the palest skin-tone family
Narrow_Eyes          eye height below 0.14 head widths
Big_Lips             lip thickness in the top third of its range
Wearing_Lipstick     strongly saturated red lips
Bushy_Eyebrows       brow thickness in the top third of its range
Arched_Eyebrows      strong brow arch
Big_Nose             nose width in the top third of its range
Oval_Face            head aspect (height / width) > 1.25
No_Beard             always 1 (no beards are drawn)
==================== ==========================================================

All other attributes are 0.

Splits: ``train`` = indices ``[0, n)``; ``test`` = indices ``[1_000_000, 1_000_000 + n)``
(:func:`synthetic_split_ids`). They never overlap; benchmarks use ``test``.
"""

from __future__ import annotations

import colorsys
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from ..labels import ATTRIBUTE_NAMES, CELEBAMASK_HQ
from .layout import parse_size, save_png, write_attributes, write_split, write_text_atomic

__all__ = [
    "SyntheticFace",
    "render_face",
    "synthetic_split_ids",
    "write_synthetic_dataset",
    "TEST_OFFSET",
]

#: First index of the held-out test split.
TEST_OFFSET = 1_000_000
#: Bumped whenever the generator's output changes, so old synth folders are not resumed.
GENERATOR_VERSION = 1

_NAMES = CELEBAMASK_HQ.names
_C = {n: i for i, n in enumerate(_NAMES)}
_NC = len(_NAMES)
TEXTURES = ("flat", "gradient", "stripes", "noise")
_NOISE_GRID = 9  # noise lattice size per class (max scale 7 cells + 1 + margin)


class _Stream:
    """Uniform numbers drawn in one block from a numpy Generator and handed out in order.

    Per-call ``Generator.uniform`` costs microseconds; a face needs ~200 draws, so one block
    keeps generation fast while staying a pure function of the generator's seed.
    """

    def __init__(self, rng: np.random.Generator, n: int = 400) -> None:
        self._vals = rng.random(n).tolist()
        self._i = 0

    def random(self) -> float:
        x = self._vals[self._i]
        self._i += 1
        return x

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.random()

    def integers(self, lo: int, hi: int | None = None) -> int:
        if hi is None:
            lo, hi = 0, lo
        return min(lo + int(self.random() * (hi - lo)), hi - 1)

    def choice(self, options: Sequence, p: Sequence[float]):
        x, acc = self.random(), 0.0
        for opt, q in zip(options, p):
            acc += q
            if x < acc:
                return opt
        return options[-1]


@dataclass
class SyntheticFace:
    """One synthetic face: image (H, W, 3) uint8, label (H, W) uint8 class ids,
    attributes (40,) uint8 0/1 in :data:`ATTRIBUTE_NAMES` order, and styles
    {class name: style record} for every class present in ``label``."""

    image: np.ndarray
    label: np.ndarray
    attributes: np.ndarray
    styles: dict[str, dict]
    factors: dict = field(default_factory=dict)


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in units of min(H, W), origin at the image centre."""
    s = float(min(h, w))
    v = ((np.arange(h) + 0.5 - h / 2) / s)[:, None] * np.ones((1, w))
    u = ((np.arange(w) + 0.5 - w / 2) / s)[None, :] * np.ones((h, 1))
    return u, v


def _hsv(h: float, s: float, v: float) -> list[int]:
    rgb = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    # Keep base colours away from 0/255 so zero-mean textures rarely clip (clipping would bias the mean).
    return [min(max(int(round(c * 255)), 24), 231) for c in rgb]


_SKIN_TONES = [  # (hue, sat, val) families; index 0 is "pale"
    (0.07, 0.16, 0.93), (0.07, 0.28, 0.86), (0.07, 0.38, 0.76), (0.07, 0.48, 0.62), (0.06, 0.55, 0.45), (0.05, 0.55, 0.32),
]
_EYE_COLOURS = [(0.08, 0.7, 0.35), (0.58, 0.6, 0.75), (0.33, 0.5, 0.55), (0.6, 0.1, 0.6), (0.11, 0.6, 0.5), (0.05, 0.3, 0.15)]
_HAIR = {  # family -> (hue range, sat range, val range)
    "black": ((0.0, 1.0), (0.0, 0.3), (0.07, 0.16)),
    "brown": ((0.04, 0.09), (0.45, 0.75), (0.25, 0.5)),
    "blond": ((0.1, 0.14), (0.35, 0.6), (0.72, 0.9)),
    "gray": ((0.0, 1.0), (0.0, 0.06), (0.55, 0.8)),
    "other": ((0.0, 1.0), (0.55, 0.85), (0.45, 0.8)),
}


def _colour(cls: str, rng: _Stream, f: dict) -> list[int]:
    """A class-specific plausible base colour."""
    U = rng.uniform
    if cls in ("skin", "nose", "l_ear", "r_ear", "neck"):
        h, s, v = _SKIN_TONES[f["skin_tone"]]
        dv = {"skin": 0.0, "nose": -0.05, "l_ear": -0.04, "r_ear": -0.04, "neck": -0.08}[cls]
        return _hsv(h + U(-0.015, 0.015), s + U(-0.04, 0.04), v + dv + U(-0.03, 0.03))
    if cls in ("l_eye", "r_eye"):
        h, s, v = _EYE_COLOURS[int(rng.integers(len(_EYE_COLOURS)))]
        return _hsv(h + U(-0.03, 0.03), s + U(-0.1, 0.1), v + U(-0.1, 0.1))
    if cls in ("l_brow", "r_brow"):
        return _hsv(U(0.03, 0.1), U(0.2, 0.6), U(0.1, 0.45))
    if cls == "hair":
        hr, sr, vr = _HAIR[f["hair_colour"]]
        return _hsv(U(*hr), U(*sr), U(*vr))
    if cls == "mouth":
        return _hsv(U(-0.03, 0.03), U(0.3, 0.7), U(0.12, 0.3))
    if cls in ("u_lip", "l_lip"):
        if f["lipstick"]:
            return _hsv(U(-0.04, 0.02), U(0.78, 0.95), U(0.6, 0.85))
        return _hsv(U(-0.03, 0.04), U(0.3, 0.55), U(0.5, 0.8))
    if cls == "eye_g":
        return _hsv(U(0, 1), U(0.0, 0.7), U(0.1, 0.55))
    if cls in ("ear_r", "neck_l"):
        kind = rng.integers(3)
        if kind == 0:  # gold
            return _hsv(U(0.11, 0.15), U(0.6, 0.8), U(0.75, 0.92))
        if kind == 1:  # silver
            return _hsv(U(0, 1), U(0.0, 0.08), U(0.7, 0.9))
        return _hsv(U(0, 1), U(0.6, 0.9), U(0.6, 0.9))
    # background, hat, cloth: anything
    return _hsv(U(0, 1), U(0.05, 0.85), U(0.2, 0.9))


def _factors(rng: _Stream) -> dict:
    """Sample every random choice of one face (geometry in head-width units unless noted)."""
    U = rng.uniform
    f: dict = {}
    f["a"] = U(0.235, 0.27)  # head half-width, fraction of min(H, W)
    f["asp"] = U(1.15, 1.32)  # head half-height / half-width
    f["cx"], f["cy"] = U(-0.04, 0.04), U(-0.08, -0.03)
    f["angle"] = U(-6.0, 6.0)  # degrees
    a = f["a"]
    px = 1.0 / (64.0 * a)  # one pixel at 64 px, in head-width units (for minimum thicknesses)
    f["eye_y"] = U(-0.32, -0.22)
    f["eye_x"] = U(0.40, 0.47)
    f["eye_w"] = U(0.29, 0.35)  # half-width: >= 8.5 px eye width at 64 px
    f["eye_h"] = U(0.12, 0.2)
    f["brow_gap"] = U(0.09, 0.14)
    f["brow_t"] = U(4.1, 5.3) * px
    f["brow_arch"] = U(0.03, 0.2)
    f["nose_w"] = U(0.15, 0.23)
    f["nose_len"] = U(0.44, 0.52)
    f["open"] = bool(rng.random() < 0.4)
    f["open_h"] = U(2.2, 4.0) * px if f["open"] else 1.5 * px  # full mouth-gap height
    f["smile"] = U(-0.05, 0.25)
    f["mouth_w"] = U(0.3, 0.4)
    f["lip_t"] = U(4.1, 5.3) * px
    f["lipstick"] = bool(rng.random() < 0.3)
    f["neck_w"] = U(0.48, 0.58)
    f["collar"] = U(0.3, 0.45)  # below the chin
    f["skin_tone"] = int(rng.choice(range(len(_SKIN_TONES)), p=[0.15, 0.25, 0.2, 0.15, 0.15, 0.1]))
    f["hair_style"] = rng.choice(["short", "long", "bangs", "bald"], p=[0.35, 0.35, 0.2, 0.1])
    f["receding"] = bool(f["hair_style"] == "short" and rng.random() < 0.25)
    f["hair_colour"] = rng.choice(list(_HAIR), p=[0.3, 0.3, 0.2, 0.1, 0.1])
    f["hairline"] = U(0.0, 0.12)
    f["hair_volume"] = U(1.08, 1.2)
    f["glasses"] = bool(rng.random() < 0.2)
    f["hat"] = bool(rng.random() < 0.15)
    f["hat_drop"] = U(0.0, 0.15)
    f["earrings"] = bool(rng.random() < 0.25)
    f["earring_r"] = U(2.4, 3.0) * px
    f["necklace"] = bool(rng.random() < 0.2)
    f["necklace_t"] = U(4.1, 4.8) * px
    f["necklace_y"] = U(-0.05, 0.12)
    # The mouth must fit above the chin: grow the head (aspect) when needed.
    nose_bottom = f["eye_y"] + f["nose_len"]
    lip_bottom = nose_bottom + 0.06 + 2 * f["lip_t"] + f["open_h"]
    f["asp"] = max(f["asp"], lip_bottom + 0.18)
    return f


def _attributes(f: dict) -> np.ndarray:
    on = {
        "Eyeglasses": f["glasses"],
        "Wearing_Hat": f["hat"],
        "Wearing_Earrings": f["earrings"],
        "Wearing_Necklace": f["necklace"],
        "Mouth_Slightly_Open": f["open"],
        "Smiling": f["smile"] > 0.12,
        "Bangs": f["hair_style"] == "bangs",
        "Bald": f["hair_style"] == "bald",
        "Receding_Hairline": f["receding"],
        "Black_Hair": f["hair_style"] != "bald" and f["hair_colour"] == "black",
        "Blond_Hair": f["hair_style"] != "bald" and f["hair_colour"] == "blond",
        "Brown_Hair": f["hair_style"] != "bald" and f["hair_colour"] == "brown",
        "Gray_Hair": f["hair_style"] != "bald" and f["hair_colour"] == "gray",
        "Pale_Skin": f["skin_tone"] == 0,
        "Narrow_Eyes": f["eye_h"] < 0.14,
        "Big_Lips": f["lip_t"] * 64 * f["a"] > 4.9,
        "Wearing_Lipstick": f["lipstick"],
        "Bushy_Eyebrows": f["brow_t"] * 64 * f["a"] > 4.9,
        "Arched_Eyebrows": f["brow_arch"] > 0.14,
        "Big_Nose": f["nose_w"] > 0.205,
        "Oval_Face": f["asp"] > 1.25,
        "No_Beard": True,
    }
    return np.array([1 if on.get(n, False) else 0 for n in ATTRIBUTE_NAMES], dtype=np.uint8)


def _shapes(f: dict, X: np.ndarray, Y: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Region masks in paint order (later ones cover earlier ones)."""
    asp = f["asp"]
    ax = np.abs(X)
    out: list[tuple[str, np.ndarray]] = []
    yn = Y / asp
    head_r2 = (X / (1.0 - 0.12 * yn)) ** 2 + yn**2  # egg: narrower at the chin
    head = head_r2 < 1.0

    # Neck and clothes. The neck is painted after the cloth, down to a U-shaped collar.
    y_c = asp + f["collar"]
    out.append(("cloth", Y > y_c - 0.12 + 0.12 * X**2))
    if f["hair_style"] == "long":  # hair behind the shoulders and neck
        hb = (X / 1.32) ** 2 + ((Y - 0.25) / (asp + 0.5)) ** 2 < 1.0
        out.append(("hair", hb))
    nw = f["neck_w"]
    out.append(("neck", (ax < nw) & (Y > 0) & (Y < y_c + 0.22 * (1 - (X / nw) ** 2))))
    if f["necklace"]:
        yl = y_c + f["necklace_y"] + 0.45 * X**2
        out.append(("neck_l", (ax < nw + 0.05) & (np.abs(Y - yl) < f["necklace_t"] / 2)))

    # Ears behind the head (the skin covers their inner half).
    ey0 = f["eye_y"] + 0.18
    ear = ((ax - 1.0) / 0.28) ** 2 + ((Y - ey0) / 0.36) ** 2 < 1.0
    out.append(("l_ear", ear & (X > 0)))
    out.append(("r_ear", ear & (X < 0)))
    out.append(("skin", head))
    if f["earrings"]:
        r = f["earring_r"]
        ring = ((ax - 1.04) ** 2 + (Y - (ey0 + 0.36 + r * 0.8)) ** 2) < r * r
        out.append(("ear_r", ring))

    # Nose: a trapezoid widening downwards.
    n_top, n_bot = f["eye_y"] + 0.06, f["eye_y"] + f["nose_len"]
    t = (Y - n_top) / (n_bot - n_top)
    out.append(("nose", (t > 0) & (t < 1) & (ax < f["nose_w"] * (0.45 + 0.55 * t))))

    # Brows (needed by hair and hat to keep clear of them).
    ey, eh, ew, ex = f["eye_y"], f["eye_h"], f["eye_w"], f["eye_x"]
    bt = f["brow_t"]
    by0 = ey - eh - f["brow_gap"] - bt / 2
    brow_top = by0 - bt / 2 - f["brow_arch"] * 0.1
    ear_top = ey0 - 0.36

    # Hair in front (above a hairline), never below the top of the ears.
    style = f["hair_style"]
    if style != "bald":
        vol = f["hair_volume"]
        cap = (X / vol) ** 2 + ((Y + 0.06) / (asp + 0.16)) ** 2 < 1.0
        if style == "bangs":
            hl0, curve = brow_top - 0.06, 0.08
        elif f["receding"]:
            hl0, curve = brow_top - 0.3 - f["hairline"], 0.25
        else:
            hl0, curve = brow_top - 0.08 - f["hairline"], 0.45
        hl = np.minimum(hl0 + curve * X**2, ear_top)
        out.append(("hair", cap & (Y < hl)))
    else:
        hl0 = brow_top - 0.1
    if f["hat"]:
        # The brim sits above the hairline so that some hair stays visible under the hat.
        yh = min(brow_top - 0.1, hl0 - 0.1) - f["hat_drop"]
        crown = (Y < yh) & ((X / 1.12) ** 2 + ((Y - yh) / (asp * 0.95)) ** 2 < 1.0)
        brim = (Y < yh) & (Y > yh - 0.17) & (ax < 1.38)
        out.append(("hat", crown | brim))

    # Glasses: filled lenses around the eyes + bridge + temples; the eyes are painted over them.
    if f["glasses"]:
        gx, gy = ew + 0.1, eh + 0.11
        lens = ((ax - ex) / gx) ** 4 + ((Y - ey) / gy) ** 4 < 1.0
        bridge = (ax < ex) & (np.abs(Y - (ey - 0.04)) < 0.045)
        temple = (ax > ex) & (ax < 1.0) & (np.abs(Y - (ey - 0.06)) < 0.045)
        out.append(("eye_g", lens | bridge | temple))

    eye = ((ax - ex) / ew) ** 2 + ((Y - ey) / eh) ** 2 < 1.0
    out.append(("l_eye", eye & (X > 0)))
    out.append(("r_eye", eye & (X < 0)))
    bx, bw = ex + 0.03, ew + 0.09
    dxb = (ax - bx) / bw
    brow = (np.abs(dxb) < 1.0) & (np.abs(Y - (by0 + f["brow_arch"] * (dxb**2 - 0.5))) < bt / 2)
    out.append(("l_brow", brow & (X > 0)))
    out.append(("r_brow", brow & (X < 0)))

    # Mouth: a gap between two lips that taper towards the corners; corners lift when smiling.
    mw, lt = f["mouth_w"], f["lip_t"]
    half = f["open_h"] / 2
    ym = n_bot + 0.06 + lt + half
    dxm = X / mw
    inside = np.abs(dxm) < 1.0
    g = np.sqrt(np.clip(1.0 - dxm**2, 0.0, 1.0))
    yc = ym - f["smile"] * (dxm**2 - 0.3)
    hg = half * (0.5 + 0.5 * g) if f["open"] else half
    dy = Y - yc
    thick = lt * (0.4 + 0.6 * g)
    out.append(("mouth", inside & (np.abs(dy) < hg)))
    out.append(("u_lip", inside & (dy <= -hg) & (dy > -hg - thick)))
    out.append(("l_lip", inside & (dy >= hg) & (dy < hg + thick)))
    return out


def _style(cls: str, rng: _Stream, f: dict) -> dict:
    U = rng.uniform
    colour = _colour(cls, rng, f)
    texture = TEXTURES[int(rng.integers(4))]
    small = cls in ("skin", "nose", "l_ear", "r_ear", "neck", "l_eye", "r_eye")
    params: dict = {"amplitude": round(U(3, 10) if small else U(6, 20), 2)}
    if texture == "flat":
        params["amplitude"] = 0.0
    elif texture == "gradient":
        params["direction"] = round(U(0, 360), 1)
    elif texture == "stripes":
        params["direction"] = round(U(0, 180), 1)
        params["frequency"] = round(U(3, 12), 2)
        params["phase"] = round(U(0, 2 * math.pi), 3)
    else:
        params["scale"] = int(rng.integers(2, 8))
    shaded = cls in ("skin", "nose", "l_ear", "r_ear", "hair", "neck")
    params["shading"] = round(U(8, 25), 2) if shaded else 0.0
    return {"class": cls, "color": [int(c) for c in colour], "texture": texture, "params": params}


def render_face(index: int, seed: int = 0, size: int | str | Sequence[int] = 64) -> SyntheticFace:
    """Render synthetic face ``index`` of generator ``seed`` at ``size`` (64, "64x96" or (H, W))."""
    h, w = parse_size(size)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index)])
    stream = _Stream(rng)
    f = _factors(stream)
    # Styles are drawn for all classes, in class order, whatever the geometry turns out to be.
    styles_all = [_style(n, stream, f) for n in _NAMES]
    noise_grid = rng.standard_normal((_NC, _NOISE_GRID, _NOISE_GRID))

    u, v = _grid(h, w)
    th = math.radians(f["angle"])
    cs, sn = math.cos(th), math.sin(th)
    du, dv = u - f["cx"], v - f["cy"]
    X = (du * cs + dv * sn) / f["a"]
    Y = (-du * sn + dv * cs) / f["a"]

    label = np.zeros((h, w), dtype=np.uint8)
    for name, mask in _shapes(f, X, Y):
        label[mask] = _C[name]

    # --- colour: per-pixel lookup of per-class parameters, then one vectorised pass.
    L = label.astype(np.intp)
    base = np.array([s["color"] for s in styles_all], dtype=np.float64)
    kind = np.array([TEXTURES.index(s["texture"]) for s in styles_all])
    amp = np.array([s["params"]["amplitude"] for s in styles_all])
    shade = np.array([s["params"]["shading"] for s in styles_all])
    ang = np.radians([s["params"].get("direction", 0.0) for s in styles_all])
    freq = np.array([s["params"].get("frequency", 0.0) for s in styles_all])
    phase = np.array([s["params"].get("phase", 0.0) for s in styles_all])
    scale = np.array([s["params"].get("scale", 2) for s in styles_all], dtype=np.float64)

    # Textures live in image coordinates (units of min(H, W)).
    proj = u * np.cos(ang)[L] + v * np.sin(ang)[L]
    k = kind[L]
    mod = np.zeros((h, w))
    sel = k == 1
    mod[sel] = 2.0 * proj[sel]
    sel = k == 2
    mod[sel] = np.sin(2 * math.pi * freq[L][sel] * proj[sel] + phase[L][sel])
    sel = k == 3
    if sel.any():
        Ls = L[sel]
        sc = scale[Ls]
        fx = np.clip((u[sel] + 0.5) * sc, 0, _NOISE_GRID - 1.001)
        fy = np.clip((v[sel] + 0.5) * sc, 0, _NOISE_GRID - 1.001)
        ix, iy = fx.astype(np.intp), fy.astype(np.intp)
        tx, ty = fx - ix, fy - iy
        tx, ty = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)  # smoothstep: no lattice creases
        g = noise_grid
        top = g[Ls, iy, ix] * (1 - tx) + g[Ls, iy, ix + 1] * tx
        bot = g[Ls, iy + 1, ix] * (1 - tx) + g[Ls, iy + 1, ix + 1] * tx
        mod[sel] = top * (1 - ty) + bot * ty
    mod *= amp[L]
    # Shading: darker towards the head's edge (elliptical radius in head units).
    mod -= shade[L] * np.minimum(X**2 + (Y / f["asp"]) ** 2, 1.5)
    # Remove each region's mean so the rendered mean colour equals the style's base colour.
    flat_l = L.ravel()
    counts = np.bincount(flat_l, minlength=_NC)
    means = np.bincount(flat_l, weights=mod.ravel(), minlength=_NC) / np.maximum(counts, 1)
    mod -= means[L]
    image = np.clip(np.rint(base[L] + mod[..., None]), 0, 255).astype(np.uint8)

    present = np.nonzero(counts)[0]
    styles = {_NAMES[c]: styles_all[c] for c in present}
    return SyntheticFace(image=image, label=label, attributes=_attributes(f), styles=styles, factors=f)


def synthetic_split_ids(split: str, n: int) -> list[int]:
    """Indices of the fixed synthetic splits: train = [0, n), test = [1_000_000, 1_000_000 + n)."""
    if split == "train":
        return list(range(n))
    if split in ("test", "val", "validation"):
        return list(range(TEST_OFFSET, TEST_OFFSET + n))
    raise ValueError(f"unknown synthetic split {split!r}; use 'train' or 'test'")


# ---------------------------------------------------------------------------- writing
def _manifest(n: int, size: tuple[int, int], seed: int, test_fraction: float) -> dict:
    return {
        "generator": "scadm.data.synthetic",
        "version": GENERATOR_VERSION,
        "n": int(n),
        "size": [int(size[0]), int(size[1])],
        "seed": int(seed),
        "test_fraction": float(test_fraction),
    }


def write_synthetic_dataset(
    out: str | Path,
    n: int,
    size: int | str | Sequence[int] = 64,
    seed: int = 0,
    test_fraction: float = 0.1,
    progress: bool = True,
) -> Path:
    """Write ``n`` synthetic faces in the canonical layout under ``out`` and return ``out``.

    ``round(n * test_fraction)`` faces come from the test range (ids from 1_000_000), the
    rest from the train range (ids from 0). Also writes ``styles.json`` (ground-truth
    styles per id) and ``synth.json`` (the arguments). The same arguments give
    byte-identical files. A non-empty ``out`` is refused unless it is a synth output of the
    same arguments, in which case finished images are kept (resume).
    """
    out = Path(out)
    hw = parse_size(size)
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    manifest = _manifest(n, hw, seed, test_fraction)
    man_text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        man_path = out / "synth.json"
        old = man_path.read_text() if man_path.is_file() else None
        if old != man_text:
            what = "a synth output with different arguments" if old else "not a synth output"
            raise FileExistsError(
                f"{out} is not empty and is {what}; give an empty or new --out directory (nothing was overwritten)"
            )
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "synth.json", man_text)

    n_test = int(round(n * test_fraction))
    train = synthetic_split_ids("train", n - n_test)
    test = synthetic_split_ids("test", n_test)
    ids = train + test
    attrs: dict[str, np.ndarray] = {}
    styles: dict[str, dict] = {}
    iterator = ids
    if progress:
        from tqdm import tqdm

        iterator = tqdm(ids, desc="synth", unit="face", dynamic_ncols=True)
    for idx in iterator:
        face = render_face(idx, seed=seed, size=hw)
        key = str(idx)
        img_p, lab_p = out / "images" / f"{key}.png", out / "labels" / f"{key}.png"
        # Files are written atomically, so an existing one is complete: resume skips it.
        if not lab_p.exists():
            save_png(face.label, lab_p)
        if not img_p.exists():
            save_png(face.image, img_p)
        attrs[key] = face.attributes
        styles[key] = face.styles
    write_attributes(out, attrs, ATTRIBUTE_NAMES)
    write_split(out, "train", [str(i) for i in train])
    write_split(out, "test", [str(i) for i in test])
    write_text_atomic(out / "labels.json", json.dumps(CELEBAMASK_HQ.to_dict(), indent=2) + "\n")
    # One id per line: readable, diff-able, and much smaller than fully indented JSON.
    lines = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in styles.items()]
    write_text_atomic(out / "styles.json", "{\n" + ",\n".join(lines) + "\n}\n")
    return out
