"""The maths of distilling a few-step student (``scadm distill``); the networks never appear here.

Two stages, after Meng et al., "On Distillation of Guided Diffusion Models" (CVPR 2023):

A. Guidance distillation. The student takes the guidance scale s as an input and is regressed
   on its teacher's guided output, Eq. 4's eps_c + s (eps_c - eps_null) (:func:`guided`), so one
   pass replaces a doubled batch.
B. Multi-boundary consistency distillation (LCM: Luo et al., "Latent Consistency Models", 2023;
   multi-boundary: Starodubcev et al., "Invertible Consistency Distillation", NeurIPS 2024, and
   Wang et al., "Phased Consistency Models", NeurIPS 2024). The probability-flow ODE is cut into
   K segments. A teacher grid of N levels (trailing spacing, N a multiple of K) has every
   (N/K)-th level as a segment boundary (:class:`StudentGrid`). From any level j the student
   jumps with one DDIM update to the boundary below it; the target is the teacher's DDIM step
   j -> j - 1 followed by the target network's jump from j - 1 (or nothing, when j - 1 is the
   boundary). K = 1 is plain LCM (every jump lands on the clean end).

The jump is DDIM's update with the network's own output (:func:`ddim_jump`), so it is the
identity at a boundary, the consistency model's boundary condition, with no c_skip / c_out. The
student then samples with DDIM on the boundaries (the ``student`` sampler: trailing spacing), and
everything that steps on a DDIM grid (virtual inversion, exact inversion) works with it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .schedule import NoiseSchedule

__all__ = ["StudentGrid", "ddim_jump", "eps_x0", "guided", "pseudo_huber"]


def eps_x0(out: Tensor, x_t: Tensor, ab: Tensor, prediction_type: str) -> tuple[Tensor, Tensor]:
    """(eps, x0) of a network output of `prediction_type` at x_t on level alpha_bar `ab` (broadcastable)."""
    a, b = ab.sqrt(), (1 - ab).sqrt()
    if prediction_type == "epsilon":
        eps = out
        return eps, (x_t - b * eps) / a
    if prediction_type == "v_prediction":
        return b * x_t + a * out, a * x_t - b * out
    raise ValueError(f"distillation supports epsilon and v_prediction models, not {prediction_type!r}")


def ddim_jump(out: Tensor, x_t: Tensor, ab_t: Tensor, ab_s: Tensor, prediction_type: str) -> Tensor:
    """DDIM's deterministic update from level ab_t to ab_s with the network output `out` at x_t."""
    eps, x0 = eps_x0(out, x_t, ab_t, prediction_type)
    return ab_s.sqrt() * x0 + (1 - ab_s).sqrt() * eps


def guided(out_c: Tensor, out_null: Tensor, s: Tensor | float) -> Tensor:
    """Eq. 4 on network outputs: out_c + s (out_c - out_null) (linear, so in eps or v alike)."""
    return out_c + s * (out_c - out_null)


def pseudo_huber(a: Tensor, b: Tensor, c: float) -> Tensor:
    """Per-sample pseudo-Huber distance sqrt(|a - b|^2 + c^2) - c over each sample's elements, mean
    per element (Song & Dhariwal, "Improved Techniques for Training Consistency Models", 2023;
    LCM's loss); c = 0 is the L2 distance."""
    d = (a - b).float().flatten(1)
    return (d.pow(2).mean(1) + c * c).sqrt() - c


@dataclass
class StudentGrid:
    """The teacher's levels and the student's segment boundaries.

    Level j = 1..N is timestep round(j T / N) - 1 (diffusers' trailing spacing); level 0 is the
    clean end, alpha_bar_0 (DDIM's final level with set_alpha_to_one=False). Levels j with
    j % (N / K) == 0 are the boundaries; the student's K-step sampler visits exactly them.
    """

    schedule: NoiseSchedule
    levels: int  # N
    segments: int  # K

    def __post_init__(self) -> None:
        if self.segments < 1 or self.levels % self.segments:
            raise ValueError(f"the teacher grid's {self.levels} levels must be a multiple of the {self.segments} segments")
        T = self.schedule.num_train_timesteps
        j = torch.arange(self.levels + 1, dtype=torch.float64)
        self.timesteps = (torch.round(j * T / self.levels) - 1).clamp(min=0).long()  # (N + 1,), level 0 -> t 0
        self.alpha_bar = self.schedule.alphas_cumprod[self.timesteps].float()  # level 0 is alpha_bar_0

    @property
    def per_segment(self) -> int:
        return self.levels // self.segments

    def boundary(self, j: Tensor) -> Tensor:
        """The boundary level below level j >= 1 (the one its segment's jump lands on)."""
        return (j - 1).div(self.per_segment, rounding_mode="floor") * self.per_segment

    def boundary_timesteps(self) -> list[int]:
        """The timesteps the student's K-step sampler evaluates at, noisiest first."""
        return [int(self.timesteps[j]) for j in range(self.levels, 0, -self.per_segment)]
