"""The editing and generation API (SCA-DM paper Sec. 4, Fig. 1, 4, 5, 6, 7).

    pipe = SCADMPipeline.from_pretrained()            # the bundled model
    out = pipe.swap(target=("t.png", "t_mask.png"), reference=("r.png", "r_mask.png"), parts=["l_eye"])
    out.images[0].save("swapped.png")

Every operation works on style tokens (one row per class, or L rows per class for the
``per_scale`` layout) and then samples with the generation mask:

    reconstruct   tokens of (image, mask), generated with mask
    swap          reference tokens for all classes (total) or the named parts (partial),
                  pooled with the reference's own mask; generated with the target's mask
    interpolate   per-part linear blend of target and reference tokens, one image per alpha
    generate      the empty style (style encoder on a zero image), noise decides the style
    mix           reference tokens for the named parts, empty style for the rest
    edit_mask     the face's own tokens, generated with a new (user-edited) mask

Inputs: images and masks as file paths, PIL images, numpy arrays or tensors; masks as id
maps or colour images in the label set's palette. Randomness is per image: image i of a call
uses ``seed + i`` (or ``seeds[i]``), so a batch gives the same images as one-by-one calls.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from . import checks
from .conditioning_modes import ConditioningMode
from .conditions import Conditions
from .config import SamplingOptions
from .diffusion import ClassifierFreeGuidance, NoiseSchedule, sample
from .diffusion.sampling import NonFiniteSampleError
from .labels import LabelSet
from .models.autoencoder import FirstStage
from .models.ldm import SemanticLDM

ImageLike = Union[str, Path, Image.Image, np.ndarray, Tensor]
MaskLike = Union[str, Path, Image.Image, np.ndarray, Tensor]

#: The bundled default model (assets/synthetic-64 of the source checkout; see assets/README.md),
#: or the folder named by $SCADM_MODEL.
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "assets" / "synthetic-64"


def default_model_folder() -> Path:
    import os

    folder = Path(os.environ.get("SCADM_MODEL", DEFAULT_MODEL))
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"the bundled model is not at {folder}; run from a source checkout, set SCADM_MODEL, or pass --model"
        )
    return folder


# ---------------------------------------------------------------------------
# Inputs and outputs
# ---------------------------------------------------------------------------
@dataclass
class Face:
    """An image and its semantic mask (class ids in the model's label set)."""

    image: ImageLike
    mask: MaskLike


@dataclass
class EditResult:
    """Generated images (PIL and a (B, 3, H, W) tensor in [-1, 1]) and the masks used (class ids)."""

    images: list[Image.Image]
    tensors: Tensor
    masks: list[np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)


def to_pil(x: Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [-1, 1] -> PIL images."""
    arr = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


# ---------------------------------------------------------------------------
# Token editing (pure functions; the released code's partial swap and mixing)
# ---------------------------------------------------------------------------
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
        rows = (token_classes >= 0).expand(target.shape[0], -1)
    elif _per_image(classes):
        if len(classes) != target.shape[0]:
            raise ValueError(f"got {len(classes)} part lists for {target.shape[0]} images")
        rows = torch.stack([class_rows(token_classes, c) for c in classes])
    else:
        rows = class_rows(token_classes, classes).expand(target.shape[0], -1)
    return torch.where(rows[..., None], reference, target)


def _sampling(sampling: SamplingOptions | None, overrides: dict[str, Any]) -> SamplingOptions:
    """The call's SamplingOptions: `sampling` (or the defaults) with keyword overrides applied."""
    base = sampling or SamplingOptions()
    if not overrides:
        return base
    names = {f.name for f in dataclasses.fields(SamplingOptions)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown sampling option(s) {unknown}; valid: {sorted(names)}")
    return dataclasses.replace(base, **overrides)


def _per_image(classes: Any) -> bool:
    return isinstance(classes, (list, tuple)) and len(classes) > 0 and isinstance(classes[0], (list, tuple))


def interpolate_tokens(target: Tensor, reference: Tensor, alpha: float, classes: Iterable[int] | None,
                       token_classes: Tensor) -> Tensor:
    """(1 - alpha) * target + alpha * reference on the rows of `classes` (all when None)."""
    rows = token_classes >= 0 if classes is None else class_rows(token_classes, classes)
    out = target.clone()
    out[:, rows] = (1 - alpha) * target[:, rows] + alpha * reference[:, rows].to(target.dtype)
    return out


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


# ---------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------
class SCADMPipeline:
    """Reference-based, partial, interpolated, noise-based and mixed face generation."""

    def __init__(self, model: SemanticLDM, first_stage: FirstStage, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.first_stage = first_stage.eval().requires_grad_(False).to(self.device)
        self.cfg = model.cfg
        if self.cfg.latent_scale <= 0:
            raise ValueError("the model config has latent_scale 0 ('set at training'): it was never trained")
        self.schedule = NoiseSchedule(self.cfg.schedule)
        self.label_set: LabelSet = model.label_set

    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None, device: str | torch.device | None = None) -> "SCADMPipeline":
        """Load a model folder (config.json, model.safetensors, autoencoder/); None = the bundled model."""
        folder = checks.model_folder(folder, "model") if folder is not None else default_model_folder()
        if device is not None:
            checks.device(str(device), "device")
        model = SemanticLDM.from_pretrained(folder)
        return cls(model, FirstStage.from_pretrained(folder / "autoencoder", model.cfg.latent_scale), device)

    # ------------------------------------------------------------------ input handling
    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.cfg.image_size)

    def load_image(self, image: ImageLike) -> Tensor:
        """-> (1, 3, H, W) in [-1, 1] at the model's size (bicubic resize with a warning)."""
        if isinstance(image, Tensor):
            x = image.float()
            x = x[None] if x.ndim == 3 else x
            if x.min() >= 0 and x.max() > 1.0:  # uint8-like values
                x = x / 127.5 - 1
        else:
            if isinstance(image, (str, Path)):
                from .data.layout import load_image

                arr = load_image(checks.input_file(image, "image", "image file"))
            elif isinstance(image, Image.Image):
                arr = np.asarray(image.convert("RGB"))
            else:
                arr = np.asarray(image)
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise ValueError(f"an image must be H x W x 3, got shape {arr.shape}")
            x = torch.from_numpy(np.array(arr, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
        return self._fit(x, "image", mode="bicubic").clamp(-1, 1).to(self.device)

    def load_mask(self, mask: MaskLike) -> Tensor:
        """-> (1, H, W) long class ids at the model's size (nearest resize with a warning)."""
        if isinstance(mask, (str, Path)):
            from .data.layout import load_mask_file

            ids = torch.from_numpy(load_mask_file(checks.input_file(mask, "mask", "mask file"), self.label_set).astype(np.int64))
        elif isinstance(mask, Image.Image):
            arr = np.asarray(mask)
            ids = torch.from_numpy((self.label_set.from_colors(arr) if arr.ndim == 3 else arr).astype(np.int64))
        elif isinstance(mask, np.ndarray):
            colour = mask.ndim == 3 and mask.shape[-1] in (3, 4)  # (H, W, 3) colour image; (B, H, W) id maps
            ids = torch.from_numpy((self.label_set.from_colors(mask) if colour else mask).astype(np.int64))
        else:
            ids = mask.long()
            if ids.ndim == 4:  # one-hot (B, C, H, W)
                ids = ids.argmax(1)
        ids = ids[None] if ids.ndim == 2 else ids
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.label_set.num_classes):
            raise ValueError(f"mask has class id {int(ids.max())}; the label set has {self.label_set.num_classes} classes")
        ids = self._fit(ids[:, None].float(), "mask", mode="nearest")[:, 0].long()
        return ids.to(self.device)

    def _fit(self, x: Tensor, what: str, mode: str) -> Tensor:
        h, w = self.image_size
        if tuple(x.shape[-2:]) == (h, w):
            return x
        ih, iw = x.shape[-2:]
        if abs(ih / iw - h / w) > 0.01:
            raise ValueError(f"{what} is {ih}x{iw} but the model works at {h}x{w}: the aspect ratio differs; crop it first")
        warnings.warn(f"{what} resized from {ih}x{iw} to {h}x{w} ({mode})", stacklevel=3)
        if mode == "nearest":
            return F.interpolate(x, size=(h, w), mode="nearest")
        return F.interpolate(x, size=(h, w), mode=mode, align_corners=False, antialias=True)

    def one_hot(self, ids: Tensor) -> Tensor:
        return F.one_hot(ids, self.label_set.num_classes).permute(0, 3, 1, 2).float()

    def _face(self, face: Face | tuple) -> tuple[Tensor, Tensor]:
        if isinstance(face, tuple):
            face = Face(*face)
        if face.mask is None:
            raise ValueError("a reference or target face needs its mask (pass Face(image, mask))")
        return self.load_image(face.image), self.load_mask(face.mask)

    def parts(self, parts: Iterable[str | int] | str | None) -> list[int] | list[list[int]] | None:
        """Part names or ids -> class ids (None stays None = every part; one list per image stays per image)."""
        if parts is None:
            return None
        if _per_image(parts):
            return [self.label_set.indices(p) for p in parts]
        return self.label_set.indices(parts)

    # ------------------------------------------------------------------ style tokens
    @torch.no_grad()
    def style_tokens(self, image: Tensor | None, ids: Tensor) -> Tensor:
        """E_s(image, mask) (image None = the empty style)."""
        return self.model.conditions(self.one_hot(ids), image).tokens

    @property
    def token_classes(self) -> Tensor:
        return self.model.unet.token_classes

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate_from_tokens(self, ids: Tensor, tokens: Tensor | None, options: SamplingOptions | None = None,
                             *, style_image: bool = True, attributes: bool = False,
                             noise_based: bool = False) -> EditResult:
        """Sample images for generation masks `ids` (B, H, W) and style `tokens` (B, N, D)."""
        return self.generate_from_conditions(ids, Conditions(mask=self.one_hot(ids), tokens=tokens), options,
                                             style_image=style_image, attributes=attributes, noise_based=noise_based)

    @torch.no_grad()
    def generate_from_conditions(self, ids: Tensor, cond: Conditions, options: SamplingOptions | None = None,
                                 *, style_image: bool = True, attributes: bool = False,
                                 noise_based: bool = False) -> EditResult:
        """Sample images for masks `ids` (B, H, W) and encoded conditions, guided against the null condition.

        `style_image` / `attributes`: whether `cond` was encoded from a style image / from attributes
        (when neither, it may be its own null, and guidance is skipped: see
        :meth:`ConditioningMode.is_own_null`); `noise_based`: the null condition defaults to the
        model's noise-based one.
        """
        o = options or SamplingOptions()
        run = o.resolve(self.cfg.sampling, noise_based=noise_based)
        own_null = self.mode.is_own_null(run.null_condition, style_image=style_image, attributes=attributes)
        s = 0.0 if own_null else run.guidance_scale
        b = ids.shape[0]
        seeds = o.seeds(b)
        latent = self.cfg.latent_size
        prepared = self.model.prepare(cond, latent)

        def null(_: Any) -> Any:  # built only when guided (s != 0)
            return self.model.prepare(self.model.conditioner.null(cond.mask, run.null_condition), latent)

        model_fn = ClassifierFreeGuidance(self.model.unet, null, s)
        gens = [torch.Generator(self.device).manual_seed(int(x)) for x in seeds]
        clip = run.clip_x0
        extra = {"clip_sample": True, "clip_sample_range": float(clip)} if clip and run.sampler in ("ddim", "ddpm") else None
        try:
            z = sample(
                model_fn, (b, self.cfg.latent_channels, *latent), prepared, self.schedule,
                sampler=run.sampler, steps=run.steps, eta=run.eta,
                generator=gens, device=self.device, progress=o.progress, scheduler_kwargs=extra,
            )
        except NonFiniteSampleError as exc:
            raise NonFiniteSampleError(f"{exc}, guidance s = {s:g} ({run.null_condition} null), clip_x0 {clip}; "
                                       "nothing was written: lower the guidance scale or set clip_x0") from None
        x = self.first_stage.decode(z).clamp(-1, 1)
        return EditResult(to_pil(x), x, [m.cpu().numpy().astype(np.uint8) for m in ids],
                          {"seeds": seeds, "guidance_scale": s, "null_condition": run.null_condition})

    # ------------------------------------------------------------------ attributes
    @property
    def mode(self) -> ConditioningMode:
        """The model's conditioning mode (what it takes; see scadm.conditioning_modes)."""
        return self.model.mode

    @property
    def has_style(self) -> bool:
        """Style tokens from a reference image: the SCA-DM applications (swap, interpolate, mix ...)."""
        return self.mode.takes_style_image

    @property
    def uses_attributes(self) -> bool:
        return self.mode.takes_attributes

    def attribute_vector(self, attributes: Any, batch: int, base: Any = None) -> Tensor | None:
        """Signed attributes (B, 40): +1 / -1, 0 = unknown. `attributes`: a dict {name: 0/1} (applied over
        `base`, default all unknown), a sequence of 40 values in 0/1, or a tensor."""
        if attributes is None and base is None:
            return None
        if not self.uses_attributes:
            raise ValueError(f"this model ({self.mode.name} conditioning) takes no attributes")
        from .labels import ATTRIBUTE_NAMES
        from .models.conditioning import signed_attributes

        def vec(a: Any) -> Tensor:
            t = torch.as_tensor(np.asarray(a, dtype=np.float32))
            if t.shape[-1] != len(ATTRIBUTE_NAMES):
                raise ValueError(f"give {len(ATTRIBUTE_NAMES)} attribute values, got {t.shape[-1]}")
            return signed_attributes(t)

        out = vec(base).expand(batch, -1).clone() if base is not None else torch.zeros(batch, len(ATTRIBUTE_NAMES))
        if isinstance(attributes, Tensor) and attributes.ndim == 2:  # one 0/1 vector per image
            if attributes.shape[0] != batch:
                raise ValueError(f"got attributes for {attributes.shape[0]} images, expected {batch}")
            return signed_attributes(attributes.float()).to(self.device)
        if isinstance(attributes, dict):
            for name, value in attributes.items():
                if name not in ATTRIBUTE_NAMES:
                    raise ValueError(f"unknown attribute {name!r}; valid: {', '.join(ATTRIBUTE_NAMES)}")
                if value not in (0, 1, True, False):
                    raise ValueError(f"attribute {name}={value!r}: use 0 or 1")
                out[:, ATTRIBUTE_NAMES.index(name)] = 1.0 if value else -1.0
        elif attributes is not None:
            out = vec(attributes).expand(batch, -1).clone()
        return out.to(self.device)

    def with_attributes(self, tokens: Tensor, attributes: Tensor | None) -> Tensor:
        """Replace the global (attribute) token rows of style tokens; style rows are untouched."""
        if attributes is None:
            return tokens
        enc = self.model.conditioner.attribute_encoder
        out = tokens.clone()
        out[:, self.token_classes < 0] = enc(attributes).to(out.dtype).expand(out.shape[0], -1, -1)
        return out

    def _need_style(self, what: str) -> None:
        if not self.has_style:
            raise ValueError(f"{what} needs style tokens; this model uses {self.mode.name!r} conditioning")

    # ------------------------------------------------------------------ operations
    def reconstruct(self, image: ImageLike | Sequence[ImageLike], mask: MaskLike | Sequence[MaskLike],
                    attributes: Any = None, sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Style and mask from the same face (paper Sec. 4.1)."""
        self._need_style("reconstruct")
        x, ids = self._batch(image, mask)
        tokens = self.with_attributes(self.style_tokens(x, ids), self.attribute_vector(attributes, ids.shape[0]))
        return self.generate_from_tokens(ids, tokens, _sampling(sampling, overrides))

    def swap(self, target: Face | tuple | Sequence, reference: Face | tuple | Sequence,
             parts: Iterable[str | int] | str | None = None, attributes: Any = None,
             sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Total (parts=None) or partial style swap (Sec. 4.2, 4.3): reference style, target mask."""
        self._need_style("swap")
        (tx, tids), (rx, rids) = self._faces(target), self._faces(reference)
        classes = self.parts(parts)
        tokens = swap_tokens(self.style_tokens(tx, tids), self.style_tokens(rx, rids), classes, self.token_classes)
        tokens = self.with_attributes(tokens, self.attribute_vector(attributes, tids.shape[0]))
        result = self.generate_from_tokens(tids, tokens, _sampling(sampling, overrides))
        result.info["parts"] = classes
        return result

    def interpolate(self, target: Face | tuple, reference: Face | tuple,
                    parts: Iterable[str | int] | str | None = None,
                    alphas: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), attributes: Any = None,
                    sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Per-part linear interpolation of style tokens, target (alpha 0) to reference (alpha 1) (Fig. 6).

        Returns one image per alpha, all with the same seed (so only the style moves).
        """
        self._need_style("interpolate")
        (tx, tids), (rx, rids) = self._faces(target), self._faces(reference)
        if tids.shape[0] != 1:
            raise ValueError("interpolate takes one target and one reference")
        classes = self.parts(parts)
        t_tok, r_tok = self.style_tokens(tx, tids), self.style_tokens(rx, rids)
        tokens = torch.cat([interpolate_tokens(t_tok, r_tok, float(a), classes, self.token_classes) for a in alphas])
        tokens = self.with_attributes(tokens, self.attribute_vector(attributes, len(alphas)))
        opts = _sampling(sampling, overrides)
        base = opts.seed if isinstance(opts.seed, int) else opts.seed[0]
        opts = dataclasses.replace(opts, seed=[base] * len(alphas))
        result = self.generate_from_tokens(tids.expand(len(alphas), -1, -1), tokens, opts)
        result.info.update(alphas=list(map(float, alphas)), parts=classes)
        return result

    def generate(self, mask: MaskLike | None = None, n: int = 1, attributes: Any = None,
                 sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Noise-based generation (Sec. 4.4): the empty style, n samples for one mask.

        The null condition is ``null_condition`` if given, else the config's ``noise_null_condition``
        (else its ``null_condition``). With 'style' the empty style *is* the null, so there is
        nothing to guide; with 'full' (Eq. 4 as written: empty style and zero mask, for models
        trained with mask dropout) the samples are guided towards the mask. Token-conditioned models
        (attributes / mask tokens) generate from their conditions, guided by the config's scale; an
        unconditional model needs no mask.
        """
        if mask is None:
            if self.mode.has_tokens or self.cfg.unet.spade_parts:
                raise ValueError("this model needs a mask to generate from")
            ids = torch.zeros(n, *self.image_size, dtype=torch.long, device=self.device)
        else:
            ids = self.load_mask(mask)
        if ids.shape[0] == 1:
            ids = ids.expand(n, -1, -1)
        attrs = self.attribute_vector(attributes, ids.shape[0])
        cond = self.model.conditions(self.one_hot(ids), None, attrs)  # the empty style, for style models
        return self.generate_from_conditions(ids, cond, _sampling(sampling, overrides), style_image=False,
                                             attributes=attrs is not None, noise_based=True)

    def mix(self, mask: MaskLike, reference: Face | tuple | Sequence, parts: Iterable[str | int] | str,
            n: int = 1, attributes: Any = None, sampling: SamplingOptions | None = None,
            **overrides: Any) -> EditResult:
        """Reference style for the named parts, noise (the empty style) for the rest (Fig. 1b).

        A batch of masks (B, H, W) may come with one reference per mask.
        """
        self._need_style("mix")
        ids = self.load_mask(mask)
        rx, rids = self._faces(reference)
        ids = ids.expand(n, -1, -1) if ids.shape[0] == 1 else ids
        empty = self.style_tokens(None, ids)
        ref = self.style_tokens(rx, rids).expand(ids.shape[0], -1, -1)
        tokens = swap_tokens(empty, ref, self.parts(parts), self.token_classes)
        tokens = self.with_attributes(tokens, self.attribute_vector(attributes, ids.shape[0]))
        return self.generate_from_tokens(ids, tokens, _sampling(sampling, overrides))

    def edit_mask(self, image: ImageLike, mask: MaskLike, new_mask: MaskLike, attributes: Any = None,
                  sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Keep the face's styles, change its shape: tokens from (image, mask), generated with new_mask."""
        self._need_style("edit_mask")
        x, ids = self.load_image(image), self.load_mask(mask)
        new_ids = self.load_mask(new_mask)
        tokens = self.with_attributes(self.style_tokens(x, ids), self.attribute_vector(attributes, 1))
        return self.generate_from_tokens(new_ids, tokens, _sampling(sampling, overrides))

    def swap_mask_parts(self, mask: MaskLike, donor: MaskLike, parts: Iterable[str | int] | str,
                        image: ImageLike | None = None, n: int = 1, attributes: Any = None,
                        sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Mask component swapping (multi-conditioning paper Sec. 5): generate from `mask` with the
        donor's `parts` pasted in. With `image` (the face of `mask`) its styles are kept."""
        ids, donor_ids = self.load_mask(mask), self.load_mask(donor)
        mixed = torch.from_numpy(mix_mask_parts(ids[0].cpu().numpy(), donor_ids[0].cpu().numpy(),
                                                self.parts(parts) or [])).long().to(self.device)[None]
        if image is not None:
            self._need_style("swap_mask_parts with an image")
            tokens = self.with_attributes(self.style_tokens(self.load_image(image), ids), self.attribute_vector(attributes, 1))
            result = self.generate_from_tokens(mixed.expand(n, -1, -1), tokens.expand(n, -1, -1),
                                               _sampling(sampling, overrides))
        else:
            result = self.generate(mixed, n=n, attributes=attributes, sampling=_sampling(sampling, overrides))
        result.info["mixed_mask"] = mixed[0].cpu().numpy().astype(np.uint8)
        return result

    # ------------------------------------------------------------------ batching helpers
    def _batch(self, images: Any, masks: Any) -> tuple[Tensor, Tensor]:
        """Single inputs or equal-length sequences -> (B, 3, H, W), (B, H, W)."""
        if isinstance(images, (list, tuple)) and not isinstance(images, Face):
            if not isinstance(masks, (list, tuple)) or len(masks) != len(images):
                raise ValueError("give as many masks as images")
            xs = [self.load_image(i) for i in images]
            ms = [self.load_mask(m) for m in masks]
            return torch.cat(xs), torch.cat(ms)
        return self.load_image(images), self.load_mask(masks)

    def _faces(self, faces: Any) -> tuple[Tensor, Tensor]:
        if isinstance(faces, Face) or (isinstance(faces, tuple) and len(faces) == 2 and not isinstance(faces[0], (Face, tuple))):
            return self._face(faces)
        pairs = [self._face(f) for f in faces]
        return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
