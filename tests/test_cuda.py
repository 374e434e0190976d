"""GPU readiness: sampling and training in bf16 autocast on CUDA match fp32. Runs only where CUDA is present."""

from __future__ import annotations

import dataclasses

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_bf16_sampling_on_cuda_matches_fp32():
    from scadm.data.synthetic import render_face, synthetic_split_ids
    from scadm.pipeline import SCADMPipeline

    pipe = SCADMPipeline.from_pretrained(None, device="cuda")
    faces = [render_face(i, seed=0, size=pipe.image_size) for i in synthetic_split_ids("test", 4)]
    args = ([f.image for f in faces], [f.label for f in faces])
    ref = pipe.reconstruct(*args, steps=10, sampler="dpm++").tensors
    assert ref.is_cuda
    for precision, tol in (("bf16", 0.03), ("fp16", 0.01)):
        low = pipe.reconstruct(*args, steps=10, sampler="dpm++", precision=precision).tensors
        rel = ((low - ref).norm() / ref.norm()).item()
        assert rel < tol, (precision, rel)


def test_bf16_training_on_cuda_matches_fp32(tmp_path):
    from scadm.config import load_recipe
    from scadm.data import write_synthetic_dataset
    from scadm.models.autoencoder import FirstStage, build_autoencoder
    from scadm.train.diffusion import train_diffusion

    data = write_synthetic_dataset(tmp_path / "ds", n=48, size=32, seed=0, test_fraction=0.2, progress=False)
    torch.manual_seed(0)
    ae = tmp_path / "ae"
    r = load_recipe("tiny")
    FirstStage(build_autoencoder(r.autoencoder).eval()).save_pretrained(ae)
    runs = {}
    for mp in ("no", "bf16"):
        for ckpt in (False, True):
            tc = dataclasses.replace(r.training, max_steps=5, sample_every=0, log_every=1, num_workers=0,
                                     mixed_precision=mp, gradient_checkpointing=ckpt, cache_latents=True)
            out = tmp_path / f"{mp}-{ckpt}"
            train_diffusion(dataclasses.replace(r, training=tc), data, out, autoencoder=ae, progress=False,
                            printer=lambda *a, **k: None)
            import csv

            runs[mp, ckpt] = [float(row["loss"]) for row in csv.DictReader((out / "loss.csv").open())]
    assert runs["no", True] == pytest.approx(runs["no", False], rel=1e-4)
    assert runs["bf16", False] == pytest.approx(runs["no", False], rel=0.05)
    assert runs["bf16", True] == pytest.approx(runs["bf16", False], rel=0.02)
