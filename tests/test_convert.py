"""`scadm convert`: the authors' checkpoints give exactly what the released code computes, and bad inputs
are one-line errors that write nothing.

The fixture (tests/fixtures/released-tiny, see its README) is a reduced-width network of the
released architecture in the released Lightning layout, with inputs and the outputs the
authors' code computed from them; scripts/released_parity.py made it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file

from scadm.convert import read_checkpoint, write_safetensors
from scadm.diffusion import ClassifierFreeGuidance, NoiseSchedule, sample
from scadm.diffusion.guidance import released_w_to_s
from scadm.models.autoencoder import FirstStage
from scadm.models.ldm import SemanticLDM

FIXTURE = Path(__file__).parent / "fixtures" / "released-tiny"
CKPT, CONFIG = FIXTURE / "released.ckpt", FIXTURE / "config.yaml"
TOLERANCE = {"tokens": 1e-5, "tokens_zero_image": 1e-5, "eps_cond": 1e-5, "eps_null": 1e-5, "eps_cond_raw": 1e-5,
             "ddim": 1e-4, "decoded": 1e-4, "encoded": 1e-5}


@pytest.fixture(scope="module")
def io():
    d = load_file(str(FIXTURE / "io.safetensors"))
    x = {k[len("input."):]: v for k, v in d.items() if k.startswith("input.")}
    x["mask"] = F.one_hot(x["labels"].long(), 19).permute(0, 3, 1, 2).float()
    return x, {k[len("released."):]: v for k, v in d.items() if k.startswith("released.")}, d


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The fixture converted through the CLI, EMA and raw weights."""
    from scadm.cli import main

    root = tmp_path_factory.mktemp("converted")
    for weights in ("ema", "raw"):  # a failure exits (SystemExit 1), which fails every test that uses this
        main(["convert", "sca-dm", str(CKPT), str(root / weights), "--weights", weights, "--config", str(CONFIG)])
    return root


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@torch.no_grad()
def ours(folder_or_pipe: Path | object, x: dict, w: float, steps: int) -> dict[str, torch.Tensor]:
    """What the released scripts compute, with scadm: tokens, eps (condition and the 'zero' null), guided DDIM."""
    from scadm.pipeline import SCADMPipeline

    pipe = folder_or_pipe if isinstance(folder_or_pipe, SCADMPipeline) else \
        SCADMPipeline.from_pretrained(folder_or_pipe, device="cpu")
    model, fs = pipe.model, pipe.first_stage
    cond = model.conditions(x["mask"], x["image"])
    null = model.conditioner.null(x["mask"], "zero")
    latent = tuple(x["x_T"].shape[-2:])
    guided = ClassifierFreeGuidance(model.unet, model.prepare(null, latent), released_w_to_s(w))
    ddim = sample(guided, tuple(x["x_T"].shape), model.prepare(cond, latent), NoiseSchedule(model.cfg.schedule),
                  sampler="ddim", steps=steps, eta=0.0, x_T=x["x_T"])
    return {"tokens": cond.tokens, "tokens_zero_image": model.conditions(x["mask"], torch.zeros_like(x["image"])).tokens,
            "eps_cond": model(x["z_t"], x["t"], cond), "eps_null": model(x["z_t"], x["t"], null), "ddim": ddim,
            "decoded": fs.decode(ddim), "encoded": fs.encode(x["image"])}


# ---------------------------------------------------------------------------
# parity with the released code
# ---------------------------------------------------------------------------
def test_fixture_is_small_and_in_the_released_layout():
    assert sum(f.stat().st_size for f in FIXTURE.iterdir()) < 7e6
    with pytest.raises(Exception):  # Lightning's extras (an OmegaConf object) refuse weights_only, as real ones do
        torch.load(CKPT, weights_only=True)
    sd = read_checkpoint(CKPT)
    assert any(k.startswith("model.diffusion_model.") for k in sd) and "model_ema.decay" in sd
    assert any(k.startswith("cond_stage_model.Decoder.dec_layer_1.1.") for k in sd) and "betas" in sd
    assert "first_stage_model.quantize.embedding.weight" in sd and "model.diffusion_model.label_emb.weight" in sd


def test_converted_fixture_computes_what_the_released_code_computed(converted, io):
    x, released, meta = io
    got = ours(converted / "ema", x, w=2.2, steps=5)
    with torch.no_grad():
        model = SemanticLDM.from_pretrained(converted / "raw")
        got["eps_cond_raw"] = model(x["z_t"], x["t"], model.conditions(x["mask"], x["image"]))
    for name, tol in TOLERANCE.items():
        assert relative(got[name], released[name]) <= tol, (name, relative(got[name], released[name]))
    # the figures mean something: raw and EMA differ, and the released null is not the encoder's empty style
    assert relative(released["eps_cond_raw"], released["eps_cond"]) > 1e-3
    assert relative(released["tokens_zero_image"], torch.zeros_like(released["tokens"]) + 1e-9) > 0.1


