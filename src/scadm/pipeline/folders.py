"""Model folders: where the bundled model is, writing a model as a pipeline folder, and rewriting
a folder of an earlier layout (``scadm upgrade-model``)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from .. import checks
from ..models.autoencoder import FirstStage
from ..models.ldm import PIPELINE_INDEX, SemanticLDM

#: The bundled default model, package data of scadm (scadm/bundled/synthetic-64; see its README.md),
#: so an installed wheel carries it; or the folder named by $SCADM_MODEL.
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "bundled" / "synthetic-64"


def default_model_folder() -> Path:
    folder = Path(os.environ.get("SCADM_MODEL", DEFAULT_MODEL))
    if not any((folder / f).is_file() for f in (PIPELINE_INDEX, "config.json")):
        raise FileNotFoundError(
            f"the bundled model is not at {folder}; reinstall scadm, set SCADM_MODEL, or pass --model"
        )
    return folder


class LegacyFolderNote(UserWarning):
    """A model folder written by scadm < 0.2: it loads, and `scadm upgrade-model` rewrites it."""


def export_model(model: SemanticLDM, first_stage: FirstStage, folder: str | Path, face_parser: Any = None) -> None:
    """A self-contained model folder: these networks as an :class:`SCADMPipeline`, written by
    ``save_pretrained``. The files of an older layout at the same place (config.json,
    model.safetensors, autoencoder/, parser/) are removed, so the folder holds one model."""
    import shutil

    from .pipeline import SCADMPipeline

    folder = Path(folder)
    device = next(model.parameters()).device
    SCADMPipeline.from_networks(model, first_stage, face_parser, device=device).save_pretrained(folder)
    for old in ("config.json", "model.safetensors"):
        (folder / old).unlink(missing_ok=True)
    for old in ("autoencoder", "parser"):
        shutil.rmtree(folder / old, ignore_errors=True)


#: what a model folder of scadm < 0.2 holds besides its other files (training logs, previews, reports)
_LEGACY_FILES = ("config.json", "model.safetensors", "autoencoder", "parser")


def upgrade_folder(old: str | Path, new: str | Path) -> list[str]:
    """Write model folder `old` (any layout scadm wrote) as a diffusers pipeline folder at `new`, which
    must not exist or be empty; `old` is left as it is. The files besides the model (training logs,
    previews, reports) are copied. Every tensor is checked equal after reloading `new`. Returns the
    names copied."""
    import shutil

    from ..tempfiles import temp_path
    from .pipeline import SCADMPipeline

    old, new = checks.model_folder(old, "OLD"), Path(new)
    if new.exists() and (not new.is_dir() or any(new.iterdir())):
        raise ValueError(f"NEW {new} exists and is not an empty folder; give a new folder (nothing is overwritten)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LegacyFolderNote)
        pipe = SCADMPipeline.from_pretrained(old, device="cpu")
    tmp = temp_path(new)
    pipe.save_pretrained(tmp)
    written = {p.name for p in tmp.iterdir()}
    copied = []
    for item in sorted(old.iterdir()):
        if item.name in _LEGACY_FILES or item.name in written or item.name.startswith("."):
            continue
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        copied.append(item.name)
    again = SCADMPipeline.from_pretrained(tmp, device="cpu")
    for name in ("unet", "condition_encoder", "vae", "face_parser"):
        a, b = getattr(pipe, name), getattr(again, name)
        if (a is None) != (b is None) or (a is not None and any(
                not torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))):
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"upgrade-model: {name} did not reload equal from {tmp}; nothing was written")
    if new.exists():
        new.rmdir()
    tmp.replace(new)
    return copied
