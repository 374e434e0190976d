"""Typed, versioned configuration: dataclasses, named presets and YAML/JSON load and save.

A model folder always carries its config (``config.json`` next to the safetensors weights),
so loading rebuilds exactly the saved network. Unknown keys are errors, never ignored, so a
typo in a YAML file cannot silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from . import checks
from .conditioning_modes import MODES, NULL_CONDITIONS, get_mode
from .diffusion.inversion import EXACT, INVERSIONS, INVERTIBLE
from .diffusion.schedule import DDIM_GRID, ScheduleConfig, normalize_sampler
from .nn.masks import MASK_RESIZE

#: 2: style_encoder.skip_join exists; a schema-1 config (every model saved before it) that lacks it
#: is read as "per_class", the join those models were trained with (see StyleEncoderConfig.skip_join)
SCHEMA_VERSION = 2

#: style_encoder.skip_join: "block" (released code: all decoder channels, then all skip channels)
#: or "per_class" (each class's decoder and skip channels side by side)
SKIP_JOINS = ("block", "per_class")

__all__ = [
    "SCHEMA_VERSION", "SKIP_JOINS", "AutoencoderConfig", "AttributeEncoderConfig", "MaskEncoderConfig", "UNetConfig", "StyleEncoderConfig", "ConditioningConfig", "SamplingConfig", "SamplingOptions",
    "ModelConfig", "TrainConfig", "AutoencoderTrainConfig", "Recipe", "load_config", "load_recipe", "list_presets", "from_dict", "to_dict",
]


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------
#: unet.cross_attention: "masked" (SCA-DM Eq. 8), "plain" (ordinary cross-attention), "none"
CROSS_ATTENTION = ("masked", "plain", "none")


def _check_choice(where: str, value: Any, options: tuple) -> None:
    if value not in options:
        names = ", ".join("empty" if o is None else str(o) for o in options)
        raise ValueError(f"{where} must be one of {names}; got {value!r}")


@dataclass
class UNetConfig:
    """The denoiser eps(z_t, t, cond). Defaults = the released SCA-DM UNet (paper-256)."""

    in_channels: int = 3
    out_channels: int = 3
    model_channels: int = 224
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 2
    #: downsampling factors (LDM's attention_resolutions) that get a SpatialTransformer: 2, 4, 8 = 32/16/8 px of a 64 px latent
    attention_resolutions: tuple[int, ...] = (2, 4, 8)
    head_dim: int = 32
    transformer_depth: int = 1
    #: where transformers sit: any of "encoder", "middle", "decoder"
    transformer_parts: tuple[str, ...] = ("encoder", "middle", "decoder")
    context_dim: int = 1280
    #: "masked" (SCA-DM Eq. 8), "plain" (ordinary cross-attention), "none" (self-attention only)
    cross_attention: str = "masked"
    #: how "masked" runs: "auto" (gather when there is one token per class and no global token), "gather", "attention"
    masked_impl: str = "auto"
    #: SPADE ResBlocks in: any of "encoder", "middle", "decoder" (SCA-DM: middle + decoder; () = plain UNet)
    spade_parts: tuple[str, ...] = ("middle", "decoder")
    #: mask channels SPADE and the masked attention see (the label set's size)
    num_classes: int = 19
    spade_hidden: int = 128
    #: tokens of each class in the context, class-major (1 = `concat` layout, L = `per_scale`)
    tokens_per_class: int = 1
    #: tokens after the class tokens that every pixel attends to (e.g. an attribute token)
    global_tokens: int = 0
    use_scale_shift_norm: bool = False
    dropout: float = 0.0
    #: how the mask reaches SPADE and the masked attention at each feature size: "nearest" (released
    #: code) or "area" (each pixel gets its class fractions, so parts smaller than a pixel still count)
    mask_resize: str = "nearest"
    #: a guidance-distilled student (``scadm distill``): the guidance scale s is an input, embedded like
    #: t and added through a zero-initialised projection (Meng et al., CVPR 2023; diffusers LCM's
    #: ``cond_proj``), so one pass gives the guided prediction
    guidance_embedding: bool = False


@dataclass
class StyleEncoderConfig:
    """Multi-resolution style encoder E_s (paper Sec. 3.2). Defaults = the released encoder."""

    num_classes: int = 19
    in_channels: int = 3
    #: channels per class at full resolution; level i has channels_per_class * 2**i per class
    channels_per_class: int = 4
    #: stride-2 grouped convolutions (256 px -> 4 px with 6)
    num_down: int = 6
    #: decoder levels that emit style vectors, coarse to fine (L in the paper)
    num_levels: int = 5
    #: D, the size of each per-level style vector
    style_dim: int = 256
    #: "concat": C tokens of L*D (released code); "per_scale": C*L tokens of D (paper text)
    layout: str = "concat"
    #: the mask of the masked average pooling at each level: "nearest" (released code) or "area"
    #: (an area-weighted average, so a part smaller than a pixel of that level still has a style)
    mask_resize: str = "nearest"
    #: one more level, the finest: each class's masked mean of the input pixels themselves, projected
    #: to D (not in the released code; a small encoder trained briefly learns exact colours slowly)
    pixel_level: bool = False
    #: how the decoder joins its features and the U-Net skip before each grouped convolution:
    #: "block" (the released code: cat(decoder, skip), so group g of the next convolution reads a
    #: contiguous slice of that concatenation, not class g) or "per_class" (class g's decoder and
    #: skip channels side by side, so a group only ever reads its own class; the bundled
    #: synthetic-64 model). The two compute different functions; no renaming of weights converts
    #: one into the other. None: the default of the config's schema_version, resolved by
    #: ModelConfig.validate: "per_class" for schema 1 (models saved before this option), else "block".
    skip_join: str | None = None

    @property
    def levels(self) -> int:
        """Style vectors per class: the decoder's num_levels, plus one with pixel_level."""
        return self.num_levels + int(self.pixel_level)


