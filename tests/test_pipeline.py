"""The editing API on a tiny random-weight model: shapes, determinism, batching, token edits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scadm.pipeline import Face, SCADMPipeline, interpolate_tokens, swap_tokens

FAST = dict(steps=2)


@pytest.fixture(scope="module")
def pipe(tiny_model):
    torch.set_num_threads(1)
    return SCADMPipeline.from_pretrained(tiny_model, device="cpu")


def test_every_operation_returns_images_and_masks(pipe, tiny_faces):
    (i0, m0, c0), (i1, m1, c1) = tiny_faces[:2]
    checks = {
        "reconstruct": pipe.reconstruct(i0, m0, **FAST),
        "swap": pipe.swap(Face(i0, m0), Face(i1, m1), **FAST),
        "partial": pipe.swap((i0, m0), (i1, c1), ["l_eye"], **FAST),
        "interpolate": pipe.interpolate((i0, m0), (i1, m1), ["hair"], alphas=[0, 0.5, 1], **FAST),
        "generate": pipe.generate(m0, n=3, **FAST),
        "mix": pipe.mix(c0, (i1, m1), "hair,l_eye", n=2, **FAST),
        "edit_mask": pipe.edit_mask(i0, m0, m1, **FAST),
    }
    counts = {"reconstruct": 1, "swap": 1, "partial": 1, "interpolate": 3, "generate": 3, "mix": 2, "edit_mask": 1}
    for name, r in checks.items():
        assert len(r.images) == counts[name] and r.tensors.shape == (counts[name], 3, 32, 32), name
        assert r.images[0].size == (32, 32) and len(r.masks) == counts[name]
        assert r.tensors.min() >= -1 and r.tensors.max() <= 1
    assert np.array_equal(checks["edit_mask"].masks[0], np.asarray(__import__("PIL.Image").Image.open(m1)))


def test_same_seed_same_image_and_batch_equals_one_by_one(pipe, tiny_faces):
    imgs = [f[0] for f in tiny_faces[:3]]
    masks = [f[1] for f in tiny_faces[:3]]
    noise = dict(sampler="ddim", eta=1.0, inversion="none", **FAST)  # from noise, stochastic steps too
    batch = pipe.reconstruct(imgs, masks, seed=7, **noise).tensors
    again = pipe.reconstruct(imgs, masks, seed=7, **noise).tensors
    assert torch.equal(batch, again)
    singles = torch.cat([pipe.reconstruct(imgs[i], masks[i], seed=7 + i, **noise).tensors for i in range(3)])
    assert (batch - singles).abs().max() < 1e-4
    other = pipe.reconstruct(imgs, masks, seed=8, **noise).tensors
    assert not torch.allclose(batch, other)
    # the default (exact inversion, blended): a batch of partial swaps equals the swaps one by one
    refs = imgs[1:] + imgs[:1], masks[1:] + masks[:1]
    batch = pipe.swap(list(zip(imgs, masks)), list(zip(*refs)), ["hair"], seed=7, **FAST).tensors
    singles = torch.cat([pipe.swap((imgs[i], masks[i]), (refs[0][i], refs[1][i]), ["hair"], seed=7 + i, **FAST).tensors
                         for i in range(3)])
    assert (batch - singles).abs().max() < 1e-4


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm++", "unipc"])
def test_samplers_and_guidance_options(pipe, tiny_faces, sampler):
    i0, m0, _ = tiny_faces[0]
    a = pipe.reconstruct(i0, m0, sampler=sampler, steps=3, guidance_scale=0.0, inversion="none")
    b = pipe.reconstruct(i0, m0, sampler=sampler, steps=3, guidance_scale=2.0, null_condition="full", inversion="none")
    assert a.info["guidance_scale"] == 0.0 and b.info["null_condition"] == "full"
    assert not torch.allclose(a.tensors, b.tensors)


def test_noise_based_generation_is_guided_only_by_the_full_null(pipe, tiny_faces):
    """The empty style is the 'style' null itself (guiding would be a no-op); 'full' guides towards the mask."""
    m0 = tiny_faces[0][1]
    plain = pipe.generate(m0, n=2, seed=5, **FAST)
    style = pipe.generate(m0, n=2, seed=5, guidance_scale=2.0, null_condition="style", **FAST)
    full = pipe.generate(m0, n=2, seed=5, guidance_scale=2.0, null_condition="full", **FAST)
    assert torch.equal(plain.tensors, style.tensors) and style.info["guidance_scale"] == 0.0
    assert full.info["guidance_scale"] == 2.0 and full.info["null_condition"] == "full"
    assert not torch.allclose(full.tensors, plain.tensors)


def test_config_can_give_noise_based_generation_its_own_null(pipe, tiny_faces, monkeypatch):
    """noise_null_condition 'full' guides noise-based samples towards the mask; the other operations keep 'style'."""
    i0, m0, _ = tiny_faces[0]
    monkeypatch.setattr(pipe.cfg.sampling, "noise_null_condition", "full")
    monkeypatch.setattr(pipe.cfg.sampling, "guidance_scale", 2.0)
    gen = pipe.generate(m0, n=2, seed=5, **FAST)
    explicit = pipe.generate(m0, n=2, seed=5, null_condition="full", **FAST)
    assert gen.info["null_condition"] == "full" and gen.info["guidance_scale"] == 2.0
    assert torch.equal(gen.tensors, explicit.tensors)
    assert pipe.reconstruct(i0, m0, **FAST).info["null_condition"] == "style"
    assert pipe.generate(m0, n=2, seed=5, null_condition="style", **FAST).info["guidance_scale"] == 0.0


def test_partial_swap_changes_exactly_the_chosen_rows(pipe, tiny_faces):
    (i0, m0, _), (i1, m1, _) = tiny_faces[:2]
    t = pipe.style_tokens(pipe.inputs.load_image(i0), pipe.inputs.load_mask(m0))
    r = pipe.style_tokens(pipe.inputs.load_image(i1), pipe.inputs.load_mask(m1))
    eye = pipe.label_set.index("l_eye")
    out = swap_tokens(t, r, [eye], pipe.token_classes)
    changed = (out != t).any(-1)[0]
    assert changed.nonzero().flatten().tolist() == [eye]
    assert torch.equal(out[:, eye], r[:, eye])
    assert torch.equal(swap_tokens(t, r, None, pipe.token_classes), r)


def test_interpolation_endpoints_are_the_target_and_reference_tokens(pipe, tiny_faces):
    (i0, m0, _), (i1, m1, _) = tiny_faces[:2]
    t = pipe.style_tokens(pipe.inputs.load_image(i0), pipe.inputs.load_mask(m0))
    r = pipe.style_tokens(pipe.inputs.load_image(i1), pipe.inputs.load_mask(m1))
    hair = [pipe.label_set.index("hair")]
    assert torch.equal(interpolate_tokens(t, r, 0.0, hair, pipe.token_classes), t)
    one = interpolate_tokens(t, r, 1.0, hair, pipe.token_classes)
    assert torch.equal(one[:, hair[0]], r[:, hair[0]])
    assert torch.equal(one, swap_tokens(t, r, hair, pipe.token_classes))
    half = interpolate_tokens(t, r, 0.5, None, pipe.token_classes)
    assert torch.allclose(half, (t + r) / 2)


def test_interpolation_images_at_the_ends_match_target_and_swap(pipe, tiny_faces):
    (i0, m0, _), (i1, m1, _) = tiny_faces[:2]
    for inversion in ("none", "exact"):
        opts = dict(seed=3, inversion=inversion, **FAST)
        seq = pipe.interpolate((i0, m0), (i1, m1), ["hair"], alphas=[0, 1], **opts).tensors
        assert (seq[1] - pipe.swap((i0, m0), (i1, m1), ["hair"], **opts).tensors[0]).abs().max() < 1e-4
        zero = pipe.swap((i0, m0), (i0, m0), ["hair"], **opts) if inversion == "exact" else pipe.reconstruct(i0, m0, **opts)
        assert (seq[0] - zero.tensors[0]).abs().max() < 1e-4  # alpha 0: the target's own style (its hair regenerated)


def test_bad_inputs_are_clear_errors(pipe, tiny_faces, tmp_path):
    i0, m0, _ = tiny_faces[0]
    with pytest.raises(ValueError, match="unknown part 'left_eye'.*l_eye"):
        pipe.swap((i0, m0), (i0, m0), ["left_eye"])
    with pytest.raises(ValueError, match="needs its mask"):
        pipe.swap((i0, m0), (i0, None))
    from PIL import Image

    wide = tmp_path / "wide.png"
    Image.new("RGB", (64, 32)).save(wide)
    with pytest.raises(ValueError, match="aspect ratio"):
        pipe.inputs.load_image(wide)
    big = tmp_path / "big_mask.png"
    Image.fromarray(np.asarray(Image.open(m0)).repeat(2, 0).repeat(2, 1)).save(big)
    with pytest.warns(UserWarning, match="resized from 64x64 to 32x32"):
        ids = pipe.inputs.load_mask(big)
    assert ids.shape == (1, 32, 32)
    bad = tmp_path / "bad_ids.png"
    Image.fromarray(np.full((32, 32), 40, np.uint8)).save(bad)
    with pytest.raises(ValueError, match="40"):
        pipe.inputs.load_mask(bad)


def test_batched_partial_swaps_with_a_part_list_per_image(pipe, tiny_faces):
    (i0, m0, _), (i1, m1, _), (i2, m2, _) = tiny_faces[:3]
    both = pipe.swap([(i0, m0), (i1, m1)], [(i1, m1), (i2, m2)], [["l_eye"], ["hair", "skin"]], seed=4, **FAST).tensors
    one = pipe.swap((i0, m0), (i1, m1), ["l_eye"], seed=4, **FAST).tensors
    two = pipe.swap((i1, m1), (i2, m2), ["hair", "skin"], seed=5, **FAST).tensors
    assert (both - torch.cat([one, two])).abs().max() < 1e-4
    t = torch.randn(2, 19, 4)
    r = torch.randn(2, 19, 4)
    out = swap_tokens(t, r, [[4], [5, 13]], pipe.token_classes)
    assert torch.equal(out[0, 4], r[0, 4]) and torch.equal(out[0, 5], t[0, 5])
    assert torch.equal(out[1, 5], r[1, 5]) and torch.equal(out[1, 13], r[1, 13]) and torch.equal(out[1, 4], t[1, 4])


def test_clip_x0_option_changes_sampling_only_when_set(pipe, tiny_faces):
    i0, m0, _ = tiny_faces[0]
    plain = pipe.reconstruct(i0, m0, seed=1, inversion="none", **FAST).tensors
    assert torch.equal(plain, pipe.reconstruct(i0, m0, seed=1, clip_x0=None, inversion="none", **FAST).tensors)
    clipped = pipe.reconstruct(i0, m0, seed=1, clip_x0=0.01, inversion="none", **FAST).tensors
    assert not torch.allclose(plain, clipped)


def test_sampling_options_resolve_each_default_once():
    from scadm.config import SamplingConfig, SamplingOptions

    model = SamplingConfig(sampler="ddim", steps=50, eta=0.0, guidance_scale=1.2, null_condition="style",
                           noise_null_condition="full", clip_x0=None)
    run = SamplingOptions().resolve(model)
    assert (run.sampler, run.steps, run.guidance_scale, run.null_condition) == ("ddim", 50, 1.2, "style")
    assert SamplingOptions().resolve(model, noise_based=True).null_condition == "full"
    run = SamplingOptions(steps=3, guidance_scale=0.0, null_condition="style").resolve(model, noise_based=True)
    assert (run.steps, run.guidance_scale, run.null_condition) == (3, 0.0, "style")
    for bad, match in ((dict(steps=0), "steps"), (dict(guidance_scale=float("nan")), "guidance_scale"),
                       (dict(eta=float("inf")), "eta"), (dict(null_condition="nonsense"), "null_condition")):
        with pytest.raises(ValueError, match=match):
            SamplingOptions(**bad).resolve(model)


def test_guidance_is_decided_once_from_the_options_and_the_mode(pipe, tiny_faces):
    (i0, m0, _), = tiny_faces[:1]
    assert pipe.reconstruct(i0, m0, guidance_scale=0.7, **FAST).info["guidance_scale"] == 0.7
    # noise-based with the "style" null: the condition is its own null, nothing to guide
    assert pipe.generate(m0, null_condition="style", guidance_scale=0.7, **FAST).info["guidance_scale"] == 0.0
    assert pipe.generate(m0, null_condition="full", guidance_scale=0.7, **FAST).info["guidance_scale"] == 0.7
    with pytest.raises(ValueError, match="unknown sampling option"):
        pipe.reconstruct(i0, m0, guidance=2.0)


def test_cli_sampling_flags_reach_the_sampler_as_one_options_object(run_cli, tiny_model, tiny_faces, tmp_path,
                                                                    monkeypatch):
    from scadm.config import SamplingOptions
    from scadm.pipeline import SCADMPipeline

    seen = []
    original = SCADMPipeline.generate_from_conditions

    def spy(self, ids, cond, options=None, **kw):
        seen.append(options)
        return original(self, ids, cond, options, **kw)

    monkeypatch.setattr(SCADMPipeline, "generate_from_conditions", spy)
    (i0, m0, _), = tiny_faces[:1]
    r = run_cli("edit", "reconstruct", "--image", i0, "--mask", m0, "--out", tmp_path / "r.png", "--model", tiny_model,
                "--steps", 2, "--guidance-scale", 0.7, "--null-condition", "full", "--sampler", "ddim", "--seed", 5)
    assert r.code == 0, r.err
    assert seen == [SamplingOptions(sampler="ddim", steps=2, guidance_scale=0.7, null_condition="full", seed=5,
                                    progress=True)]
    r = run_cli("edit", "generate", "--mask", m0, "--out", tmp_path / "g.png", "--model", tiny_model, "--steps", 0)
    assert r.code == 1 and "--steps 0: must be a whole number in [1, 10000]" in r.err


def test_bf16_autocast_sampling_stays_close_to_fp32():
    """precision="bf16" runs the denoiser under autocast (here on the CPU; on a GPU in tests/test_cuda.py)."""
    from scadm.data.synthetic import render_face, synthetic_split_ids

    pipe = SCADMPipeline.from_pretrained(None, device="cpu")  # the bundled model: trained weights
    faces = [render_face(i, seed=0, size=pipe.image_size) for i in synthetic_split_ids("test", 2)]
    args = ([f.image for f in faces], [f.label for f in faces])
    ref = pipe.reconstruct(*args, steps=4, sampler="dpm++", inversion="none").tensors
    low = pipe.reconstruct(*args, steps=4, sampler="dpm++", precision="bf16", inversion="none").tensors
    rel = ((low - ref).norm() / ref.norm()).item()
    assert 0 < rel < 0.03, rel  # measured 0.007 at 10 steps
    with pytest.raises(ValueError, match="precision"):
        pipe.reconstruct(*args, steps=1, precision="int8")


def test_bundled_clip_x0_does_not_cut_its_own_latents():
    """A clip_x0 inside the first stage's latent range cuts real values at every DDIM step
    (at 4.0 on this first stage, whose latents reach +-7, reconstruction fell from 0.94 to 0.80)."""
    from scadm.data.synthetic import render_face, synthetic_split_ids

    pipe = SCADMPipeline.from_pretrained(None, device="cpu")
    faces = [render_face(i, seed=0, size=pipe.image_size) for i in synthetic_split_ids("test", 16)]
    x = torch.stack([torch.from_numpy(np.asarray(f.image)).permute(2, 0, 1).float() / 127.5 - 1 for f in faces])
    with torch.no_grad():
        z = pipe.first_stage.encode(x)
    clip = pipe.cfg.sampling.clip_x0
    assert clip is None or clip > z.abs().max().item(), (clip, z.abs().max().item())


def test_autocast_covers_the_denoiser_alone(monkeypatch, tiny_model, tiny_faces):
    """Under precision="bf16" the UNet runs in autocast; guidance, the null condition and the
    solver see float32 outside it."""
    import scadm.pipeline.pipeline as pipeline_module

    pipe = SCADMPipeline.from_pretrained(tiny_model, device="cpu")
    inside, outside = [], []
    forward = type(pipe.model.unet).forward

    def unet_spy(self, x, t, cond):
        inside.append(torch.is_autocast_enabled("cpu"))
        return forward(self, x, t, cond)

    def sample_spy(model_fn, shape, cond, *args, **kw):
        outside.append(torch.is_autocast_enabled("cpu"))
        eps = model_fn(torch.randn(shape), torch.full((shape[0],), 500), cond)
        outside.append(eps.dtype)
        return real_sample(model_fn, shape, cond, *args, **kw)

    real_sample = pipeline_module.sample
    monkeypatch.setattr(type(pipe.model.unet), "forward", unet_spy)
    monkeypatch.setattr(pipeline_module, "sample", sample_spy)
    (image, mask, _), = tiny_faces[:1]
    pipe.reconstruct([image], [mask], steps=2, sampler="dpm++", guidance_scale=1.2, precision="bf16", blend=False)
    assert inside and all(inside)
    assert outside == [False, torch.float32]
