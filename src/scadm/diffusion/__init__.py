"""Diffusion engine: schedules, training objective, samplers and classifier-free guidance.

The network is separate from the maths: a model function is
``model_fn(x_t: Tensor[B, ...], t: LongTensor[B], cond) -> eps`` and ``cond`` is opaque.
"""

from .inversion import INVERSIONS, Inversion, invert, regeneration_kwargs, sample_virtual
from .guidance import ClassifierFreeGuidance, FoldedGuidance, released_w_to_s, s_to_released_w
from .objective import apply_dropout, diffusion_loss, dropout_keep, region_weights
from .sampling import build_scheduler, sample, timesteps_for
from .schedule import SAMPLERS, NoiseSchedule, ScheduleConfig, make_betas, p2_weight

__all__ = [
    "ScheduleConfig",
    "NoiseSchedule",
    "make_betas",
    "p2_weight",
    "SAMPLERS",
    "diffusion_loss",
    "region_weights",
    "dropout_keep",
    "apply_dropout",
    "sample",
    "invert",
    "sample_virtual",
    "Inversion",
    "INVERSIONS",
    "regeneration_kwargs",
    "timesteps_for",
    "build_scheduler",
    "ClassifierFreeGuidance",
    "FoldedGuidance",
    "released_w_to_s",
    "s_to_released_w",
]