@dataclass
class AttributeEncoderConfig:
    """Attributes -> one token (multi-conditioning paper Sec. 4.2: an MLP to a 512-d embedding)."""

    num_attributes: int = 40
    hidden: int = 512
    dim: int = 512


@dataclass
class MaskEncoderConfig:
    """Mask -> tokens with a ResNet-18 on the one-hot mask without background (multi-conditioning paper Sec. 4.3).

    variant "m": after global average pooling (1 token); "m_np": before it (H/32 x W/32 tokens, 64 at 256 px).
    """

    variant: str = "m_np"
    #: token size; 512 is the ResNet's own width (a linear projection is added for other sizes)
    dim: int = 512


@dataclass
class ConditioningConfig:
    """Which condition encoder feeds the UNet (a swappable strategy).

    type: a registered conditioning mode (see :mod:`scadm.conditioning_modes`): "style" (SCA-DM),
    "style+attributes" (SCA-DM with a global attribute token), "attributes" (`a`), "mask_tokens"
    (`m` / `m_np`), "multi" (`mc` = attribute token + m_np tokens), "none" (unconditional, or
    SPADE-only when the UNet has SPADE). Each mode names the sections below that it needs.
    """

    type: str = "style"
    style_encoder: StyleEncoderConfig | None = field(default_factory=StyleEncoderConfig)
    attributes: AttributeEncoderConfig | None = None
    mask_encoder: MaskEncoderConfig | None = None


@dataclass
class SamplingConfig:
    """Defaults for sampling; every one can be overridden per call."""

    sampler: str = "ddim"
    steps: int = 200
    eta: float = 0.0
    #: paper Eq. 4: eps_c + s (eps_c - eps_null); the released code's w equals 1 + s
    guidance_scale: float = 1.2
    #: "style": empty style, same mask (what training teaches); "full": empty style and zero mask
    null_condition: str = "style"
    #: the null for noise-based generation (None: null_condition). Its condition, the empty style, is
    #: the "style" null itself, so only "full" guides it: towards the mask (models trained with mask dropout)
    noise_null_condition: str | None = None
    #: clip the predicted x_0 to [-v, v] at every DDIM/DDPM step (None: no clipping, as LDM). A guard
    #: for briefly trained models, whose eps errors at high t are amplified by 1/sqrt(alpha_bar).
    #: v must lie beyond the training latents' own range, or every step cuts real values.
    clip_x0: float | None = None
    #: edits of a given face (a target image): "exact" inverts it so that its own conditions give
    #: back its latent, "ddim" is plain DDIM inversion, "none" samples from noise (the released
    #: code). Calls without a face (noise-based generation, a mix from a mask alone) sample from noise.
    inversion: str = "exact"
    #: with inversion, keep what is not edited: outside the edited parts (dilated) the sample follows
    #: the inverted trajectory, so those pixels are the first stage's reconstruction of the target
    blend: bool = True

    @property
    def noise_null(self) -> str:
        """The null condition noise-based generation uses by default."""
        return self.noise_null_condition or self.null_condition


