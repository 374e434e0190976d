"""The pipeline as diffusers sees it: components that save and load as diffusers models, a
DiffusionPipeline written by save_pretrained and read back by from_pretrained (for every
conditioning mode), and model folders of earlier versions that still load."""

from __future__ import annotations

import dataclasses
import inspect
import json
import warnings

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from scadm.config import UNetConfig, load_recipe
from scadm.conditioning_modes import MODES
from scadm.models.autoencoder import FirstStage, build_autoencoder
from scadm.models.conditioning import ConditionEncoder
from scadm.models.face_parser import BiSeNetParser, CompactParser
from scadm.models.unet import SemanticUNet
from scadm.pipeline import DEFAULT_MODEL, LegacyFolderNote, SCADMPipeline, export_model

from legacy import save_legacy
from test_contracts import config_for, random_model


def _face(seed: int = 0):
    from scadm.data.synthetic import render_face

    f = render_face(1_000_000 + seed, size=32)
    return f.image, f.label


def _first_stage():
    torch.manual_seed(1)
    return FirstStage(build_autoencoder(load_recipe("tiny").autoencoder).eval())


def test_unet_arguments_are_the_config_fields():
    """SemanticUNet's init is UNetConfig, field for field and default for default (its config.json)."""
    params = dict(inspect.signature(SemanticUNet.__init__).parameters)
    params.pop("self")
    fields = {f.name: f for f in dataclasses.fields(UNetConfig)}
    assert list(params) == list(fields)
    defaults = UNetConfig()
    assert all(p.default == getattr(defaults, name) for name, p in params.items())


