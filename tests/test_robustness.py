"""Numerical guards and crash hygiene: non-finite sampling or training stops cleanly; killed jobs leave
no debris and, restarted, produce every output exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scadm.tempfiles import remove_stale, temp_path


def test_non_finite_latents_stop_sampling_naming_the_step(tiny_model, tiny_faces, tmp_path, run_cli, monkeypatch):
    from scadm.models.unet import SemanticUNet
    from scadm.pipeline import SCADMPipeline

    original = SemanticUNet.forward
    calls = {"n": 0}

    def blows_up(self, x, t, cond):
        calls["n"] += 1
        eps = original(self, x, t, cond)
        return eps * float("inf") if calls["n"] >= 2 else eps

    monkeypatch.setattr(SemanticUNet, "forward", blows_up)
    pipe = SCADMPipeline.from_pretrained(tiny_model, device="cpu")
    (i0, m0, _), = tiny_faces[:1]
    with pytest.raises(ValueError, match=r"non-finite latents at step 2 of 4 .*ddim, 4 steps.*guidance s = 1.2"):
        pipe.reconstruct(i0, m0, steps=4, inversion="none")
    calls["n"] = 0
    with pytest.raises(ValueError, match=r"ddim inversion produced non-finite latents at step 2 of 4 .*guidance s = 1.2"):
        pipe.reconstruct(i0, m0, steps=4, blend=False)  # inverted first (blended, a reconstruction runs no network)
    calls["n"] = 0
    r = run_cli("edit", "reconstruct", "--image", i0, "--mask", m0, "--model", tiny_model, "--steps", 4,
                "--no-blend", "--out", tmp_path / "o.png")
    assert r.code == 1 and "non-finite latents at step 2" in r.err and "nothing was written" in r.err
    assert not list(tmp_path.iterdir())  # no black image


def test_stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".img.png.{dead.pid}.tmp").write_bytes(b"half")
    (tmp_path / f".step-0000010.{dead.pid}.tmp").mkdir()
    (tmp_path / f".step-0000010.{dead.pid}.tmp" / "x").write_bytes(b"half")
    mine = temp_path(tmp_path / "mine.png")
    mine.write_bytes(b"being written")
    (tmp_path / "keep.png").write_bytes(b"done")
    (tmp_path / ".junk.png.99999999999999999999999.tmp").write_bytes(b"no process has this id")
    assert remove_stale(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, "keep.png"])


def test_a_training_run_removes_the_checkpoint_debris_of_a_killed_one(tmp_path):
    from scadm.train.checkpoints import Checkpoints

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    debris = tmp_path / "checkpoints" / f".step-0000020.{dead.pid}.tmp"
    debris.mkdir(parents=True)
    (debris / "model.safetensors").write_bytes(b"\0" * 1000)
    ckpts = Checkpoints(tmp_path)
    assert not debris.exists() and ckpts.latest() is None


def test_non_finite_training_loss_stops_and_exports_nothing(tmp_path, monkeypatch):
    import dataclasses

    import scadm.train.diffusion as td
    from scadm.config import load_recipe
    from scadm.data import write_synthetic_dataset
    from scadm.models.autoencoder import FirstStage, build_autoencoder

    data = write_synthetic_dataset(tmp_path / "ds", n=12, size=32, seed=0, test_fraction=0.25, progress=False)
    recipe = load_recipe("tiny")
    ae = tmp_path / "ae"
    FirstStage(build_autoencoder(recipe.autoencoder).eval()).save_pretrained(ae)
    original = td.diffusion_loss

    def nan_at_step_3(*a, **k):
        loss, info = original(*a, **k)
        nan_at_step_3.calls += 1
        return (loss * float("nan"), info) if nan_at_step_3.calls >= 3 else (loss, info)

    nan_at_step_3.calls = 0
    monkeypatch.setattr(td, "diffusion_loss", nan_at_step_3)
    recipe = dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, max_steps=6, checkpoint_every=2,
                                                                      sample_every=0))
    with pytest.raises(ValueError, match="training diverged at step 3 .*nothing was exported"):
        td.train_diffusion(recipe, data, tmp_path / "run", autoencoder=ae, progress=False, printer=lambda *a: None)
    assert not (tmp_path / "run" / "model").exists()
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-0000002"]


def _scadm(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "scadm", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    start = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"finished before the kill: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() - start > timeout:
            proc.kill()
            raise AssertionError("never reached the point to kill at")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _valid_pngs(folder: Path) -> list[str]:
    names = []
    for p in sorted(folder.glob("*.png")):
        with Image.open(p) as im:
            im.load()  # a corrupt or half-written file fails here
        names.append(p.stem)
    return names


def test_sample_killed_mid_run_then_restarted_writes_each_output_once(tmp_path, tiny_model):
    from scadm.data import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "ds", n=40, size=32, seed=0, test_fraction=0.5, progress=False)
    out = tmp_path / "samples"
    args = ["sample", "--data", str(data), "--out", str(out), "--model", str(tiny_model), "--steps", "3",
            "--batch-size", "2", "--mode", "reconstruction"]
    proc = _scadm(*args, cwd=tmp_path)
    _kill_when(proc, lambda: len(list(out.glob("*.png"))) >= 2)
    done_before = set(_valid_pngs(out))
    assert done_before
    r = subprocess.run([sys.executable, "-m", "scadm", *args], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ids = (data / "splits" / "test.txt").read_text().split()
    assert sorted(_valid_pngs(out)) == sorted(ids)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    assert f"{len(done_before)} already done" in r.stdout or f"{len(done_before)} already done" in r.stderr


def test_prepare_killed_mid_run_then_restarted_writes_each_output_once(tmp_path):
    from scadm.data.synthetic import render_face

    images, labels = tmp_path / "raw_images", tmp_path / "raw_labels"
    images.mkdir()
    labels.mkdir()
    for k in range(120):
        f = render_face(k, size=96)
        Image.fromarray(f.image).save(images / f"{k:04d}.png")
        Image.fromarray(f.label).save(labels / f"{k:04d}.png")
    out = tmp_path / "prepared"
    args = ["prepare", "folder", str(images), str(labels), str(out), "--size", "64"]
    proc = _scadm(*args, cwd=tmp_path)
    _kill_when(proc, lambda: len(list((out / "labels").glob("*.png"))) >= 5 if (out / "labels").is_dir() else False)
    r = subprocess.run([sys.executable, "-m", "scadm", *args], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    want = sorted(f"{k:04d}" for k in range(120))
    assert sorted(_valid_pngs(out / "images")) == want and sorted(_valid_pngs(out / "labels")) == want
    for k in (0, 57, 119):
        got = np.asarray(Image.open(out / "labels" / f"{k:04d}.png"))
        assert got.shape == (64, 64)
    leftovers = [p for d in (out, out / "images", out / "labels") for p in d.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers
    assert "unclosed" not in r.stderr and "ResourceWarning" not in r.stderr


def test_bulk_sampling_treats_dataset_faces_as_crops_not_photos(tmp_path, tiny_model):
    """A dataset at another size than the model is resized, as the metrics' real images are, never reframed."""
    from scadm.config import SamplingOptions
    from scadm.data import write_synthetic_dataset
    from scadm.pipeline import SCADMPipeline
    from scadm.sampling_jobs import run_sampling_job

    data = write_synthetic_dataset(tmp_path / "ds", n=6, size=64, seed=0, test_fraction=0.5, progress=False)
    run_sampling_job(data, tmp_path / "out", mode="reconstruction", model=tiny_model, device="cpu",
                     sampling=SamplingOptions(steps=2, seed=7), printer=lambda *a: None, progress=False)
    pipe = SCADMPipeline.from_pretrained(tiny_model, device="cpu")
    first = (data / "splits" / "test.txt").read_text().split()[0]
    image, mask = pipe.inputs.load_image(data / "images" / f"{first}.png"), pipe.inputs.load_mask(data / "labels" / f"{first}.png")
    direct = pipe.reconstruct(image, mask, steps=2, seed=7)
    with Image.open(tmp_path / "out" / f"{first}.png") as im:
        assert np.array_equal(np.asarray(im), np.asarray(direct.images[0]))
