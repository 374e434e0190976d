"""Latent diffusion training (``scadm train``): condition encoder + UNet, jointly, on a frozen first stage.

One process, ``torchrun --nproc_per_node N`` or ``accelerate launch``: the same code. Each
process takes its slice of every global batch; gradients are averaged by DDP; only the main
process writes files. See :mod:`scadm.train.batches` for the determinism that makes a resumed
or multi-process run equal an uninterrupted single-process run.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from ..conditioning_modes import get_mode
from ..conditions import ConditionInputs
from ..config import Recipe, to_dict
from ..diffusion import NoiseSchedule, diffusion_loss, region_weights
from ..diffusion.objective import condition_dropout
from ..models.autoencoder import FirstStage
from ..models.conditioning import signed_attributes
from ..models.ldm import SemanticLDM
from ..tempfiles import remove_stale, temp_path
from .batches import GlobalBatchSampler, make_accelerator, sample_generator
from .checkpoints import Checkpoints, rng_state, set_rng_state
from .ema import EMA
from .log import TrainLog, check_finite, progress_bar
from .lr_schedule import lr_factor
from .paths import resolve_path


class _Denoiser(nn.Module):
    """What DDP wraps: raw conditions in, eps out (so every trained parameter runs inside forward)."""

    def __init__(self, model: SemanticLDM) -> None:
        super().__init__()
        self.model = model

    def forward(self, z_t: Tensor, t: Tensor, inputs: ConditionInputs) -> Tensor:
        return self.model(z_t, t, self.model.conditioner.encode(inputs))


def _flip_batch(image: Tensor, label: Tensor, flip: Tensor, perm: Tensor) -> tuple[Tensor, Tensor]:
    """Mirror the chosen samples and swap their left/right classes."""
    if not flip.any():
        return image, label
    image, label = image.clone(), label.clone()
    image[flip] = image[flip].flip(-1)
    label[flip] = perm[label[flip].flip(-1)]
    return image, label


def train_diffusion(
    recipe: Recipe,
    data: str | Path,
    out: str | Path,
    *,
    autoencoder: str | Path | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    cache_latents: bool | None = None,
    dry_run: bool = False,
    progress: bool = True,
    printer=print,
) -> dict[str, Any]:
    """Train; returns a summary dict (final step, last losses, run folder)."""
    from ..data import FaceDataset

    tc = recipe.training
    if tc.region_weight_gamma < 0:
        raise ValueError(f"training.region_weight_gamma must be >= 0 (0 = off), got {tc.region_weight_gamma}")
    lr_factor(0, 0, 1, tc.lr_decay)  # checks the name before anything is written
    if max_steps is not None:
        tc = dataclasses.replace(tc, max_steps=max_steps)
    if cache_latents is not None:
        tc = dataclasses.replace(tc, cache_latents=cache_latents)
    ae_path = resolve_path(autoencoder or tc.autoencoder)
    tc = dataclasses.replace(tc, autoencoder=str(ae_path) if ae_path else None)
    from ..models.face_parser import dataset_domain

    recipe = dataclasses.replace(recipe, training=tc)
    if recipe.model.domain is None:  # the model knows what its data held
        recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, domain=dataset_domain(data)))
    cfg = recipe.model
    out = Path(out)

    acc = make_accelerator(tc.mixed_precision)
    main = acc.is_main_process
    world, rank = acc.num_processes, acc.process_index
    lr = tc.lr if tc.lr is not None else tc.base_lr * tc.batch_size * tc.grad_accum * world
    resolved = {**to_dict(recipe), "resolved": {"lr": lr, "processes": world,
                                                 "global_batch": tc.batch_size * tc.grad_accum * world,
                                                 "mixed_precision": str(acc.mixed_precision)}}
    if main:
        printer(yaml.safe_dump(resolved, sort_keys=False).rstrip())
    if dry_run:
        return {"dry_run": True, "config": resolved}

    # --- inputs -----------------------------------------------------------
    if ae_path is None:
        raise ValueError("no first stage: pass --autoencoder PATH or set training.autoencoder in the config")
    first_stage = FirstStage.from_pretrained(ae_path, cfg.latent_scale if cfg.latent_scale > 0 else 1.0).to(acc.device)
    mode = get_mode(cfg.conditioning.type)
    dataset = FaceDataset(data, split="train", size=tuple(cfg.image_size), flip=False,
                          with_attributes=mode.takes_attributes)
    if mode.takes_attributes and not dataset.has_attributes:
        raise ValueError(f"conditioning {mode.name!r} needs attributes, but {data} has no attributes.csv")
    if cfg.latent_scale <= 0:  # LDM's scale_by_std: unit-variance latents, fixed for the model's life
        scale = latent_scale_by_std(first_stage, dataset, acc.device)
        cfg = dataclasses.replace(cfg, latent_scale=scale)
        recipe = dataclasses.replace(recipe, model=cfg)
        first_stage.latent_scale = scale
        resolved["model"]["latent_scale"] = scale
        if main:
            printer(f"latent_scale set to {scale:.5f} (1 / std of the training latents)")
    label_set = dataset.label_set
    if label_set.num_classes != cfg.unet.num_classes:
        raise ValueError(f"{data} has {label_set.num_classes} classes; the model expects {cfg.unet.num_classes}")
    flip_perm = torch.as_tensor(label_set.flip_permutation(), device=acc.device)

    # --- model, optimiser, EMA -------------------------------------------
    torch.manual_seed(tc.seed)
    model = SemanticLDM(cfg).to(acc.device)
    model.unet.gradient_checkpointing = tc.gradient_checkpointing
    ema = EMA(model, tc.ema_decay, tc.ema_warmup)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=tc.weight_decay)
    schedule = NoiseSchedule(cfg.schedule)
    ckpts = Checkpoints(out, tc.keep_last)
    start = 0
    if resume:
        latest, tensors, objects, state = ckpts.load_latest()
        model.load_state_dict(tensors["model"])
        ema.load_state_dict(tensors["ema"], state["ema_updates"])
        optimizer.load_state_dict(objects["optimizer"])
        set_rng_state(objects["rng"])
        start = int(state["step"])
        if main:
            printer(f"resumed from {latest} (step {start})")
    elif ckpts.latest() is not None:
        raise FileExistsError(f"{out} already holds checkpoints; pass --resume to continue it or choose a new --out")
    denoiser = acc.prepare(_Denoiser(model))
    optimizer = acc.prepare(optimizer)

    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))

    latents = (_cache_latents(first_stage, dataset, acc, flip=tc.flip, num_workers=tc.num_workers)
               if tc.cache_latents else None)
    id_index = {key: i for i, key in enumerate(dataset.ids)}
    sampler = GlobalBatchSampler(len(dataset), tc.batch_size, rank, world, tc.seed, start * tc.grad_accum)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=tc.num_workers,
                                         persistent_workers=tc.num_workers > 0)
    batches = iter(loader)

    log = TrainLog(out, main, ["loss", "mse", "lr"])
    if resume:
        log.truncate_after(start)
    previews = _PreviewFaces(data, cfg) if main and tc.sample_every > 0 else None
    p2 = (tc.p2_k, tc.p2_gamma) if tc.p2_gamma else None
    bar = progress_bar(tc.max_steps, start, main and progress, f"train {cfg.name}")
    last: dict[str, float] = {}
    denoiser.train()
    for step in range(start, tc.max_steps):
        for g in optimizer.param_groups:
            g["lr"] = lr * lr_factor(step, tc.warmup_steps, tc.max_steps, tc.lr_decay)
        loss_sum = mse_sum = 0.0
        for micro in range(tc.grad_accum):
            k = step * tc.grad_accum + micro
            batch = next(batches)
            positions = [rank * tc.batch_size + i for i in range(len(batch["id"]))]
            gens = [sample_generator(tc.seed, k, j) for j in positions]
            coins = torch.stack([torch.rand(4, generator=g) for g in gens]).to(acc.device)  # flip, style, mask, attributes
            image = batch["image"].to(acc.device)
            label = batch["label"].to(acc.device)
            flip = coins[:, 0] < 0.5 if tc.flip else torch.zeros(len(gens), dtype=torch.bool, device=acc.device)
            image, label = _flip_batch(image, label, flip, flip_perm)
            with torch.no_grad():
                if latents is not None:
                    idx = torch.tensor([id_index[i] for i in batch["id"]])
                    z0 = torch.where(flip.cpu()[:, None, None, None], latents["flip"][idx], latents["plain"][idx]).to(acc.device)
                else:
                    z0 = first_stage.encode(image)
            mask = F.one_hot(label, cfg.unet.num_classes).permute(0, 3, 1, 2).float()
            inputs = ConditionInputs(
                mask=mask, image=image if mode.takes_style_image else None,
                attributes=signed_attributes(batch["attributes"].to(acc.device)) if mode.takes_attributes else None,
            )
            cond = condition_dropout(inputs, keep_style=coins[:, 1] >= tc.style_dropout,
                                     keep_mask=coins[:, 2] >= tc.mask_dropout,
                                     keep_attributes=coins[:, 3] >= tc.attribute_dropout)
            t = torch.stack([torch.randint(0, schedule.num_train_timesteps, (), generator=g) for g in gens]).to(acc.device)
            noise = torch.stack([torch.randn(z0.shape[1:], generator=g) for g in gens]).to(acc.device)
            pixel_weight = region_weights(mask, z0.shape[2:], tc.region_weight_gamma) if tc.region_weight_gamma else None
            ctx = acc.no_sync(denoiser) if micro < tc.grad_accum - 1 else contextlib.nullcontext()
            with ctx, acc.autocast():
                loss, info = diffusion_loss(denoiser, z0, cond, schedule, t=t, noise=noise, p2=p2,
                                            pixel_weight=pixel_weight)
                acc.backward(loss / tc.grad_accum)
            loss_sum += loss.item() / tc.grad_accum
            mse_sum += info["mse_per_sample"].mean().item() / tc.grad_accum
        done = step + 1
        last = {"loss": _mean_across(acc, loss_sum), "mse": _mean_across(acc, mse_sum), "lr": optimizer.param_groups[0]["lr"]}
        check_finite(last, done, out)  # every process sees the same mean: all stop together
        if tc.grad_clip > 0:
            acc.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(model)
        bar.update(1)
        bar.set_postfix(loss=f"{last['loss']:.4f}")
        if done % tc.log_every == 0 or done == tc.max_steps:
            log.log(done, last)
        if main and previews is not None and (done % tc.sample_every == 0 or done == tc.max_steps):
            previews.render(_ema_model(model, ema), first_stage, out / "samples" / f"step-{done:07d}.png", tc.preview_steps)
            log.plot(f"{cfg.name}: training loss")
        if main and tc.export_every and done % tc.export_every == 0:
            _export_atomically(_ema_model(model, ema), first_stage, out / "exports" / f"step-{done:07d}")
        if done % tc.checkpoint_every == 0 or done == tc.max_steps:
            acc.wait_for_everyone()
            if main:
                ckpts.save(done, {"model": model.state_dict(), "ema": ema.state_dict()},
                           {"optimizer": optimizer.state_dict(), "rng": rng_state()},
                           {"step": done, "ema_updates": ema.num_updates, "loss": last["loss"]})
    bar.close()
    acc.wait_for_everyone()
    # every process's parameter checksum, so a multi-process run can show its ranks stayed in sync
    checksum = torch.tensor([sum(p.detach().double().sum().item() for p in model.parameters())], device=acc.device)
    checksums = acc.gather(checksum).tolist()
    if main:
        log.plot(f"{cfg.name}: training loss")
        from ..pipeline import export_model

        export_model(_ema_model(model, ema), first_stage, out / "model")
        (out / "processes.json").write_text(json.dumps({"processes": world, "param_checksums": checksums}) + "\n")
        printer(f"done: step {tc.max_steps}, loss {last.get('loss', float('nan')):.4f}; "
                f"model (EMA weights) in {out / 'model'}")
    log.close()
    return {"step": tc.max_steps, "last": last, "run": str(out), "param_checksums": checksums}


def _mean_across(acc, value: float) -> float:
    if acc.num_processes == 1:
        return value
    t = torch.tensor([value], device=acc.device)
    return acc.reduce(t, reduction="mean").item()


def _export_atomically(model: SemanticLDM, first_stage: FirstStage, folder: Path) -> None:
    """export_model into a temporary folder renamed into place (a killed run leaves no half export)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(folder.parent)
    from ..pipeline import export_model

    tmp = temp_path(folder)
    export_model(model, first_stage, tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)


