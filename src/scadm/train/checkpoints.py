"""Resumable state: atomic checkpoint folders and the global random-number generator state."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..tempfiles import remove_stale, temp_path


class Checkpoints:
    """RUN/checkpoints/step-XXXXXXX folders, written atomically, the last k kept.

    A checkpoint is first written to a hidden temporary folder and renamed into place only
    when complete; a crash mid-write leaves the previous checkpoint untouched and loadable, and
    the next run in the folder removes the temporary (see :mod:`scadm.tempfiles`).
    """

    def __init__(self, run_dir: Path, keep_last: int = 3) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = max(1, keep_last)
        remove_stale(self.root)  # half-written checkpoints of killed runs

    def list(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("step-")
                      and (p / "state.json").is_file())

    def latest(self) -> Path | None:
        found = self.list()
        return found[-1] if found else None

    def save(self, step: int, tensors: dict[str, dict[str, Tensor]], objects: dict[str, Any], state: dict) -> Path:
        """tensors: file stem -> state dict (safetensors); objects: file stem -> torch-saveable (optimizer)."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"step-{step:07d}"
        tmp = temp_path(final)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for stem, sd in tensors.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(tmp / f"{stem}.safetensors"))
        for stem, obj in objects.items():
            torch.save(obj, tmp / f"{stem}.pt")
        # state.json last: its presence marks a complete checkpoint
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in self.list()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_latest(self) -> tuple[Path, dict[str, dict[str, Tensor]], dict[str, Any], dict]:
        """The newest complete checkpoint (for --resume): its path, tensors, objects and state."""
        latest = self.latest()
        if latest is None:
            raise FileNotFoundError(f"--resume: no checkpoint under {self.root}")
        return (latest, *self.load(latest))

    @staticmethod
    def load(path: Path) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any], dict]:
        path = Path(path)
        state_file = path / "state.json"
        if not state_file.is_file():
            raise FileNotFoundError(f"{path} is not a complete checkpoint (no state.json)")
        tensors = {p.stem: load_file(str(p)) for p in path.glob("*.safetensors")}
        objects = {p.stem: torch.load(p, map_location="cpu", weights_only=True) for p in path.glob("*.pt")}
        return tensors, objects, json.loads(state_file.read_text())


def _fsync_dir(folder: Path) -> None:
    for p in folder.iterdir():
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
