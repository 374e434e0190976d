"""Inversion: from a clean latent z_0 to the x_T (and per-step record) that the sampler maps back to z_0.

Four strategies, named by :data:`INVERSIONS`:

none   no inversion: an edit samples from noise (the released code's behaviour).
ddim   the classic baseline: the probability-flow ODE run backwards with diffusers'
       DDIMInverseScheduler on the forward DDIM's timesteps (LDM's leading spacing, offset 1,
       alpha_0 at the clean end), mirrored; the edit regenerates with DDIM. A plain inverse
       step evaluates eps at the level it leaves, the forward step at the level it arrives
       from, so the round trip closes only approximately (about 10 % of the latent at 9 steps
       on the bundled model); ``refine`` fixed-point iterations make each step the exact inverse.
exact  the inversion of the run's own solver (ddim as above, or dpm++:
       DPMSolverMultistepInverseScheduler given the forward sampler's log-SNR levels, mirrored),
       then one forward pass pinned to the inverted trajectory that records, after every step,
       the offset between the inverted latent and where the step landed (Direct Inversion:
       X. Ju et al., "PnP Inversion: Boosting Diffusion-based Editing with 3 Lines of Code",
       ICLR 2024). The edit adds offset i after its step i, so under the source's own
       conditions and guidance it returns the inverted trajectory, and z_0, to float rounding,
       at any step count and any guidance scale; under edited conditions the same offsets keep
       it close to the source where the conditions did not change.

exact-unguided  exact, its inversion pass unguided (one evaluation a step, not a doubled batch);
       the offsets are recorded with the edit's guided model, so its pass is exact all the same.
virtual InfEdit's virtual inversion (S. Xu et al., "Inversion-Free Image Editing with Natural
       Language", CVPR 2024): no inversion pass. A source branch is the target's latent noised
       with one fixed noise, known at every level; the edit runs beside it in the same batch,
       and its noise estimate is corrected by the source branch's error (the source's estimate
       minus the noise it was made with), :func:`sample_virtual`. Under the source's own
       conditions the correction cancels every error, so the face comes back exactly; each step
       is one doubled batch (source and edit), no pass before it.

``Inversion.trajectory[i]`` is the inverted latent at the level the forward sampler reaches
after its step i - 1: trajectory[0] = x_T, trajectory[-1] = z_0. Latent blending
(:func:`scadm.diffusion.sample`'s ``keep``) pulls the sample onto it outside an edited region.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from ..conditions import repeat_conditions
from .sampling import NonFiniteSampleError, build_scheduler, scheduler_step
from .schedule import DDIM_GRID, NoiseSchedule

__all__ = ["INVERSIONS", "EXACT", "ROUND_TRIP", "INVERTIBLE", "Inversion", "invert", "regeneration_kwargs", "sample_virtual"]

#: inversion strategies (see the module docstring)
INVERSIONS = ("none", "ddim", "exact", "exact-unguided", "virtual")
#: the strategies that record exact's offsets (``exact-unguided``: its inversion pass unguided, one
#: evaluation a step instead of a doubled batch; the offsets, guided, close the gap all the same)
EXACT = ("exact", "exact-unguided")
#: the strategies that give a face back exactly under its own conditions (a reconstruction by one of
#: them is the first stage's encode-decode of the face)
ROUND_TRIP = (*EXACT, "virtual")
#: the samplers that can invert (each has a diffusers inverse scheduler); they regenerate deterministically
INVERTIBLE = ("ddim", "student", "dpm++")

ModelFn = Callable[[Tensor, Tensor, Any], Tensor]


@dataclass
class Inversion:
    """x_T and the inverted latent at every level the forward sampler visits (x_T first, z_0 last)."""

    x_T: Tensor
    trajectory: list[Tensor]
    sampler: str
    steps: int
    #: model evaluations spent: steps x (1 + refine) for ddim, one per step for dpm++, and one
    #: more per step for the offsets of ``exact`` (a guided evaluation is two network passes)
    evaluations: int
    #: ``exact``: what the forward sampler adds after its step i to land on trajectory[i + 1]
    offsets: list[Tensor] | None = None

    def expand(self, batch: int) -> "Inversion":
        """The same inversion for `batch` images (one inverted face reused, e.g. over interpolation alphas)."""
        if self.x_T.shape[0] == batch:
            return self
        if self.x_T.shape[0] != 1:
            raise ValueError(f"cannot reuse an inversion of {self.x_T.shape[0]} images for {batch}")
        grow = lambda z: z.expand(batch, *z.shape[1:]).contiguous()  # noqa: E731
        offsets = None if self.offsets is None else [grow(o) for o in self.offsets]
        return Inversion(grow(self.x_T), [grow(z) for z in self.trajectory], self.sampler, self.steps, self.evaluations,
                         offsets)


def regeneration_kwargs(sampler: str) -> dict[str, Any]:
    """Scheduler settings for the forward pass that starts from an inversion's x_T."""
    return {"final_sigmas_type": "sigma_min"} if sampler == "dpm++" else {}


