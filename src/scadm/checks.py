"""The door: checks of the values and paths a user gives, with one wording for the CLI and the API.

Every check returns the value (converted where that is safe) or raises a ``ValueError`` /
``FileNotFoundError`` whose message is one line: the option or argument as the user wrote it,
the value, what is wrong and what to do. The CLI runs them while it parses its options, so a
bad value stops a command before any model is built, data read or file written; the Python
API's entry points run the same checks, so both say the same words.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

__all__ = ["number", "integer", "input_file", "input_dir", "model_folder", "output_file", "output_dir",
           "device", "available_devices", "USER_ERRORS", "one_line", "describe"]

#: failures whose message is already written for the user (a bad value, an unusable file)
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
                                                 IsADirectoryError, PermissionError)


def one_line(text: str) -> str:
    """`text` on one line (messages are never wrapped, so logs stay greppable)."""
    return " ".join(str(text).split())


def describe(exc: BaseException, doing: str | None = None) -> str:
    """One line for any failure: a user error as it is; anything else with what was being done, its
    type and its message (the CLI adds the hint about --debug)."""
    if isinstance(exc, USER_ERRORS):
        return one_line(str(exc) or exc.__class__.__name__)
    where = f"{doing} failed unexpectedly" if doing else "failed unexpectedly"
    return one_line(f"{where}: {exc.__class__.__name__}: {exc}")


def _a(what: str) -> str:
    return ("an " if what[:1] in "aeiou" else "a ") + what


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"in [{_fmt(lo)}, {_fmt(hi)}]"
    if lo is not None:
        return f">= {_fmt(lo)}"
    if hi is not None:
        return f"<= {_fmt(hi)}"
    return "finite"


def number(value: Any, name: str, lo: float | None = None, hi: float | None = None) -> float:
    """A finite float in [lo, hi]."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} {value!r}: not a number; give a number {_range(lo, hi)}") from None
    if isinstance(value, bool) or not math.isfinite(x) or (lo is not None and x < lo) or (hi is not None and x > hi):
        raise ValueError(f"{name} {value!r}: must be a finite number {_range(lo, hi)}")
    return x


def integer(value: Any, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """A whole number in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) and not (isinstance(value, float) and value.is_integer()):
        raise ValueError(f"{name} {value!r}: not a whole number; give a whole number {_range(lo, hi)}")
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{name} {value!r}: not a whole number; give a whole number {_range(lo, hi)}") from None
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        raise ValueError(f"{name} {value!r}: must be a whole number {_range(lo, hi)}")
    return n


def _existing(path: str | os.PathLike, name: str, what: str, folder: bool) -> Path:
    """An existing path of the wanted kind (a folder, or a regular file), readable."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{name} {p}: no such {what}")
    if folder != p.is_dir():
        raise ValueError(f"{name} {p}: is {'a file' if folder else 'a folder'}; give {_a(what)}")
    if not folder and not p.is_file():
        raise ValueError(f"{name} {p}: is not a regular file; give {_a(what)}")
    if not os.access(p, os.R_OK | (os.X_OK if folder else 0)):
        raise ValueError(f"{name} {p}: cannot be read (permission denied)")
    return p


def input_file(path: str | os.PathLike, name: str, what: str = "file") -> Path:
    """An existing, non-empty, readable file."""
    p = _existing(path, name, what, folder=False)
    if p.stat().st_size == 0:
        raise ValueError(f"{name} {p}: is empty (0 bytes); give {_a(what)}")
    return p


def input_dir(path: str | os.PathLike, name: str, what: str = "folder") -> Path:
    """An existing, readable folder."""
    return _existing(path, name, what, folder=True)


