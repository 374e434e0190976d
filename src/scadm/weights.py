"""Finding the pretrained weight files that users bring (nothing is ever downloaded).

Resolution order for a file: an explicit path (a file, or a folder holding the file) >
the folder in ``$SCADM_WEIGHTS`` > ``$TORCH_HOME/hub/checkpoints`` (``TORCH_HOME`` defaults
to ``$XDG_CACHE_HOME/torch``, i.e. ``~/.cache/torch``), where torch / torch-fidelity keep
the files they download elsewhere.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor

__all__ = ["MissingWeightsError", "torch_home", "search_dirs", "find_weights", "load_state_dict", "load_strict", "ENV_VAR"]

ENV_VAR = "SCADM_WEIGHTS"


class MissingWeightsError(FileNotFoundError):
    """A pretrained weight file is not on this machine; the message says which file and where it comes from."""


def torch_home() -> Path:
    env = os.environ.get("TORCH_HOME")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "torch"


def search_dirs() -> list[Path]:
    """Folders searched when no explicit path is given, in order."""
    dirs = []
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(torch_home() / "hub" / "checkpoints")
    return dirs


def find_weights(
    filenames: str | Iterable[str],
    explicit: str | os.PathLike | None = None,
    what: str = "weights",
    source: str = "",
) -> Path:
    """The path of a weight file, or MissingWeightsError naming the file and where it comes from.

    Args:
        filenames: the standard file name(s) (the first is the one named in errors).
        explicit: a path given by the user; when given it must exist (no silent fallback).
        what: what the file is for (used in the message).
        source: where users get it (used in the message).
    """
    names = [filenames] if isinstance(filenames, str) else list(filenames)
    hint = f" It comes from {source}." if source else ""
    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.is_file():
            return p
        if p.is_dir():
            for n in names:
                if (p / n).is_file():
                    return p / n
            raise MissingWeightsError(f"{what}: {p} does not contain {names[0]}.{hint}")
        raise MissingWeightsError(f"{what}: {p} does not exist; bring the file {names[0]}.{hint}")
    tried = []
    for d in search_dirs():
        for n in names:
            tried.append(d / n)
            if (d / n).is_file():
                return d / n
    raise MissingWeightsError(
        f"{what}: weight file {names[0]} not found (looked in {', '.join(str(t.parent) for t in tried[:: len(names)])}).{hint} "
        f"Pass its path, or put it in ${ENV_VAR} or $TORCH_HOME/hub/checkpoints; nothing is downloaded."
    )


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A plain state dict from a .pth/.pt/.ckpt (torch.load, weights_only) or .safetensors file.

    Unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` containers and a DataParallel ``module.`` prefix.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: object = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file becomes one clear message
            raise ValueError(f"{path}: cannot read weights ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            continue
        out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """load_state_dict(strict=True) with a short message listing missing/unexpected/mis-shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:2])})")
        raise ValueError(f"{source}: does not match the expected layout: {', '.join(parts)}")
    module.load_state_dict(state, strict=True)


_SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
    torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def write_safetensors(path: str | Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    """A safetensors file written one tensor at a time, so memory-mapped inputs are never all in memory.

    (safetensors' own ``save_file`` first copies every tensor into one buffer: 2 GB for paper-256.)
    """
    names = sorted(tensors)
    header: dict[str, Any] = {"__metadata__": dict(metadata or {})}
    offset = 0
    for name in names:
        t = tensors[name]
        if t.dtype not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{name}: dtype {t.dtype} cannot be written to safetensors")
        size = t.numel() * t.element_size()
        header[name] = {"dtype": _SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in names:
            flat = tensors[name].detach().cpu().contiguous().reshape(-1)
            if flat.numel():
                f.write(flat.view(torch.uint8).numpy().data)