#: the denoiser's arithmetic while sampling (SamplingOptions.precision)
PRECISIONS = ("fp32", "bf16", "fp16")


def autocast_dtype(precision: str) -> Any:
    """The torch autocast dtype of a precision name (None: float32, no autocast)."""
    import torch

    _check_choice("precision", precision, PRECISIONS)
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@dataclass
class SamplingOptions:
    """The sampling settings of one call, the one form they take from the CLI (or the Python API, or
    an evaluation protocol) to the sampler. None means the model's default (its
    :class:`SamplingConfig`); :meth:`resolve` applies those defaults, once.
    """

    sampler: str | None = None
    steps: int | None = None
    eta: float | None = None
    guidance_scale: float | None = None
    #: overrides both the model's null_condition and its noise_null_condition
    null_condition: str | None = None
    clip_x0: float | None = None
    #: image i uses seed + i (or seeds[i] when a sequence)
    seed: int | tuple[int, ...] | list[int] = 0
    progress: bool = False
    #: the denoiser's arithmetic: "fp32", or "bf16" / "fp16" autocast (the latents, the solver and
    #: the first stage stay in float32)
    precision: str = "fp32"
    #: edits of a given face: "none" (sampled from noise), "ddim" (DDIM inversion, regenerated by
    #: DDIM) or "exact" (the run's solver inverts and records per-step offsets, so that the
    #: target's own conditions return its latent exactly); see scadm.diffusion.inversion. Or an
    #: inversion already made (``SCADMPipeline.invert``): the edit reuses it, and takes its
    #: strategy, solver and steps
    inversion: Any = None
    #: keep what is not edited (needs inversion); None: the model's default when inverting
    blend: bool | None = None

    def resolve(self, defaults: SamplingConfig, noise_based: bool = False, face: bool = True) -> SamplingConfig:
        """Every setting decided: this call's value, else the model's default. `noise_based`: the
        null condition defaults to the model's noise-based one. `face`: the call edits a given face
        (inversion and blending apply); without one they are off, and asking for them is an error.

        The model's default inversion gives way to a sampler this call names that cannot invert
        (that call samples from noise); an inversion this call names does not.
        """
        default_null = defaults.noise_null if noise_based else defaults.null_condition
        made = self.made_inversion
        out = dataclasses.replace(
            defaults,
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(SamplingConfig)
               if getattr(self, f.name, None) is not None},
        )
        out.null_condition = self.null_condition or default_null
        out.noise_null_condition = None
        if made is not None:  # a reused inversion decides the solver and the steps; asking others is an error
            asked = (None if self.sampler is None else normalize_sampler(self.sampler), self.steps)
            if asked[0] not in (None, made.sampler) or asked[1] not in (None, made.steps):
                raise ValueError(f"inversion: made with {made.sampler} at {made.steps} steps; this call asks "
                                 f"{asked[0] or made.sampler} at {asked[1] or made.steps} steps: leave the sampler "
                                 "and steps out, or invert again with these")
            out.sampler, out.steps = made.sampler, made.steps
        _check_choice("null_condition", out.null_condition, NULL_CONDITIONS)
        out.sampler = normalize_sampler(out.sampler)
        out.steps = checks.integer(out.steps, "steps", lo=1, hi=10_000)
        out.eta = checks.number(out.eta, "eta", lo=0, hi=1)
        out.guidance_scale = checks.number(out.guidance_scale, "guidance_scale", lo=0, hi=1e4)
        if out.clip_x0 is not None:
            out.clip_x0 = checks.number(out.clip_x0, "clip_x0", lo=0)
        _check_choice("precision", self.precision, PRECISIONS)
        out.inversion, out.blend = self._inversion(defaults, face)
        if out.inversion != "none":  # an inverted face is regenerated deterministically by the solver that inverted it
            if out.inversion in ("ddim", "virtual"):  # on a DDIM grid: a student's own, else LDM's
                out.sampler = out.sampler if out.sampler in DDIM_GRID else "ddim"
            elif out.sampler not in INVERTIBLE:  # the model's own sampler cannot invert
                out.sampler = "dpm++"
            out.eta = 0.0
        return out

    @property
    def made_inversion(self) -> Any:
        """The inversion this call reuses (an object from ``SCADMPipeline.invert``), or None."""
        return None if self.inversion is None or isinstance(self.inversion, str) else self.inversion

    def _inversion(self, defaults: SamplingConfig, face: bool) -> tuple[str, bool]:
        """(inversion, blend) of this call: checked, and the model's defaults applied."""
        made = self.made_inversion
        if made is not None:
            if not face:
                raise ValueError("inversion: an inverted face was given, but this call has none (noise-based "
                                 "generation, or a mix from a mask alone)")
            blend = defaults.blend if self.blend is None else self.blend
            return made.strategy, bool(blend)
        if self.inversion is not None:
            _check_choice("inversion", self.inversion, INVERSIONS)
        if not face:
            if self.inversion not in (None, "none") or self.blend:
                raise ValueError(f"inversion {self.inversion!r} inverts a target face; this call has none (noise-based "
                                 "generation, or a mix from a mask alone): give a face, or inversion 'none'")
            return "none", False
        given = None if self.sampler is None else normalize_sampler(self.sampler)
        inversion = self.inversion
        if inversion is None:
            _check_choice("the model's sampling.inversion", defaults.inversion, INVERSIONS)
            inversion = defaults.inversion
            if (given is not None and given not in INVERTIBLE) or (inversion in ("ddim", "virtual")
                                                                     and given not in (None, *DDIM_GRID)):
                inversion = "none"  # this call named a sampler the default inversion cannot regenerate with
        elif inversion in ("ddim", "virtual") and given not in (None, *DDIM_GRID):
            raise ValueError(f"sampler {self.sampler!r} with inversion {inversion!r}: it is regenerated on a DDIM grid "
                             f"({', '.join(DDIM_GRID)}); leave the sampler out, or use inversion 'exact'")
        elif inversion in EXACT and given is not None and given not in INVERTIBLE:
            raise ValueError(f"sampler {self.sampler!r} cannot invert; inversion 'exact' needs one of "
                             f"{', '.join(INVERTIBLE)} (leave the sampler out: the model's, else dpm++)")
        if self.blend and inversion == "none":
            raise ValueError("blend keeps the rest of the face on the inverted trajectory: it needs inversion ddim or exact")
        blend = (defaults.blend if self.blend is None else self.blend) and inversion != "none"
        return inversion, bool(blend)

    @property
    def autocast_dtype(self) -> "torch.dtype | None":
        """The autocast dtype of :attr:`precision` (None: float32, no autocast)."""
        return autocast_dtype(self.precision)

    def seeds(self, batch: int) -> list[int]:
        """The seed of each of `batch` images."""
        seeds = [self.seed + i for i in range(batch)] if isinstance(self.seed, int) else [int(s) for s in self.seed]
        if len(seeds) != batch:
            raise ValueError(f"got {len(seeds)} seeds for {batch} images")
        return seeds


