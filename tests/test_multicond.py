"""Multi-conditioning (attributes, mask tokens, both, none), SCA-DM + attributes, mask part swapping,
non-square images."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scadm.config import AttributeEncoderConfig, load_config, load_recipe
from scadm.models.ldm import SemanticLDM
from scadm.pipeline import mix_mask_parts


def onehot(ids: torch.Tensor, c: int = 19) -> torch.Tensor:
    return F.one_hot(ids, c).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("preset,count", [("multicond-256-attr", 1), ("multicond-256-m", 1),
                                          ("multicond-256-mnp", 64), ("multicond-256", 65)])
def test_token_counts_at_256(preset, count):
    torch.manual_seed(0)
    cfg = load_config(preset)
    conditioner = SemanticLDM.__new__(SemanticLDM)  # only the condition encoder is needed here
    from scadm.models.conditioning import ConditionEncoder

    enc = ConditionEncoder.from_cfg(cfg.conditioning, 19).eval()
    mask = onehot(torch.randint(0, 19, (1, 256, 256)))
    attrs = torch.randint(0, 2, (1, 40)).float() * 2 - 1
    with torch.no_grad():
        cond = enc(mask, None, attrs)
    assert cond.tokens.shape == (1, count, 512)
    del conditioner


def test_multi_condition_is_attribute_token_then_mask_tokens():
    torch.manual_seed(0)
    from scadm.models.conditioning import ConditionEncoder

    enc = ConditionEncoder.from_cfg(load_config("multicond-256").conditioning, 19).eval()
    mask = onehot(torch.randint(0, 19, (1, 64, 64)))
    a1, a2 = torch.ones(1, 40), -torch.ones(1, 40)
    with torch.no_grad():
        t1, t2 = enc(mask, None, a1).tokens, enc(mask, None, a2).tokens
        m_only = enc.mask_encoder(mask)
    assert t1.shape[1] == 1 + 4  # 64 px -> 2x2 m_np tokens
    assert torch.equal(t1[:, 1:], m_only) and torch.equal(t1[:, 1:], t2[:, 1:])
    assert not torch.allclose(t1[:, :1], t2[:, :1])


def test_mask_encoder_loads_a_torchvision_resnet18_layout():
    from scadm.models.conditioning import MaskTokenEncoder
    from scadm.config import MaskEncoderConfig
    from scadm.nn.resnet import ResNet18, adapt_torchvision_state_dict

    tv = ResNet18(3, num_classes=1000).state_dict()  # torchvision's key names and shapes
    assert "layer4.1.bn2.running_var" in tv and tv["conv1.weight"].shape == (64, 3, 7, 7)
    enc = MaskTokenEncoder(MaskEncoderConfig("m_np"), 19)
    adapted = adapt_torchvision_state_dict(tv, enc.resnet)
    enc.resnet.load_state_dict(adapted)
    assert enc.resnet.conv1.weight.shape == (64, 18, 7, 7)


def tiny_variant(ctype: str, **unet):
    cfg = load_config("tiny")
    cond = dataclasses.replace(cfg.conditioning, type=ctype)
    if ctype == "style+attributes":
        cond = dataclasses.replace(cond, attributes=AttributeEncoderConfig(dim=32, hidden=32))
        unet = {"global_tokens": 1, **unet}
    if ctype == "none":
        cond = dataclasses.replace(cond, style_encoder=None)
        unet = {"cross_attention": "none", "spade_parts": (), **unet}
    return load_config(dataclasses.replace(cfg, conditioning=cond, unet=dataclasses.replace(cfg.unet, **unet)))


def _pipeline(cfg, tmp_path):
    from scadm.models.autoencoder import FirstStage, build_autoencoder
    from scadm.pipeline import SCADMPipeline
    from scadm.pipeline import export_model

    torch.manual_seed(0)
    model = SemanticLDM(cfg)
    for p in model.unet.parameters():
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.02)
    export_model(model.eval(), FirstStage(build_autoencoder(load_recipe("tiny").autoencoder).eval()), tmp_path / "m")
    return SCADMPipeline.from_pretrained(tmp_path / "m", device="cpu")


def test_attribute_edits_change_only_the_attribute_token(tmp_path):
    torch.set_num_threads(1)
    pipe = _pipeline(tiny_variant("style+attributes"), tmp_path)
    from scadm.data.synthetic import render_face

    f = render_face(1_000_000, size=32)
    ids = pipe.inputs.load_mask(f.label)
    tokens = pipe.style_tokens(pipe.inputs.load_image(f.image), ids)
    assert tokens.shape[1] == 20 and pipe.token_classes[-1] == -1
    a = pipe.with_attributes(tokens, pipe.attribute_vector({"Eyeglasses": 1, "Smiling": 0}, 1))
    b = pipe.with_attributes(tokens, pipe.attribute_vector({"Eyeglasses": 0, "Smiling": 1}, 1))
    changed = (a != b).any(-1)[0]
    assert changed.nonzero().flatten().tolist() == [19]
    assert torch.equal(a[:, :19], tokens[:, :19])
    out = pipe.reconstruct(f.image, f.label, attributes={"Eyeglasses": 1}, steps=2)
    assert out.tensors.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="unknown attribute 'Glasses'"):
        pipe.attribute_vector({"Glasses": 1}, 1)


def test_unconditional_model_ignores_conditions(tmp_path):
    torch.set_num_threads(1)
    pipe = _pipeline(tiny_variant("none"), tmp_path)
    a = pipe.generate(None, n=2, steps=2, seed=3).tensors
    m = np.random.default_rng(0).integers(0, 19, (32, 32)).astype(np.uint8)
    b = pipe.generate(m, n=2, steps=2, seed=3).tensors
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="style tokens"):
        pipe.swap((np.zeros((32, 32, 3), np.uint8), m), (np.zeros((32, 32, 3), np.uint8), m))


def test_mask_part_swapping_builds_the_expected_mask():
    a = np.zeros((6, 6), np.uint8)
    a[1:5, 1:5] = 1  # skin
    a[0:2, :] = 13  # hair on top
    donor = np.zeros((6, 6), np.uint8)
    donor[4:6, :] = 13  # the donor's hair at the bottom
    donor[2, 2] = 4  # and an l_eye
    mixed = mix_mask_parts(a, donor, [13, 4])
    expected = a.copy()
    expected[0:2, :] = [0, 1, 1, 1, 1, 0]  # a's hair removed: each pixel takes the nearest remaining class
    expected[4:6, :] = 13
    expected[2, 2] = 4
    assert np.array_equal(mixed, expected), mixed
    assert not np.isin(13, mixed[0:2])


def test_swap_mask_parts_generates_from_the_mixed_mask(tmp_path):
    torch.set_num_threads(1)
    pipe = _pipeline(load_config("tiny"), tmp_path)
    from scadm.data.synthetic import render_face

    f0, f1 = render_face(1_000_000, size=32), render_face(1_000_001, size=32)
    r = pipe.swap_mask_parts(f0.label, f1.label, ["hair"], n=2, steps=2)
    assert r.tensors.shape == (2, 3, 32, 32)
    expected = mix_mask_parts(f0.label, f1.label, [13])
    assert np.array_equal(r.info["mixed_mask"], expected) and np.array_equal(r.masks[0], expected)


def test_non_square_end_to_end(tmp_path):
    """Train two steps on 32x48 synthetic faces, then edit with the trained model."""
    torch.set_num_threads(1)
    from scadm.data import write_synthetic_dataset
    from scadm.models.autoencoder import FirstStage, build_autoencoder
    from scadm.pipeline import SCADMPipeline
    from scadm.train.diffusion import train_diffusion

    data = write_synthetic_dataset(tmp_path / "ds", n=12, size=(32, 48), seed=0, test_fraction=0.25, progress=False)
    recipe = load_recipe("tiny")
    recipe = dataclasses.replace(
        recipe, model=dataclasses.replace(recipe.model, image_size=(32, 48)),
        training=dataclasses.replace(recipe.training, max_steps=2, batch_size=4, sample_every=0, checkpoint_every=2))
    ae = tmp_path / "ae"
    FirstStage(build_autoencoder(recipe.autoencoder).eval()).save_pretrained(ae)
    train_diffusion(recipe, data, tmp_path / "run", autoencoder=ae, progress=False, printer=lambda *a: None)
    pipe = SCADMPipeline.from_pretrained(tmp_path / "run" / "model", device="cpu")
    assert pipe.cfg.latent_size == (8, 12)
    from scadm.data.synthetic import render_face

    f0, f1 = render_face(1_000_000, size=(32, 48)), render_face(1_000_001, size=(32, 48))
    out = pipe.swap((f0.image, f0.label), (f1.image, f1.label), ["l_eye"], steps=2)
    assert out.tensors.shape == (1, 3, 32, 48) and out.images[0].size == (48, 32)


def test_cli_swap_mask_parts_and_set(run_cli, tiny_model, tiny_faces, tmp_path):
    (i0, m0, c0), (i1, m1, _) = tiny_faces[:2]
    r = run_cli("edit", "swap-mask-parts", "--mask", m0, "--donor", m1, "--parts", "hair,l_eye", "--model", tiny_model,
                "--steps", "2", "--out", tmp_path / "mixed.png")
    assert r.code == 0, r.err
    from PIL import Image

    from scadm.pipeline import mix_mask_parts

    got = np.asarray(Image.open(tmp_path / "mixed_mixed_mask.png"))
    want = mix_mask_parts(np.asarray(Image.open(m0)), np.asarray(Image.open(m1)), [13, 4])
    assert np.array_equal(got, want)
    # the tiny SCA-DM model takes no attributes: a clear error
    r = run_cli("edit", "reconstruct", "--image", i0, "--mask", m0, "--model", tiny_model, "--steps", "2",
                "--set", "Eyeglasses=1", "--out", tmp_path / "r.png")
    assert r.code != 0 and "takes no attributes" in r.err
    r = run_cli("edit", "reconstruct", "--image", i0, "--mask", m0, "--model", tiny_model, "--steps", "2",
                "--set", "Eyeglasses=yes", "--out", tmp_path / "r.png")
    assert r.code != 0 and "NAME=0 or NAME=1" in r.err


def test_eval_conditioning_table(run_cli, tmp_path):
    """Table 4's protocol on a tiny `mc` model (random weights): every column is produced."""
    torch.set_num_threads(1)
    from scadm.data import write_synthetic_dataset
    from scadm.eval.classifier import AttributeClassifier
    from scadm.models.face_parser import CompactParser, save_compact_parser

    cfg = load_config("tiny")
    from scadm.config import MaskEncoderConfig

    cond = dataclasses.replace(cfg.conditioning, type="multi", style_encoder=None,
                               attributes=AttributeEncoderConfig(hidden=32, dim=32), mask_encoder=MaskEncoderConfig("m_np", 32))
    cfg = load_config(dataclasses.replace(cfg, conditioning=cond, unet=dataclasses.replace(
        cfg.unet, cross_attention="plain", spade_parts=())))
    pipe = _pipeline(cfg, tmp_path)
    data = write_synthetic_dataset(tmp_path / "ds", n=12, size=32, seed=0, test_fraction=0.25, progress=False)
    parser = save_compact_parser(CompactParser(19, width=8), tmp_path / "parser", {})
    clf_dir = tmp_path / "clf"
    clf_dir.mkdir()
    from scadm.eval.classifier import save_classifier

    save_classifier(AttributeClassifier(40), clf_dir, {})
    r = run_cli("eval", "conditioning", "--data", data, "--model", tmp_path / "m", "--parser", parser,
                "--classifier", clf_dir, "--steps", "2", "--diversity-conditions", "2", "--samples", "3",
                "--out", tmp_path / "work", "--json", tmp_path / "t4.json")
    assert r.code == 0, r.err
    import json

    rows = json.loads((tmp_path / "t4.json").read_text())["rows"]
    assert [row["eta"] for row in rows] == [0.0, 1.0]
    for key in ("attribute_accuracy", "mask_accuracy", "miou", "parser_fd"):
        assert 0 <= rows[0][key] or key == "parser_fd"
    assert rows[1]["pixel_l1_diversity"] > 0
    del pipe