def _ema_model(model: SemanticLDM, ema: EMA) -> SemanticLDM:
    copy_ = copy.deepcopy(model).eval()
    ema.copy_to(copy_)
    return copy_


@torch.no_grad()
def latent_scale_by_std(first_stage: FirstStage, dataset, device, n: int = 512) -> float:
    """1 / std of the (unscaled) latents of the first n training images."""
    x = torch.stack([dataset[i]["image"] for i in range(min(n, len(dataset)))]).to(device)
    z = torch.cat([first_stage.encode(x[i:i + 64]) for i in range(0, len(x), 64)]) / first_stage.latent_scale
    return float(1.0 / z.float().std())


def _cache_latents(first_stage: FirstStage, dataset, acc, *, flip: bool, num_workers: int = 0) -> dict[str, Tensor]:
    """Encode the whole training split once (and its mirror image when flipping)."""
    from tqdm.auto import tqdm

    plain, flipped = [], []
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, num_workers=num_workers)
    with torch.no_grad():
        for batch in tqdm(loader, desc="caching latents", disable=not acc.is_main_process):
            x = batch["image"].to(acc.device)
            plain.append(first_stage.encode(x).cpu())
            if flip:
                flipped.append(first_stage.encode(x.flip(-1)).cpu())
    plain_t = torch.cat(plain)
    return {"plain": plain_t, "flip": torch.cat(flipped) if flipped else plain_t}


