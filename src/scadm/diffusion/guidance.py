"""Classifier-free guidance (Ho & Salimans; SCA-DM Eq. 4) as a wrapper of the model function.

Two conventions exist for the guidance strength:

* paper (Eq. 4):   eps = eps_c + s (eps_c - eps_null),     s = 1.2 in the paper;
* released code:   eps = eps_null + w (eps_c - eps_null),  w = 1.0 (FID script) .. 7.5 (demo).

They are the same with w = 1 + s (s = 1.2 <-> w = 2.2; w = 1 <-> s = 0, no guidance).
This module uses s; convert with :func:`released_w_to_s` / :func:`s_to_released_w`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from ..conditions import cat_conditions

__all__ = ["ClassifierFreeGuidance", "FoldedGuidance", "released_w_to_s", "s_to_released_w"]

ModelFn = Callable[[Tensor, Tensor, Any], Tensor]


def released_w_to_s(w: float) -> float:
    """Paper scale s from the released code's w.

    The released code computes eps_null + w (eps_c - eps_null), which equals Eq. 4,
    eps_c + s (eps_c - eps_null), with w = 1 + s; hence s = w - 1.
    """
    return w - 1.0


def s_to_released_w(s: float) -> float:
    """The released code's w from the paper scale s: w = s + 1 (see :func:`released_w_to_s`)."""
    return s + 1.0


class ClassifierFreeGuidance:
    """Wrap ``model_fn`` so that it returns the guided eps of Eq. 4.

    ``null_cond`` is the empty condition (same structure and batch size as the conditions
    it will be paired with), or a callable ``cond -> null condition`` built once per cond.
    With s == 0 the wrapper is a single conditional pass and the null condition is never built:
    this is the one place that decides whether a sampling run is guided. Otherwise it runs ONE doubled
    batch: model_fn(cat(x, x), cat(t, t), cat_conditions(cond, null)) and returns
    eps_c + s (eps_c - eps_null). The concatenated condition is memoised on the identity of
    ``cond`` (a strong reference is kept, so the identity cannot be reused), so passing the
    same cond object at every step concatenates it only once.
    """

    def __init__(self, model_fn: ModelFn, null_cond: Any, s: float) -> None:
        self.model_fn = model_fn
        self.null_cond = null_cond
        self.s = float(s)
        self._memo_cond: Any = None
        self._memo_cat: Any = None
        self._has_memo = False
        self.num_cats = 0  # how many times a doubled condition was built (for tests / diagnostics)

    @classmethod
    def from_released_w(cls, model_fn: ModelFn, null_cond: Any, w: float) -> "ClassifierFreeGuidance":
        return cls(model_fn, null_cond, s=released_w_to_s(w))

    def clear_cache(self) -> None:
        self._memo_cond = None
        self._memo_cat = None
        self._has_memo = False

    def doubled_condition(self, cond: Any) -> Any:
        """cat_conditions(cond, null_cond), memoised on ``cond``'s identity."""
        if self._has_memo and self._memo_cond is cond:
            return self._memo_cat
        null = self.null_cond(cond) if callable(self.null_cond) else self.null_cond
        cat = cat_conditions(cond, null)
        self.num_cats += 1
        self._memo_cond, self._memo_cat, self._has_memo = cond, cat, True
        return cat

    def __call__(self, x_t: Tensor, t: Tensor, cond: Any) -> Tensor:
        if self.s == 0.0:
            return self.model_fn(x_t, t, cond)
        B = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device)
        if t.dim() == 0:
            t = t.expand(B)
        eps = self.model_fn(torch.cat([x_t, x_t], dim=0), torch.cat([t, t], dim=0), self.doubled_condition(cond))
        if eps.shape[0] != 2 * B:
            raise ValueError(f"model returned batch {eps.shape[0]} for a doubled batch of {2 * B}")
        eps_c, eps_null = eps[:B], eps[B:]
        return eps_c + self.s * (eps_c - eps_null)


class FoldedGuidance:
    """The guided eps of a guidance-distilled student in ONE pass: the scale s is the network's input.

    Meng et al., "On Distillation of Guided Diffusion Models" (CVPR 2023): a student eps(z_t, t, c, s)
    trained to equal Eq. 4's eps_c + s (eps_c - eps_null) of its teacher (``scadm distill``, stage A).
    ``model_fn(x_t, t, cond, guidance=s)``; no null condition is built.
    """

    def __init__(self, model_fn: Callable[..., Tensor], s: float) -> None:
        self.model_fn = model_fn
        self.s = float(s)

    def __call__(self, x_t: Tensor, t: Tensor, cond: Any) -> Tensor:
        return self.model_fn(x_t, t, cond, guidance=self.s)