def test_training_previews_token_models(tmp_path):
    """The preview grid of an `mc` model (attribute + mask tokens, no style) is drawn from each face's conditions."""
    torch.set_num_threads(1)
    from scadm.config import MaskEncoderConfig
    from scadm.data import write_synthetic_dataset
    from scadm.models.autoencoder import FirstStage, build_autoencoder
    from scadm.train.diffusion import train_diffusion

    recipe = load_recipe("tiny")
    cond = dataclasses.replace(recipe.model.conditioning, type="multi", style_encoder=None,
                               attributes=AttributeEncoderConfig(hidden=32, dim=32),
                               mask_encoder=MaskEncoderConfig("m_np", 32))
    model = load_config(dataclasses.replace(recipe.model, conditioning=cond, unet=dataclasses.replace(
        recipe.model.unet, cross_attention="plain", spade_parts=())))
    recipe = dataclasses.replace(recipe, model=model, training=dataclasses.replace(
        recipe.training, max_steps=2, batch_size=4, sample_every=2, checkpoint_every=2, preview_steps=2))
    data = write_synthetic_dataset(tmp_path / "ds", n=12, size=32, seed=0, test_fraction=0.25, progress=False)
    ae = tmp_path / "ae"
    FirstStage(build_autoencoder(recipe.autoencoder).eval()).save_pretrained(ae)
    train_diffusion(recipe, data, tmp_path / "run", autoencoder=ae, progress=False, printer=lambda *a: None)
    previews = sorted((tmp_path / "run" / "samples").glob("*.png"))
    assert previews, "no preview grid was written"