class _PreviewFaces:
    """A fixed set of test faces and a grid of the four applications, for the run folder."""

    def __init__(self, data: str | Path, cfg) -> None:
        from ..data import FaceDataset

        attrs = get_mode(cfg.conditioning.type).takes_attributes
        try:
            ds = FaceDataset(data, split="test", size=tuple(cfg.image_size), flip=False, with_attributes=attrs)
        except (FileNotFoundError, ValueError):
            ds = FaceDataset(data, split="train", size=tuple(cfg.image_size), flip=False, with_attributes=attrs)
        items = [ds[i] for i in range(min(4, len(ds)))]
        self.images = torch.stack([it["image"] for it in items])
        self.labels = torch.stack([it["label"] for it in items])
        self.attributes = torch.stack([it["attributes"] for it in items]) if ds.has_attributes else None

    def render(self, model: SemanticLDM, first_stage: FirstStage, path: Path, steps: int) -> None:
        from ..pipeline import SCADMPipeline, SamplingOptions, swap_tokens
        from ..grids import image_grid

        pipe = SCADMPipeline.from_networks(model, first_stage, device=first_stage.model.device)
        x, ids = self.images.to(pipe.device), self.labels.to(pipe.device)
        if not pipe.has_style:  # attribute / mask-token / unconditional models: samples from each face's conditions
            attrs = None if self.attributes is None else self.attributes.to(pipe.device)
            rows = {"real": x}
            for seed in (0, 1):
                rows[f"sample (seed {seed})"] = pipe.generate(ids, n=len(ids), attributes=attrs, steps=steps,
                                                              seed=seed * len(ids)).tensors
            path.parent.mkdir(parents=True, exist_ok=True)
            image_grid(rows, path, label_set=pipe.label_set, masks=ids)
            return
        ref_x, ref_ids = x.roll(1, 0), ids.roll(1, 0)
        opts = SamplingOptions(steps=steps, seed=0)
        tokens = pipe.style_tokens(x, ids)
        ref_tokens = pipe.style_tokens(ref_x, ref_ids)
        hair_eye = pipe.label_set.indices(["hair", "l_eye"])
        rows = {
            "target": x,
            "reference": ref_x,
            "reconstruction": pipe.generate_from_tokens(ids, tokens, opts).tensors,
            "total swap": pipe.generate_from_tokens(ids, swap_tokens(tokens, ref_tokens, None, pipe.token_classes), opts).tensors,
            "swap hair + l_eye": pipe.generate_from_tokens(
                ids, swap_tokens(tokens, ref_tokens, hair_eye, pipe.token_classes), opts).tensors,
            "noise-based": pipe.generate(ids, steps=steps, seed=0).tensors,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        image_grid(rows, path, label_set=pipe.label_set, masks=ids)
