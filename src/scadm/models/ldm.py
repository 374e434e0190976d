"""The trainable part of a semantic latent diffusion model: condition encoder + denoiser.

A model folder is a diffusers pipeline folder (:class:`scadm.pipeline.SCADMPipeline` writes it):
``model_index.json`` (the pipeline's config: every field of :class:`~scadm.config.ModelConfig`
besides ``unet`` and ``conditioning``), ``unet/`` and ``condition_encoder/`` (each
``config.json`` + ``diffusion_pytorch_model.safetensors``), ``vae/``, ``scheduler/`` and, when
the model has one, ``face_parser/``. Folders of scadm < 0.2 hold ``config.json`` (the whole
ModelConfig), ``model.safetensors`` (keys ``unet.*`` and ``conditioner.*``) and ``autoencoder/``;
both are read here, by :func:`read_model_config` and :meth:`SemanticLDM.from_pretrained`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from ..conditions import Conditions
from ..config import ModelConfig, from_dict, load_config
from ..labels import LabelSet, get_label_set
from ..conditioning_modes import ConditioningMode
from .conditioning import ConditionEncoder
from .unet import PreparedConditions, SemanticUNet

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PIPELINE_INDEX = "model_index.json"
#: the diffusers bookkeeping keys of a config.json / model_index.json
_DIFFUSERS_KEYS = ("_class_name", "_diffusers_version", "_name_or_path")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def _settings(path: Path, components: tuple[str, ...] = ()) -> dict:
    """A diffusers config file's own settings (bookkeeping keys and component entries left out)."""
    return {k: v for k, v in _read_json(path).items() if k not in _DIFFUSERS_KEYS and k not in components}


def read_model_config(folder: str | Path) -> ModelConfig:
    """A model folder's validated ModelConfig, from either layout (no weights read); errors name the file."""
    folder = Path(folder)
    index = folder / PIPELINE_INDEX
    if index.is_file():
        cfg_path = index
        data = _settings(index, ("unet", "condition_encoder", "vae", "scheduler", "face_parser"))
        data["unet"] = _settings(folder / "unet" / CONFIG_NAME)
        conditioning = _settings(folder / "condition_encoder" / CONFIG_NAME)
        conditioning.pop("num_classes", None)
        data["conditioning"] = {k.removesuffix("_config"): v for k, v in conditioning.items()}
    else:
        cfg_path = folder / CONFIG_NAME
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{folder} is not a scadm model folder: {PIPELINE_INDEX} is missing")
        data = _read_json(cfg_path)
    try:
        return load_config(from_dict(ModelConfig, data))
    except ValueError as exc:
        raise ValueError(f"{cfg_path}: {exc}") from None


class SemanticLDM(nn.Module):
    """Condition encoder + SemanticUNet, built from one ModelConfig."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg.validate()
        self.conditioner = ConditionEncoder.from_cfg(cfg.conditioning, cfg.unet.num_classes)
        self.unet = SemanticUNet.from_cfg(cfg.unet)

    @classmethod
    def from_networks(cls, cfg: ModelConfig, conditioner: ConditionEncoder, unet: SemanticUNet) -> "SemanticLDM":
        """The model around networks already built (a pipeline's components): nothing is copied."""
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model.cfg = cfg.validate()
        model.conditioner, model.unet = conditioner, unet
        return model

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
    @classmethod
    def from_pretrained(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> "SemanticLDM":
        """Rebuild the exact saved model from either layout; clear errors for a missing or incompatible folder."""
        folder = Path(folder)
        cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        if not folder.is_dir():
            raise FileNotFoundError(f"model folder {folder} does not exist")
        if (folder / PIPELINE_INDEX).is_file():
            cfg = read_model_config(folder)
            kw = dict(low_cpu_mem_usage=False)
            return cls.from_networks(cfg, ConditionEncoder.from_pretrained(str(folder / "condition_encoder"), **kw),
                                     SemanticUNet.from_pretrained(str(folder / "unet"), **kw)).to(map_location).eval()
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
