"""The registry of conditioning modes: the one place that knows what each mode is.

A mode (``conditioning.type`` in a model config) is a list of *components*, the token sources
the condition encoder concatenates in order, plus a few facts about its null condition:

=====================  ==============================  ===========================================
type                   components (token order)        paper
=====================  ==============================  ===========================================
``style``              style_encoder                   SCA-DM: per-class style tokens E_s(x, M_x)
``style+attributes``   style_encoder, attributes       SCA-DM with one global attribute token
``attributes``         attributes                      multi-conditioning ``a``
``mask_tokens``        mask_encoder                    multi-conditioning ``m`` / ``m_np`` (variant)
``multi``              attributes, mask_encoder        multi-conditioning ``mc``
``none``               (none)                          unconditional, or SPADE-only (SDM-like)
=====================  ==============================  ===========================================

Everything else follows from the components, here and nowhere else: which config sections a
mode needs and how they are validated, the token layout the UNet must be built for, whether
the mode takes attributes or a style image, its null conditions, and how condition dropout
applies to its inputs. Config validation, the condition encoder, the pipeline and the trainer
ask a :class:`ConditioningMode`; no other module branches on a mode's name.

Adding a mode: add one :class:`ConditioningMode` to :data:`MODES` (and, for a new kind of
token source, one :class:`Component` to :data:`COMPONENTS` and its encoder in
:mod:`scadm.models.conditioning`); the contract tests in ``tests/test_contracts.py`` then run
over it (build, forward, save/load, null condition, dropout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

#: a scadm.config.ModelConfig (config imports this module to validate, so it is not imported here)
ModelConfig = Any

__all__ = ["Component", "ConditioningMode", "COMPONENTS", "MODES", "NULL_CONDITIONS", "get_mode"]

#: the null conditions of classifier-free guidance: "style" = the empty condition with the
#: true mask (what condition dropout teaches); "full" = also a zero mask (Eq. 4 as written);
#: "zero" = the released SCA-DM scripts' null: all-zero tokens (not the encoder's output for any
#: input) and a zero mask, a pairing never seen in training
NULL_CONDITIONS = ("style", "full", "zero")


# ---------------------------------------------------------------------------
# Components: the token sources a mode concatenates
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Component:
    """One token source: its config section, what raw input it reads, and its token shape."""

    #: the conditioning config section (``conditioning.<section>``) that configures it
    section: str
    #: the raw input it encodes besides the mask: "image" (style image), "attributes" or None
    reads: str | None
    #: tokens are per class (class-major, seen through the mask) or global (seen by every pixel)
    per_class: bool
    #: section -> (tokens, token size); tokens per class for per-class components
    shape: Callable[[Any, ModelConfig], tuple[int, int]]
    #: section-level checks, run whenever the section is used
    check: Callable[[Any, ModelConfig], None]


def _style_shape(s: Any, cfg: ModelConfig) -> tuple[int, int]:
    return (1, s.levels * s.style_dim) if s.layout == "concat" else (s.levels, s.style_dim)


def _style_check(s: Any, cfg: ModelConfig) -> None:
    if s.layout not in ("concat", "per_scale"):
        raise ValueError(f"style_encoder.layout must be concat or per_scale, not {s.layout!r}")
    if s.num_levels > s.num_down:
        raise ValueError("style_encoder.num_levels cannot exceed num_down")
    if s.num_classes != cfg.unet.num_classes:
        raise ValueError("style_encoder.num_classes must equal unet.num_classes")


def _mask_tokens_shape(m: Any, cfg: ModelConfig) -> tuple[int, int]:
    if m.variant == "m":
        return 1, m.dim
    h, w = cfg.image_size
    return (h // 32) * (w // 32), m.dim  # ResNet-18's last feature map, row-major


def _mask_tokens_check(m: Any, cfg: ModelConfig) -> None:
    if m.variant not in ("m", "m_np"):
        raise ValueError(f"mask_encoder.variant must be 'm' or 'm_np', not {m.variant!r}")


def _no_check(section: Any, cfg: ModelConfig) -> None:
    return None


COMPONENTS: dict[str, Component] = {
    c.section: c
    for c in (
        Component("style_encoder", "image", True, _style_shape, _style_check),
        Component("attributes", "attributes", False, lambda a, cfg: (1, a.dim), _no_check),
        Component("mask_encoder", None, False, _mask_tokens_shape, _mask_tokens_check),
    )
}


# ---------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ConditioningMode:
    """A conditioning mode: its components and what follows from them."""

    name: str
    #: the components' config sections, in token order
    components: tuple[str, ...]
    summary: str
    #: the null condition zeroes the mask even for the "style" null: the mask is itself a
    #: token condition here (mask tokens), so its dropout, and hence its null, is a zero mask
    null_zeroes_mask: bool = False

    # -------------------------------------------------------------- what it takes
    @property
    def takes_style_image(self) -> bool:
        """Style tokens from a reference image (the SCA-DM applications: swap, interpolate, mix ...)."""
        return any(COMPONENTS[c].reads == "image" for c in self.components)

    @property
    def takes_attributes(self) -> bool:
        """An attribute vector (the dataset needs attributes.csv to train it)."""
        return any(COMPONENTS[c].reads == "attributes" for c in self.components)

    @property
    def reads_mask(self) -> bool:
        """Its tokens depend on the mask (per-class style tokens, mask tokens), besides what SPADE sees."""
        return any(COMPONENTS[c].per_class or COMPONENTS[c].reads is None for c in self.components)

    @property
    def has_tokens(self) -> bool:
        return bool(self.components)

    # -------------------------------------------------------------- null condition
    def null_keeps_mask(self, null_condition: str) -> bool:
        """Whether the null condition keeps the true mask. The "style" and "full" nulls are the
        encoder applied to this mask (or a zero mask), no style image and no attributes; the
        "zero" null has a zero mask and all-zero tokens (:meth:`null_zeroes_tokens`)."""
        if null_condition not in NULL_CONDITIONS:
            raise ValueError(f"unknown null condition {null_condition!r}; expected one of {', '.join(NULL_CONDITIONS)}")
        return null_condition == "style" and not self.null_zeroes_mask

    def null_zeroes_tokens(self, null_condition: str) -> bool:
        """Whether the null's tokens are all zeros rather than the encoder's output (the released "zero" null)."""
        self.null_keeps_mask(null_condition)  # validates the name
        return null_condition == "zero"

    def is_own_null(self, null_condition: str, *, style_image: bool, attributes: bool) -> bool:
        """True when a condition built from these inputs equals its null condition, so classifier-free
        guidance would change nothing (noise-based generation from the empty style with the "style"
        null): the sampler then runs one pass instead of the doubled batch. A mode without tokens is
        never guided: its only condition, the mask, reaches SPADE as it is. The "zero" null (all-zero
        tokens) is never an encoder's output, so a mode with tokens is always guided against it."""
        if style_image or attributes:
            return False
        if not self.has_tokens:
            return True
        return not self.null_zeroes_tokens(null_condition) and self.null_keeps_mask(null_condition)

    # -------------------------------------------------------------- token layout
    def token_layout(self, cfg: ModelConfig) -> tuple[int, int, set[int]]:
        """(tokens per class, global tokens, token sizes) the encoder emits for `cfg`."""
        per_class, global_tokens, sizes = 0, 0, set()
        for section in self.components:
            comp = COMPONENTS[section]
            n, dim = comp.shape(getattr(cfg.conditioning, section), cfg)
            sizes.add(dim)
            if comp.per_class:
                per_class += n
            else:
                global_tokens += n
        return per_class, global_tokens, sizes

    # -------------------------------------------------------------- validation
    def validate(self, cfg: ModelConfig) -> None:
        """Check the conditioning sections and that the UNet is built for this mode's tokens."""
        c, u = cfg.conditioning, cfg.unet
        for section in self.components:
            if getattr(c, section) is None:
                raise ValueError(f"conditioning.type {self.name!r} needs a conditioning.{section} section")
        for section in self.components:  # a section the mode does not use is not checked (nor built)
            COMPONENTS[section].check(getattr(c, section), cfg)
        if not self.has_tokens:
            if u.cross_attention != "none":
                raise ValueError(f"conditioning.type {self.name!r} has no tokens: set unet.cross_attention to 'none'")
            return
        per_class, global_tokens, sizes = self.token_layout(cfg)
        if not per_class:  # global tokens only: ordinary cross-attention over them
            if sizes != {u.context_dim} or u.cross_attention == "none":
                raise ValueError(
                    f"conditioning {self.name!r} gives tokens of size {sorted(sizes)}: set unet.context_dim to it and "
                    "unet.cross_attention to 'plain'"
                )
            return
        style = c.style_encoder
        want_tpc, want_dim = _style_shape(style, cfg)
        if (u.tokens_per_class, u.context_dim) != (want_tpc, want_dim):
            raise ValueError(
                f"style layout {style.layout!r} gives {want_tpc} token(s) per class of size {want_dim}; "
                f"set unet.tokens_per_class={want_tpc} and unet.context_dim={want_dim}"
            )
        if sizes != {want_dim} or u.global_tokens != global_tokens:
            extra = ", ".join(f"conditioning.{s}.dim" for s in self.components if not COMPONENTS[s].per_class)
            raise ValueError(
                f"{self.name}: set {extra} to the style token size {want_dim} and unet.global_tokens to "
                f"{global_tokens} (the token(s) every pixel attends to)"
            )


MODES: dict[str, ConditioningMode] = {
    m.name: m
    for m in (
        ConditioningMode("style", ("style_encoder",), "SCA-DM: per-class style tokens from a reference image"),
        ConditioningMode("style+attributes", ("style_encoder", "attributes"),
                         "SCA-DM with a global attribute token"),
        ConditioningMode("attributes", ("attributes",), "multi-conditioning `a`: one attribute token"),
        ConditioningMode("mask_tokens", ("mask_encoder",), "multi-conditioning `m` / `m_np`: ResNet-18 mask tokens",
                         null_zeroes_mask=True),
        ConditioningMode("multi", ("attributes", "mask_encoder"),
                         "multi-conditioning `mc`: attribute token + m_np mask tokens", null_zeroes_mask=True),
        ConditioningMode("none", (), "no tokens: unconditional, or SPADE-only when the UNet has SPADE"),
    )
}


def get_mode(name: str) -> ConditioningMode:
    """The registered mode called `name` (a ``conditioning.type``); a clear error for any other."""
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"conditioning.type must be one of {', '.join(MODES)}; got {name!r}") from None