@pytest.mark.parametrize("make", [
    lambda: SemanticUNet.from_cfg(load_recipe("tiny").model.unet),
    lambda: ConditionEncoder.from_cfg(load_recipe("tiny").model.conditioning, 19),
    lambda: CompactParser(19, width=8, info={"domain": "photos", "size": [32, 32]}),
    lambda: BiSeNetParser(input_size=64),
], ids=["unet", "condition_encoder", "compact_parser", "bisenet_parser"])
def test_each_network_is_a_diffusers_model(make, tmp_path):
    torch.manual_seed(0)
    net = make()
    net.save_pretrained(tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert json.loads((tmp_path / "c" / "config.json").read_text())["_class_name"] == type(net).__name__
    loaded = type(net).from_pretrained(tmp_path / "c", torch_dtype=torch.bfloat16, low_cpu_mem_usage=False)
    assert {k: v for k, v in loaded.config.items() if not k.startswith("_")} == {
        k: v for k, v in net.config.items() if not k.startswith("_")}
    for (name, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert b.dtype == (torch.bfloat16 if a.is_floating_point() else a.dtype), name
        assert torch.equal(a.to(b.dtype), b), name


@pytest.mark.parametrize("mode", [pytest.param(m, id=m.name) for m in MODES.values()])
def test_save_pretrained_round_trip_for_every_mode(mode, tmp_path):
    """model_index.json + one folder per component; from_pretrained gives the same networks and images."""
    model = random_model(config_for(mode))
    pipe = SCADMPipeline.from_networks(model, _first_stage(), device="cpu")
    pipe.save_pretrained(tmp_path / "p")
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    assert index["_class_name"] == "SCADMPipeline"
    assert index["unet"] == ["scadm.models.unet", "SemanticUNet"]
    assert index["condition_encoder"] == ["scadm.models.conditioning", "ConditionEncoder"]
    assert index["face_parser"] == [None, None]  # optional, absent
    assert index["sampling"]["sampler"] == model.cfg.sampling.sampler
    loaded = SCADMPipeline.from_pretrained(tmp_path / "p", device="cpu")
    assert loaded.cfg == pipe.cfg and loaded.face_parser is None
    assert all(torch.equal(a, b) for a, b in zip(pipe.unet.state_dict().values(), loaded.unet.state_dict().values()))
    ids = torch.from_numpy(_face()[1]).long()[None]
    attrs = {"Smiling": 1} if mode.takes_attributes else None
    need_mask = mode.has_tokens or bool(model.cfg.unet.spade_parts)
    a = pipe.generate(ids if need_mask else None, n=1, steps=2, seed=3, attributes=attrs).tensors
    b = loaded.generate(ids if need_mask else None, n=1, steps=2, seed=3, attributes=attrs).tensors
    assert torch.equal(a, b)


def test_the_components_are_diffusers_components(tiny_model):
    pipe = SCADMPipeline.from_pretrained(tiny_model, device="cpu")
    assert isinstance(pipe, DiffusionPipeline) and set(pipe.components) == {
        "unet", "condition_encoder", "vae", "scheduler", "face_parser"}
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"  # the tiny preset samples with DDIM


def test_a_folder_of_an_earlier_version_loads_and_upgrades(tmp_path, run_cli):
    """config.json + model.safetensors + autoencoder/ + parser/: loads with one note, gives the same images,
    and `scadm upgrade-model` writes the pipeline layout (nothing overwritten)."""
    model = random_model(load_recipe("tiny").model)
    parser = CompactParser(19, width=8)
    old = save_legacy(model, tmp_path / "old", _first_stage(), (parser, {"domain": "photos", "note": "x"}))
    (old / "loss.csv").write_text("step,loss\n1,0.5\n")
    with pytest.warns(LegacyFolderNote, match="upgrade-model"):
        legacy = SCADMPipeline.from_pretrained(old, device="cpu")
    assert isinstance(legacy.face_parser, CompactParser)
    image, label = _face()
    before = legacy.swap((image, label), _face(1), ["hair"], steps=3, seed=1).tensors

    r = run_cli("upgrade-model", old, tmp_path / "new")
    assert r.code == 0, r.err
    assert "every tensor reloads equal" in r.out and "loss.csv" in r.out
    new = tmp_path / "new"
    assert (new / "model_index.json").is_file() and (new / "loss.csv").is_file()
    assert not (new / "model.safetensors").exists() and (old / "model.safetensors").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error", LegacyFolderNote)  # the new layout loads without the note
        upgraded = SCADMPipeline.from_pretrained(new, device="cpu")
    assert upgraded.face_parser.metrics == {} and json.loads(
        (new / "face_parser" / "config.json").read_text())["info"]["domain"] == "photos"
    after = upgraded.swap((image, label), _face(1), ["hair"], steps=3, seed=1).tensors
    assert torch.equal(before, after)

    again = run_cli("upgrade-model", old, new)  # a non-empty NEW is refused
    assert again.code == 1 and "not an empty folder" in again.err


def test_the_bundled_model_is_a_pipeline_folder():
    with warnings.catch_warnings():
        warnings.simplefilter("error", LegacyFolderNote)
        pipe = SCADMPipeline.from_pretrained(device="cpu")
    assert (DEFAULT_MODEL / "model_index.json").is_file()
    assert isinstance(pipe.face_parser, CompactParser) and pipe.photo_parser is None  # synthetic faces only
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"


def test_export_model_replaces_an_older_layout(tmp_path):
    model = random_model(load_recipe("tiny").model)
    folder = save_legacy(model, tmp_path / "m", _first_stage())
    export_model(model, _first_stage(), folder)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["condition_encoder", "model_index.json", "scheduler", "unet", "vae"]
    assert np.isclose(SCADMPipeline.from_pretrained(folder, device="cpu").cfg.latent_scale, model.cfg.latent_scale)


# ---------------------------------------------------------------------------
# diffusers' call conventions, on the tiny random model
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipe(tiny_model):
    return SCADMPipeline.from_pretrained(tiny_model, device="cpu")


def _swap(pipe, **kw):
    return pipe.swap(_face(0), _face(1), ["hair"], num_inference_steps=3, **kw)


def test_dict_and_tuple_outputs_are_the_same(pipe):
    out = _swap(pipe, seed=2)
    tup = _swap(pipe, seed=2, return_dict=False)
    assert isinstance(tup, tuple) and len(tup) == 1
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(out.images, tup[0]))
    assert out["images"] is out.images and out[0] is out.images  # a diffusers BaseOutput


def test_every_output_type(pipe):
    pil = _swap(pipe, seed=1)
    arr = _swap(pipe, seed=1, output_type="np").images
    pt = _swap(pipe, seed=1, output_type="pt").images
    lat = _swap(pipe, seed=1, output_type="latent")
    assert arr.shape == (1, 32, 32, 3) and arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
    assert torch.equal(pt.permute(0, 2, 3, 1), torch.from_numpy(arr))
    assert np.array_equal(np.asarray(pil.images[0]), (arr[0] * 255).round().astype(np.uint8))
    assert lat.tensors is None and lat.images.shape == (1, 3, 8, 8)
    decoded = pipe.first_stage.decode(lat.images).clamp(-1, 1)
    assert torch.allclose(decoded, pil.tensors, atol=1e-6)
    with pytest.raises(ValueError, match="output_type 'jpeg'"):
        _swap(pipe, output_type="jpeg")


def test_a_batch_equals_single_calls(pipe):
    batch = pipe.swap([_face(0), _face(2)], [_face(1), _face(3)], ["hair"], num_inference_steps=3, seed=5)
    one = _swap(pipe, seed=5)
    two = pipe.swap(_face(2), _face(3), ["hair"], num_inference_steps=3, seed=6)
    assert torch.allclose(batch.tensors[0], one.tensors[0], atol=1e-5)
    assert torch.allclose(batch.tensors[1], two.tensors[0], atol=1e-5)


def test_a_generator_replaces_the_seed(pipe):
    by_seed = pipe.generate(_face(0)[1], n=2, num_inference_steps=3, seed=7)
    gens = [torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)]
    by_gen = pipe.generate(_face(0)[1], n=2, num_inference_steps=3, generator=gens)
    assert torch.equal(by_seed.tensors, by_gen.tensors) and by_gen.info["seeds"] is None


