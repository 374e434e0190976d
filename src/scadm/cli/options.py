"""Options of the `scadm` commands: checked declarations, and the blocks several commands share.

Every option that names a path, a device or a number is declared with one of the factories
below, which check its value with :mod:`scadm.checks` while the command line is parsed: a bad
value stops the command before any model is built, data read or file written, with one line
that names the option, the value and what is expected. The model-and-device block and the
sampling block that every editing command takes are declared once (:func:`shared_options`) and
reach the command as one :class:`~scadm.config.SamplingOptions`.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

import typer

from .. import checks
from ..config import PRECISIONS
from ..diffusion.inversion import INVERSIONS
from .common import UserError


# --------------------------------------------------------------------------- checked options
def _flag(param: Any) -> str:
    opts = getattr(param, "opts", None) or []
    longest = max(opts, key=len) if opts else None
    return longest if longest and longest.startswith("-") else str(param.name).upper()


def checked(check: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable:
    """A typer callback that runs `check(value, flag, ...)` on the parsed value (None passes)."""

    def callback(param: typer.CallbackParam, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            return type(value)(check(v, _flag(param), *args, **kwargs) for v in value)
        return check(value, _flag(param), *args, **kwargs)

    return callback


def _choice(value: str, name: str, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name} {value!r}: choose one of {', '.join(options)}")
    return value


def _out_png_or_folder(value: Path, name: str) -> Path:
    return checks.output_file(value, name) if Path(value).suffix.lower() == ".png" else checks.output_dir(value, name)


def InFile(default: Any, *decls: str, help: str, what: str = "file") -> Any:  # noqa: A002, N802
    """An input file: must exist, be a file, be readable and not empty."""
    return typer.Option(default, *decls, help=help, callback=checked(checks.input_file, what))


def InDir(default: Any, *decls: str, help: str, what: str = "folder") -> Any:  # noqa: A002, N802
    """An input folder: must exist and be a readable folder."""
    return typer.Option(default, *decls, help=help, callback=checked(checks.input_dir, what))


def InFileOrDir(default: Any, *decls: str, help: str) -> Any:  # noqa: A002, N802
    """A weight file or a run folder: must exist and be readable."""
    return typer.Option(default, *decls, help=help, callback=checked(_file_or_dir))


def _file_or_dir(value: Path, name: str) -> Path:
    return checks.input_dir(value, name) if Path(value).is_dir() else checks.input_file(value, name)


def _parser_file(value: Path, name: str) -> Path:
    """A face parser file or folder (``parser``: the one `scadm fetch parser` downloaded); when it is not there,
    the error says how to get one."""
    try:
        return _file_or_dir(checks.fetched(value, name), name)
    except (OSError, ValueError) as exc:
        from ..photos import _parser_hint

        raise ValueError(f"{checks.one_line(str(exc))}; {_parser_hint(None)}") from None


def ParserOpt(help: str) -> Any:  # noqa: A002, N802
    """--parser: a face parser for photos given without a mask."""
    return typer.Option(None, "--parser", help=help, callback=checked(_parser_file))


def OutFile(default: Any, *decls: str, help: str) -> Any:  # noqa: A002, N802
    """A file to write (not an existing folder; its folder must be creatable)."""
    return typer.Option(default, *decls, help=help, callback=checked(checks.output_file))


def OutDir(default: Any, *decls: str, help: str) -> Any:  # noqa: A002, N802
    """A folder to write into (not an existing file)."""
    return typer.Option(default, *decls, help=help, callback=checked(checks.output_dir))


def Number(default: Any, *decls: str, help: str, lo: float | None = None, hi: float | None = None) -> Any:  # noqa: A002, N802
    """A finite number in [lo, hi] (nan and inf refused)."""
    return typer.Option(default, *decls, help=help, callback=checked(checks.number, lo, hi))


def Integer(default: Any, *decls: str, help: str, lo: int | None = None, hi: int | None = None) -> Any:  # noqa: A002, N802
    """A whole number in [lo, hi]."""
    return typer.Option(default, *decls, help=help, callback=checked(checks.integer, lo, hi))


def Choice(default: Any, *decls: str, help: str, options: Sequence[str]) -> Any:  # noqa: A002, N802
    """One of `options`."""
    return typer.Option(default, *decls, help=help, callback=checked(_choice, tuple(options)))


def ArgInDir(help: str, what: str = "folder") -> Any:  # noqa: A002, N802
    return typer.Argument(..., help=help, callback=checked(checks.input_dir, what))


def ArgOutDir(help: str) -> Any:  # noqa: A002, N802
    return typer.Argument(..., help=help, callback=checked(checks.output_dir))


def sampler_name(value: str, name: str) -> str:
    from ..diffusion.schedule import SAMPLERS, normalize_sampler

    try:
        return normalize_sampler(value)
    except ValueError:
        raise ValueError(f"{name} {value!r}: choose one of {', '.join(SAMPLERS)}") from None


def _null_names() -> tuple[str, ...]:
    from ..conditioning_modes import NULL_CONDITIONS

    return NULL_CONDITIONS


def _lazy_choice(value: str, name: str, names: Callable[[], Sequence[str]]) -> str:
    return _choice(value, name, names())


ModelOpt = typer.Option(None, "--model", "-m", help="Model folder (default: the bundled synthetic-64 model).",
                        callback=checked(checks.model_folder))
DeviceOpt = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps (default: cuda when available).",
                         callback=checked(checks.device))
StepsOpt = Integer(None, "--steps", help="Sampling steps (default: the model's).", lo=1, hi=10_000)
InversionOpt = Choice(None, "--inversion", help="Edits of a given face: exact (the solver's inversion plus per-step "
                      "offsets: the target's own conditions give back its latent), virtual (no inversion pass: the edit "
                      "beside the target's noised latent, also exact; on a DDIM grid, LDM's or a student's), "
                      "exact-unguided (exact, its inversion pass unguided), ddim (plain DDIM inversion) or none "
                      "(sample from noise, as the released code). Default: the model's (scadm info says which).",
                      options=INVERSIONS)
BlendOpt = typer.Option(None, "--blend/--no-blend", help="Keep the rest of the face: outside the edited parts the "
                        "latent follows the inverted one (needs inversion). Default: the model's (on when inverting).",
                        show_default=False)
OutOpt = typer.Option(..., "--out", "-o", help="Output PNG (result; more images get _1, _2 ...) or a folder.",
                      callback=checked(_out_png_or_folder))


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
    _Shared("sampler", Optional[str], typer.Option(None, "--sampler", help="ddim, ddpm, dpm++, unipc or student (a distilled student's; default: the model's).",
                                                   callback=checked(sampler_name))),
    _Shared("steps", Optional[int], StepsOpt),
    _Shared("eta", Optional[float], Number(None, "--eta", help="DDIM eta: 0 deterministic, 1 stochastic.", lo=0, hi=1)),
    _Shared("guidance_scale", Optional[float],
            Number(None, "--guidance-scale", "-s", help="s of paper Eq. 4 (released code's w = 1 + s).", lo=0, hi=1e4)),
    _Shared("null_condition", Optional[str], typer.Option(
        None, "--null-condition", help="'style' (empty style, same mask), 'full' (and zero mask) or 'zero' (the released code's: zero tokens, zero mask); default: the model's.",
        callback=checked(_lazy_choice, _null_names))),
    _Shared("seed", int, Integer(0, "--seed", help="Image i uses seed + i.", lo=0, hi=2**63 - 1)),
    _Shared("precision", str, Choice("fp32", "--precision", help="The denoiser's arithmetic: fp32, or bf16 / fp16 autocast (for GPUs).",
                                     options=PRECISIONS)),
)
#: the options of the commands that edit a given face (a target image to invert)
_INVERSION_OPTIONS = (
    _Shared("inversion", Optional[str], InversionOpt),
    _Shared("blend", Optional[bool], BlendOpt),
)
_ATTRIBUTE_OPTIONS = (
    _Shared("set_", Optional[str], typer.Option(None, "--set", help="Attributes for models that take them, e.g. Eyeglasses=1,Smiling=0.")),
)


def shared_options(attributes: bool = True, inversion: bool = False) -> Callable:
    """Give a command the shared model and sampling options (``--set`` when `attributes`;
    ``--inversion`` and ``--blend`` when `inversion`: commands that edit a given face).

    The command function declares only its own options plus the keyword parameters ``model``,
    ``device``, ``sampling`` (a :class:`~scadm.config.SamplingOptions`, the one form the settings
    take down to the sampler) and, with `attributes`, ``attributes`` (the parsed ``--set``).
    """
    sampling_options = (*_SAMPLING_OPTIONS, *(_INVERSION_OPTIONS if inversion else ()))
    shared = (*_MODEL_OPTIONS, *sampling_options, *(_ATTRIBUTE_OPTIONS if attributes else ()))

    def decorate(fn: Callable) -> Callable:
        own = [p for p in inspect.signature(fn).parameters.values()
               if p.name not in ("model", "device", "sampling", "attributes")]
        params = own + [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.option,
                                          annotation=o.annotation) for o in shared]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            from ..config import SamplingConfig, SamplingOptions

            values = {o.name: kwargs.pop(o.name) for o in shared}
            sampling = SamplingOptions(**{o.name: values[o.name] for o in sampling_options}, progress=True)
            try:
                sampling.resolve(SamplingConfig())  # sampler / inversion / blend that cannot go together stop here
            except ValueError as exc:
                raise UserError(str(exc)) from None
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