def _ddim_inverse(schedule: NoiseSchedule, steps: int, forward, device):
    from diffusers import DDIMInverseScheduler

    inv = DDIMInverseScheduler(
        num_train_timesteps=schedule.num_train_timesteps, trained_betas=schedule.betas_np.copy(),
        prediction_type=schedule.prediction_type, clip_sample=False, set_alpha_to_one=False,
        steps_offset=int(forward.config.steps_offset), timestep_spacing=forward.config.timestep_spacing,
    )
    spacing = forward.config.timestep_spacing
    if spacing not in ("leading", "trailing"):
        raise ValueError(f"DDIM inversion needs 'leading' or 'trailing' timestep spacing, the scheduler has {spacing!r}: "
                         "assign DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing='leading')")
    inv.set_timesteps(steps, device=device)
    if not torch.equal(inv.timesteps.cpu(), forward.timesteps.flip(0).cpu()):  # the grids must mirror
        raise ValueError(f"DDIM inversion: the inverse timesteps {inv.timesteps.tolist()} do not mirror the "
                         f"sampler's {forward.timesteps.tolist()} (timestep_spacing "
                         f"{forward.config.timestep_spacing!r}); use 'leading' or 'trailing' spacing")
    return inv


def _dpm_inverse(schedule: NoiseSchedule, forward, device):
    from diffusers import DPMSolverMultistepInverseScheduler

    cfg = forward.config
    inv = DPMSolverMultistepInverseScheduler(
        num_train_timesteps=schedule.num_train_timesteps, trained_betas=schedule.betas_np.copy(),
        prediction_type=schedule.prediction_type, algorithm_type=cfg.algorithm_type, solver_order=cfg.solver_order,
        solver_type=cfg.solver_type, lower_order_final=cfg.lower_order_final,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        inv.set_timesteps(len(forward.timesteps), device=device)
    sig, ts = forward.sigmas.cpu(), forward.timesteps.cpu().long()
    # forward: step i goes from level sig[i] (evaluated at ts[i]) to sig[i + 1]; the last level is sigma_min.
    # Mirrored: levels flip(sig), each evaluated at its own timestep; a last forward step from sigma_min
    # to sigma_min (when ts[-1] == 0) moves nothing and is left out.
    degenerate = bool(torch.isclose(sig[-1], sig[-2]))
    levels = sig[:-1].flip(0) if degenerate else sig.flip(0)
    at = ts.flip(0)[:-1] if degenerate else torch.cat([ts.new_zeros(1), ts.flip(0)[:-1]])
    inv.sigmas = levels.float().clone()
    inv.timesteps = at.to(device)
    inv.num_inference_steps = len(at)
    inv.model_outputs = [None] * cfg.solver_order
    inv.lower_order_nums = 0
    inv._step_index = 0  # by position: rounded log-SNR timesteps can repeat, which a lookup by value would skip
    return inv, degenerate


@torch.no_grad()
def invert(model_fn: ModelFn, z0: Tensor, cond: Any, schedule: NoiseSchedule, *, sampler: str = "ddim",
           steps: int = 50, refine: int = 0, exact: bool = False, scheduler_kwargs: dict[str, Any] | None = None,
           progress: bool = False, batch_offsets: int | None = None, inversion_fn: ModelFn | None = None) -> Inversion:
    """Invert the clean latent `z0` (B, C, h, w) under `cond` to x_T (model_fn as for :func:`sample`).

    The forward pass that undoes it: ``sample(..., sampler=sampler, steps=steps, x_T=inv.x_T,
    offsets=inv.offsets, scheduler_kwargs=kw)`` with ``kw`` the `scheduler_kwargs` given here
    (default :func:`regeneration_kwargs`). `refine`: fixed-point iterations per DDIM step.
    `exact`: also record the per-step offsets that make that forward pass return z_0 exactly.
    `batch_offsets`: evaluate that many steps of the offsets' pass in one batch (every point of the
    inverted trajectory is known before it starts); default: 16 on an accelerator, 1 on the CPU.
    `inversion_fn`: the model of the inversion pass, when it is not `model_fn` (an unguided pass: the
    offsets, recorded with `model_fn`, make the edit's pass exact all the same).
    """
    if sampler not in INVERTIBLE:
        raise ValueError(f"sampler {sampler!r} cannot invert; expected one of {', '.join(INVERTIBLE)}")
    if refine and sampler not in DDIM_GRID:
        raise ValueError("refine: fixed-point iterations are for the ddim inversion (a multistep solver keeps its history)")
    device = z0.device
    kwargs = regeneration_kwargs(sampler) if scheduler_kwargs is None else dict(scheduler_kwargs)
    forward = build_scheduler(sampler, steps, schedule, device=device, **kwargs)
    B = z0.shape[0]
    x = z0.float()
    levels, evaluations = [x], 0

    def eps_at(x_t: Tensor, t: int) -> Tensor:
        nonlocal evaluations
        evaluations += 1
        return (inversion_fn or model_fn)(x_t, torch.full((B,), int(t), dtype=torch.long, device=device), cond).float()

    if sampler in DDIM_GRID:
        inv, tail = _ddim_inverse(schedule, steps, forward, device), False
    else:
        inv, tail = _dpm_inverse(schedule, forward, device)
    it = inv.timesteps
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"{sampler} inversion", total=len(it))
    for k, t in enumerate(it):
        t_int = int(t)
        if sampler in DDIM_GRID:
            nxt = inv.step(eps_at(x, t_int), t_int, x).prev_sample
            for _ in range(int(refine)):  # x_t = inverse step of x_s with eps(x_t, t): the forward step's exact inverse
                nxt = inv.step(eps_at(nxt, t_int), t_int, x).prev_sample
        else:
            nxt = inv.step(eps_at(x, t_int), t, x).prev_sample
        if not torch.isfinite(nxt).all():
            raise NonFiniteSampleError(f"{sampler} inversion produced non-finite latents at step {k + 1} of "
                                       f"{len(inv.timesteps)} (t = {t_int})")
        x = nxt
        levels.append(x)
    trajectory = levels[::-1]
    if tail:  # the forward pass's last step (sigma_min to sigma_min) arrives where it left
        trajectory.append(trajectory[-1])
    if len(trajectory) != len(forward.timesteps) + 1:
        raise AssertionError(f"{len(trajectory)} inverted levels for {len(forward.timesteps)} forward steps")
    offsets = None
    if exact:
        if batch_offsets is None:
            batch_offsets = 1 if device.type == "cpu" else 16
        forward = build_scheduler(sampler, steps, schedule, device=device, **kwargs)

        def eps_many(xs: list[Tensor], ts: list[int]) -> list[Tensor]:
            nonlocal evaluations
            evaluations += len(xs)
            t = torch.cat([torch.full((B,), int(t), dtype=torch.long, device=device) for t in ts])
            out = model_fn(torch.cat(xs), t, repeat_conditions(cond, len(xs))).float()
            return list(out.split(B))

        offsets = _offsets(eps_many, trajectory, sampler, forward, progress, max(1, int(batch_offsets)))
    return Inversion(x, trajectory, sampler, int(steps), evaluations, offsets)


