"""The SCA-DM networks: shapes, masked cross-attention, gather == attention, parameter counts, I/O."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from scadm.conditions import Conditions
from scadm.config import load_config, to_dict
from scadm.models.ldm import SemanticLDM, count_parameters
from scadm.models.style_encoder import MultiResolutionStyleEncoder
from scadm.models.unet import SemanticUNet
from scadm.nn.attention import STRATEGIES, BasicTransformerBlock
from scadm.nn.masks import resize_mask
from scadm.nn.resblocks import SPADE

from legacy import save_legacy


def random_mask(b: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Blocky random one-hot masks (regions of several pixels, like real parts)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, c, (b, 1, max(h // 4, 1), max(w // 4, 1)), generator=g).float()
    ids = F.interpolate(coarse, size=(h, w), mode="nearest")[:, 0].long()
    return F.one_hot(ids, c).permute(0, 3, 1, 2).float()


def tiny_cfg(**unet_overrides):
    cfg = load_config("tiny")
    if unet_overrides:
        cfg = dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, **unet_overrides))
    return cfg


def per_scale_cfg(image_size=(32, 32)):
    cfg = load_config("tiny")
    style = dataclasses.replace(cfg.conditioning.style_encoder, layout="per_scale")
    return load_config(
        dataclasses.replace(
            cfg, image_size=image_size,
            conditioning=dataclasses.replace(cfg.conditioning, style_encoder=style),
            unet=dataclasses.replace(cfg.unet, tokens_per_class=style.num_levels, context_dim=style.style_dim),
        )
    )


# ---------------------------------------------------------------------------
# shapes
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("image_size", [(32, 32), (64, 96), (96, 64)])
@pytest.mark.parametrize("layout", ["concat", "per_scale"])
def test_shapes_including_non_square(image_size, layout):
    torch.manual_seed(0)
    cfg = load_config(dataclasses.replace(load_config("tiny"), image_size=image_size)) if layout == "concat" \
        else per_scale_cfg(image_size)
    model = SemanticLDM(cfg)
    h, w = cfg.latent_size
    mask = random_mask(2, 19, *image_size)
    image = torch.rand(2, 3, *image_size) * 2 - 1
    cond = model.conditions(mask, image)
    enc = model.conditioner.style_encoder
    assert cond.tokens.shape == (2, enc.num_tokens, enc.token_dim)
    eps = model(torch.randn(2, 3, h, w), torch.tensor([3, 900]), cond)
    assert eps.shape == (2, 3, h, w)
    assert (h, w) in {(8, 8), (16, 24), (24, 16)}


def test_style_tokens_layouts_hold_the_same_values():
    torch.manual_seed(0)
    cfg = load_config("tiny").conditioning.style_encoder
    enc_c = MultiResolutionStyleEncoder(cfg)
    enc_p = MultiResolutionStyleEncoder(dataclasses.replace(cfg, layout="per_scale"))
    enc_p.load_state_dict(enc_c.state_dict())
    mask, image = random_mask(2, 19, 32, 32), torch.randn(2, 3, 32, 32)
    s = enc_c.styles(image, mask)  # (B, C, L, D)
    assert s.shape == (2, 19, cfg.num_levels, cfg.style_dim)
    assert torch.equal(enc_c(image, mask), s.reshape(2, 19, -1))  # concat: coarse to fine per class
    assert torch.equal(enc_p(image, mask), s.reshape(2, 19 * cfg.num_levels, -1))  # per_scale: class-major


def test_pixel_level_is_the_finest_level_and_reads_each_region_mean_colour():
    torch.manual_seed(0)
    cfg = dataclasses.replace(load_config("tiny").conditioning.style_encoder, pixel_level=True)
    enc = MultiResolutionStyleEncoder(cfg)
    assert enc.token_dim == (cfg.num_levels + 1) * cfg.style_dim
    mask, image = random_mask(1, 19, 32, 32), torch.rand(1, 3, 32, 32) * 2 - 1
    s = enc.styles(image, mask)
    assert s.shape == (1, 19, cfg.num_levels + 1, cfg.style_dim)
    # the same mean colour in every region, pixels shuffled within each region: the pixel level is unchanged
    ids = mask.argmax(1)[0].flatten()
    shuffled = image.clone().flatten(2)
    for c in ids.unique():
        where = (ids == c).nonzero()[:, 0]
        shuffled[..., where] = shuffled[..., where[torch.randperm(len(where))]]
    s2 = enc.styles(shuffled.view_as(image), mask)
    assert torch.allclose(s2[:, :, -1], s[:, :, -1], atol=1e-5)
    assert not torch.allclose(s2[:, :, :-1], s[:, :, :-1], atol=1e-3)  # the convolutional levels see texture
    # and a region's colour reaches its own class's vector only
    brighter = image.clone()
    brighter[:, :, ids.view(32, 32) == ids[0]] += 0.5
    s3 = enc.styles(brighter, mask)
    changed = (s3[0, :, -1] - s[0, :, -1]).abs().amax(-1) > 1e-6
    assert changed.nonzero()[:, 0].tolist() == [int(ids[0])]


def test_config_asks_for_the_pixel_levels_token_size():
    cfg = load_config("tiny")
    style = dataclasses.replace(cfg.conditioning.style_encoder, pixel_level=True)
    bad = dataclasses.replace(cfg, conditioning=dataclasses.replace(cfg.conditioning, style_encoder=style))
    want = (style.num_levels + 1) * style.style_dim
    with pytest.raises(ValueError, match=f"unet.context_dim={want}"):
        load_config(bad)
    load_config(dataclasses.replace(bad, unet=dataclasses.replace(cfg.unet, context_dim=want)))


def test_absent_class_token_is_tanh_of_bias_and_empty_style_is_zero_image():
    torch.manual_seed(0)
    cfg = load_config("tiny").conditioning.style_encoder
    enc = MultiResolutionStyleEncoder(cfg)
    ids = torch.zeros(1, 32, 32, dtype=torch.long)
    ids[:, 8:24, 8:24] = 1  # only background and skin present
    mask = F.one_hot(ids, 19).permute(0, 3, 1, 2).float()
    s = enc.styles(torch.randn(1, 3, 32, 32), mask)
    for level, proj in enumerate(enc.style):
        bias = proj.bias.view(19, -1)
        assert torch.allclose(s[0, 5, level], torch.tanh(bias[5]), atol=1e-6)  # r_eye absent
    model = SemanticLDM(load_config("tiny"))
    empty = model.conditioner.null(mask, "style").tokens
    assert torch.equal(empty, model.conditioner.style_encoder(torch.zeros(1, 3, 32, 32), mask))


# ---------------------------------------------------------------------------
# mask-conditioned cross-attention
# ---------------------------------------------------------------------------
def masked_blocks(unet: SemanticUNet) -> list[BasicTransformerBlock]:
    return [m for m in unet.modules() if isinstance(m, BasicTransformerBlock) and m.strategy is not None]


@pytest.mark.parametrize("layout", ["concat", "per_scale"])
def test_changing_class_tokens_changes_output_only_at_that_class(layout):
    torch.manual_seed(0)
    cfg = load_config("tiny") if layout == "concat" else per_scale_cfg()
    model = SemanticLDM(cfg)
    unet = model.unet
    blocks = masked_blocks(unet)
    assert len(blocks) >= 4  # encoder, middle and decoder transformers all masked
    mask = random_mask(1, 19, 32, 32, seed=1)
    tokens = torch.randn(1, len(unet.token_classes), cfg.unet.context_dim)
    for j in (1, 4, 5, 13):  # skin, l_eye, r_eye, hair
        edited = tokens.clone()
        edited[:, unet.token_classes == j] += torch.randn_like(edited[:, unet.token_classes == j])
        for block in blocks:
            h, w = 8 // block.ds, 8 // block.ds
            x = torch.randn(1, h * w, block.attn2.to_q.in_features)
            m = resize_mask(mask, (h, w))  # layers take the mask at their own size
            out = [block.strategy.forward(block.attn2, x, block.prepare(tk, m, (h, w), unet.token_classes))
                   for tk in (tokens, edited)]
            changed = (out[0] - out[1]).abs().amax(-1)[0] > 1e-6  # (P,)
            where_j = F.interpolate(mask, size=(h, w), mode="nearest")[0, j].flatten() > 0
            assert not changed[~where_j].any(), f"class {j} tokens leaked outside its region in {block.cache_key}"
            if where_j.any():
                assert changed[where_j].all(), f"class {j} tokens had no effect in {block.cache_key}"


def test_gather_equals_attention():
    torch.manual_seed(0)
    model = SemanticLDM(load_config("tiny"))
    unet = model.unet
    assert unet.cross_attention == "masked_gather"  # the default for one token per class
    attention, gather = STRATEGIES["masked"], STRATEGIES["masked_gather"]
    for mask in (random_mask(2, 19, 32, 32, seed=3), torch.zeros(2, 19, 32, 32)):  # incl. the all-zero mask
        tokens = torch.randn(2, 19, 32) * 3
        for block in masked_blocks(unet):
            for p in block.attn2.parameters():  # non-trivial weights everywhere
                torch.nn.init.normal_(p, std=0.5)
            h = w = 8 // block.ds
            x = torch.randn(2, h * w, block.attn2.to_q.in_features) * 4
            m = resize_mask(mask, (h, w))
            a = attention.forward(block.attn2, x, attention.prepare(block.attn2, tokens, m, (h, w), unet.token_classes))
            g = gather.forward(block.attn2, x, gather.prepare(block.attn2, tokens, m, (h, w), unet.token_classes))
            assert (a - g).abs().max().item() <= 1e-5


def test_whole_unet_gather_equals_attention():
    torch.manual_seed(0)
    m_gather = SemanticLDM(load_config(tiny_cfg(masked_impl="gather")))
    m_attn = SemanticLDM(load_config(tiny_cfg(masked_impl="attention")))
    for p in m_gather.parameters():
        torch.nn.init.normal_(p, std=0.05)  # zero-init layers would hide the cross-attention
    m_attn.load_state_dict(m_gather.state_dict())
    mask, image = random_mask(2, 19, 32, 32), torch.randn(2, 3, 32, 32)
    z, t = torch.randn(2, 3, 8, 8), torch.tensor([10, 500])
    a = m_attn(z, t, m_attn.conditions(mask, image))
    g = m_gather(z, t, m_gather.conditions(mask, image))
    assert (a - g).abs().max().item() <= 1e-5


# ---------------------------------------------------------------------------
# mask resize: nearest (released) or area (class fractions)
# ---------------------------------------------------------------------------
def thin_part_mask(row: int = 5) -> torch.Tensor:
    """32x32: background, skin in the lower half, and a one-pixel-high upper lip (class 11) on
    `row`. Nearest resizes by 2, 4, 8 sample rows 0, 2, 4, ...: the lip vanishes at all of them."""
    ids = torch.zeros(1, 32, 32, dtype=torch.long)
    ids[:, 16:] = 1
    ids[:, row, 4:28] = 11
    return F.one_hot(ids, 19).permute(0, 3, 1, 2).float()


def area_cfg(mode: str = "area", **unet_overrides):
    cfg = load_config("tiny")
    style = dataclasses.replace(cfg.conditioning.style_encoder, mask_resize=mode)
    return load_config(dataclasses.replace(
        cfg, conditioning=dataclasses.replace(cfg.conditioning, style_encoder=style),
        unet=dataclasses.replace(cfg.unet, mask_resize=mode, **unet_overrides)))


def test_area_resize_gives_class_fractions_and_keeps_thin_parts():
    mask = thin_part_mask()
    assert resize_mask(mask, (8, 8))[0, 11].sum() == 0  # nearest: the lip is gone
    area = resize_mask(mask, (8, 8), "area")
    assert torch.allclose(area.sum(1), torch.ones(1, 8, 8))
    assert area[0, 11].sum().item() == pytest.approx(24 / 16)  # 24 pixels, 16 per cell
    with pytest.raises(ValueError, match="one of nearest, area"):
        resize_mask(mask, (8, 8), "bilinear")
    with pytest.raises(ValueError, match="unet.mask_resize"):
        load_config({"unet": {"mask_resize": "bilinear"}})
    with pytest.raises(ValueError, match="style_encoder.mask_resize"):
        load_config({"conditioning": {"style_encoder": {"mask_resize": "bilinear"}}})


def test_layers_take_the_mask_at_their_size_and_refuse_any_other():
    """The mask is resized once (MaskPyramid); SPADE and the masked attention never resize it themselves."""
    torch.manual_seed(0)
    unet = SemanticUNet.from_cfg(area_cfg(masked_impl="attention").unet)
    mask = thin_part_mask()
    block = masked_blocks(unet)[0]
    h = w = 8 // block.ds
    tokens = torch.randn(1, 19, 32)
    with pytest.raises(ValueError, match="cross-attention got a mask of \\(32, 32\\) for features of \\(8, 8\\)"):
        block.prepare(tokens, mask, (h, w), unet.token_classes)
    spade = SPADE(32, 19, hidden=16)
    with pytest.raises(ValueError, match="SPADE got a mask"):
        spade.prepare(mask, (8, 8))
    # through the UNet the mask arrives resized with its own mask_resize mode (area here), not nearest
    prepared = unet.prepare(Conditions(mask=mask, tokens=tokens), (8, 8))[block.cache_key]
    area = block.prepare(tokens, resize_mask(mask, (h, w), "area"), (h, w), unet.token_classes)
    nearest = block.prepare(tokens, resize_mask(mask, (h, w), "nearest"), (h, w), unet.token_classes)
    assert torch.equal(prepared["log_m"], area["log_m"]) and not torch.equal(prepared["log_m"], nearest["log_m"])


@pytest.mark.parametrize("mode", ["nearest", "area"])
def test_a_part_thinner_than_every_stride_has_a_style_only_with_area_resize(mode):
    torch.manual_seed(0)
    model = SemanticLDM(area_cfg(mode))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)  # zero-init layers would hide the cross-attention
    mask, image = thin_part_mask(), torch.rand(1, 3, 32, 32) * 2 - 1
    recoloured = image.clone()
    recoloured[:, :, 5, 4:28] = -image[:, :, 5, 4:28]  # only the lip's pixels change
    tokens = [model.conditions(mask, im).tokens for im in (image, recoloured)]
    # exactly unchanged when the lip is missing from every level's mask (its token is then tanh(bias));
    # the change can be small otherwise (2e-7 with the released block skip join and these weights)
    token_moved = (tokens[0][0, 11] - tokens[1][0, 11]).abs().max().item() > 0
    edited = tokens[0].clone()
    edited[:, 11] += 1.0
    z, t = torch.randn(1, 3, 8, 8), torch.tensor([500])
    out = [model(z, t, Conditions(mask=mask, tokens=tk)) for tk in (tokens[0], edited)]
    output_moved = (out[0] - out[1]).abs().max().item() > 1e-6
    assert token_moved == output_moved == (mode == "area")


def test_masked_attention_weighs_each_class_by_its_fraction():
    torch.manual_seed(0)
    unet = SemanticUNet.from_cfg(area_cfg(masked_impl="attention").unet)
    gather = STRATEGIES["masked_gather"]
    mask = thin_part_mask()
    for block in masked_blocks(unet):
        attn = block.attn2
        for p in attn.parameters():
            torch.nn.init.normal_(p, std=0.5)
        h = w = 8 // block.ds
        m = resize_mask(mask, (h, w), "area")
        tokens = torch.randn(1, 19, 32) * 3
        x = torch.randn(1, h * w, attn.to_q.in_features) * 4
        out = block.strategy.forward(attn, x, block.prepare(tokens, m, (h, w), unet.token_classes))
        frac = m.flatten(2).transpose(1, 2)[:, None]  # (B, 1, P, C)
        q, k, v = (attn.split_heads(f(a)) for f, a in ((attn.to_q, x), (attn.to_k, tokens), (attn.to_v, tokens)))
        logits = q @ k.transpose(-1, -2) * attn.scale + frac.clamp_min(1e-12).log()
        weights = logits.masked_fill(frac == 0, float("-inf")).softmax(-1)
        expected = attn.to_out(attn.merge_heads(weights @ v))
        assert (out - expected).abs().max().item() <= 1e-5
        # the gather mixes the classes' values by their fractions alone
        mixed = gather.forward(attn, x, gather.prepare(attn, tokens, m, (h, w), unet.token_classes))
        assert (mixed - attn.to_out(frac[:, 0] @ attn.to_v(tokens))).abs().max().item() <= 1e-5


def test_plain_cross_attention_mixes_classes():
    """The ablation without mask attention: a class's tokens reach pixels of other classes."""
    torch.manual_seed(0)
    unet = SemanticUNet.from_cfg(tiny_cfg(cross_attention="plain").unet)
    block = masked_blocks(unet)[0]
    mask, tokens = random_mask(1, 19, 32, 32), torch.randn(1, 19, 32)
    edited = tokens.clone()
    edited[:, 4] += 1.0
    x = torch.randn(1, 64, block.attn2.to_q.in_features)
    a = block.strategy.forward(block.attn2, x, block.prepare(tokens, mask, (8, 8), unet.token_classes))
    b = block.strategy.forward(block.attn2, x, block.prepare(edited, mask, (8, 8), unet.token_classes))
    assert ((a - b).abs().amax(-1) > 1e-6).float().mean() > 0.9


