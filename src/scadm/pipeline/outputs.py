"""What the pipeline returns: an application's images (:class:`EditResult`) and a face's inversion
(:class:`InversionOutput`), both diffusers ``BaseOutput``s."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from diffusers.utils import BaseOutput
from PIL import Image
from torch import Tensor

from ..conditions import Conditions
from ..diffusion import Inversion
from ..photos import Photo
from .plan import Source


@dataclass
class EditResult(BaseOutput):
    """What an application returns (a diffusers ``BaseOutput``).

    ``images``: in the call's ``output_type``: PIL images (``"pil"``, the default), a (B, H, W, 3)
    float array in [0, 1] (``"np"``), a (B, 3, H, W) tensor in [0, 1] (``"pt"``) or the final
    latents (``"latent"``, nothing decoded). ``tensors``: the decoded images as a (B, 3, H, W)
    tensor in [-1, 1] (None for ``"latent"``). ``masks``: the generation masks (class ids).
    ``info``: seeds, guidance, how each image was made (:attr:`how`).

    For an edit of a photo, ``sources[i]`` is the :class:`~scadm.photos.Photo` image i was cut
    from and ``edited[i]`` the class ids it edited (None: the whole face's square); ``photos``
    are the results pasted back into it at full resolution.
    """

    images: Any
    tensors: Tensor | None = None
    masks: list[np.ndarray] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    sources: list[Photo | None] = field(default_factory=list)
    edited: list[list[int] | None] = field(default_factory=list)

    @property
    def photos(self) -> list[Image.Image]:
        """Each result pasted back into its full-resolution photo (only the edited region changes); [] for crops."""
        if self.__dict__.get("_pasted") is None:
            from ..photos import paste_back

            crops = to_pil(self.tensors) if self.tensors is not None else []
            self.__dict__["_pasted"] = [Image.fromarray(paste_back(src, im, parts))
                                        for im, src, parts in zip(crops, self.sources, self.edited) if src is not None]
        return self.__dict__["_pasted"]

    @property
    def how(self) -> str:
        """How the images were made, in words: sampled from noise, the face inverted (and the rest
        kept), or the first stage's encode-decode (a blended edit that edits nothing)."""
        skipped = self.info.get("inversion_skipped")
        inversion = self.info.get("inversion", "none")
        if skipped and inversion != "none":  # nothing edited: no denoiser pass
            return f"{skipped} (nothing sampled)"
        if inversion == "none":
            return f"sampled from noise ({skipped})" if skipped else "sampled from noise"
        reused = " (reused)" if self.info.get("inversion_reused") else ""
        return f"{inversion} inversion{reused}" + (", the rest of the face kept" if self.info.get("blend") else "")

    def with_photos(self, sources: Sequence[Photo | None], edited: Sequence[list[int] | None]) -> "EditResult":
        """This result, knowing the photo each image belongs to and what it edited (one entry or one per image)."""
        n = len(self.images)
        self.sources = list(sources) * n if len(sources) == 1 else list(sources)
        self.edited = list(edited) * n if len(edited) == 1 else list(edited)
        self.__dict__["_pasted"] = None
        return self


def to_pil(x: Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [-1, 1] -> PIL images."""
    arr = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


#: the values of diffusers' ``output_type``
OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def as_output_type(x: Tensor, output_type: str) -> Any:
    """Decoded images (B, 3, H, W) in [-1, 1] in diffusers' ``output_type`` ("pil", "np" or "pt")."""
    if output_type == "pil":
        return to_pil(x)
    unit = ((x.detach().float() + 1) / 2).clamp(0, 1)
    return unit.permute(0, 2, 3, 1).cpu().numpy() if output_type == "np" else unit


@dataclass
class InversionOutput(BaseOutput):
    """A face inverted once (:meth:`SCADMPipeline.invert`), for every later edit of it (``inversion=``).

    ``latents``: x_T (B, C, h, w); ``trajectory``: the inverted latent at every level the solver
    visits (x_T first, the face's own latent last); ``offsets``: exact inversion's per-step record
    (None for ``ddim``). The rest says what it is valid for: the strategy, solver, steps, guidance
    scale and null condition, the scheduler settings, the face (``image``, in [-1, 1]) and its own
    ``conditions`` (mask and style tokens); ``evaluations``: the guided evaluations it cost, which
    the first edit that uses it reports as its own (``info["inversion_evaluations"]``); later edits
    report 0 and ``info["inversion_reused"]``.
    """

    latents: Tensor
    trajectory: list[Tensor]
    offsets: list[Tensor] | None
    strategy: str
    sampler: str
    steps: int
    guidance_scale: float
    null_condition: str
    scheduler_kwargs: dict[str, Any]
    image: Tensor
    conditions: Conditions
    evaluations: int

    @property
    def edits(self) -> int:
        """How many edits have started from this inversion."""
        return self.__dict__.get("edits", 0)

    def for_edit(self, source: Source, run: Any, s: float, scheduler_kwargs: dict[str, Any]) -> Inversion:
        """This inversion as the edit of `source` under `run` starts from it; a one-line error when it
        was made for another face, other conditions or other settings."""
        ours = (self.strategy, self.sampler, self.steps, self.guidance_scale, self.null_condition)
        theirs = (run.inversion, run.sampler, run.steps, s, run.null_condition)
        if ours != theirs:
            raise ValueError(f"inversion: made as {_settings_words(*ours)}; this edit is {_settings_words(*theirs)}: "
                             "invert again with the edit's settings, or leave inversion out")
        if self.scheduler_kwargs != scheduler_kwargs:
            raise ValueError(f"inversion: made with scheduler settings {self.scheduler_kwargs}, this edit's are "
                             f"{scheduler_kwargs}: invert again after changing the scheduler")
        if not _same_rows(self.image, source.image):
            raise ValueError("inversion: made for another face (the edit's target image differs); invert this face")
        mine, theirs_c = self.conditions, source.conditions
        if not (_same_rows(mine.mask, theirs_c.mask) and (mine.tokens is None) == (theirs_c.tokens is None) and
                (mine.tokens is None or _same_rows(mine.tokens, theirs_c.tokens))):
            raise ValueError("inversion: made for the face with another mask or style (or attributes); invert the "
                             "face as this edit gives it")
        self.__dict__["edits"] = self.edits + 1
        device = source.image.device
        move = lambda z: z.to(device)  # noqa: E731
        return Inversion(move(self.latents), [move(z) for z in self.trajectory], self.sampler, self.steps,
                         self.evaluations, None if self.offsets is None else [move(d) for d in self.offsets])


def _same_rows(made: Tensor, given: Tensor) -> bool:
    """`given` (B, ...) equals `made` (B or 1, ...): the face inverted, or it repeated for B images of one call."""
    if made.shape[1:] != given.shape[1:] or made.shape[0] not in (1, given.shape[0]):
        return False
    return torch.equal(made.expand_as(given), given.to(made))


def _settings_words(strategy: str, sampler: str, steps: int, s: float, null: str) -> str:
    return f"{strategy} with {sampler} at {steps} steps, s = {s:g} ({null} null)"
