"""The first stage: an image autoencoder (diffusers' VQModel or AutoencoderKL).

Diffusion runs on the autoencoder's latent z. For VQ models that is the *pre-quantisation*
latent (LDM and SCA-DM: unscaled, ``latent_scale = 1``); decoding quantises first. For KL
models it is the posterior mode (or a sample during training), times ``latent_scale``.

The folder format is diffusers' ``save_pretrained`` (``config.json`` +
``diffusion_pytorch_model.safetensors``), so the ``vqvae`` folder of diffusers'
``CompVis/ldm-celebahq-256`` works directly as a first stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers.models.upsampling import Upsample2D
from torch import Tensor, nn

from ..config import AutoencoderConfig
from ..nn.resblocks import upsample_conv


def build_autoencoder(cfg: AutoencoderConfig) -> nn.Module:
    """A fresh diffusers VQModel / AutoencoderKL from our config."""
    from diffusers import AutoencoderKL, VQModel

    n = len(cfg.block_out_channels)
    common = dict(
        in_channels=cfg.in_channels, out_channels=cfg.in_channels,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels, norm_num_groups=cfg.norm_num_groups, sample_size=cfg.sample_size,
        mid_block_add_attention=cfg.mid_block_add_attention,
    )
    if cfg.type == "vq":
        return VQModel(num_vq_embeddings=cfg.num_vq_embeddings, vq_embed_dim=cfg.vq_embed_dim, **common)
    if cfg.type == "kl":
        return AutoencoderKL(**common)
    raise ValueError(f"autoencoder type must be 'vq' or 'kl', not {cfg.type!r}")


class FirstStage(nn.Module):
    """Frozen-by-default wrapper: encode images in [-1, 1] to latents, decode latents to images."""

    def __init__(self, model: nn.Module, latent_scale: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.latent_scale = latent_scale
        self.is_vq = model.__class__.__name__ == "VQModel"
        _subpixel_upsampling(model)

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.model.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.model.config.latent_channels)

    def encode(self, image: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Images in [-1, 1] -> float32 latents, whatever the autoencoder's own dtype."""
        image = image.to(self.model.dtype)
        if self.is_vq:
            z = self.model.encode(image).latents
        else:
            dist = self.model.encode(image).latent_dist
            z = dist.sample(generator) if sample else dist.mode()
        return z.float() * self.latent_scale

    def decode(self, z: Tensor) -> Tensor:
        """Latents -> float32 images in [-1, 1] (before clamping)."""
        return self.model.decode((z / self.latent_scale).to(self.model.dtype)).sample.float()

    @classmethod
    def from_pretrained(cls, folder: str | Path, latent_scale: float = 1.0) -> "FirstStage":
        """Load a diffusers-format autoencoder folder (VQModel or AutoencoderKL, told apart by its config)."""
        from diffusers import AutoencoderKL, VQModel

        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(
                f"{folder} is not a diffusers autoencoder folder (no config.json); give the folder that "
                "save_pretrained wrote, e.g. the 'vqvae' folder of CompVis/ldm-celebahq-256"
            )
        try:
            kind = json.loads(cfg_path.read_text()).get("_class_name", "")
        except json.JSONDecodeError as exc:
            raise ValueError(f"{cfg_path}: not valid JSON ({exc})") from None
        classes = {"VQModel": VQModel, "AutoencoderKL": AutoencoderKL}
        if kind not in classes:
            raise ValueError(f"{cfg_path}: _class_name {kind!r} is not VQModel or AutoencoderKL")
        weights = [folder / "diffusion_pytorch_model.safetensors", folder / "diffusion_pytorch_model.bin"]
        if not any(w.is_file() for w in weights):
            raise FileNotFoundError(f"{folder}: no diffusion_pytorch_model.safetensors (or .bin) weights")
        model = classes[kind].from_pretrained(str(folder), local_files_only=True)
        return cls(model.eval().requires_grad_(False), latent_scale)

    def save_pretrained(self, folder: str | Path) -> None:
        self.model.save_pretrained(str(folder), safe_serialization=True)
        # diffusers records the folder a model was loaded from; a saved model should not carry that path
        cfg_path = Path(folder) / "config.json"
        cfg = json.loads(cfg_path.read_text())
        if cfg.pop("_name_or_path", None) is not None:
            cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


class _SubPixelUpsample2D(Upsample2D):
    """diffusers' Upsample2D (nearest x2, then a 3x3 convolution) computed in sub-pixel form
    (:func:`scadm.nn.resblocks.upsample_conv`): the same weights and state dict, 2.25x fewer FLOPs."""

    def forward(self, hidden_states: Tensor, output_size: Any = None, *args: Any, **kwargs: Any) -> Tensor:
        if output_size is not None:
            return super().forward(hidden_states, output_size, *args, **kwargs)
        return upsample_conv(hidden_states, self.conv if self.name == "conv" else self.Conv2d_0)


def _subpixel_upsampling(model: nn.Module) -> None:
    """Let the decoder's plain upsampling layers (nearest x2 + 3x3 conv, no norm) run in sub-pixel form;
    at 256 px they are a quarter of the decoder's FLOPs. Nothing else about the model changes."""
    for m in model.modules():
        if (type(m) is Upsample2D and m.use_conv and not m.use_conv_transpose and m.interpolate
                and m.norm is None):
            m.__class__ = _SubPixelUpsample2D
