"""Training objective (paper Eq. 2; eps or v target) with optional P2 and region weighting, and condition dropout."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from ..conditions import ConditionInputs
from ..nn.masks import resize_mask
from .schedule import NoiseSchedule, p2_weight

__all__ = ["diffusion_loss", "region_weights", "dropout_keep", "apply_dropout", "condition_dropout", "randn", "randint"]

ModelFn = Callable[[Tensor, Tensor, Any], Tensor]


def _gen_device(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    """Where to draw: on the generator's device (so results do not depend on the target)."""
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def randn(
    shape: tuple[int, ...],
    generator: torch.Generator | list[torch.Generator] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal tensor. With a list of generators, row i is drawn with generator i
    (shape[1:]), so a sample never depends on the batch it is in."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        rows = [
            torch.randn((1, *shape[1:]), generator=g, device=_gen_device(g, device), dtype=dtype) for g in generator
        ]
        return torch.cat([r.to(device) for r in rows], dim=0)
    return torch.randn(shape, generator=generator, device=_gen_device(generator, device), dtype=dtype).to(device)


def randint(
    high: int,
    size: tuple[int, ...],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    device = torch.device(device) if device is not None else torch.device("cpu")
    return torch.randint(0, high, size, generator=generator, device=_gen_device(generator, device)).to(device)


def diffusion_loss(
    model_fn: ModelFn,
    x0: Tensor,
    cond: Any,
    schedule: NoiseSchedule,
    *,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    p2: tuple[float, float] | None = None,
    pixel_weight: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Eps-prediction MSE (Eq. 2), or v-prediction MSE, optionally P2-weighted.

    t ~ U{0..T-1} and eps ~ N(0, I) unless given; x_t = q_sample(x0, t, eps);
    target = schedule.target(x0, t, eps) (eps, or v for ``prediction_type: v_prediction``);
    per-sample loss = mean over non-batch dims of (model output - target)^2 (in float32),
    times p2_weight(t, k, gamma) when ``p2 = (k, gamma)``; the loss is the batch mean.
    ``pixel_weight`` ([B, 1, h, w], e.g. from :func:`region_weights`) weights each latent pixel's
    squared error in that mean.

    info: "loss_per_sample" (weighted, detached), "mse_per_sample" (unweighted, detached),
    "weight" (P2 weights or ones), "t".
    """
    B = x0.shape[0]
    if t is None:
        t = randint(schedule.num_train_timesteps, (B,), generator=generator, device=x0.device)
    else:
        t = torch.as_tensor(t, device=x0.device).long()
        if t.dim() == 0:
            t = t.expand(B)
    if noise is None:
        noise = randn(tuple(x0.shape), generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = schedule.q_sample(x0, t, noise)
    out = model_fn(x_t, t, cond)
    if out.shape != noise.shape:
        raise ValueError(f"model output shape {tuple(out.shape)} != noise shape {tuple(noise.shape)}")
    target = schedule.target(x0, t, noise)
    sq = (out.float() - target.float()).pow(2)
    mse = sq.reshape(B, -1).mean(dim=1)
    if pixel_weight is not None:
        if pixel_weight.shape != (B, 1, *sq.shape[2:]):
            raise ValueError(f"pixel_weight must have shape {(B, 1, *sq.shape[2:])}, got {tuple(pixel_weight.shape)}")
        sq = sq * pixel_weight.float()
    per_pixel = sq.reshape(B, -1).mean(dim=1)
    if p2 is not None:
        k, gamma = p2
        weight = p2_weight(schedule, t, k=k, gamma=gamma, dtype=mse.dtype)
    else:
        weight = torch.ones_like(mse)
    per_sample = per_pixel * weight
    loss = per_sample.mean()
    info = {
        "loss_per_sample": per_sample.detach(),
        "mse_per_sample": mse.detach(),
        "weight": weight.detach(),
        "t": t,
    }
    return loss, info


def region_weights(mask: Tensor, size: tuple[int, int], gamma: float) -> Tensor:
    """Per-pixel loss weights that favour small face parts: [B, C, H, W] one-hot (or soft) mask ->
    [B, 1, h, w] with mean 1 per sample.

    Each class c covering a fraction a_c of the image gets weight a_c^-gamma; a latent pixel gets
    the average of its classes' weights in proportion to the area each covers in it. gamma = 0 gives
    ones (the plain loss); gamma = 1 gives every present class the same total weight.
    """
    mask = mask.float()
    area = mask.mean(dim=(2, 3), keepdim=True)  # [B, C, 1, 1]
    per_class = torch.where(area > 0, area.clamp_min(1e-8).pow(-gamma), torch.zeros_like(area))
    frac = resize_mask(mask, size, mode="area")  # [B, C, h, w]: fraction of each pixel each class covers
    w = (frac * per_class).sum(dim=1, keepdim=True)
    return w / w.mean(dim=(2, 3), keepdim=True).clamp_min(1e-8)


def dropout_keep(
    batch_size: int,
    p: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """BoolTensor[B], True = keep the condition; each sample is dropped with probability p."""
    if not 0.0 <= p <= 1.0:
        raise ValueError("dropout probability must be in [0, 1]")
    device = torch.device(device) if device is not None else torch.device("cpu")
    u = torch.rand((batch_size,), generator=generator, device=_gen_device(generator, device)).to(device)
    return u >= p


def apply_dropout(x: Tensor, keep: Tensor) -> Tensor:
    """Replace the dropped samples (keep[i] == False) of x by zeros; any dtype, any trailing dims."""
    if keep.shape != (x.shape[0],):
        raise ValueError(f"keep must have shape ({x.shape[0]},), got {tuple(keep.shape)}")
    k = keep.to(device=x.device, dtype=torch.bool).view(-1, *([1] * (x.dim() - 1)))
    return torch.where(k, x, torch.zeros((), dtype=x.dtype, device=x.device))


def condition_dropout(inputs: ConditionInputs, keep_style: Tensor, keep_mask: Tensor,
                      keep_attributes: Tensor | None = None) -> ConditionInputs:
    """Condition dropout on a batch of raw condition inputs (each keep is BoolTensor[B], True = keep).

    What is dropped becomes what the null conditions are made of (see
    :meth:`scadm.conditioning_modes.ConditioningMode.null_keeps_mask`): a dropped style image is
    the all-zero image (the empty style, SCA-DM's 50 %); a dropped mask is the zero mask and takes
    the style image with it (the "full" null, and the null of mask tokens); dropped attributes are
    the null attributes, all zeros.
    """
    image = None if inputs.image is None else apply_dropout(inputs.image, keep_style & keep_mask)
    attributes = inputs.attributes
    if attributes is not None and keep_attributes is not None:
        attributes = apply_dropout(attributes, keep_attributes)
    return ConditionInputs(mask=apply_dropout(inputs.mask, keep_mask), image=image, attributes=attributes)