def test_prepared_conditions_equal_raw_and_are_time_invariant():
    torch.manual_seed(0)
    model = SemanticLDM(load_config("tiny"))
    for p in model.unet.parameters():
        torch.nn.init.normal_(p, std=0.05)
    mask, image = random_mask(2, 19, 32, 32), torch.randn(2, 3, 32, 32)
    cond = model.conditions(mask, image)
    prepared = model.prepare(cond)
    z = torch.randn(2, 3, 8, 8)
    for t in (0, 999):
        tt = torch.full((2,), t)
        assert torch.allclose(model(z, tt, cond), model(z, tt, prepared), atol=1e-6)


def test_spade_runs_once_per_distinct_mask_and_gives_each_row_its_own():
    """A batch that repeats a mask (a virtual edit's source and edit rows) prepares SPADE once for it; every
    row's conditioning equals what preparing that row alone gives."""
    from scadm.models.unet import _distinct_rows

    torch.manual_seed(0)
    model = SemanticLDM(load_config("tiny"))
    for p in model.unet.parameters():
        torch.nn.init.normal_(p, std=0.05)
    a, b = random_mask(1, 19, 32, 32, seed=1), random_mask(1, 19, 32, 32, seed=2)
    mask = torch.cat([a, b, a, a])
    first, inverse = _distinct_rows(mask)
    assert first.tolist() == [0, 1] and inverse.tolist() == [0, 1, 0, 0]
    assert _distinct_rows(torch.cat([a, b])) == (None, None)
    calls = []
    spade = next(m for m in model.unet.modules() if isinstance(m, SPADE))
    original = spade.prepare
    spade.prepare = lambda m, size: calls.append(m.shape[0]) or original(m, size)
    cond = model.conditions(mask, torch.randn(4, 3, 32, 32))
    batch = model.prepare(cond)
    assert calls == [2]  # two distinct masks, not four rows
    for i in range(4):
        alone = model.prepare(Conditions(mask=cond.mask[i:i + 1], tokens=cond.tokens[i:i + 1]))
        for key, value in alone.items():
            got = batch[key]
            pairs = zip(value, got) if isinstance(value, tuple) else [(value, got)]
            for v, g in pairs:
                if isinstance(v, torch.Tensor):
                    assert torch.allclose(g[i:i + 1], v, atol=1e-6), key


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(monkeypatch):
    import scadm.models.unet as unet_mod

    calls = []
    real = unet_mod.checkpoint
    monkeypatch.setattr(unet_mod, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.manual_seed(0)
    model = SemanticLDM(load_config("tiny"))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    mask, image = random_mask(2, 19, 32, 32), torch.randn(2, 3, 32, 32)
    z, t = torch.randn(2, 3, 8, 8), torch.tensor([10, 700])
    grads = []
    for on in (False, True):
        model.zero_grad()
        model.unet.gradient_checkpointing = on
        out = model(z, t, model.conditions(mask, image))
        (out**2).mean().backward()
        grads.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (out_a, ga), (out_b, gb) = grads
    n_blocks = len(model.unet.input_blocks) + 1 + len(model.unet.output_blocks)
    assert len(calls) == n_blocks  # every block recomputed, in the second pass only
    assert torch.equal(out_a, out_b)
    assert ga.keys() == gb.keys() and len(ga) > 50
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-5, atol=1e-7, msg=name)
    # only in training with gradients: sampling never recomputes
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(z, t, model.conditions(mask, image)), out_a)
    assert len(calls) == n_blocks