def test_callback_on_step_end_sees_and_changes_the_latents(pipe):
    seen = []

    def look(p, i, t, kw):
        seen.append((i, t, tuple(kw["latents"].shape)))
        return {}

    plain = pipe.generate(_face(0)[1], n=1, num_inference_steps=3, seed=1)
    looked = pipe.generate(_face(0)[1], n=1, num_inference_steps=3, seed=1, callback_on_step_end=look,
                           callback_on_step_end_tensor_inputs=["latents"])
    assert [s[0] for s in seen] == [0, 1, 2] and all(s[2] == (1, 3, 8, 8) for s in seen)
    assert torch.equal(plain.tensors, looked.tensors)  # returning nothing changes nothing

    def zero_at_end(p, i, t, kw):
        return {"latents": torch.zeros_like(kw["latents"])} if i == 2 else {}

    zeroed = pipe.generate(_face(0)[1], n=1, num_inference_steps=3, seed=1, callback_on_step_end=zero_at_end,
                           output_type="latent")
    assert torch.equal(zeroed.images, torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="can read latents"):
        pipe.generate(_face(0)[1], n=1, callback_on_step_end=look, callback_on_step_end_tensor_inputs=["noise"])


def test_a_scheduler_swap_samples_with_it(tiny_model, tmp_path):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    pipe = SCADMPipeline.from_pretrained(tiny_model, device="cpu")
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    dpm = _swap(pipe, seed=1)
    assert dpm.info["sampler"] == "dpm++" and torch.equal(dpm.tensors, _swap(pipe, seed=1, sampler="dpm++").tensors)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
    assert pipe.scheduler_kwargs("dpm++") == {"use_karras_sigmas": True}
    karras = _swap(pipe, seed=1)  # the scheduler's own setting reaches the sampler and its inversion
    assert not torch.equal(karras.tensors, dpm.tensors)
    assert torch.equal(karras.tensors, _swap(pipe, seed=1, sampler="dpm++",
                                              inversion="exact").tensors)  # named: the scheduler's settings too
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    ddim = pipe.generate(_face(0)[1], n=1, num_inference_steps=3, seed=1)
    assert ddim.info["sampler"] == "ddim"
    with pytest.raises(ValueError, match="scheduler EulerDiscreteScheduler: scadm samples with"):
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.save_pretrained(tmp_path / "p")  # the swapped scheduler is the saved model's default
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "DPMSolverMultistepScheduler"] and index["sampling"]["sampler"] == "dpm++"
    again = SCADMPipeline.from_pretrained(tmp_path / "p", device="cpu")
    assert torch.equal(_swap(again, seed=1).tensors, dpm.tensors)


