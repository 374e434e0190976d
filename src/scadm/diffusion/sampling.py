"""One sampler entry point over diffusers' schedulers; conditions are passed through untouched.

Randomness is per image: with a list of generators (one per batch element) x_T row i and
every stochastic step's noise for row i come from generator i, so an image does not depend
on the batch it was sampled in.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from .objective import randn
from .schedule import DDIM_GRID, NoiseSchedule, normalize_sampler

__all__ = ["sample", "timesteps_for", "build_scheduler", "NonFiniteSampleError"]

ModelFn = Callable[[Tensor, Tensor, Any], Tensor]
Generator = torch.Generator | list[torch.Generator] | None


def build_scheduler(sampler: str, steps: int, schedule: NoiseSchedule, device=None, **kw: Any):
    """A fresh scheduler for ``sampler`` with ``set_timesteps(steps)`` already called.

    DDIM uses LDM's leading spacing with offset 1 (t = 1, 1 + T/steps, ...). With
    steps == T that would index t = T, out of range (LDM fails there too), so the offset is
    dropped in that single case (t = 0..T-1, the full chain).
    """
    name = normalize_sampler(sampler)
    T = schedule.num_train_timesteps
    steps = int(steps)
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, {T}], got {steps}")
    if name == "ddim" and "steps_offset" not in kw and (steps - 1) * (T // steps) + 1 > T - 1:
        kw["steps_offset"] = 0
    scheduler = schedule.make_scheduler(name, **kw)
    with warnings.catch_warnings():
        # numpy-2 "__array__ copy keyword" noise from inside diffusers' DPM-Solver set_timesteps
        warnings.simplefilter("ignore", DeprecationWarning)
        scheduler.set_timesteps(steps, device=device)
    if hasattr(scheduler, "set_begin_index"):
        # multistep solvers locate their position by timestep value; Karras or log-SNR spacing can repeat
        # a rounded timestep (e.g. 999 twice with the cosine schedule), so pin the start.
        scheduler.set_begin_index(0)
    return scheduler


def timesteps_for(sampler: str, steps: int, schedule: NoiseSchedule, **kw: Any) -> Tensor:
    """The (descending) timestep sequence ``sample`` visits, as a LongTensor on CPU."""
    return build_scheduler(sampler, steps, schedule, **kw).timesteps.detach().cpu().long()


class NonFiniteSampleError(ValueError):
    """The reverse process produced nan or inf; the message names the step and the sampler settings."""


def scheduler_step(name: str, scheduler: Any, eps: Tensor, t: Tensor | int, x: Tensor, *, eta: float = 0.0,
                   generator: Generator = None) -> Tensor:
    """One step of the diffusers scheduler of sampler `name` (normalised) from `x` at timestep `t` with
    the model output `eps` (the one place that knows each scheduler's step signature); in `x`'s dtype."""
    if name in DDIM_GRID:
        noise = randn(tuple(x.shape), generator=generator, device=x.device, dtype=x.dtype) if eta > 0 else None
        out = scheduler.step(eps, int(t), x, eta=float(eta), variance_noise=noise).prev_sample
    elif name == "ddpm":
        # diffusers draws the ancestral noise with randn_tensor, which draws row i from
        # generator i when given a list (checked by tests/test_diffusion.py).
        out = scheduler.step(eps, int(t), x, generator=generator).prev_sample
    else:
        out = scheduler.step(eps, t, x).prev_sample
    return out.to(x.dtype)


@torch.no_grad()
def sample(
    model_fn: ModelFn,
    shape: tuple,
    cond: Any,
    schedule: NoiseSchedule,
    *,
    sampler: str = "ddim",
    steps: int = 50,
    eta: float = 0.0,
    generator: Generator = None,
    x_T: Tensor | None = None,
    device=None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    callback: Callable[[int, int, Tensor], Any] | None = None,
    scheduler_kwargs: dict[str, Any] | None = None,
    keep: tuple[Tensor, Sequence[Tensor]] | None = None,
    offsets: Sequence[Tensor] | None = None,
) -> Tensor:
    """Run the reverse process and return x_0 (the final latent), shape ``shape``.

    model_fn(x_t, t: LongTensor[B], cond) -> eps (or v, per ``schedule.prediction_type``).
    ``cond`` is passed as is (wrap model_fn in :class:`ClassifierFreeGuidance` for guidance).
    sampler: "ddim" (``eta``; LDM timesteps), "student" (DDIM on trailing timesteps, a distilled
    student's), "ddpm" (ancestral, fixed_small variance; eta
    ignored), "dpm++" (DPM-Solver++ 2M, deterministic; eta ignored), "unipc" (UniPC bh2,
    deterministic; eta ignored).
    generator: one generator, a list with one per batch element, or None.
    x_T: optional start noise (otherwise drawn from ``generator``).
    callback(i, t, x): called after step i (which denoised from timestep t) with the new latent; a
    tensor it returns replaces the latent (diffusers' ``callback_on_step_end``).
    scheduler_kwargs: optional overrides of the diffusers scheduler settings.
    offsets: added to the sample after step i (``offsets[i]``): an exact inversion's record
    (:mod:`scadm.diffusion.inversion`), which makes the pass return the inverted latent.
    keep: latent blending, (edited, trajectory): after step i (and its offset) the sample becomes
    ``edited * x + (1 - edited) * trajectory[i + 1]``, so outside the edited region (a (B, 1, h, w)
    weight, 1 = edited) it follows a given trajectory (an inversion's, :mod:`scadm.diffusion.inversion`).
    """
    name = normalize_sampler(sampler)
    shape = tuple(int(s) for s in shape)
    if device is None:
        device = x_T.device if x_T is not None else torch.device("cpu")
    device = torch.device(device)
    if isinstance(generator, tuple):
        generator = list(generator)
    if isinstance(generator, list) and len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")

    scheduler = build_scheduler(name, steps, schedule, device=device, **(scheduler_kwargs or {}))

    if x_T is None:
        x = randn(shape, generator=generator, device=device, dtype=dtype)
    else:
        if tuple(x_T.shape) != shape:
            raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {shape}")
        x = x_T.to(device=device, dtype=dtype)
    x = x * scheduler.init_noise_sigma

    timesteps = scheduler.timesteps
    it = timesteps
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(timesteps, desc=f"{name} sampling", total=len(timesteps))

    B = shape[0]
    if keep is not None and len(keep[1]) != len(timesteps) + 1:
        raise ValueError(f"keep: a trajectory of {len(keep[1])} latents for {len(timesteps)} steps (give steps + 1)")
    if offsets is not None and len(offsets) != len(timesteps):
        raise ValueError(f"offsets: {len(offsets)} for {len(timesteps)} steps (give one per step)")
    for i, t in enumerate(it):
        t_int = int(t)
        t_batch = torch.full((B,), t_int, dtype=torch.long, device=device)
        model_in = scheduler.scale_model_input(x, t)
        eps = model_fn(model_in, t_batch, cond)
        if tuple(eps.shape) != shape:
            raise ValueError(f"model output shape {tuple(eps.shape)} != sample shape {shape}")
        x = scheduler_step(name, scheduler, eps.to(dtype), t, x, eta=eta, generator=generator)
        if offsets is not None:
            x = x + offsets[i].to(device=device, dtype=dtype)
        if keep is not None:
            edited, trajectory = keep
            x = torch.lerp(trajectory[i + 1].to(device=device, dtype=dtype), x, edited)
        if not torch.isfinite(x).all():
            raise NonFiniteSampleError(
                f"sampling produced non-finite latents at step {i + 1} of {len(timesteps)} (t = {t_int}; "
                f"{name}, {steps} steps, eta {eta:g})"
            )
        if callback is not None:
            replaced = callback(i, t_int, x)
            if replaced is not None:
                x = replaced.to(device=device, dtype=dtype)
    return x

