"""scadm distill: the student's maths, its sampler and editing on a tiny random model, resume, config round trip."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from scadm.data import write_synthetic_dataset
from scadm.diffusion import NoiseSchedule, build_scheduler
from scadm.diffusion.distillation import StudentGrid, ddim_jump, eps_x0, pseudo_huber
from scadm.diffusion.schedule import sampler_of
from scadm.pipeline import Face, SCADMPipeline, export_model
from scadm.pipeline.plan import blend_region
from scadm.train.distill import DistillConfig, distill, student_config

FAST = dict(guidance_steps=1, consistency_steps=2, batch_size=4, checkpoint_every=1, sample_every=0, log_every=1)


def quiet(*_a, **_k):
    pass


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "ds", n=24, size=32, seed=0, test_fraction=0.2,
                                   progress=False)


@pytest.fixture(scope="module")
def student_folder(tiny_model, tmp_path_factory):
    """A student of the tiny model: the teacher's weights, the student config, a random guidance embedding
    (so that the scale changes the output)."""
    teacher = SCADMPipeline.from_pretrained(tiny_model, device="cpu")
    cfg = student_config(teacher.cfg, DistillConfig(segments=4, teacher_levels=8), str(tiny_model))
    from scadm.models.ldm import SemanticLDM
    from scadm.models.unet import SemanticUNet

    torch.manual_seed(1)
    unet = SemanticUNet.from_cfg(cfg.unet)
    unet.load_state_dict(teacher.model.unet.state_dict(), strict=False)
    torch.nn.init.normal_(unet.guidance_embed.weight, std=0.5)
    folder = tmp_path_factory.mktemp("student") / "model"
    export_model(SemanticLDM.from_networks(cfg, teacher.model.conditioner, unet.eval()), teacher.first_stage, folder)
    return folder


@pytest.fixture(scope="module")
def student(student_folder):
    torch.set_num_threads(1)
    return SCADMPipeline.from_pretrained(student_folder, device="cpu")


# ---------------------------------------------------------------------------- maths
def test_the_jump_is_the_identity_at_its_own_level_and_ddim_elsewhere():
    schedule = NoiseSchedule(prediction_type="v_prediction")
    x, out = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    ab, ab_s = schedule.alphas_cumprod[600].float(), schedule.alphas_cumprod[200].float()
    assert torch.allclose(ddim_jump(out, x, ab, ab, "v_prediction"), x, atol=1e-5)
    ddim = build_scheduler("ddim", 1000, NoiseSchedule(prediction_type="v_prediction"))
    ddim.alphas_cumprod = schedule.alphas_cumprod.float()
    eps, x0 = eps_x0(out, x, ab, "v_prediction")
    assert torch.allclose(x, ab.sqrt() * x0 + (1 - ab).sqrt() * eps, atol=1e-5)  # (eps, x0) recompose x_t
    assert torch.allclose(ddim_jump(out, x, ab, ab_s, "v_prediction"), ab_s.sqrt() * x0 + (1 - ab_s).sqrt() * eps)
    assert pseudo_huber(x, x, 0.001).abs().max() < 1e-6
    assert torch.allclose(pseudo_huber(x, x + 1, 0.0), torch.ones(2))


def test_the_student_sampler_visits_exactly_the_segment_boundaries():
    schedule = NoiseSchedule()
    for k, n in ((4, 40), (2, 40), (1, 10)):
        grid = StudentGrid(schedule, n, k)
        assert build_scheduler("student", k, schedule).timesteps.tolist() == grid.boundary_timesteps()
        j = torch.arange(1, n + 1)
        assert set(grid.boundary(j).tolist()) == set(range(0, n, n // k))
    with pytest.raises(ValueError, match="multiple of the 3 segments"):
        StudentGrid(schedule, 40, 3)
    assert build_scheduler("student", 4, schedule).timesteps.tolist() == [999, 749, 499, 249]
    assert sampler_of(schedule.make_scheduler("student")) == "student" and sampler_of(schedule.make_scheduler("ddim")) == "ddim"


# ---------------------------------------------------------------------------- the student network
def test_a_fresh_student_is_its_teacher_and_the_scale_is_one_pass(tiny_model):
    teacher = SCADMPipeline.from_pretrained(tiny_model, device="cpu")
    cfg = student_config(teacher.cfg, DistillConfig(), "tiny")
    from scadm.models.unet import SemanticUNet

    unet = SemanticUNet.from_cfg(cfg.unet)
    unet.load_state_dict(teacher.model.unet.state_dict(), strict=False)
    mask = teacher.one_hot(torch.zeros(2, 32, 32, dtype=torch.long))
    cond = teacher.model.conditioner(mask, torch.zeros(2, 3, 32, 32), None)
    x, t = torch.randn(2, *teacher.cfg.latent_size).unsqueeze(1).expand(2, 3, -1, -1).contiguous(), torch.tensor([10, 900])
    with torch.no_grad():
        base = teacher.model.unet(x, t, cond)
        for s in (0.0, 1.2, 3.0):  # zero-initialised projection: the scale changes nothing yet
            assert torch.equal(unet(x, t, cond, guidance=s), base)
        with pytest.raises(ValueError, match="takes no guidance scale"):
            teacher.model.unet(x, t, cond, guidance=1.0)


# ---------------------------------------------------------------------------- sampling and editing
def test_every_application_runs_through_the_student_in_its_evaluations(student, tiny_faces):
    (i0, m0, c0), (i1, m1, c1) = tiny_faces[:2]
    assert student.sampling_defaults.sampler == "student" and student.sampling_defaults.steps == 4
    results = {
        "reconstruct": student.reconstruct(i0, m0),
        "swap": student.swap(Face(i0, m0), Face(i1, m1)),
        "partial": student.swap((i0, m0), (i1, c1), ["l_eye"]),
        "interpolate": student.interpolate((i0, m0), (i1, m1), ["hair"], alphas=[0, 0.5, 1]),
        "generate": student.generate(m0, n=2),
        "mix": student.mix(c0, (i1, m1), "hair,l_eye", n=2),
        "edit_mask": student.edit_mask(i0, m0, m1),
    }
    # a total swap edits every part: nothing to keep, so it samples from noise (4); a partial one edits beside the face (8)
    evaluations = {"reconstruct": 0, "swap": 4, "partial": 8, "generate": 4, "mix": 4}
    for name, r in results.items():
        assert r.tensors.shape[1:] == (3, 32, 32) and r.tensors.abs().max() <= 1, name
        if name in evaluations:
            assert r.info["unet_evaluations"] == evaluations[name], name  # one pass a step: guidance is folded in
        assert r.info["sampler"] == "student"
    assert results["partial"].info["inversion"] == "virtual"


def test_student_sampling_is_deterministic_and_the_scale_matters(student, tiny_faces):
    (i0, m0, _), (i1, m1, _) = tiny_faces[:2]
    a = student.swap((i0, m0), (i1, m1), ["hair"], seed=3).tensors
    b = student.swap((i0, m0), (i1, m1), ["hair"], seed=3).tensors
    assert torch.equal(a, b)
    assert not torch.equal(student.generate(m0, seed=3).tensors, student.generate(m0, seed=4).tensors)
    assert not torch.allclose(student.swap((i0, m0), (i1, m1), ["hair"], seed=3, guidance_scale=0.0).tensors, a)
    for steps in (1, 2):  # fewer jumps than segments: allowed, one evaluation each
        assert student.generate(m0, steps=steps).info["unet_evaluations"] == steps


def test_virtual_inversion_through_the_student_gives_the_face_back_exactly(student, tiny_faces):
    (i0, m0, _), (i1, m1, _) = tiny_faces[:2]
    z0 = student.first_stage.encode(student.inputs.load_image(i0))
    latent = student.reconstruct(i0, m0, blend=False, output_type="latent")
    assert float((latent.images - z0).norm() / z0.norm()) < 1e-4
    assert latent.info["unet_evaluations"] == 8  # 4 steps x (source + edit), one pass each
    swap = student.swap((i0, m0), (i1, m1), ["hair"], output_type="latent")
    hair = student.inputs.load_mask(m0) == student.label_set.index("hair")
    region = blend_region(hair, 1, student.cfg.latent_size).bool().expand_as(swap.images)
    assert torch.equal(swap.images[~region], z0.expand_as(swap.images)[~region])


def test_a_distilled_folder_round_trips_its_config(student, student_folder, tmp_path):
    index = json.loads((student_folder / "model_index.json").read_text())
    assert index["sampling"]["sampler"] == "student" and index["sampling"]["inversion"] == "virtual"
    assert index["distilled"]["segments"] == 4 and index["scheduler"][1] == "DDIMScheduler"
    assert json.loads((student_folder / "unet" / "config.json").read_text())["guidance_embedding"] is True
    student.save_pretrained(tmp_path / "again")
    again = SCADMPipeline.from_pretrained(tmp_path / "again", device="cpu")
    assert again.cfg == student.cfg and again.sampling_defaults == student.sampling_defaults
    for k, v in student.model.unet.state_dict().items():
        assert torch.equal(v, again.model.unet.state_dict()[k]), k


# ---------------------------------------------------------------------------- the run
def losses(run: Path) -> list[float]:
    return [float(r["loss"]) for r in csv.DictReader((run / "loss.csv").open())]


def test_distillation_resumes_exactly_after_a_stop(tiny_model, tiny_data, tmp_path):
    """Stage A for one step, stage B for two: stopped after step 2 (inside stage B, its target network and
    frozen stage-A teacher in the checkpoint) and resumed, it equals the uninterrupted run."""
    dc = DistillConfig(**FAST, teacher_levels=8)
    full = distill(tiny_model, tiny_data, tmp_path / "full", dc, progress=False, printer=quiet)
    part = distill(tiny_model, tiny_data, tmp_path / "part", dc, max_steps=2, progress=False, printer=quiet)
    assert full["finished"] and not part["finished"] and not (tmp_path / "part" / "model").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        distill(tiny_model, tiny_data, tmp_path / "part", dc, progress=False, printer=quiet)
    distill(tiny_model, tiny_data, tmp_path / "part", dc, resume=True, progress=False, printer=quiet)
    assert losses(tmp_path / "part") == pytest.approx(losses(tmp_path / "full"), rel=1e-5, abs=1e-7)
    assert [r["stage"] for r in csv.DictReader((tmp_path / "full" / "loss.csv").open())] == ["1", "2", "2"]
    a = load_file(str(tmp_path / "full" / "model" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "part" / "model" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    step2 = tmp_path / "full" / "checkpoints" / "step-0000002"
    assert {"model", "ema", "target", "stage_a"} <= {p.stem for p in step2.glob("*.safetensors")}
    pipe = SCADMPipeline.from_pretrained(tmp_path / "full" / "model", device="cpu")  # every command takes it
    assert pipe.cfg.distilled["stages"] == "guidance + consistency" and pipe.sampling_defaults.sampler == "student"
    assert np.isfinite(losses(tmp_path / "full")).all()


def test_distill_cli_runs_from_a_config_and_refuses_bad_settings(run_cli, tiny_model, tiny_data, tmp_path):
    cfg = tmp_path / "d.yaml"
    cfg.write_text("guidance_steps: 0\nconsistency_steps: 1\nbatch_size: 4\nteacher_levels: 8\nsample_every: 0\n")
    r = run_cli("distill", "--model", str(tiny_model), "--data", str(tiny_data), "--out", str(tmp_path / "run"),
                "--config", str(cfg))
    assert r.code == 0, r.err
    assert "sampler 'student', 4 steps" in r.out and (tmp_path / "run" / "model" / "model_index.json").is_file()
    bad = run_cli("distill", "--model", str(tiny_model), "--data", str(tiny_data), "--out", str(tmp_path / "bad"),
                  "--config", str(cfg), "--segments", "3")
    assert bad.code != 0 and "multiple of the 3 segments" in bad.err and not (tmp_path / "bad").exists()
    student = run_cli("distill", "--model", str(tmp_path / "run" / "model"), "--data", str(tiny_data), "--out",
                      str(tmp_path / "again"), "--config", str(cfg))
    assert student.code != 0 and "already a distilled student" in student.err


def test_a_guidance_only_student_keeps_its_teachers_sampler(tiny_model):
    teacher = SCADMPipeline.from_pretrained(tiny_model, device="cpu")
    only_a = student_config(teacher.cfg, DistillConfig(consistency_steps=0), "tiny")
    assert only_a.sampling == teacher.cfg.sampling and only_a.unet.guidance_embedding
    assert only_a.distilled["stages"] == "guidance"
    both = student_config(teacher.cfg, DistillConfig(segments=2, teacher_levels=8), "tiny")
    assert (both.sampling.sampler, both.sampling.steps, both.sampling.inversion) == ("student", 2, "virtual")


def test_two_processes_distil_what_one_process_does_with_the_same_global_batch(tiny_model, tiny_data, tmp_path):
    import os
    import subprocess
    import sys

    def config(batch: int) -> Path:
        path = tmp_path / f"d{batch}.yaml"
        path.write_text(f"guidance_steps: 1\nconsistency_steps: 2\nbatch_size: {batch}\nteacher_levels: 8\n"
                        "sample_every: 0\nlog_every: 1\ncheckpoint_every: 1000\n")
        return path

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["distill", "--model", str(tiny_model), "--data", str(tiny_data)]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29541", "-m", "scadm", *common, "--config", str(config(2)), "--out", str(tmp_path / "ddp")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "scadm", *common, "--config", str(config(4)), "--out",
                          str(tmp_path / "one")], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "one"), rel=1e-4)
    assert len(list((tmp_path / "ddp" / "checkpoints").iterdir())) == 1  # one writer


def test_the_web_editor_edits_through_a_student(student_folder):
    """The page takes a student folder as it takes any model: every application runs, one pass a step; a
    face's inversion (exact, on the student's grid) is made on its first edit and reused after."""
    from scadm.app import APPLICATIONS, Editor

    editor = Editor(student_folder, device="cpu", examples=3)
    target, target_mask = editor.example("face 1")
    reference, reference_mask = editor.example("face 2", "reference")
    mask = editor.editor_value(target_mask)
    painted = dict(mask, composite=np.array(mask["background"], copy=True))
    painted["composite"][0:8, :] = editor.shown.colors[editor.label_set.names.index("hair")]
    for application in APPLICATIONS:
        given = painted if application == "edit with the painted mask" else mask
        r = editor.run(application, target, given, reference, reference_mask, ["hair"], alpha=1.0, frames=2, n=1,
                       seed=1, progress=False)
        assert r.images and application in r.status, application
    again = editor.run("partial swap", target, mask, reference, reference_mask, ["l_eye"], seed=1, progress=False)
    assert "(reused)" in again.status