def _readable_safetensors(path: Path) -> None:
    """A safetensors file whose header reads (the tensors are not loaded)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except Exception as exc:  # noqa: BLE001 - any failure to parse the header
        raise ValueError(f"{path}: cannot read weights ({one_line(str(exc))}); the folder is damaged, export or "
                         "convert it again") from None


#: the names of models `scadm fetch` downloads, accepted wherever a model folder is
FETCHED_MODELS = ("sca-dm",)


def fetched(path: str | os.PathLike, name: str) -> Path:
    """`path` itself, unless it is a name ``scadm fetch`` knows and nothing here has that name: then the
    fetched file or folder, or a one-line error that says to fetch it."""
    if Path(path).exists():
        return Path(path)
    from .fetch import ASSETS, missing_line, resolve

    if str(path) not in ASSETS:
        return Path(path)
    found = resolve(str(path))
    if found is None:
        raise FileNotFoundError(f"{name} {missing_line(str(path))}")
    return found


def model_folder(path: str | os.PathLike, name: str = "--model") -> Path:
    """A scadm model folder: a diffusers pipeline folder (model_index.json, unet/, condition_encoder/,
    vae/, scheduler/), or one of scadm < 0.2 (config.json, model.safetensors and autoencoder/); each
    file non-empty. A name ``scadm fetch`` makes a model of ("sca-dm"), when no folder has that name,
    is the fetched model's folder."""
    if str(path) in FETCHED_MODELS:
        path = fetched(path, name)
    p = input_dir(path, name, "model folder")
    if (p / "model_index.json").is_file():
        roles = {"unet": "the denoiser", "condition_encoder": "the condition encoder", "vae": "the first stage, the autoencoder"}
        needed = ["model_index.json"] + [f"{c}/{f}" for c in roles for f in ("config.json", "diffusion_pytorch_model.safetensors")]
        for rel in needed:
            f = p / rel
            if not f.is_file():
                role = f", {roles[rel.split('/')[0]]}," if "/" in rel else ""
                raise FileNotFoundError(f"{name} {p}: not a scadm model folder ({rel}{role} is missing)")
            if f.stat().st_size == 0:
                raise ValueError(f"{name} {p}: {rel} is empty (0 bytes); the folder is damaged, export or convert it again")
            if f.suffix == ".safetensors":
                _readable_safetensors(f)
            else:
                import json

                try:
                    json.loads(f.read_text())
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise ValueError(f"{f}: not valid JSON ({one_line(str(exc))}); the folder is damaged, export or "
                                     "convert it again") from None
        return p
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"{name} {p}: not a scadm model folder (model_index.json is missing)")
    for needed in ("config.json", "model.safetensors"):
        f = p / needed
        if not f.is_file():
            raise FileNotFoundError(f"{name} {p}: not a scadm model folder ({needed} is missing)")
        if f.stat().st_size == 0:
            raise ValueError(f"{name} {p}: {needed} is empty (0 bytes); the folder is damaged, export or convert it again")
    if not (p / "autoencoder").is_dir():
        raise FileNotFoundError(f"{name} {p}: not a scadm model folder (autoencoder/, the first stage, is missing)")
    return p


def output_file(path: str | os.PathLike, name: str) -> Path:
    """A file path to write: not an existing folder, in a folder that exists or can be made."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{name} {p}: is a folder; give a file path")
    _creatable_parent(p, name)
    return p


def output_dir(path: str | os.PathLike, name: str) -> Path:
    """A folder to write into: not an existing file, creatable where it does not exist."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{name} {p}: is a file; give a folder (new or existing)")
    if not p.exists():
        _creatable_parent(p, name)
    elif not os.access(p, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {p}: cannot be written (permission denied)")
    return p


def _creatable_parent(p: Path, name: str) -> None:
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{name} {p}: {parent} is a file, so nothing can be written below it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {p}: cannot write in {parent} (permission denied)")


def available_devices() -> list[str]:
    import torch

    out = ["cpu"]
    if torch.cuda.is_available():
        out += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


def device(value: str, name: str = "--device") -> str:
    """A device this machine has (cpu, cuda, cuda:N, mps)."""
    import torch

    try:
        d = torch.device(value)
    except (RuntimeError, TypeError):
        d = None
    ok = d is not None and (
        d.type == "cpu"
        or (d.type == "cuda" and torch.cuda.is_available() and (d.index is None or d.index < torch.cuda.device_count()))
        or (d.type == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available())
    )
    if not ok:
        raise ValueError(f"{name} {value!r}: this machine has no such device; available: {', '.join(available_devices())}")
    return value