def test_spade_is_groupnorm_without_affine_then_scale_shift():
    torch.manual_seed(0)
    spade = SPADE(32, 19, hidden=16)
    for p in spade.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x, mask = torch.randn(2, 32, 8, 8), random_mask(2, 19, 32, 32)
    gamma, beta = spade.prepare(resize_mask(mask, (8, 8)), (8, 8))
    expected = F.group_norm(x, 32, eps=1e-5) * (1 + gamma) + beta
    assert torch.allclose(spade(x, (gamma, beta)), expected, atol=1e-5)
    assert not any(p.requires_grad for p in spade.norm.parameters())  # GroupNorm without affine


def test_unconditional_mode_has_no_cross_attention():
    cfg = load_config(dataclasses.replace(
        load_config("tiny"), conditioning=dataclasses.replace(load_config("tiny").conditioning, type="none"),
        unet=dataclasses.replace(load_config("tiny").unet, cross_attention="none"),
    ))
    model = SemanticLDM(cfg)
    assert not masked_blocks(model.unet)
    assert not any(".attn2." in n for n, _ in model.named_parameters())
    eps = model(torch.randn(1, 3, 8, 8), torch.tensor([5]), model.conditions(random_mask(1, 19, 32, 32)))
    assert eps.shape == (1, 3, 8, 8)