def test_from_single_file_computes_what_the_released_code_computed(converted, io):
    """SCADMPipeline.from_single_file reads the checkpoint as `scadm convert` does, without a folder: the same
    outputs within the parity tolerances, the same report, and save_pretrained writes what convert writes."""
    import json

    from scadm.pipeline import SCADMPipeline

    x, released, _ = io
    pipe = SCADMPipeline.from_single_file(CKPT, config=CONFIG, device="cpu")
    got = ours(pipe, x, w=2.2, steps=5)
    for name, tol in TOLERANCE.items():
        if name in got:
            assert relative(got[name], released[name]) <= tol, (name, relative(got[name], released[name]))
    report = json.loads((converted / "ema" / "convert-report.json").read_text())
    assert pipe.conversion.written == report["written"] and pipe.conversion.dropped == report["dropped"]
    folder = SCADMPipeline.from_pretrained(converted / "ema", device="cpu")
    assert pipe.cfg == folder.cfg
    assert all(torch.equal(a, b) for a, b in zip(pipe.unet.state_dict().values(), folder.unet.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        SCADMPipeline.from_single_file(FIXTURE / "missing.ckpt", config=CONFIG)


def test_the_per_class_join_is_another_function(converted, io, tmp_path):
    """The bug this fixture guards: joining the style encoder's skips class by class is not the released encoder."""
    x, released, _ = io
    model = SemanticLDM.from_pretrained(converted / "ema")
    assert model.cfg.conditioning.style_encoder.skip_join == "block"
    cfg = dataclasses.replace(model.cfg)
    cfg.conditioning = dataclasses.replace(cfg.conditioning, style_encoder=dataclasses.replace(
        cfg.conditioning.style_encoder, skip_join="per_class"))
    per_class = SemanticLDM(cfg)
    per_class.load_state_dict(model.state_dict())
    with torch.no_grad():
        tokens = per_class.conditions(x["mask"], x["image"]).tokens
    assert relative(tokens, released["tokens"]) > 0.05


def test_converted_model_defaults_to_the_fid_script_and_edits_through_api_and_cli(converted, io, run_cli, tmp_path):
    from PIL import Image

    from scadm.pipeline import SCADMPipeline

    cfg = SemanticLDM.from_pretrained(converted / "ema").cfg
    s = cfg.sampling
    assert (s.sampler, s.steps, s.eta, s.guidance_scale, s.null_condition) == ("ddim", 200, 0.0, 0.0, "zero")
    x, _, _ = io
    image = ((x["image"][0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    labels = x["labels"][0].byte().numpy()
    pipe = SCADMPipeline.from_pretrained(converted / "ema", device="cpu")
    out = pipe.reconstruct(image, labels, steps=2, guidance_scale=1.2, seed=3)
    assert out.images[0].size == (32, 32) and out.info["null_condition"] == "zero" and out.info["guidance_scale"] == 1.2
    Image.fromarray(image).save(tmp_path / "face.png")
    Image.fromarray(labels).save(tmp_path / "mask.png")
    r = run_cli("edit", "reconstruct", "--model", converted / "ema", "--image", tmp_path / "face.png", "--mask",
                tmp_path / "mask.png", "--steps", "2", "--out", tmp_path / "recon.png")
    assert r.code == 0, r.err
    assert Image.open(tmp_path / "recon.png").size == (32, 32)


def test_converted_model_inverts_exactly_and_keeps_the_rest_of_the_face(converted, io):
    """The released architecture (its VQ first stage, its 'zero' null, guided at s = 1.2) through exact
    inversion: the reconstruction decodes the image's own first-stage latent (relative L2 < 1e-4), and a
    blended partial swap keeps the image's latent in every latent pixel outside the part's region."""
    from scadm.pipeline import SCADMPipeline

    x, _, _ = io
    image = ((x["image"][0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    labels = x["labels"][0].byte().numpy()
    pipe = SCADMPipeline.from_pretrained(converted / "ema", device="cpu")
    seen = []
    decode = pipe.first_stage.decode
    pipe.first_stage.decode = lambda z: seen.append(z.clone()) or decode(z)
    pipe.reconstruct(image, labels, steps=3, guidance_scale=1.2, inversion="exact")
    part = int(labels[labels > 0].min())  # a part this face has
    pipe.swap((image, labels), (image[::-1].copy(), labels[::-1].copy()), [part], steps=3, guidance_scale=1.2,
              inversion="exact", blend=True)
    z0 = pipe.first_stage.encode(pipe.inputs.load_image(image))
    assert float((seen[0] - z0).norm() / z0.norm()) < 1e-4
    from scadm.pipeline.plan import blend_region

    region = blend_region(pipe.inputs.load_mask(labels) == part, 1, pipe.cfg.latent_size).bool().expand_as(seen[1])
    assert 0 < region.float().mean() < 1 and torch.equal(seen[1][~region], z0[~region])


def test_convert_report_names_every_dropped_key(converted):
    import json

    report = json.loads((converted / "ema" / "convert-report.json").read_text())
    dropped = {k for keys in report["dropped"].values() for k in keys}
    sd = read_checkpoint(CKPT)
    written = [k for part in ("unet", "condition_encoder")
               for k in load_file(str(converted / "ema" / part / "diffusion_pytorch_model.safetensors"))]
    first_stage = [k for k in sd if k.startswith("first_stage_model.")]
    assert len(written) == report["written"]
    assert len(written) + len(dropped) + len(first_stage) == len(sd)
    assert "model.diffusion_model.label_emb.weight" in dropped and "betas" in dropped
    assert "model.diffusion_model.out.2.weight" in dropped  # the raw copy, since EMA was chosen


# ---------------------------------------------------------------------------
# the VQ-f4 first stage on its own
# ---------------------------------------------------------------------------
def first_stage_checkpoint(path: Path, edit=None) -> Path:
    """The fixture's first stage as LDM's vq-f4 model.ckpt stores it (taming layout, plus its loss network)."""
    sd = {k[len("first_stage_model."):]: v for k, v in read_checkpoint(CKPT).items() if k.startswith("first_stage_model.")}
    sd["loss.perceptual_loss.net.slice1.0.weight"] = torch.zeros(4, 3, 3, 3)
    sd["loss.discriminator.main.0.weight"] = torch.zeros(4, 3, 4, 4)
    if edit is not None:
        edit(sd)
    torch.save({"state_dict": sd, "global_step": 1}, path)
    return path


def test_convert_vq_f4_loads_strictly_and_decodes_as_released(io, run_cli, tmp_path):
    x, released, _ = io
    ckpt = first_stage_checkpoint(tmp_path / "model.ckpt")
    r = run_cli("convert", "vq-f4", ckpt, tmp_path / "vqvae", "--config", CONFIG)
    assert r.code == 0, r.err
    assert "dropped 2: the autoencoder's training loss" in r.out
    fs = FirstStage.from_pretrained(tmp_path / "vqvae")
    with torch.no_grad():
        assert relative(fs.decode(released["ddim"]), released["decoded"]) <= 1e-4
        assert relative(fs.encode(x["image"]), released["encoded"]) <= 1e-5
    # and as --first-stage, file or folder, in place of the checkpoint's own
    for source, name in ((ckpt, "a"), (tmp_path / "vqvae", "b")):
        r = run_cli("convert", "sca-dm", CKPT, tmp_path / name, "--config", CONFIG, "--first-stage", source)
        assert r.code == 0, r.err
        assert "the checkpoint's own first stage" in r.out
        assert FirstStage.from_pretrained(tmp_path / name / "vae").is_vq
        assert (tmp_path / name / "model_index.json").is_file()


# ---------------------------------------------------------------------------
# bad inputs: one line naming the file and what was expected; nothing written
# ---------------------------------------------------------------------------
def one_line_error(r, *words: str) -> None:
    assert r.code == 1, (r.out, r.err)
    line = r.err.strip()
    assert line.startswith("error:") and "\n" not in line and "Traceback" not in r.err, r.err
    for w in words:
        assert w in line, (w, line)


def test_bad_inputs_are_one_line_errors_and_write_nothing(run_cli, tmp_path):
    out = tmp_path / "out"

    def convert(*args):
        r = run_cli("convert", *map(str, args))
        assert not out.exists() and not list(tmp_path.glob(".out.converting-*"))
        return r

    # another architecture: the fixture is not paper-256
    one_line_error(convert("sca-dm", CKPT, out), str(CKPT), "paper-256 architecture")
    # a truncated file
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(CKPT.read_bytes()[: CKPT.stat().st_size // 2])
    one_line_error(convert("sca-dm", truncated, out, "--config", CONFIG), str(truncated), "truncated")
    # a diffusers folder where a .ckpt is expected
    vq = tmp_path / "vqvae"
    r = run_cli("convert", "vq-f4", first_stage_checkpoint(tmp_path / "vq.ckpt"), vq, "--config", CONFIG)
    assert r.code == 0, r.err
    one_line_error(convert("sca-dm", vq, out), str(vq), "diffusers folder", "Lightning .ckpt")
    one_line_error(convert("vq-f4", vq, out), str(vq), "diffusers folder", "VQ-f4")
    # a VQ-f8 or a KL autoencoder given as VQ-f4
    def f8(sd):
        for k in [k for k in sd if k.startswith("encoder.down.2.")]:
            sd[k.replace("down.2.", "down.3.")] = sd[k]
    def kl(sd):
        del sd["quantize.embedding.weight"]
    one_line_error(convert("vq-f4", first_stage_checkpoint(tmp_path / "f8.ckpt", f8), out, "--config", CONFIG),
                   "f8.ckpt", "x8 (4 levels)", "VQ-f4")
    one_line_error(convert("vq-f4", first_stage_checkpoint(tmp_path / "kl.ckpt", kl), out, "--config", CONFIG),
                   "kl.ckpt", "KL autoencoder", "VQ-f4")
    # the SCA-DM checkpoint given as a VQ-f4 takes its first stage; a VQ-f4 given as SCA-DM is refused
    one_line_error(convert("sca-dm", tmp_path / "vq.ckpt", out, "--config", CONFIG), "vq.ckpt",
                   "no model.diffusion_model.*", "SCA-DM")
    # a schedule that is not the config's
    other = yaml.safe_load(CONFIG.read_text())
    other["model"]["schedule"] = {"beta_end": 0.012}
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    one_line_error(convert("sca-dm", CKPT, out, "--config", tmp_path / "other.yaml"), str(CKPT), "noise schedule")
    # a missing file, an unknown --weights
    one_line_error(convert("sca-dm", tmp_path / "nope.ckpt", out), "nope.ckpt", "does not exist")
    one_line_error(convert("sca-dm", CKPT, out, "--config", CONFIG, "--weights", "best"), "--weights")


def test_existing_output_folder_is_never_overwritten(run_cli, tmp_path):
    held = tmp_path / "held"
    held.mkdir()
    (held / "config.json").write_text("{}")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in held.iterdir())
    r = run_cli("convert", "sca-dm", CKPT, held, "--config", CONFIG)
    one_line_error(r, str(held), "already exists")
    assert sorted((p.name, p.stat().st_mtime_ns) for p in held.iterdir()) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("convert", "vq-f4", first_stage_checkpoint(tmp_path / "vq.ckpt"), empty, "--config", CONFIG).code == 0


# ---------------------------------------------------------------------------
# reading and writing
# ---------------------------------------------------------------------------
class _Payload:
    """Pickles as a call of os.system: a checkpoint that would run a command if unpickled blindly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_reading_executes_no_pickled_code_and_memory_maps(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.arange(6.0)}, "hyper_parameters": _Payload(marker)}, path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    sd = read_checkpoint(path)
    assert not marker.exists()
    assert torch.equal(sd["w"], torch.arange(6.0))
    # weights_only first; refused (the payload), then the allow-list unpickler; both memory-mapped
    assert [(c["weights_only"], c["mmap"]) for c in calls] == [(True, True), (False, True)]
    assert calls[1]["pickle_module"].Unpickler.__name__ == "_AllowListUnpickler"


def test_write_safetensors_streams_a_file_safetensors_reads(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.randn(5).half(), "c": torch.randn(2, 2).bfloat16(),
               "d": torch.arange(7), "e": torch.tensor(True), "f": torch.randn(4, 6)[:, ::2], "g": torch.zeros(0, 3)}
    write_safetensors(tmp_path / "x.safetensors", tensors, {"format": "pt"})
    back = load_file(str(tmp_path / "x.safetensors"))
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k


# ---------------------------------------------------------------------------
# the skip join of each preset
# ---------------------------------------------------------------------------
def test_skip_join_of_presets_and_old_folders():
    from scadm.config import load_config

    assert load_config("paper-256").conditioning.style_encoder.skip_join == "block"
    assert load_config("paper-256-per-scale").conditioning.style_encoder.skip_join == "block"
    assert load_config("synthetic-64").conditioning.style_encoder.skip_join == "per_class"
    assert load_config("tiny").conditioning.style_encoder.skip_join == "block"  # the current schema's default
    # a folder saved before the option existed (schema 1, no skip_join) keeps the per-class join it was trained with
    old = load_config({"schema_version": 1, "conditioning": {"type": "style", "style_encoder": {"layout": "concat"}}})
    assert old.conditioning.style_encoder.skip_join == "per_class"
    bundled = Path(__file__).parents[1] / "src" / "scadm" / "bundled" / "synthetic-64"
    assert SemanticLDM.from_pretrained(bundled).cfg.conditioning.style_encoder.skip_join == "per_class"
    with pytest.raises(ValueError, match="skip_join must be one of block, per_class"):
        load_config({"conditioning": {"type": "style", "style_encoder": {"skip_join": "interleaved"}}})
