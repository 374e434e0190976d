"""The options several commands share, declared once: model and device, and the sampling block
that every editing command takes (turned into one :class:`~scadm.config.SamplingOptions`)."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import typer

from .common import UserError

ModelOpt = typer.Option(None, "--model", "-m", help="Model folder (default: the bundled synthetic-64 model).")
DeviceOpt = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available).")
StepsOpt = typer.Option(None, "--steps", help="Sampling steps (default: the model's).")
OutOpt = typer.Option(..., "--out", "-o", help="Output PNG (result; more images get _1, _2 ...) or a folder.")


class _Shared(NamedTuple):
    name: str
    annotation: Any
    option: Any


#: the options every editing command takes, declared once (see `shared_options`)
_MODEL_OPTIONS = (
    _Shared("model", Optional[Path], ModelOpt),
    _Shared("device", Optional[str], DeviceOpt),
)
_SAMPLING_OPTIONS = (
    _Shared("sampler", Optional[str], typer.Option(None, "--sampler", help="ddim, ddpm or dpm++ (default: the model's).")),
    _Shared("steps", Optional[int], StepsOpt),
    _Shared("eta", Optional[float], typer.Option(None, "--eta", help="DDIM eta: 0 deterministic, 1 stochastic.")),
    _Shared("guidance_scale", Optional[float],
            typer.Option(None, "--guidance-scale", "-s", help="s of paper Eq. 4 (released code's w = 1 + s).")),
    _Shared("null_condition", Optional[str], typer.Option(
        None, "--null-condition", help="'style' (empty style, same mask) or 'full' (and zero mask); default: the model's.")),
    _Shared("seed", int, typer.Option(0, "--seed", help="Image i uses seed + i.")),
)
_ATTRIBUTE_OPTIONS = (
    _Shared("set_", Optional[str], typer.Option(None, "--set", help="Attributes for models that take them, e.g. Eyeglasses=1,Smiling=0.")),
)


def shared_options(attributes: bool = True) -> Callable:
    """Give a command the shared model and sampling options (and ``--set`` when `attributes`).

    The command function declares only its own options plus the keyword parameters ``model``,
    ``device``, ``sampling`` (a :class:`~scadm.config.SamplingOptions`, the one form the settings
    take down to the sampler) and, with `attributes`, ``attributes`` (the parsed ``--set``).
    """
    shared = (*_MODEL_OPTIONS, *_SAMPLING_OPTIONS, *(_ATTRIBUTE_OPTIONS if attributes else ()))

    def decorate(fn: Callable) -> Callable:
        own = [p for p in inspect.signature(fn).parameters.values()
               if p.name not in ("model", "device", "sampling", "attributes")]
        params = own + [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.option,
                                          annotation=o.annotation) for o in shared]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            from ..config import SamplingOptions

            values = {o.name: kwargs.pop(o.name) for o in shared}
            sampling = SamplingOptions(**{o.name: values[o.name] for o in _SAMPLING_OPTIONS}, progress=True)
            extra = {"attributes": parse_attributes(values["set_"])} if attributes else {}
            return fn(**kwargs, model=values["model"], device=values["device"], sampling=sampling, **extra)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {**{p.name: p.annotation for p in own}, **{o.name: o.annotation for o in shared}}
        return command

    return decorate


def parse_attributes(spec: Optional[str]) -> dict | None:
    """'Eyeglasses=1,Smiling=0' -> {'Eyeglasses': 1, 'Smiling': 0}."""
    if not spec:
        return None
    out = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep or value.strip() not in ("0", "1"):
            raise UserError(f"--set {item!r}: write NAME=0 or NAME=1, comma-separated (e.g. Eyeglasses=1,Smiling=0)")
        out[name.strip()] = int(value)
    return out