def test_to_dtype_runs_the_components_in_it(tiny_model):
    # the bundled model (trained weights: the tiny model's random ones amplify bf16 rounding)
    pipe = SCADMPipeline.from_pretrained(device="cpu")
    from scadm.data.synthetic import render_face

    mask = render_face(7, size=64).label
    full, other = (pipe.generate(mask, num_inference_steps=3, seed=s).tensors for s in (3, 4))
    pipe.to(torch.bfloat16)
    assert pipe.unet.dtype == pipe.vae.dtype == pipe.condition_encoder.dtype == torch.bfloat16
    half = pipe.generate(mask, num_inference_steps=3, seed=3).tensors
    assert half.dtype == torch.float32
    # bf16 rounding, not another image: far closer to the float32 image than another seed's image is
    assert (half - full).abs().mean() < 0.1 * (other - full).abs().mean()
    pipe = SCADMPipeline.from_pretrained(tiny_model, device="cpu").to(torch.bfloat16)
    half = _swap(pipe, seed=3)
    loaded = SCADMPipeline.from_pretrained(tiny_model, device="cpu", torch_dtype=torch.bfloat16)
    assert loaded.unet.dtype == torch.bfloat16 and torch.equal(_swap(loaded, seed=3).tensors, half.tensors)


def test_optional_components_can_be_left_out(tmp_path):
    pipe = SCADMPipeline.from_pretrained(device="cpu", face_parser=None)  # the bundled model without its parser
    assert pipe.face_parser is None and pipe.config.face_parser == (None, None)
    pipe.save_pretrained(tmp_path / "p")
    assert not (tmp_path / "p" / "face_parser").exists()
    assert SCADMPipeline.from_pretrained(tmp_path / "p", device="cpu").face_parser is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="model CPU offload needs an accelerator")
def test_model_cpu_offload(tiny_model):
    pipe = SCADMPipeline.from_pretrained(tiny_model, device="cpu")
    plain = _swap(pipe.to("cuda"), seed=1)
    pipe = SCADMPipeline.from_pretrained(tiny_model, device="cpu")
    pipe.enable_model_cpu_offload()
    offloaded = _swap(pipe, seed=1)
    assert pipe._execution_device.type == "cuda" and pipe.unet.device.type == "cpu"
    assert torch.allclose(offloaded.tensors, plain.tensors, atol=1e-4)