@dataclass
class AutoencoderConfig:
    """First stage (diffusers VQModel or AutoencoderKL). Defaults = LDM's VQ-f4 (CompVis/ldm-celebahq-256 vqvae)."""

    #: "vq" (VQ-regularised, diffusion on the pre-quantisation latent) or "kl"
    type: str = "vq"
    in_channels: int = 3
    latent_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    num_vq_embeddings: int = 8192
    vq_embed_dim: int = 3
    mid_block_add_attention: bool = True
    sample_size: int = 256

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; saved next to its weights."""

    name: str = "custom"
    schema_version: int = SCHEMA_VERSION
    #: built-in label set name or an inline mapping (see scadm.labels)
    labels: Any = "celebamask-hq"
    #: (H, W) of the images in pixels
    image_size: tuple[int, int] = (256, 256)
    #: latent channels and the first stage's downsampling factor f
    latent_channels: int = 3
    latent_downsample: int = 4
    #: multiplies latents before diffusion (1.0 for SCA-DM's VQ-f4: unscaled)
    latent_scale: float = 1.0
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    #: free-form: the first stage this model was trained on (path or preset), for information
    autoencoder: Any = None
    #: what the model was trained on, in words ("scadm synthetic faces", "CelebA-HQ face photos");
    #: None: not recorded. `scadm info --model` and the web editor show it
    domain: str | None = None
    #: a student made by ``scadm distill``: its teacher, stages, segments and steps; None for a trained model
    distilled: Any = None

    @property
    def latent_size(self) -> tuple[int, int]:
        h, w = self.image_size
        f = self.latent_downsample
        return h // f, w // f

    def validate(self) -> "ModelConfig":
        u = self.unet
        if self.schema_version > SCHEMA_VERSION:
            raise ValueError(
                f"config schema_version {self.schema_version} is newer than this scadm understands "
                f"({SCHEMA_VERSION}); upgrade scadm"
            )
        for where, value, options in (
            ("unet.cross_attention", u.cross_attention, CROSS_ATTENTION),
            ("unet.masked_impl", u.masked_impl, ("auto", "gather", "attention")),
            ("unet.mask_resize", u.mask_resize, MASK_RESIZE),
            ("conditioning.type", self.conditioning.type, tuple(MODES)),
            ("sampling.null_condition", self.sampling.null_condition, NULL_CONDITIONS),
            ("sampling.noise_null_condition", self.sampling.noise_null_condition, (None, *NULL_CONDITIONS)),
        ):
            _check_choice(where, value, options)
        if self.conditioning.style_encoder is not None:
            _check_choice("conditioning.style_encoder.mask_resize", self.conditioning.style_encoder.mask_resize, MASK_RESIZE)
            style = self.conditioning.style_encoder
            if style.skip_join is None:  # written before the option existed (schema 1), or left to the default
                style.skip_join = "per_class" if self.schema_version < 2 else "block"
            _check_choice("conditioning.style_encoder.skip_join", style.skip_join, SKIP_JOINS)
        if u.masked_impl == "gather" and (u.tokens_per_class != 1 or u.global_tokens):
            raise ValueError("unet.masked_impl 'gather' needs exactly one token per class and no global tokens")
        for part in (*u.spade_parts, *u.transformer_parts):
            if part not in ("encoder", "middle", "decoder"):
                raise ValueError(f"unknown UNet part {part!r}; expected encoder, middle or decoder")
        if self.image_size[0] % self.latent_downsample or self.image_size[1] % self.latent_downsample:
            raise ValueError(f"image_size {self.image_size} is not divisible by latent_downsample {self.latent_downsample}")
        levels = len(u.channel_mult) - 1
        h, w = self.latent_size
        if h % (2**levels) or w % (2**levels):
            raise ValueError(
                f"latent size {h}x{w} must be divisible by 2**{levels} for a UNet with {levels + 1} levels"
            )
        get_mode(self.conditioning.type).validate(self)
        return self


@dataclass
class TrainConfig:
    """Latent diffusion training (``scadm train``). Defaults = the released SCA-DM recipe."""

    batch_size: int = 8
    grad_accum: int = 1
    #: LDM's convention: lr = base_lr x batch_size x grad_accum x processes (used when lr is None)
    base_lr: float = 2.0e-6
    #: an absolute learning rate (overrides base_lr)
    lr: float | None = None
    weight_decay: float = 0.01
    warmup_steps: int = 0
    #: after warm-up: "none" (constant, LDM), or "linear" / "cosine" decay to 0 at max_steps
    lr_decay: str = "none"
    max_steps: int = 100_000
    #: probability of replacing a sample's style image by zeros (SCA-DM: 0.5)
    style_dropout: float = 0.5
    #: probability of also zeroing the mask (trains the 'full' null condition of Eq. 4; mask tokens' null)
    mask_dropout: float = 0.0
    #: probability of replacing a sample's attributes by the null attributes (attribute conditioning)
    attribute_dropout: float = 0.0
    #: P2 weighting 1 / (k + SNR(t))^gamma; gamma 0 = off
    p2_gamma: float = 0.0
    p2_k: float = 1.0
    #: region weighting of the loss: each latent pixel's error weighted by (area of its face part)^-gamma,
    #: normalised per image (not in the papers); 0 = off
    region_weight_gamma: float = 0.0
    ema_decay: float = 0.9999
    #: LDM's EMA warm-up: decay_n = min(decay, (1 + n) / (10 + n))
    ema_warmup: bool = True
    grad_clip: float = 0.0
    #: "auto" (bf16 autocast on GPU, fp32 on CPU), "no", "bf16", "fp16"
    mixed_precision: str = "auto"
    #: recompute each UNet block's activations in the backward pass instead of keeping them
    #: (less memory per sample, about a third more compute; the released code always does)
    gradient_checkpointing: bool = False
    #: random horizontal flip with left/right class swap (SCA-DM: off)
    flip: bool = False
    num_workers: int = 2
    log_every: int = 25
    sample_every: int = 1000
    checkpoint_every: int = 1000
    keep_last: int = 3
    #: every this many steps, also export the EMA model to RUN/exports/step-XXXXXXX (a model folder,
    #: for learning curves: evaluate each one); 0 = off
    export_every: int = 0
    seed: int = 0
    cache_latents: bool = False
    #: first-stage folder (diffusers format); relative paths are relative to the repository root
    autoencoder: str | None = None
    #: sampling steps for the preview grids
    preview_steps: int = 25


@dataclass
class AutoencoderTrainConfig:
    """First-stage training (``scadm train-autoencoder``), after LDM's VQ/KL + PatchGAN recipe."""

    batch_size: int = 16
    lr: float = 4.5e-6
    #: multiply lr by batch_size (LDM's autoencoder convention)
    scale_lr: bool = True
    #: "none" (constant, LDM), or "linear" / "cosine" decay to 0 at max_steps (both optimisers)
    lr_decay: str = "none"
    max_steps: int = 100_000
    l1_weight: float = 1.0
    #: weight of a squared-error term next to L1 (0: L1 only, as LDM)
    l2_weight: float = 0.0
    #: LPIPS weight; used only when lpips_vgg and lpips_lin are local weight files
    perceptual_weight: float = 1.0
    lpips_vgg: str | None = None
    lpips_lin: str | None = None
    codebook_weight: float = 1.0
    kl_weight: float = 1.0e-6
    disc_start: int = 50_001
    disc_weight: float = 0.75
    disc_channels: int = 64
    disc_layers: int = 3
    num_workers: int = 2
    log_every: int = 25
    checkpoint_every: int = 1000
    keep_last: int = 2
    seed: int = 0
    flip: bool = True
    mixed_precision: str = "auto"
    #: from this step on only the decoder trains (encoder, quant_conv and, for VQ, the codebook
    #: frozen; the KL/commitment term dropped). The latents stay exactly those of that step, so a
    #: diffusion model trained on them stays valid: the decoder-only fine-tuning of Stability's
    #: ft-EMA/ft-MSE autoencoders. None: never.
    freeze_encoder_from: int | None = None
    #: region weighting of the reconstruction terms: each pixel's error weighted by (area of its face
    #: part)^-gamma, normalised per image (the diffusion loss's ``region_weight_gamma``; not in the
    #: papers), from step ``region_weight_from`` on. 0 = off
    region_weight_gamma: float = 0.0
    region_weight_from: int = 0


