"""diffusers' call keywords, taken by every application through one decorator (:func:`diffusers_call`).

The keywords of a call stay in force while it runs (a context variable that the sampling step
reads), so an application that calls another runs inside its caller's call.
"""

from __future__ import annotations

import dataclasses
import functools
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..config import SamplingOptions
from .outputs import OUTPUT_TYPES


@dataclass
class CallOptions:
    """diffusers' per-call keywords, in force for the duration of one application call."""

    output_type: str = "pil"
    generator: torch.Generator | list[torch.Generator] | None = None
    callback_on_step_end: Callable | None = None
    callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",)


#: the call in progress (None outside an application); an application called by another one
#: (swap_mask_parts -> generate) runs inside its caller's call
_CALL: ContextVar[CallOptions | None] = ContextVar("scadm_call", default=None)
#: the tensors a step-end callback can read and replace
CALLBACK_TENSOR_INPUTS = ("latents",)


def diffusers_call(method: Callable) -> Callable:
    """An application that takes diffusers' call keywords besides its own: ``num_inference_steps``
    (this project's ``steps``), ``guidance_scale`` (s; the released w = 1 + s), ``generator`` (one
    generator, or one per image, instead of ``seed``), ``output_type``, ``return_dict`` and
    ``callback_on_step_end(pipe, step, timestep, callback_kwargs) -> dict`` with
    ``callback_on_step_end_tensor_inputs`` (``["latents"]``: the dict it returns may replace them)."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, output_type: str = "pil", return_dict: bool = True,
             generator: Any = None, callback_on_step_end: Callable | None = None,
             callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
             num_inference_steps: int | None = None, **kwargs: Any) -> Any:
        if _CALL.get() is not None:  # called by another application: its call's keywords hold
            return method(self, *args, **kwargs)
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type {output_type!r}: choose one of {', '.join(OUTPUT_TYPES)}")
        unknown = sorted(set(callback_on_step_end_tensor_inputs) - set(CALLBACK_TENSOR_INPUTS))
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs {unknown}: a step-end callback can read "
                             f"{', '.join(CALLBACK_TENSOR_INPUTS)}")
        if num_inference_steps is not None:
            if kwargs.get("steps") not in (None, num_inference_steps):
                raise ValueError("give num_inference_steps or steps, not both")
            kwargs["steps"] = num_inference_steps
        token = _CALL.set(CallOptions(output_type, generator, callback_on_step_end,
                                      tuple(callback_on_step_end_tensor_inputs)))
        try:
            result = method(self, *args, **kwargs)
        finally:
            _CALL.reset(token)
        return result if return_dict else (result[0],)

    return call


def current_call() -> CallOptions:
    """The keywords of the call in progress (the defaults outside one)."""
    return _CALL.get() or CallOptions()


def sampling_options(sampling: SamplingOptions | None, overrides: dict[str, Any]) -> SamplingOptions:
    """A call's SamplingOptions: `sampling` (or the defaults) with keyword overrides applied."""
    base = sampling or SamplingOptions()
    if not overrides:
        return base
    names = {f.name for f in dataclasses.fields(SamplingOptions)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown sampling option(s) {unknown}; valid: {sorted(names)}")
    return dataclasses.replace(base, **overrides)
