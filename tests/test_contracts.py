"""Contract tests: every registered conditioning mode and every cross-attention strategy keeps the
same promises (build, forward, save/load round trip, null condition, dropout).

The configs are derived from the registry itself, so a new mode or strategy is covered as soon as
it is registered (a strategy also needs its line in STRATEGY_CONFIGS, or its test fails).
"""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch

from scadm.conditioning_modes import MODES, NULL_CONDITIONS, ConditioningMode
from scadm.conditions import ConditionInputs, cat_conditions
from scadm.config import ConditioningConfig, ModelConfig, load_config
from scadm.diffusion.objective import condition_dropout
from scadm.models.ldm import SemanticLDM
from scadm.nn.attention import STRATEGIES
from scadm.nn.masks import resize_mask

from legacy import save_legacy

TOKEN_DIM = 32  # the tiny preset's style token size (2 levels x 16)


def config_for(mode: ConditioningMode, **unet) -> ModelConfig:
    """The tiny preset, conditioned by `mode`: its sections from the registry, the UNet sized for its tokens."""
    base = load_config("tiny")
    hints = typing.get_type_hints(ConditioningConfig)
    sections = {}
    for section in ("style_encoder", "attributes", "mask_encoder"):
        if section not in mode.components:
            sections[section] = None
        elif section == "style_encoder":
            sections[section] = base.conditioning.style_encoder
        else:
            cls = next(a for a in typing.get_args(hints[section]) if a is not type(None))
            extra = {"hidden": 32} if "hidden" in {f.name for f in dataclasses.fields(cls)} else {}
            sections[section] = cls(dim=TOKEN_DIM, **extra)
    cfg = dataclasses.replace(base, conditioning=ConditioningConfig(type=mode.name, **sections))
    per_class, global_tokens, _ = mode.token_layout(cfg)
    cross = "masked" if per_class else ("plain" if mode.has_tokens else "none")
    u = {"cross_attention": cross, "global_tokens": global_tokens if per_class else 0, **unet}
    return load_config(dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, **u)))


def random_model(cfg: ModelConfig) -> SemanticLDM:
    torch.manual_seed(0)
    model = SemanticLDM(cfg).eval()
    for p in model.parameters():  # zero-initialised layers would hide the conditioning
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.05)
    return model


def inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 19, (batch, 32, 32), generator=g)
    mask = torch.nn.functional.one_hot(ids, 19).permute(0, 3, 1, 2).float()
    image = torch.rand(batch, 3, 32, 32, generator=g) * 2 - 1
    attributes = torch.randint(0, 2, (batch, 40), generator=g).float() * 2 - 1
    z = torch.randn(batch, 3, 8, 8, generator=g)
    return mask, image, attributes, z, torch.tensor([10, 700])[:batch]


def same(a, b) -> bool:
    return all(
        (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
        for x, y in ((a.mask, b.mask), (a.tokens, b.tokens))
    )


MODE_PARAMS = [pytest.param(m, id=m.name) for m in MODES.values()]


# ---------------------------------------------------------------------------
# conditioning modes
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODE_PARAMS)
def test_mode_builds_and_runs(mode):
    model = random_model(config_for(mode))
    mask, image, attributes, z, t = inputs()
    cond = model.conditions(mask, image, attributes)
    assert model.mode is MODES[mode.name]
    if mode.has_tokens:
        assert cond.tokens.shape[0] == 2 and cond.tokens.shape[-1] == model.cfg.unet.context_dim
        if model.cfg.unet.cross_attention == "masked":
            assert cond.tokens.shape[1] == len(model.unet.token_classes)
    else:
        assert cond.tokens is None
    with torch.no_grad():
        eps = model(z, t, cond)
    assert eps.shape == z.shape and torch.isfinite(eps).all()
    # what the mode reads matters: another image changes the tokens exactly when it takes one
    other = model.conditions(mask, image.flip(-1), attributes)
    assert same(cond, other) != mode.takes_style_image
    flipped = model.conditions(mask, image, -attributes)
    assert same(cond, flipped) != mode.takes_attributes


@pytest.mark.parametrize("mode", MODE_PARAMS)
def test_mode_save_load_round_trip(mode, tmp_path):
    model = random_model(config_for(mode))
    mask, image, attributes, z, t = inputs()
    save_legacy(model, tmp_path / "m")
    loaded = SemanticLDM.from_pretrained(tmp_path / "m")
    assert loaded.cfg == model.cfg and loaded.mode is model.mode
    with torch.no_grad():
        a = model(z, t, model.conditions(mask, image, attributes))
        b = loaded(z, t, loaded.conditions(mask, image, attributes))
    assert torch.equal(a, b)


@pytest.mark.parametrize("mode", MODE_PARAMS)
@pytest.mark.parametrize("null_condition", NULL_CONDITIONS)
def test_mode_null_condition(mode, null_condition):
    model = random_model(config_for(mode))
    mask, image, attributes, z, t = inputs()
    null = model.conditioner.null(mask, null_condition)
    kept = mode.null_keeps_mask(null_condition)
    assert torch.equal(null.mask, mask if kept else torch.zeros_like(mask))
    if mode.null_zeroes_tokens(null_condition):  # the released null: zeros shaped like the encoder's tokens
        encoded = model.conditions(null.mask, None, None)
        assert null.tokens is None if encoded.tokens is None else torch.equal(null.tokens, torch.zeros_like(encoded.tokens))
    else:
        assert same(null, model.conditions(null.mask, None, None))  # no style image, null attributes
    cond = model.conditions(mask, image, attributes)
    with torch.no_grad():  # pairs with its condition in guidance's doubled batch
        eps = model(torch.cat([z, z]), torch.cat([t, t]), cat_conditions(cond, null))
    assert eps.shape == (4, *z.shape[1:])
    if mode.has_tokens and mode.is_own_null(null_condition, style_image=False, attributes=False):
        assert same(model.conditions(mask, None, None), null)  # skipping guidance changes nothing
    if mode.takes_style_image:  # a reference's style is never the null: always guided
        assert not mode.is_own_null(null_condition, style_image=True, attributes=False)
    if mode.takes_attributes:
        assert not mode.is_own_null(null_condition, style_image=False, attributes=True)
    with pytest.raises(ValueError, match="unknown null condition"):
        model.conditioner.null(mask, "neither")