#: the allowed range of each training number, (low, high), None = open; every float must also be finite
_TRAIN_RANGES: dict[str, tuple[float | None, float | None]] = {
    "batch_size": (1, None), "grad_accum": (1, None), "base_lr": (0, 1), "lr": (0, 1), "weight_decay": (0, None),
    "warmup_steps": (0, None), "max_steps": (1, None), "style_dropout": (0, 1), "mask_dropout": (0, 1),
    "attribute_dropout": (0, 1), "p2_gamma": (0, None), "p2_k": (0, None), "region_weight_gamma": (0, None),
    "ema_decay": (0, 1), "grad_clip": (0, None), "num_workers": (0, None), "log_every": (1, None),
    "sample_every": (0, None), "checkpoint_every": (1, None), "keep_last": (1, None), "seed": (0, None),
    "preview_steps": (1, None), "l1_weight": (0, None), "l2_weight": (0, None), "perceptual_weight": (0, None),
    "codebook_weight": (0, None), "kl_weight": (0, None), "disc_start": (0, None), "disc_weight": (0, None),
    "disc_channels": (1, None), "disc_layers": (1, None), "freeze_encoder_from": (0, None),
    "region_weight_from": (0, None), "export_every": (0, None),
}
_TRAIN_CHOICES = {"lr_decay": ("none", "linear", "cosine"), "mixed_precision": ("auto", "no", "bf16", "fp16")}


