"""An edit's plan: what is inverted, what is kept, and where noise starts. One place decides it
(:func:`plan_edit`); the pipeline's sampling step only carries it out.

    no target face, or inversion "none"   every image from the seeds' noise
    blended, every part edited            nothing of the target to keep: from noise, nothing inverted
    blended, nothing edited               the target's own first-stage latent, no denoiser pass
                                          (blending would keep every latent pixel on the inverted
                                          trajectory, whose end that latent is)
    otherwise                             from the inverted target, with exact's offsets; blended:
                                          outside the edited region the latent follows the inverted
                                          trajectory, and a face whose every part is edited, or a
                                          mix's reference parts, start from the seed's noise
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..conditions import Conditions
from ..diffusion.inversion import EXACT
from ..nn.masks import MaskPyramid

#: latent blending's margin: the edited region grows by this many latent pixels (each f image
#: pixels wide) around the edited parts, so that their edges are regenerated with them
BLEND_MARGIN = 1


@dataclass
class Source:
    """A target face for inversion and blending: its image (B, 3, H, W) in [-1, 1], its own
    conditions (style tokens of its own mask) and the pixels (B, H, W) the edit changes.

    `fresh`: with blending, the edited parts start from the seed's noise instead of the inverted
    latent (a mix: its reference parts mix with noise, as a mix from a mask does)."""

    image: Tensor
    conditions: Conditions
    edited: Tensor
    fresh: bool = False


@dataclass
class EditPlan:
    """How one call's batch is sampled.

    start: "noise" (x_T from the seeds), "first_stage" (no sampling: the target's own latent),
    "inversion" (x_T of the inverted target) or "virtual" (no inversion pass: the edit beside the
    target's noised latent, :func:`scadm.diffusion.sample_virtual`); inversion: the strategy that runs ("none" when none
    does); region: with blending, the latent pixels the edit is free in (B, 1, h, w); fresh: the
    weight of the seed's noise in x_T (1: starts from noise, without offsets), or None;
    offsets: whether exact's per-step offsets are recorded; skipped: why no inversion runs.
    """

    start: str
    inversion: str = "none"
    region: Tensor | None = None
    fresh: Tensor | None = None
    offsets: bool = False
    skipped: str | None = None


def plan_edit(run: Any, source: Source | None, batch: int, latent_size: tuple[int, int]) -> EditPlan:
    """The plan of a run (a resolved SamplingConfig) over `batch` images editing `source` (None: no face)."""
    if source is None or run.inversion == "none":
        return EditPlan("noise")
    every = source.edited.flatten(1).all(1)  # faces whose every pixel is edited
    if run.blend and bool(every.all()):
        return EditPlan("noise", skipped="every part is edited: nothing to keep")
    if run.blend and not bool(source.edited.any()):
        return EditPlan("first_stage", run.inversion, skipped="nothing is edited: the first stage's reconstruction")
    exact, start = run.inversion in EXACT, "virtual" if run.inversion == "virtual" else "inversion"
    if not run.blend:
        return EditPlan(start, run.inversion, offsets=exact)
    region = blend_region(source.edited, batch, latent_size)
    fresh = (every.expand(batch) if every.shape[0] == 1 else every).float()[:, None, None, None]
    if source.fresh:
        fresh = torch.maximum(fresh, region)
    return EditPlan(start, run.inversion, region, fresh if bool(fresh.any()) else None,
                    offsets=exact and not source.fresh)


def blend_region(edited: Tensor, batch: int, latent_size: tuple[int, int]) -> Tensor:
    """The edited pixels (B, H, W) as the latent-size weight latent blending frees, (B, 1, h, w):
    a latent pixel is free where any edited pixel falls in it (the area resize of the one mask
    pyramid), grown by BLEND_MARGIN latent pixels so that a part's edge is regenerated with it."""
    region = MaskPyramid(edited.float()[:, None], "area").at(latent_size) > 0
    if BLEND_MARGIN:
        k = 2 * BLEND_MARGIN + 1
        region = F.max_pool2d(region.float(), k, stride=1, padding=BLEND_MARGIN) > 0
    region = region.float()
    return region.expand(batch, -1, -1, -1) if region.shape[0] == 1 else region
