"""The trainable part of a semantic latent diffusion model: condition encoder + denoiser.

Saved as a folder: ``config.json`` (the full, versioned :class:`~scadm.config.ModelConfig`)
and ``model.safetensors`` (keys ``unet.*`` and ``conditioner.*``). The first stage
(autoencoder) is kept separately, in diffusers format, because it is frozen and shared.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..conditions import Conditions
from ..config import ModelConfig, from_dict, load_config, to_dict
from ..labels import LabelSet, get_label_set
from ..conditioning_modes import ConditioningMode
from .autoencoder import FirstStage
from .conditioning import ConditionEncoder
from .unet import PreparedConditions, SemanticUNet

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def read_model_config(folder: str | Path) -> ModelConfig:
    """A model folder's validated config.json (no weights read); errors name the file."""
    cfg_path = Path(folder) / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder} is not a scadm model folder: {CONFIG_NAME} is missing")
    try:
        data = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{cfg_path}: not valid JSON ({exc})") from None
    try:
        return load_config(from_dict(ModelConfig, data))
    except ValueError as exc:
        raise ValueError(f"{cfg_path}: {exc}") from None


class SemanticLDM(nn.Module):
    """Condition encoder + SemanticUNet, built from one ModelConfig."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg.validate()
        self.conditioner = ConditionEncoder(cfg.conditioning, cfg.unet.num_classes)
        self.unet = SemanticUNet(cfg.unet)

    @property
    def mode(self) -> ConditioningMode:
        """The conditioning mode (what the model takes, its null conditions; see scadm.conditioning_modes)."""
        return self.conditioner.mode

    @property
    def label_set(self) -> LabelSet:
        labels = self.cfg.labels
        return LabelSet.from_dict(labels) if isinstance(labels, dict) else get_label_set(labels)

    def conditions(self, mask: Tensor, image: Tensor | None = None, attributes: Tensor | None = None) -> Conditions:
        """Encode the raw conditions; attributes are signed (+1 / -1, 0 = unknown)."""
        return self.conditioner(mask, image, attributes)

    def prepare(self, cond: Conditions, latent_size: tuple[int, int] | None = None) -> PreparedConditions:
        return self.unet.prepare(cond, latent_size or self.cfg.latent_size)

    def forward(self, z_t: Tensor, t: Tensor, cond: Conditions | PreparedConditions) -> Tensor:
        return self.unet(z_t, t, cond)

    # ------------------------------------------------------------------ I/O
    def save_pretrained(self, folder: str | Path, state_dict: dict[str, Tensor] | None = None) -> None:
        """Write config.json + model.safetensors (atomically: temp files, then rename)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        sd = {k: v.detach().contiguous().cpu() for k, v in (state_dict or self.state_dict()).items()}
        tmp_w, tmp_c = folder / (WEIGHTS_NAME + ".tmp"), folder / (CONFIG_NAME + ".tmp")
        save_file(sd, str(tmp_w), metadata={"format": "pt", "scadm_schema": str(self.cfg.schema_version)})
        tmp_c.write_text(json.dumps(to_dict(self.cfg), indent=2) + "\n")
        tmp_w.replace(folder / WEIGHTS_NAME)
        tmp_c.replace(folder / CONFIG_NAME)

    @classmethod
    def from_pretrained(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> "SemanticLDM":
        """Rebuild the exact saved model; clear errors for a missing or incompatible folder."""
        folder = Path(folder)
        cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        if not folder.is_dir():
            raise FileNotFoundError(f"model folder {folder} does not exist")
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise FileNotFoundError(f"{folder} is not a scadm model folder: {p.name} is missing")
        model = cls(read_model_config(folder))
        try:
            sd = load_file(str(w_path), device=str(map_location))
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{w_path}: cannot read weights ({exc})") from None
        try:
            missing, unexpected = model.load_state_dict(sd, strict=False)
        except RuntimeError as exc:  # shape mismatches
            first = str(exc).strip().splitlines()[-1].strip()
            raise ValueError(f"{w_path} does not match its config: {first}") from None
        if missing or unexpected:
            raise ValueError(
                f"{w_path} does not match its config: {len(missing)} missing keys (e.g. {missing[:2]}), "
                f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})"
            )
        return model.eval()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def export_model(model: SemanticLDM, first_stage: FirstStage, folder: str | Path) -> None:
    """A self-contained model folder for the pipeline: config.json, model.safetensors, autoencoder/."""
    folder = Path(folder)
    model.save_pretrained(folder)
    ae = folder / "autoencoder"
    tmp = folder / ".autoencoder.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    first_stage.save_pretrained(tmp)
    shutil.rmtree(ae, ignore_errors=True)
    tmp.replace(ae)