# ---------------------------------------------------------------------------
# invert once, edit many times
# ---------------------------------------------------------------------------
def test_an_inversion_reused_gives_what_inverting_each_time_gives(pipe):
    inv = pipe.invert(_face(0), num_inference_steps=3)
    assert inv.strategy == "exact" and len(inv.trajectory) == 4 and len(inv.offsets) == 3 and inv.evaluations == 6  # DDIM: 3 + 3
    for parts in (["hair"], ["skin", "l_eye"]):
        reused = pipe.swap(_face(0), _face(1), parts, num_inference_steps=3, inversion=inv)
        fresh = pipe.swap(_face(0), _face(1), parts, num_inference_steps=3)
        assert torch.equal(reused.tensors, fresh.tensors)
    assert reused.info["inversion_reused"] and reused.info["inversion_evaluations"] == 0
    image, label = _face(0)
    moved = pipe.edit_mask(image, label, _face(1)[1], num_inference_steps=3, inversion=inv)
    assert torch.equal(moved.tensors, pipe.edit_mask(image, label, _face(1)[1], num_inference_steps=3).tensors)
    assert isinstance(pipe.invert(_face(0), num_inference_steps=3, return_dict=False)[0], torch.Tensor)


@pytest.mark.parametrize("change, words", [
    (dict(num_inference_steps=4), "made with ddim at 3 steps; this call asks ddim at 4 steps"),
    (dict(sampler="dpm++"), "made with ddim at 3 steps; this call asks dpm++"),
    (dict(guidance_scale=3.0), "s = 1.2 (style null); this edit is exact with ddim at 3 steps, s = 3"),
    (dict(target=1), "made for another face"),
    (dict(mask=1), "another mask or style"),
])
def test_an_inversion_for_other_settings_or_faces_is_refused(pipe, change, words):
    inv = pipe.invert(_face(0), num_inference_steps=3)
    image, label = _face(0)
    target = _face(change.pop("target")) if "target" in change else (image, _face(change.pop("mask"))[1]) \
        if "mask" in change else (image, label)
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")) as err:
        pipe.swap(target, _face(1), ["hair"], inversion=inv, **change)
    assert "\n" not in str(err.value)


def test_the_offsets_pass_in_one_batch_equals_step_by_step(pipe):
    """On an accelerator the offsets' evaluations run as one batch (every trajectory point is known)."""
    from scadm.diffusion import invert

    image, label = _face(0)
    x, ids = pipe.inputs.load_image(image), pipe.inputs.load_mask(label)
    source = pipe.source(x, ids, pipe.style_tokens(x, ids), ids > 0)
    fn = pipe._guided(source.conditions.mask, "style", 1.2, None)
    cond = pipe.model.prepare(source.conditions, pipe.cfg.latent_size)
    z0 = pipe.first_stage.encode(x)
    one = invert(fn, z0, cond, pipe.schedule, sampler="ddim", steps=4, exact=True, batch_offsets=1)
    many = invert(fn, z0, cond, pipe.schedule, sampler="ddim", steps=4, exact=True, batch_offsets=4)
    assert one.evaluations == many.evaluations == 8
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(one.offsets, many.offsets))


@pytest.mark.parametrize("mode", [pytest.param(m, id=m.name) for m in MODES.values()])
def test_call_conventions_hold_for_every_mode(mode):
    """For every conditioning mode: a batch equals single calls, the tuple equals the dict, and the output
    types agree (on noise-based generation, the application every mode has)."""
    model = random_model(config_for(mode))
    pipe = SCADMPipeline.from_networks(model, _first_stage(), device="cpu")
    needs_mask = mode.has_tokens or bool(model.cfg.unet.spade_parts)
    mask = torch.from_numpy(_face()[1]).long()[None] if needs_mask else None
    attrs = {"Smiling": 1} if mode.takes_attributes else None

    def gen(**kw):
        return pipe.generate(mask, attributes=attrs, num_inference_steps=2, **kw)

    both = gen(n=2, seed=4, output_type="pt").images
    one, two = gen(n=1, seed=4, output_type="pt").images, gen(n=1, seed=5, output_type="pt").images
    assert torch.allclose(both, torch.cat([one, two]), atol=1e-5)
    assert np.array_equal(gen(n=1, seed=4, output_type="np").images, one.permute(0, 2, 3, 1).numpy())
    assert torch.equal(gen(n=1, seed=4, output_type="pt", return_dict=False)[0], one)