# ---------------------------------------------------------------------------
# the paper preset
# ---------------------------------------------------------------------------
def test_paper_256_parameter_counts():
    cfg = load_config("paper-256")
    with torch.device("meta"):
        model = SemanticLDM(cfg)
    unet, enc = count_parameters(model.unet), count_parameters(model.conditioner)
    assert abs(unet - 486.9e6) / 486.9e6 < 0.002, unet
    assert abs(enc - 18.1e6) / 18.1e6 < 0.01, enc
    assert model.unet.cross_attention == "masked_gather"
    assert model.conditioner.style_encoder.num_tokens == 19
    assert model.conditioner.style_encoder.token_dim == 1280
    heads = sorted({b.attn2.heads for b in masked_blocks(model.unet)})
    assert heads == [14, 21, 28]


def test_info_json_prints_counts(run_cli):
    result = run_cli("info", "--config", "paper-256", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert isinstance(report["unet_params"], int) and isinstance(report["style_encoder_params"], int)
    assert abs(report["unet_params"] - 486.9e6) / 486.9e6 < 0.002


def test_info_unknown_config_is_one_line_error(run_cli):
    result = run_cli("info", "--config", "paper-512")
    assert result.code != 0
    assert "unknown config 'paper-512'" in result.err and "Traceback" not in result.err


# ---------------------------------------------------------------------------
# config and I/O
# ---------------------------------------------------------------------------
def test_config_rejects_unknown_keys_and_bad_layouts(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nunet:\n  model_chanels: 64\n")
    with pytest.raises(ValueError, match="model_chanels"):
        load_config(bad)
    with pytest.raises(ValueError, match="tokens_per_class"):
        load_config({"conditioning": {"style_encoder": {"layout": "per_scale"}}})
    with pytest.raises(ValueError, match="presets"):
        load_config("no-such-preset")
    with pytest.raises(ValueError, match="sampling.noise_null_condition"):
        load_config({"sampling": {"noise_null_condition": "mask"}})



def test_every_preset_loads_and_the_ablation_differs_only_in_attention():
    from scadm.config import list_presets, load_recipe

    for name in list_presets():
        assert load_recipe(name).model.name == name
    base, plain = to_dict(load_recipe("synthetic-64")), to_dict(load_recipe("synthetic-64-plain"))
    assert base["model"]["unet"]["cross_attention"] == "masked"
    assert plain["model"]["unet"]["cross_attention"] == "plain"
    plain["model"]["unet"]["cross_attention"] = "masked"
    plain["model"]["name"] = "synthetic-64"
    assert plain == base

def test_save_load_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = SemanticLDM(load_config("tiny"))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    save_legacy(model, tmp_path / "m")  # the layout of scadm < 0.2 still loads
    assert json.loads((tmp_path / "m" / "config.json").read_text()) == to_dict(model.cfg)
    loaded = SemanticLDM.from_pretrained(tmp_path / "m")
    mask, image = random_mask(1, 19, 32, 32), torch.randn(1, 3, 32, 32)
    z, t = torch.randn(1, 3, 8, 8), torch.tensor([77])
    model.eval()
    assert torch.equal(model(z, t, model.conditions(mask, image)), loaded(z, t, loaded.conditions(mask, image)))


def test_loading_an_incompatible_folder_is_a_clear_error(tmp_path):
    model = SemanticLDM(load_config("tiny"))
    save_legacy(model, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["unet"]["model_channels"] = 64
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match its config"):
        SemanticLDM.from_pretrained(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="not a scadm model folder"):
        SemanticLDM.from_pretrained(tmp_path)


def test_upsampling_in_sub_pixel_form_equals_upsample_then_convolve():
    """The UNet's and the first stage's nearest x2 + 3x3 convolution, computed as one 2x2 convolution per
    output phase, give what upsampling then convolving gives (values and gradients); odd sizes take the
    plain path."""
    from diffusers.models.upsampling import Upsample2D

    from scadm.models.autoencoder import FirstStage, _SubPixelUpsample2D, build_autoencoder
    from scadm.nn.resblocks import upsample, upsample_conv

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 6, 3, padding=1)
    x = torch.randn(2, 8, 5, 7, requires_grad=True)
    ours, ref = upsample_conv(x, conv), conv(F.interpolate(x, scale_factor=2, mode="nearest"))
    assert ours.shape == (2, 6, 10, 14) and torch.allclose(ours, ref, atol=1e-6)
    g_ours = torch.autograd.grad(ours.square().sum(), (x, conv.weight))
    g_ref = torch.autograd.grad(ref.square().sum(), (x, conv.weight))
    assert all(torch.allclose(a, b, atol=1e-4, rtol=1e-5) for a, b in zip(g_ours, g_ref))
    assert torch.equal(upsample_conv(x, conv, (11, 14)), conv(upsample(x, (11, 14))))
    from scadm.config import load_recipe

    first = FirstStage(build_autoencoder(load_recipe("tiny").autoencoder).eval())
    layers = [m for m in first.modules() if isinstance(m, Upsample2D)]
    assert layers and all(type(m) is _SubPixelUpsample2D for m in layers)
    z = torch.randn(1, first.latent_channels, 8, 8)
    with torch.no_grad():
        fast = first.decode(z)
        for m in layers:
            m.__class__ = Upsample2D
        plain = first.decode(z)
    assert float((fast - plain).norm() / plain.norm()) < 1e-5
