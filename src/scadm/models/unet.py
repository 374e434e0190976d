"""The SCA-DM denoiser: a latent UNet with SPADE (shape) and mask-conditioned cross-attention (style).

Paper: Ergasti et al., "Controllable Face Synthesis with Semantic Latent Diffusion Models",
Sec. 3 and Fig. 2. Layout follows LDM's ``openaimodel.UNetModel`` (module names included, so
released checkpoints map one to one):

    input_blocks   conv_in, then per level: num_res_blocks x [ResBlock (+ SpatialTransformer)], Downsample
    middle_block   SPADEResBlock, SpatialTransformer, SPADEResBlock
    output_blocks  per level: (num_res_blocks + 1) x [SPADEResBlock (+ SpatialTransformer)] (+ Upsample)
    out            GroupNorm, SiLU, zero-initialised 3x3 conv

Which parts use SPADE, where transformers sit, the cross-attention mode, the token layout
and the number of classes all come from :class:`scadm.config.UNetConfig`.

Time-invariant conditioning: SPADE's gamma/beta depend only on the mask, and the
cross-attention keys/values (or, for the gather path, the whole output) only on the tokens
and the mask. :meth:`SemanticUNet.prepare` computes them once; the result, a
:class:`PreparedConditions`, is passed as ``cond`` at every sampling step.

A diffusers model (``ModelMixin`` + ``ConfigMixin``): its init arguments are the fields of
:class:`~scadm.config.UNetConfig`, so ``save_pretrained`` writes them to ``config.json`` beside
``diffusion_pytorch_model.safetensors`` and ``from_pretrained(folder, torch_dtype=...)`` rebuilds it.

Gradient checkpointing (``gradient_checkpointing = True``, set by the trainer): in training,
each block's activations are recomputed in the backward pass instead of being kept.

Weight initialisation: PyTorch defaults everywhere, except the last conv of every residual
branch, every transformer's proj_out and the output conv, which start at zero (each block
starts as the identity, LDM's policy).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..conditions import Conditions
from ..config import UNetConfig, from_dict, to_dict
from ..nn.attention import SpatialTransformer
from ..nn.embeddings import timestep_embedding
from ..nn.masks import MaskPyramid
from ..nn.resblocks import SPADE, Downsample, ResBlock, SPADEResBlock, Upsample, group_norm, zero_module


class PreparedConditions(dict):
    """Per-layer, time-invariant conditioning tensors, keyed by layer name (batch first)."""


class UNetBlock(nn.ModuleList):
    """A sequence of layers that each take what they need: (x, emb, prepared) or (x, prepared) or x."""

    def forward(self, x: Tensor, emb: Tensor, prepared: dict[str, Any], out_size: tuple[int, int] | None = None) -> Tensor:
        for layer in self:
            if isinstance(layer, (ResBlock, SPADEResBlock)):
                x = layer(x, emb, prepared)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, prepared)
            elif isinstance(layer, Upsample):
                x = layer(x, out_size)
            else:
                x = layer(x)
        return x


# ---------------------------------------------------------------------------
# The denoiser
# ---------------------------------------------------------------------------
_U = UNetConfig()


class SemanticUNet(ModelMixin, ConfigMixin):
    """eps_theta(z_t, t, cond): SCA-DM's UNet (and, by config, the multi-conditioning LDM's).

    The arguments are :class:`~scadm.config.UNetConfig`'s fields, documented there;
    ``SemanticUNet.from_cfg(cfg)`` builds one from that config.
    """

    _supports_gradient_checkpointing = False  # scadm's own: the trainer sets `gradient_checkpointing`

    @register_to_config
    def __init__(self, in_channels: int = _U.in_channels, out_channels: int = _U.out_channels,
                 model_channels: int = _U.model_channels, channel_mult: tuple[int, ...] = _U.channel_mult,
                 num_res_blocks: int = _U.num_res_blocks, attention_resolutions: tuple[int, ...] = _U.attention_resolutions,
                 head_dim: int = _U.head_dim, transformer_depth: int = _U.transformer_depth,
                 transformer_parts: tuple[str, ...] = _U.transformer_parts, context_dim: int = _U.context_dim,
                 cross_attention: str = _U.cross_attention, masked_impl: str = _U.masked_impl,
                 spade_parts: tuple[str, ...] = _U.spade_parts, num_classes: int = _U.num_classes,
                 spade_hidden: int = _U.spade_hidden, tokens_per_class: int = _U.tokens_per_class,
                 global_tokens: int = _U.global_tokens, use_scale_shift_norm: bool = _U.use_scale_shift_norm,
                 dropout: float = _U.dropout, mask_resize: str = _U.mask_resize,
                 guidance_embedding: bool = _U.guidance_embedding) -> None:
        args = dict(locals())  # exactly UNetConfig's fields (tests/test_pipeline_contract.py checks)
        super().__init__()
        cfg = from_dict(UNetConfig, {f.name: args[f.name] for f in dataclasses.fields(UNetConfig)})
        self.cfg = cfg
        self.gradient_checkpointing = False
        mc = cfg.model_channels
        emb_dim = 4 * mc
        self.cross_attention = cfg.cross_attention
        if cfg.cross_attention == "masked":
            gather = cfg.masked_impl == "gather" or (
                cfg.masked_impl == "auto" and cfg.tokens_per_class == 1 and cfg.global_tokens == 0
            )
            self.cross_attention = "masked_gather" if gather else "masked"
        token_classes = [c for c in range(cfg.num_classes) for _ in range(cfg.tokens_per_class)]
        token_classes += [-1] * cfg.global_tokens
        self.register_buffer("token_classes", torch.tensor(token_classes, dtype=torch.long), persistent=False)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # a guidance-distilled student: s embedded like t (scaled by 1000, as LCM's w embedding) and added to
        # t's embedding through a zero-initialised projection, so the student starts as its teacher
        self.guidance_embed = zero_module(nn.Linear(mc, mc, bias=False)) if cfg.guidance_embedding else None

        # --- encoder -------------------------------------------------------
        self.input_blocks = nn.ModuleList([UNetBlock([nn.Conv2d(cfg.in_channels, mc, 3, padding=1)])])
        skip_channels = [mc]
        ch, ds = mc, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [self._resblock("encoder", ch, mult * mc, ds)]
                ch = mult * mc
                if ds in cfg.attention_resolutions and "encoder" in cfg.transformer_parts:
                    layers.append(self._transformer(ch, ds))
                self.input_blocks.append(UNetBlock(layers))
                skip_channels.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(UNetBlock([Downsample(ch)]))
                skip_channels.append(ch)
                ds *= 2

        # --- middle --------------------------------------------------------
        middle: list[nn.Module] = [self._resblock("middle", ch, ch, ds)]
        if "middle" in cfg.transformer_parts:
            middle.append(self._transformer(ch, ds))
        middle.append(self._resblock("middle", ch, ch, ds))
        self.middle_block = UNetBlock(middle)

        # --- decoder -------------------------------------------------------
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [self._resblock("decoder", ch + skip_channels.pop(), mult * mc, ds)]
                ch = mult * mc
                if ds in cfg.attention_resolutions and "decoder" in cfg.transformer_parts:
                    layers.append(self._transformer(ch, ds))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(UNetBlock(layers))

        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero_module(nn.Conv2d(mc, cfg.out_channels, 3, padding=1)))

        # Name every conditioned layer so prepare() and forward() agree on where its state lives.
        self._spade: list[tuple[SPADE, int]] = []
        self._xattn: list[tuple[nn.Module, int]] = []
        for name, module in self.named_modules():
            if isinstance(module, SPADE):
                module.cache_key = name
                self._spade.append((module, module.ds))
            elif hasattr(module, "strategy") and getattr(module, "strategy", None) is not None:
                module.cache_key = name
                self._xattn.append((module, module.ds))

    # ------------------------------------------------------------------ builders
    @property
    def weight_dtype(self) -> torch.dtype:
        """The dtype of the weights, read off one of them: ``ModelMixin.dtype`` walks every submodule,
        about 1 ms on the bundled UNet, too slow for every step of a sampling loop."""
        return self.time_embed[0].weight.dtype

    @classmethod
    def from_cfg(cls, cfg: UNetConfig) -> "SemanticUNet":
        return cls(**to_dict(cfg))

    def _resblock(self, part: str, ch_in: int, ch_out: int, ds: int) -> nn.Module:
        c = self.cfg
        if part in c.spade_parts:
            block = SPADEResBlock(ch_in, 4 * c.model_channels, c.num_classes, ch_out, c.dropout,
                                  c.use_scale_shift_norm, c.spade_hidden)
            block.in_norm.ds = block.out_norm.ds = ds
            return block
        return ResBlock(ch_in, 4 * c.model_channels, ch_out, c.dropout, c.use_scale_shift_norm)

    def _transformer(self, ch: int, ds: int) -> SpatialTransformer:
        c = self.cfg
        if ch % c.head_dim:
            raise ValueError(f"UNet width {ch} is not divisible by head_dim {c.head_dim}")
        st = SpatialTransformer(ch, ch // c.head_dim, c.head_dim, c.transformer_depth,
                                c.context_dim, self.cross_attention, c.dropout)
        for block in st.transformer_blocks:
            block.ds = ds
        return st

    # ------------------------------------------------------------------ conditioning
    @apply_forward_hook  # with model CPU offload, the unet comes to the accelerator for this as for forward
    def prepare(self, cond: Conditions, latent_size: tuple[int, int]) -> PreparedConditions:
        """Everything that depends only on the conditions, for latents of `latent_size` (once per run)."""
        h, w = latent_size
        cond = cond.to(self.weight_dtype)  # the mask and tokens in the network's own dtype (a bf16 pipeline's)
        prepared = PreparedConditions()
        if self._spade:
            if cond.mask is None:
                raise ValueError("this UNet uses SPADE: the conditions need a semantic mask")
            if cond.mask.shape[1] != self.cfg.num_classes:
                raise ValueError(f"mask has {cond.mask.shape[1]} channels; this model expects {self.cfg.num_classes} classes")
        # The mask at each feature size, resized once here (cfg.mask_resize): SPADE and the
        # attention take it at their own size and never resize it themselves.
        masks = None if cond.mask is None else MaskPyramid(cond.mask, self.cfg.mask_resize)

        def mask_at(ds: int) -> Tensor | None:
            return None if masks is None else masks.at((h // ds, w // ds))

        # SPADE once per distinct mask: a batch often repeats one (the source and edit rows of a virtual edit,
        # the alphas of an interpolation, the images of a mix), and SPADE's convolutions are most of prepare
        first, inverse = (None, None) if cond.mask is None or not self._spade else _distinct_rows(cond.mask)
        spade_masks = masks if first is None else MaskPyramid(cond.mask[first], self.cfg.mask_resize)
        for module, ds in self._spade:
            gamma, beta = module.prepare(spade_masks.at((h // ds, w // ds)) if spade_masks is not None else None,
                                         (h // ds, w // ds))
            prepared[module.cache_key] = (gamma, beta) if inverse is None else (gamma[inverse], beta[inverse])
        for module, ds in self._xattn:
            tokens = cond.tokens
            if tokens is not None and tokens.shape[1] != len(self.token_classes) and self.cross_attention != "plain":
                raise ValueError(
                    f"conditions carry {tokens.shape[1]} tokens; this model's layout expects {len(self.token_classes)}"
                )
            prepared[module.cache_key] = module.prepare(tokens, mask_at(ds), (h // ds, w // ds), self.token_classes)
        return prepared

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, t: Tensor, cond: Conditions | PreparedConditions,
                guidance: Tensor | float | None = None) -> Tensor:
        """x: (B, C_in, h, w) noisy latent; t: (B,) timesteps; cond: raw or prepared conditions;
        guidance: the scale s of a guidance-distilled student ((B,) or one number; None: 0, unguided).
        A network without a guidance embedding refuses a scale other than 0."""
        if not isinstance(cond, PreparedConditions):
            cond = self.prepare(cond, tuple(x.shape[-2:]))
        t = t.expand(x.shape[0]) if t.ndim == 0 or t.shape[0] == 1 else t
        x = x.to(self.weight_dtype)  # the network's own dtype; callers cast the output back (a bf16 pipeline's)
        e_t = timestep_embedding(t, self.cfg.model_channels)  # (B, mc)
        if self.guidance_embed is not None:
            s = torch.as_tensor(0.0 if guidance is None else guidance, dtype=torch.float32, device=x.device).expand(x.shape[0])
            e_t = e_t + self.guidance_embed(timestep_embedding(s * 1000, self.cfg.model_channels).to(x.dtype)).float()
        elif guidance is not None and self.guidance_embed is None and bool(torch.as_tensor(guidance).ne(0).any()):
            raise ValueError("this UNet takes no guidance scale (unet.guidance_embedding is off): guide it with "
                             "ClassifierFreeGuidance instead")
        emb = self.time_embed(e_t.to(x.dtype))

        run = self._checkpointed if self.gradient_checkpointing and self.training and torch.is_grad_enabled() else _call
        hs, h = [], x
        for block in self.input_blocks:
            h = run(block, h, emb, cond)
            hs.append(h)
        h = run(self.middle_block, h, emb, cond)
        for block in self.output_blocks:
            h = torch.cat([h, hs.pop()], dim=1)
            h = run(block, h, emb, cond, hs[-1].shape[-2:] if hs else None)
        return self.out(h)

    @staticmethod
    def _checkpointed(block: UNetBlock, *args: Any) -> Tensor:
        return checkpoint(block, *args, use_reentrant=False)


def _call(block: UNetBlock, *args: Any) -> Tensor:
    return block(*args)


def _distinct_rows(x: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """(first row of each distinct value, each row's index among them), or (None, None) when all differ.
    Rows are told apart by a weighted sum, and rows with equal sums compared exactly."""
    b = x.shape[0]
    if b == 1:
        return None, None
    flat = x.reshape(b, -1)
    weights = torch.linspace(1.0, 2.0, flat.shape[1], device=x.device, dtype=flat.dtype)
    keys = (flat * weights).sum(1).tolist()
    first: list[int] = []
    inverse: list[int] = []
    for i in range(b):
        for k, j in enumerate(first):
            if keys[i] == keys[j] and torch.equal(flat[i], flat[j]):
                inverse.append(k)
                break
        else:
            inverse.append(len(first))
            first.append(i)
    if len(first) == b:
        return None, None
    return torch.tensor(first, device=x.device), torch.tensor(inverse, device=x.device)
