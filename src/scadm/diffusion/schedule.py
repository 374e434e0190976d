"""Noise schedules (paper Eq. 1 and 3) and P2 loss weighting.

The schedule is pure maths on float64 tables; the network never appears here. It also
builds configured diffusers schedulers (``make_scheduler``) from its own betas via
``trained_betas`` so that every schedule kind works with every sampler.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["ScheduleConfig", "NoiseSchedule", "make_betas", "p2_weight", "SAMPLERS", "DDIM_GRID", "PREDICTION_TYPES",
           "SCHEDULER_CLASSES", "sampler_of"]

#: the diffusers options that choose a timestep spacing, and their names in reports
_SPACINGS = {"use_lu_lambdas": "log-SNR", "use_karras_sigmas": "Karras", "use_exponential_sigmas": "exponential",
             "use_beta_sigmas": "beta"}

#: sampler names accepted by :meth:`NoiseSchedule.make_scheduler` and :func:`scadm.diffusion.sample`.
SAMPLERS = ("ddim", "ddpm", "dpm++", "unipc", "student")
#: the samplers that step on a DDIM grid with DDIM's update (deterministic jumps between levels): LDM's leading
#: grid, and a distilled student's ("student": trailing spacing, t = T - 1 first, so pure noise is where it starts)
DDIM_GRID = ("ddim", "student")
_SAMPLER_ALIASES = {
    "ddim": "ddim",
    "ddpm": "ddpm",
    "dpm++": "dpm++",
    "dpmpp": "dpm++",
    "dpm++2m": "dpm++",
    "dpmsolver++": "dpm++",
    "unipc": "unipc",
    "unipc-bh2": "unipc",
    "student": "student",
}
#: the diffusers scheduler class of each sampler name (what ``make_scheduler`` builds)
SCHEDULER_CLASSES = {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler", "dpm++": "DPMSolverMultistepScheduler",
                     "unipc": "UniPCMultistepScheduler", "student": "DDIMScheduler"}


def sampler_of(scheduler: Any) -> str:
    """The sampler name of a diffusers scheduler object (its class); a one-line error for any other."""
    name = type(scheduler).__name__
    if name == "DDIMScheduler":  # a student's DDIM is the one with trailing spacing
        return "student" if scheduler.config.get("timestep_spacing") == "trailing" else "ddim"
    for sampler, cls in SCHEDULER_CLASSES.items():
        if name == cls:
            return sampler
    raise ValueError(f"scheduler {name}: scadm samples with {', '.join(SCHEDULER_CLASSES.values())} "
                     "(and inverts with DDIMScheduler and DPMSolverMultistepScheduler); assign one of those")


_KIND_ALIASES = {"ldm_linear": "ldm_linear", "scaled_linear": "ldm_linear", "linear": "linear", "cosine": "cosine"}


@dataclass
class ScheduleConfig:
    """Forward-process schedule.

    kind: "ldm_linear" (alias "scaled_linear"; LDM's "linear": linear in sqrt(beta), the
    SCA-DM/LDM default), "linear" (plain linspace of beta) or "cosine" (Nichol & Dhariwal
    2021 with offset ``cosine_s``, betas clipped at 0.999; beta_start/beta_end unused).

    prediction_type: what the network predicts. "epsilon" (the papers' Eq. 2) or
    "v_prediction" (v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0, Salimans & Ho 2022):
    its loss weights the high-noise steps, where an image's coarse colours are decided, by
    about 1 / SNR more than eps-MSE does, and x_0 stays well defined at t = T.
    """

    kind: str = "ldm_linear"
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    num_train_timesteps: int = 1000
    cosine_s: float = 0.008
    prediction_type: str = "epsilon"


PREDICTION_TYPES = ("epsilon", "v_prediction")


def normalize_kind(kind: str) -> str:
    try:
        return _KIND_ALIASES[kind.lower()]
    except KeyError:
        raise ValueError(f"unknown schedule kind {kind!r}; expected one of {sorted(_KIND_ALIASES)}") from None


def normalize_sampler(sampler: str) -> str:
    try:
        return _SAMPLER_ALIASES[sampler.lower()]
    except KeyError:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}") from None


def make_betas(cfg: ScheduleConfig) -> np.ndarray:
    """float64 betas of length ``cfg.num_train_timesteps``."""
    T = int(cfg.num_train_timesteps)
    if T < 1:
        raise ValueError("num_train_timesteps must be >= 1")
    kind = normalize_kind(cfg.kind)
    if kind == "ldm_linear":
        betas = np.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, T, dtype=np.float64) ** 2
    elif kind == "linear":
        betas = np.linspace(cfg.beta_start, cfg.beta_end, T, dtype=np.float64)
    else:  # cosine
        s = float(cfg.cosine_s)
        steps = np.arange(T + 1, dtype=np.float64) / T
        f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        ab = f / f[0]
        betas = np.clip(1.0 - ab[1:] / ab[:-1], 0.0, 0.999)
    if not (np.all(betas > 0) and np.all(betas < 1)):
        raise ValueError("betas must lie in (0, 1)")
    return betas


class NoiseSchedule:
    """Discrete DDPM schedule with float64 tables.

    Attributes (float64 torch tensors on CPU, length T): ``betas``, ``alphas``,
    ``alphas_cumprod`` (alpha_bar_t, Eq. 3). Timesteps are 0-based: index t in
    ``0..T-1`` is the paper's step t+1.
    """

    def __init__(self, config: ScheduleConfig | None = None, **overrides: Any) -> None:
        config = config if config is not None else ScheduleConfig()
        if overrides:
            config = ScheduleConfig(**{**asdict(config), **overrides})
        self.config = config
        self.kind = normalize_kind(config.kind)
        if config.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {config.prediction_type!r}; expected one of {PREDICTION_TYPES}")
        self.prediction_type = config.prediction_type
        self.num_train_timesteps = int(config.num_train_timesteps)
        betas = make_betas(config)
        self.betas = torch.from_numpy(betas)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self._device_cache: dict[torch.device, Tensor] = {}

    # ------------------------------------------------------------------ tables
    def __len__(self) -> int:
        return self.num_train_timesteps

    def __repr__(self) -> str:
        return f"NoiseSchedule({self.config})"

    @property
    def betas_np(self) -> np.ndarray:
        return self.betas.numpy()

    def _ab_on(self, device: torch.device) -> Tensor:
        device = torch.device(device)
        if device.type == "cpu":
            return self.alphas_cumprod
        tab = self._device_cache.get(device)
        if tab is None:
            tab = self.alphas_cumprod.to(device)
            self._device_cache[device] = tab
        return tab

    def _as_t(self, t: Tensor | int | list[int]) -> Tensor:
        t = torch.as_tensor(t)
        if t.dtype.is_floating_point:
            raise TypeError("timesteps must be integers")
        return t.long()

    def alpha_bar(self, t: Tensor | int) -> Tensor:
        """alpha_bar_t (float64, on t's device, t's shape)."""
        t = self._as_t(t)
        return self._ab_on(t.device)[t]

    def snr(self, t: Tensor | int) -> Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) (float64)."""
        ab = self.alpha_bar(t)
        return ab / (1.0 - ab)

    # ----------------------------------------------------------- forward process
    def q_sample(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Eq. 3: x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps.

        ``t`` is a LongTensor[B] (or scalar); coefficients broadcast over trailing dims.
        The result has x0's dtype (coefficients computed in float64 then cast).
        """
        a, b = self._coefficients(x0, t)
        return a * x0 + b * eps.to(x0.dtype)

    def target(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """The network's regression target at (x0, t, eps): eps, or v = sqrt(ab) eps - sqrt(1 - ab) x0."""
        if self.prediction_type == "epsilon":
            return eps
        a, b = self._coefficients(x0, t)
        return a * eps.to(x0.dtype) - b * x0

    def _coefficients(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t): computed in float64, shaped to broadcast
        over x0's trailing dims, cast to x0's dtype."""
        ab = self.alpha_bar(self._as_t(t).to(x0.device))
        if ab.dim() == 1:
            ab = ab.view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt().to(x0.dtype), (1.0 - ab).sqrt().to(x0.dtype)

    # ---------------------------------------------------------------- samplers
    def make_scheduler(self, sampler: str = "ddim", **kw: Any):
        """A fresh, configured diffusers scheduler for ``sampler`` built from these betas.

        ddim:  DDIMScheduler with LDM's exact settings (clip_sample=False,
               set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading").
        student: DDIMScheduler with "trailing" spacing (t = 999, 749, 499, 249 at 4 steps; the last
               jump lands on alpha_bar_0): the segment boundaries a ``scadm distill`` student was
               trained to jump between, one evaluation a step (guidance folded into the network).
        ddpm:  DDPMScheduler, variance_type="fixed_small" (LDM), "leading" spacing so that
               fewer than T steps are possible (steps = T gives the full chain 999..0).
        dpm++: DPMSolverMultistepScheduler, algorithm_type="dpmsolver++", solver_order=2,
               use_lu_lambdas=True: steps uniform in log-SNR (the DPM-Solver code's "logSNR"
               step type, Lu et al. 2022). Karras sigmas gave lower noise-based mIoU at 8-10
               steps on the bundled model, and diffusers' default uniform-t spacing
               under-disperses samples (its last step jumps from t ~ T/steps to x_0); see
               docs/diffusion.md. (Not use_exponential_sigmas, the same spacing: diffusers
               truncates its timesteps instead of rounding them, so the model sees a t up to
               one step off the sigma the solver uses.) The cosine schedule keeps uniform t.
        unipc: UniPCMultistepScheduler (Zhao et al. 2023, predictor-corrector, bh2, order 2,
               data prediction) with Karras sigmas (it has no log-SNR option that rounds its
               timesteps), uniform t for the cosine schedule.
        Keyword arguments override any of these settings; one that turns on another spacing
        (use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas, use_lu_lambdas) replaces
        the default spacing.
        """
        from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

        name = normalize_sampler(sampler)
        common: dict[str, Any] = dict(
            num_train_timesteps=self.num_train_timesteps,
            trained_betas=self.betas_np.copy(),
            prediction_type=self.prediction_type,
        )
        if name in DDIM_GRID:
            opts = dict(
                clip_sample=False,
                set_alpha_to_one=False,
                steps_offset=1,
                timestep_spacing="leading",
                thresholding=False,
            )
            if name == "student":  # the levels a distilled student jumps between: T-1, T-1-T/k, ..., then alpha_bar_0
                opts.update(steps_offset=0, timestep_spacing="trailing")
            cls = DDIMScheduler
        elif name == "ddpm":
            opts = dict(
                variance_type="fixed_small",
                clip_sample=False,
                thresholding=False,
                timestep_spacing="leading",
                steps_offset=0,
            )
            cls = DDPMScheduler
        elif name == "dpm++":
            # log-SNR and Karras spacing are wasteful for the cosine schedule (its clipped
            # betas make sigma_max huge, so many steps round to t = 999): uniform t there.
            opts = dict(
                algorithm_type="dpmsolver++",
                solver_order=2,
                use_lu_lambdas=self.kind != "cosine",
                thresholding=False,
            )
            if self.kind != "cosine":  # unused by log-SNR spacing; LDM's, so that DDIMScheduler.from_config(config)
                opts.update(timestep_spacing="leading", steps_offset=1)  # gives the DDIM of make_scheduler("ddim")
            cls = DPMSolverMultistepScheduler
        else:
            opts = dict(
                solver_order=2,
                solver_type="bh2",
                predict_x0=True,
                use_karras_sigmas=self.kind != "cosine",
                thresholding=False,
            )
            cls = UniPCMultistepScheduler
        if any(kw.get(k) for k in _SPACINGS):  # a spacing asked for replaces the default one
            opts = {k: v for k, v in opts.items() if k not in _SPACINGS}
        opts = {**common, **opts, **kw}
        return cls(**opts)

    def overrides(self, scheduler: Any) -> dict[str, Any]:
        """The settings of a diffusers `scheduler` that differ from :meth:`make_scheduler`'s for its sampler
        (what a user changed, e.g. ``DPMSolverMultistepScheduler.from_config(config, use_karras_sigmas=True)``)."""
        sampler = sampler_of(scheduler)
        base = dict(self.make_scheduler(sampler).config)
        skip = {"trained_betas", "num_train_timesteps", "prediction_type"}  # the model's own, never the scheduler's
        skip |= set(scheduler.config.get("_use_default_values", []))  # not given: a class default, not a choice
        return {k: v for k, v in scheduler.config.items()
                if not k.startswith("_") and k not in skip and k in base and _differs(base[k], v)}

    def spacing(self, sampler: str) -> str:
        """The name of the timestep spacing ``sampler`` uses with this schedule by default."""
        config = self.make_scheduler(sampler).config
        for key, label in _SPACINGS.items():
            if config.get(key):
                return label
        return str(config.get("timestep_spacing", "linspace"))


def p2_weight(
    schedule: NoiseSchedule, t: Tensor, k: float = 1.0, gamma: float = 0.5, dtype: torch.dtype = torch.float32
) -> Tensor:
    """P2 weight 1 / (k + SNR(t))^gamma (Choi et al. 2022), not normalised.

    With k = 1 this equals (1 - alpha_bar_t)^gamma. Computed in float64, returned as
    ``dtype`` on t's device.
    """
    w = (k + schedule.snr(t)) ** (-gamma)
    return w.to(dtype)


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple, np.ndarray)) or isinstance(b, (list, tuple, np.ndarray)):
        return a is None or b is None or not np.array_equal(np.asarray(a), np.asarray(b))
    return a != b

