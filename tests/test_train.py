"""Training: loss goes down, resume == uninterrupted, DDP == single process, atomic checkpoints."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scadm.config import load_recipe
from scadm.data import write_synthetic_dataset
from scadm.models.autoencoder import FirstStage, build_autoencoder
from scadm.train.batches import GlobalBatchSampler
from scadm.train.checkpoints import Checkpoints
from scadm.train.diffusion import train_diffusion
from scadm.train.lr_schedule import lr_factor

#: the denoiser's weights in a model folder
UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return write_synthetic_dataset(root / "ds", n=48, size=32, seed=0, test_fraction=0.2, progress=False)


@pytest.fixture(scope="module")
def tiny_ae(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ae") / "autoencoder"
    FirstStage(build_autoencoder(load_recipe("tiny").autoencoder).eval()).save_pretrained(folder)
    return folder


def recipe(**training):
    r = load_recipe("tiny")
    base = dict(sample_every=0, log_every=1, checkpoint_every=1000, num_workers=0)
    return dataclasses.replace(r, training=dataclasses.replace(r.training, **{**base, **training}))


def losses(run: Path) -> list[float]:
    import csv

    return [float(r["loss"]) for r in csv.DictReader((run / "loss.csv").open())]


def quiet(*_a, **_k):
    pass


def test_short_training_lowers_the_loss(tiny_data, tiny_ae, tmp_path):
    train_diffusion(recipe(max_steps=30, lr=2e-3), tiny_data, tmp_path / "run", autoencoder=tiny_ae,
                    progress=False, printer=quiet)
    ls = losses(tmp_path / "run")
    assert len(ls) == 30
    assert sum(ls[-8:]) / 8 < 0.8 * sum(ls[:8]) / 8
    model_dir = tmp_path / "run" / "model"
    assert (model_dir / "model_index.json").is_file() and (model_dir / "vae" / "config.json").is_file()
    assert (tmp_path / "run" / "loss.png").is_file() and (tmp_path / "run" / "config.yaml").is_file()


def test_region_weighting_changes_the_loss_not_the_draws(tiny_data, tiny_ae, tmp_path):
    import csv

    rows = {}
    for gamma in (0.0, 0.5):
        run = tmp_path / f"g{gamma}"
        train_diffusion(recipe(max_steps=1, region_weight_gamma=gamma), tiny_data, run, autoencoder=tiny_ae,
                        progress=False, printer=quiet)
        rows[gamma] = next(csv.DictReader((run / "loss.csv").open()))
    # same model, batch, t and noise: the unweighted mse agrees, the weighted loss does not
    assert float(rows[0.5]["mse"]) == pytest.approx(float(rows[0.0]["mse"]), rel=1e-6)
    assert float(rows[0.0]["loss"]) == pytest.approx(float(rows[0.0]["mse"]), rel=1e-6)
    assert abs(float(rows[0.5]["loss"]) - float(rows[0.5]["mse"])) > 1e-4
    with pytest.raises(ValueError, match="region_weight_gamma"):
        train_diffusion(recipe(max_steps=1, region_weight_gamma=-1.0), tiny_data, tmp_path / "bad",
                        autoencoder=tiny_ae, progress=False, printer=quiet)
    assert not (tmp_path / "bad").exists()


def test_resume_equals_uninterrupted(tiny_data, tiny_ae, tmp_path):
    r = recipe(max_steps=6, checkpoint_every=3, cache_latents=True, flip=True)
    train_diffusion(r, tiny_data, tmp_path / "full", autoencoder=tiny_ae, progress=False, printer=quiet)
    train_diffusion(r, tiny_data, tmp_path / "part", autoencoder=tiny_ae, max_steps=3, progress=False, printer=quiet)
    train_diffusion(r, tiny_data, tmp_path / "part", autoencoder=tiny_ae, resume=True, progress=False, printer=quiet)
    assert losses(tmp_path / "part") == pytest.approx(losses(tmp_path / "full"), rel=1e-5, abs=1e-6)
    a = load_file(str(tmp_path / "full" / "checkpoints" / "step-0000006" / "ema.safetensors"))
    b = load_file(str(tmp_path / "part" / "checkpoints" / "step-0000006" / "ema.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_gradient_checkpointing_trains_the_same_weights(tiny_data, tiny_ae, tmp_path, monkeypatch):
    import scadm.models.unet as unet_mod

    calls: list[int] = []
    real = unet_mod.checkpoint
    monkeypatch.setattr(unet_mod, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    for on in (False, True):
        train_diffusion(recipe(max_steps=3, gradient_checkpointing=on, cache_latents=True), tiny_data, tmp_path / str(on),
                        autoencoder=tiny_ae, progress=False, printer=quiet)
        assert bool(calls) == on  # the setting reaches the UNet: its blocks recomputed in training only when on
    assert losses(tmp_path / "True") == pytest.approx(losses(tmp_path / "False"), rel=1e-5, abs=1e-6)
    a = load_file(str(tmp_path / "False" / "model" / UNET_WEIGHTS))
    b = load_file(str(tmp_path / "True" / "model" / UNET_WEIGHTS))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_export_every_writes_model_folders_for_a_learning_curve(tiny_data, tiny_ae, tmp_path):
    from scadm.pipeline import SCADMPipeline

    train_diffusion(recipe(max_steps=4, export_every=2, cache_latents=True), tiny_data, tmp_path / "run",
                    autoencoder=tiny_ae, progress=False, printer=quiet)
    exports = tmp_path / "run" / "exports"
    assert sorted(p.name for p in exports.iterdir()) == ["step-0000002", "step-0000004"]
    final = load_file(str(tmp_path / "run" / "model" / UNET_WEIGHTS))
    last = load_file(str(exports / "step-0000004" / UNET_WEIGHTS))
    first = load_file(str(exports / "step-0000002" / UNET_WEIGHTS))
    assert all(torch.equal(final[k], last[k]) for k in final)
    assert any(not torch.equal(final[k], first[k]) for k in final)
    SCADMPipeline.from_pretrained(exports / "step-0000002", device="cpu")  # a complete model folder


def test_existing_run_needs_resume(tiny_data, tiny_ae, tmp_path):
    r = recipe(max_steps=1, checkpoint_every=1)
    train_diffusion(r, tiny_data, tmp_path / "run", autoencoder=tiny_ae, progress=False, printer=quiet)
    with pytest.raises(FileExistsError, match="--resume"):
        train_diffusion(r, tiny_data, tmp_path / "run", autoencoder=tiny_ae, progress=False, printer=quiet)


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    ck = Checkpoints(tmp_path, keep_last=2)
    ck.save(1, {"model": {"w": torch.ones(3)}}, {"optimizer": {"state": {}}}, {"step": 1})
    import scadm.train.checkpoints as checkpoints

    def crash(*a, **k):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(checkpoints, "_fsync_dir", crash)  # dies after the files are written, before the rename
    with pytest.raises(KeyboardInterrupt):
        ck.save(2, {"model": {"w": torch.zeros(3)}}, {"optimizer": {"state": {}}}, {"step": 2})
    latest = ck.latest()
    assert latest is not None and latest.name == "step-0000001"
    tensors, objects, state = Checkpoints.load(latest)
    assert state["step"] == 1 and torch.equal(tensors["model"]["w"], torch.ones(3))


def test_lr_factor_warms_up_then_decays_to_zero():
    assert [lr_factor(s, 4, 20) for s in (0, 1, 3, 10, 19)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    lin = [lr_factor(s, 4, 20, "linear") for s in range(20)]
    assert lin[:4] == [0.25, 0.5, 0.75, 1.0] and lin[12] == pytest.approx(0.5) and lin[19] == pytest.approx(1 / 16)
    assert all(a >= b for a, b in zip(lin[3:], lin[4:]))
    cos = [lr_factor(s, 0, 10, "cosine") for s in range(10)]
    assert cos[0] == pytest.approx(1.0) and cos[5] == pytest.approx(0.5) and 0 < cos[9] < 0.05
    with pytest.raises(ValueError, match="lr_decay"):
        lr_factor(0, 0, 10, "step")


def test_global_batch_sampler_shards_the_same_global_batches():
    one = GlobalBatchSampler(20, 4, 0, 1, seed=3)
    two = [GlobalBatchSampler(20, 2, r, 2, seed=3) for r in range(2)]
    it1, it2 = iter(one), [iter(s) for s in two]
    for _ in range(12):  # crosses epochs
        assert next(it1) == next(it2[0]) + next(it2[1])
    resumed = iter(GlobalBatchSampler(20, 4, 0, 1, seed=3, start=7))
    again = iter(GlobalBatchSampler(20, 4, 0, 1, seed=3))
    for _ in range(7):
        next(again)
    assert next(resumed) == next(again)


def _run(cmd: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=600)


def test_two_process_ddp_equals_single_process(tiny_data, tiny_ae, tmp_path):
    base = load_recipe("tiny")
    cfg = tmp_path / "recipe.yaml"
    import yaml

    from scadm.config import to_dict

    def write(batch: int, path: Path) -> Path:
        r = dataclasses.replace(base, training=dataclasses.replace(
            base.training, batch_size=batch, max_steps=3, checkpoint_every=3, sample_every=0, log_every=1,
            num_workers=0, lr=1e-3))
        path.write_text(yaml.safe_dump(to_dict(r)))
        return path

    common = ["train", "--data", str(tiny_data), "--autoencoder", str(tiny_ae)]
    ddp = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                "-m", "scadm", *common, "--config", str(write(2, cfg)), "--out", str(tmp_path / "ddp")], tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = _run([sys.executable, "-m", "scadm", *common, "--config", str(write(4, tmp_path / "r1.yaml")),
                   "--out", str(tmp_path / "one")], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    sync = json.loads((tmp_path / "ddp" / "processes.json").read_text())
    assert sync["processes"] == 2
    assert sync["param_checksums"][0] == pytest.approx(sync["param_checksums"][1], rel=1e-9)
    # one writer: exactly one copy of every output
    assert len(list((tmp_path / "ddp" / "checkpoints").iterdir())) == 1
    assert len(losses(tmp_path / "ddp")) == 3
    a = load_file(str(tmp_path / "ddp" / "checkpoints" / "step-0000003" / "ema.safetensors"))
    b = load_file(str(tmp_path / "one" / "checkpoints" / "step-0000003" / "ema.safetensors"))
    # Same global batch, same per-sample draws: equal up to float summation order, which Adam can
    # amplify only for parameters whose gradient is ~0 (its update is lr * sign(g) there).
    diff = torch.cat([(a[k] - b[k]).flatten() for k in a])
    norm = torch.cat([a[k].flatten() for k in a]).norm()
    assert diff.norm() / norm < 1e-5
    assert (diff.abs() > 1e-5).float().mean() < 1e-3
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "one"), rel=1e-4)


def test_cli_train_synthetic_64_two_steps(tmp_path, run_cli):
    data = write_synthetic_dataset(tmp_path / "ds", n=40, size=64, seed=1, test_fraction=0.2, progress=False)
    torch.manual_seed(0)
    ae = tmp_path / "ae"
    FirstStage(build_autoencoder(load_recipe("synthetic-64").autoencoder).eval()).save_pretrained(ae)
    result = run_cli("train", "--config", "synthetic-64", "--data", data, "--out", tmp_path / "run",
                     "--autoencoder", ae, "--max-steps", "2", "--no-cache-latents")
    assert result.code == 0, result.err
    assert (tmp_path / "run" / "model" / UNET_WEIGHTS).is_file()
    # the first stage was loaded from a folder; the saved copy does not record that path
    assert "_name_or_path" not in (tmp_path / "run" / "model" / "vae" / "config.json").read_text()
    dry = run_cli("train", "--config", "synthetic-64", "--data", data, "--out", tmp_path / "dry", "--dry-run")
    assert dry.code == 0 and f"max_steps: {load_recipe('synthetic-64').training.max_steps}" in dry.out and not (tmp_path / "dry").exists()


@pytest.mark.parametrize("kind", ["vq", "kl"])
def test_autoencoder_decoder_only_phase_keeps_the_latents(tiny_data, tmp_path, kind):
    from scadm.train.autoencoder import train_autoencoder

    r = load_recipe("tiny")
    r.autoencoder = dataclasses.replace(r.autoencoder, type=kind)
    size = tuple(r.model.image_size)
    tc = dataclasses.replace(r.autoencoder_training, max_steps=3, checkpoint_every=3, lr=1e-3, scale_lr=False, log_every=1,
                             l2_weight=0.5)
    train_autoencoder(r.autoencoder, tc, tiny_data, tmp_path / "joint", image_size=size, progress=False, printer=quiet)
    tc = dataclasses.replace(tc, max_steps=6, freeze_encoder_from=3)
    train_autoencoder(r.autoencoder, tc, tiny_data, tmp_path / "ft", image_size=size, progress=False, printer=quiet)
    joint, ft = (load_file(tmp_path / run / "autoencoder" / "diffusion_pytorch_model.safetensors") for run in ("joint", "ft"))
    frozen = [k for k in joint if k.startswith(("encoder.", "quant_conv.", "quantize."))]
    trained = [k for k in joint if k.startswith(("decoder.", "post_quant_conv."))]
    assert frozen and trained
    assert all(torch.equal(joint[k], ft[k]) for k in frozen)  # the latents are those of step 3
    assert any(not torch.equal(joint[k], ft[k]) for k in trained)
    import csv

    rows = list(csv.DictReader((tmp_path / "ft" / "loss.csv").open()))
    for row in rows:  # loss = l1 + 0.5 l2 + adversarial term (+ the regulariser in the joint phase only)
        v = {k: float(x) for k, x in row.items()}
        assert v["l2"] > 0
        assert v["loss"] == pytest.approx(v["l1"] + 0.5 * v["l2"] + v["reg"] + v["d_weight"] * v["g_loss"],
                                          rel=1e-4, abs=1e-5)
        assert (v["reg"] == 0) == (v["step"] > 3)


def test_autoencoder_trains_resumes_exactly_and_reports_psnr(tiny_data, tmp_path):
    from scadm.train.autoencoder import train_autoencoder

    r = load_recipe("tiny")
    tc = dataclasses.replace(r.autoencoder_training, max_steps=6, checkpoint_every=3, disc_start=4)
    size = tuple(r.model.image_size)
    full = train_autoencoder(r.autoencoder, tc, tiny_data, tmp_path / "full", image_size=size, progress=False,
                             printer=quiet)
    train_autoencoder(r.autoencoder, tc, tiny_data, tmp_path / "part", image_size=size, max_steps=3, progress=False,
                      printer=quiet)
    train_autoencoder(r.autoencoder, tc, tiny_data, tmp_path / "part", image_size=size, resume=True, progress=False,
                      printer=quiet)
    import csv

    by_step = lambda run: {r["step"]: float(r["loss"]) for r in csv.DictReader((run / "loss.csv").open())}  # noqa: E731
    part, whole = by_step(tmp_path / "part"), by_step(tmp_path / "full")
    assert set(whole) <= set(part) and len(whole) >= 2  # the interrupted run also logged its last step (3)
    assert [part[k] for k in whole] == pytest.approx(list(whole.values()), rel=1e-5)
    assert full["metrics"]["n"] > 0 and full["metrics"]["psnr"] > 0
    assert (tmp_path / "full" / "autoencoder" / "config.json").is_file()
    FirstStage.from_pretrained(tmp_path / "full" / "autoencoder")  # diffusers format loads back


def test_autoencoder_region_weighting_from_its_step(tiny_data, tmp_path):
    import csv

    from scadm.train.autoencoder import train_autoencoder

    r = load_recipe("tiny")
    size = tuple(r.model.image_size)
    rows = {}
    for gamma in (0.0, 1.0):
        tc = dataclasses.replace(r.autoencoder_training, max_steps=3, lr=1e-3, scale_lr=False, log_every=1,
                                 checkpoint_every=3, region_weight_gamma=gamma, region_weight_from=1)
        train_autoencoder(r.autoencoder, tc, tiny_data, tmp_path / f"g{gamma}", image_size=size, progress=False,
                          printer=quiet)
        rows[gamma] = [{k: float(x) for k, x in row.items()} for row in csv.DictReader((tmp_path / f"g{gamma}" / "loss.csv").open())]
    plain, weighted = rows[0.0], rows[1.0]
    # step 1 (before region_weight_from): the same model, batch and loss
    assert weighted[0]["loss"] == pytest.approx(plain[0]["loss"], rel=1e-6)
    # from then on the weighted run optimises another loss: its logged (unweighted) l1 and l2 no longer make its loss
    for row in plain:
        assert row["loss"] == pytest.approx(row["l1"] + row["reg"] + row["d_weight"] * row["g_loss"], rel=1e-4, abs=1e-6)
    assert abs(weighted[1]["loss"] - (weighted[1]["l1"] + weighted[1]["reg"])) > 1e-4
    bad = dataclasses.replace(r.autoencoder_training, region_weight_gamma=-0.5)
    with pytest.raises(ValueError, match="region_weight_gamma"):
        train_autoencoder(r.autoencoder, bad, tiny_data, tmp_path / "bad", image_size=size, progress=False, printer=quiet)
    assert not (tmp_path / "bad").exists()


def test_autoencoder_lr_decay_follows_the_schedule(tiny_data, tmp_path):
    import csv

    from scadm.train.autoencoder import train_autoencoder

    r = load_recipe("tiny")
    size = tuple(r.model.image_size)
    tc = dataclasses.replace(r.autoencoder_training, max_steps=4, lr=1e-3, scale_lr=False, log_every=1,
                             checkpoint_every=4, lr_decay="linear")
    train_autoencoder(r.autoencoder, tc, tiny_data, tmp_path / "run", image_size=size, progress=False, printer=quiet)
    lrs = [float(row["lr"]) for row in csv.DictReader((tmp_path / "run" / "loss.csv").open())]
    assert lrs == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3])  # step n (0-based) trains at lr (1 - n / 4)
    with pytest.raises(ValueError, match="autoencoder_training.lr_decay"):
        train_autoencoder(r.autoencoder, dataclasses.replace(tc, lr_decay="step"), tiny_data, tmp_path / "bad",
                          image_size=size, progress=False, printer=quiet)
    assert not (tmp_path / "bad").exists()


def test_train_log_keeps_an_older_files_columns(tmp_path):
    from scadm.train.log import TrainLog

    (tmp_path / "loss.csv").write_text("step,loss\n1,0.5\n")
    log = TrainLog(tmp_path, True, ["loss", "lr"])
    log.log(2, {"loss": 0.25, "lr": 1e-3})
    log.plot("t")
    log.close()
    assert (tmp_path / "loss.csv").read_text().splitlines() == ["step,loss", "1,0.5", "2,0.25"]
    assert (tmp_path / "loss.png").is_file()