def _offsets(eps_many: Callable[[list[Tensor], list[int]], list[Tensor]], trajectory: list[Tensor], sampler: str,
             forward: Any, progress: bool, batch: int = 1) -> list[Tensor]:
    """Direct Inversion's record: the forward sampler run on the inverted trajectory, each step
    started from trajectory[i] (so a multistep solver's history holds the source's own outputs, as
    the edit's will under the source's conditions), and the gap to trajectory[i + 1] kept. The
    model's outputs depend on the trajectory alone, so `batch` steps are evaluated at once."""
    timesteps = list(forward.timesteps)
    eps_all: list[Tensor] = []
    chunks = range(0, len(timesteps), batch)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="inversion offsets", total=len(chunks))
    for lo in chunks:
        ts = timesteps[lo:lo + batch]
        xs = [forward.scale_model_input(trajectory[lo + k], t) for k, t in enumerate(ts)]
        eps_all += eps_many(xs, [int(t) for t in ts])
    offsets = []
    for i, t in enumerate(timesteps):  # the solver's steps, in order (a multistep solver keeps its history)
        landed = scheduler_step(sampler, forward, eps_all[i], t, trajectory[i])
        offsets.append(trajectory[i + 1] - landed)
    return offsets


@torch.no_grad()
def sample_virtual(model_fn: ModelFn, z0: Tensor, cond: Any, schedule: NoiseSchedule, *, steps: int,
                   region: Tensor | None = None, fresh: Tensor | None = None, generator: Any = None,
                   progress: bool = False, sampler: str = "ddim") -> Tensor:
    """An edit of `z0` (B, C, h, w) by virtual inversion (see the module docstring) on the grid of
    `sampler`, one of :data:`~scadm.diffusion.schedule.DDIM_GRID` (LDM's DDIM, or a distilled student's).

    `model_fn(x, t, cond)` sees a batch of 2B: the source rows (z0 noised) first, then the edit's;
    `cond` holds the source's conditions, then the edit's. `region` (B, 1, h, w): with blending,
    where the edit is free (elsewhere it follows the source branch, and ends on z0 itself);
    `fresh` (B, 1, h, w) or None: where the edit starts from fresh noise instead of the source's.
    Returns the edit's clean latent (its last x0 estimate).
    """
    from .objective import randn

    B, device = z0.shape[0], z0.device
    if sampler not in DDIM_GRID:
        raise ValueError(f"virtual inversion steps on a DDIM grid ({', '.join(DDIM_GRID)}), not {sampler!r}")
    timesteps = build_scheduler(sampler, steps, schedule, device=device).timesteps
    ab_all = schedule._ab_on(device).to(torch.float32)
    noise = randn(tuple(z0.shape), generator=generator, device=device, dtype=z0.dtype)
    noised = lambda ab: ab.sqrt() * z0 + (1 - ab).sqrt() * noise  # noqa: E731 - the source branch, known
    source = noised(ab_all[timesteps[0]])
    x = source
    if fresh is not None:
        x = torch.lerp(x, randn(tuple(z0.shape), generator=generator, device=device, dtype=z0.dtype), fresh)
    it = enumerate(timesteps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="virtual inversion", total=len(timesteps))
    x0 = x
    for i, t in it:
        ab = ab_all[t]
        out = model_fn(torch.cat([source, x]), torch.full((2 * B,), int(t), dtype=torch.long, device=device), cond)
        eps_source, eps_edit = (_eps(o.float(), z, ab, schedule.prediction_type) for o, z in zip(out.split(B), (source, x)))
        eps = eps_edit - eps_source + noise  # the edit's noise, less the source branch's error
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        if i + 1 < len(timesteps):
            ab_next = ab_all[timesteps[i + 1]]
            source = noised(ab_next)
            x = ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * eps
            if region is not None:
                x = torch.lerp(source, x, region)
        if not torch.isfinite(x0).all():
            raise NonFiniteSampleError(f"virtual inversion produced non-finite latents at step {i + 1} of "
                                       f"{len(timesteps)} (t = {int(t)})")
    return x0 if region is None else torch.lerp(z0, x0, region)


def _eps(out: Tensor, x_t: Tensor, ab: Tensor, prediction_type: str) -> Tensor:
    """The noise estimate of a model output of `prediction_type` at x_t (level alpha_bar `ab`)."""
    if prediction_type == "epsilon":
        return out
    if prediction_type == "v_prediction":
        return (1 - ab).sqrt() * x_t + ab.sqrt() * out
    return (x_t - ab.sqrt() * out) / (1 - ab).sqrt()  # "sample": out is x0