@pytest.mark.parametrize("mode", MODE_PARAMS)
def test_mode_condition_dropout_gives_its_null(mode):
    model = random_model(config_for(mode))
    mask, image, attributes, _, _ = inputs()
    raw = ConditionInputs(mask, image if mode.takes_style_image else None,
                          attributes if mode.takes_attributes else None)
    yes, no = torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool)
    enc = model.conditioner.encode
    assert same(enc(condition_dropout(raw, yes, yes, yes)), model.conditions(mask, image, attributes))
    assert same(enc(condition_dropout(raw, no, no, no)), model.conditioner.null(mask, "full"))
    # a dropped mask takes the style image with it
    assert same(enc(condition_dropout(raw, yes, no, yes)), model.conditions(mask * 0, None, attributes))
    if mode.null_keeps_mask("style"):
        assert same(enc(condition_dropout(raw, no, yes, no)), model.conditioner.null(mask, "style"))
    # dropout is per sample: sample 0 dropped, sample 1 kept
    mixed = enc(condition_dropout(raw, torch.tensor([False, True]), torch.tensor([False, True]),
                                  torch.tensor([False, True])))
    full = model.conditioner.null(mask, "full")
    kept = model.conditions(mask, image, attributes)
    for field in ("mask", "tokens"):
        a, b, c = getattr(mixed, field), getattr(full, field), getattr(kept, field)
        if a is not None:
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], c[1])


def test_null_conditions_are_the_documented_ones():
    assert NULL_CONDITIONS == ("style", "full", "zero")
    style = MODES["style"]
    assert [style.null_keeps_mask(n) for n in NULL_CONDITIONS] == [True, False, False]
    assert [style.null_zeroes_tokens(n) for n in NULL_CONDITIONS] == [False, False, True]
    # noise-based generation (no style image) is its own null only for "style": the released null is zeros
    assert [style.is_own_null(n, style_image=False, attributes=False) for n in NULL_CONDITIONS] == [True, False, False]
    assert MODES["none"].is_own_null("zero", style_image=False, attributes=False)


def test_registry_names_every_config_type_once():
    assert set(MODES) == {"style", "style+attributes", "attributes", "mask_tokens", "multi", "none"}
    with pytest.raises(ValueError, match="conditioning.type must be one of"):
        load_config({"conditioning": {"type": "styles"}})


# ---------------------------------------------------------------------------
# cross-attention strategies
# ---------------------------------------------------------------------------
#: the UNet config that selects each strategy
STRATEGY_CONFIGS = {
    "masked": {"cross_attention": "masked", "masked_impl": "attention"},
    "masked_gather": {"cross_attention": "masked", "masked_impl": "gather"},
    "plain": {"cross_attention": "plain"},
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_builds_runs_and_round_trips(name, tmp_path):
    model = random_model(config_for(MODES["style"], **STRATEGY_CONFIGS[name]))
    blocks = [m for m in model.unet.modules() if getattr(m, "strategy", None) is not None]
    assert blocks and all(b.strategy is STRATEGIES[name] for b in blocks)
    mask, image, _, z, t = inputs()
    cond = model.conditions(mask, image)
    with torch.no_grad():
        raw = model(z, t, cond)
        prepared = model.prepare(cond)  # time-invariant: computed once, used at every step
        assert torch.allclose(model(z, t, prepared), raw, atol=1e-5)
    save_legacy(model, tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(SemanticLDM.from_pretrained(tmp_path / "m")(z, t, cond), raw)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_masks_or_mixes_classes_as_it_says(name):
    model = random_model(config_for(MODES["style"], **STRATEGY_CONFIGS[name]))
    block = next(m for m in model.unet.modules() if getattr(m, "strategy", None) is not None)
    h = w = 8 // block.ds
    mask, _, _, _, _ = inputs(1)
    m = resize_mask(mask, (h, w))
    tokens = torch.randn(1, 19, TOKEN_DIM)
    edited = tokens.clone()
    edited[:, 4] += 1.0  # l_eye's token
    x = torch.randn(1, h * w, block.attn2.to_q.in_features)
    with torch.no_grad():
        a = block.strategy.forward(block.attn2, x, block.prepare(tokens, m, (h, w), model.unet.token_classes))
        b = block.strategy.forward(block.attn2, x, block.prepare(edited, m, (h, w), model.unet.token_classes))
    changed = (a - b).abs().amax(-1)[0] > 1e-6
    if name == "plain":
        assert changed.float().mean() > 0.9  # every pixel sees every token
    else:
        assert torch.equal(changed, m[0, 4].flatten() > 0)  # only l_eye's pixels see l_eye's token
        with pytest.raises(ValueError, match="got a mask of"):
            block.prepare(tokens, mask, (h, w), model.unet.token_classes)  # full-size mask: refused


def test_no_cross_attention_without_tokens():
    model = random_model(config_for(MODES["none"]))
    assert not [m for m in model.unet.modules() if getattr(m, "strategy", None) is not None]