def _check_training(section: Any, where: str) -> None:
    """Every number of a training section in its range, every choice known (before anything is built)."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if f.name in _TRAIN_CHOICES:
            _check_choice(f"{where}.{f.name}", value, _TRAIN_CHOICES[f.name])
        if value is None or isinstance(value, (bool, str)) or f.name not in _TRAIN_RANGES:
            continue
        lo, hi = _TRAIN_RANGES[f.name]
        if isinstance(value, int):
            checks.integer(value, f"{where}.{f.name}", lo=lo, hi=hi)
        else:
            checks.number(value, f"{where}.{f.name}", lo=lo, hi=hi)


@dataclass
class Recipe:
    """A whole recipe: the model, its first stage, and how to train each."""

    model: ModelConfig = field(default_factory=ModelConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    autoencoder_training: AutoencoderTrainConfig = field(default_factory=AutoencoderTrainConfig)


# ---------------------------------------------------------------------------
# dict <-> dataclass
# ---------------------------------------------------------------------------
def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain JSON/YAML-ready values (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types are errors naming the key."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where or 'config'}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _coerce(options[0], value, where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v, where) for v in value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool and not isinstance(value, bool):
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    if tp is str and not isinstance(value, str):
        raise ValueError(f"{where}: expected a string, got {value!r}")
    return value


# ---------------------------------------------------------------------------
# Presets and files
# ---------------------------------------------------------------------------
def _preset_dir() -> Path:
    return Path(str(resources.files("scadm") / "configs"))


def list_presets() -> list[str]:
    return sorted(p.stem for p in _preset_dir().glob("*.yaml"))


def read_config_mapping(spec: str | Path) -> tuple[dict, str]:
    """The raw mapping of a preset name or a YAML/JSON file, and where it came from."""
    spec = str(spec)
    path = Path(spec)
    if not path.exists() and not spec.endswith((".yaml", ".yml", ".json")):
        candidate = _preset_dir() / f"{spec}.yaml"
        if not candidate.exists():
            raise ValueError(f"unknown config {spec!r}: not a file and not a preset; presets: {', '.join(list_presets())}")
        path = candidate
    if not path.is_file():
        hint = f"; for the preset write --config {path.stem}" if path.stem in list_presets() else ""
        what = "is a folder, not a config file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"config file {path} {what}{hint}")
    try:
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{path}: cannot parse ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data, str(path)


def load_recipe(spec: str | Path | dict | Recipe) -> Recipe:
    """A validated Recipe from a preset name, a YAML/JSON file or a mapping.

    A file holds the sections ``model``, ``autoencoder``, ``training`` and
    ``autoencoder_training`` (each optional); a file with only model keys at the top level
    is read as the ``model`` section.
    """
    if isinstance(spec, Recipe):
        return _validate_recipe(spec)
    data, source = (spec, None) if isinstance(spec, dict) else read_config_mapping(spec)
    sections = {f.name for f in dataclasses.fields(Recipe)}
    if not set(data) & sections:
        data = {"model": data}
    try:
        return _validate_recipe(from_dict(Recipe, data))
    except ValueError as exc:
        if source is None:
            raise
        raise ValueError(f"{source}: {exc}") from None


def _validate_recipe(recipe: Recipe) -> Recipe:
    recipe.model.validate()
    _check_training(recipe.training, "training")
    _check_training(recipe.autoencoder_training, "autoencoder_training")
    if recipe.autoencoder.type not in ("vq", "kl"):
        raise ValueError(f"autoencoder.type must be vq or kl, not {recipe.autoencoder.type!r}")
    if recipe.autoencoder.downsample != recipe.model.latent_downsample:
        raise ValueError(
            f"the autoencoder downsamples by {recipe.autoencoder.downsample} but model.latent_downsample is "
            f"{recipe.model.latent_downsample}"
        )
    if recipe.autoencoder.latent_channels != recipe.model.latent_channels:
        raise ValueError("autoencoder.latent_channels must equal model.latent_channels")
    return recipe


def load_config(spec: str | Path | dict | ModelConfig) -> ModelConfig:
    """A validated ModelConfig from a preset name, a YAML/JSON file (its ``model`` section), a mapping or a ModelConfig."""
    if isinstance(spec, ModelConfig):
        return spec.validate()
    if isinstance(spec, dict) and "model" not in spec:
        return from_dict(ModelConfig, spec).validate()
    return load_recipe(spec).model


def save_config(cfg: Any, path: str | Path) -> None:
    path = Path(path)
    d = to_dict(cfg)
    if path.suffix == ".json":
        path.write_text(json.dumps(d, indent=2) + "\n")
    else:
        path.write_text(yaml.safe_dump(d, sort_keys=False))
