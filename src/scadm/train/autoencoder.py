"""First-stage training (``scadm train-autoencoder``): LDM's autoencoder recipe on diffusers models.

Loss (taming-transformers / LDM): L1 reconstruction (+ a squared error when ``l2_weight`` > 0,
+ LPIPS when local weights are given)
+ a PatchGAN hinge adversarial term, switched on at ``disc_start`` and weighted adaptively
by the ratio of the reconstruction and adversarial gradient norms at the decoder's last
layer, + the codebook and commitment loss (VQ) or a KL term (KL). Optionally the last steps
train the decoder alone (``freeze_encoder_from``), which sharpens reconstructions without
moving the latents. Options not in LDM: a linear or cosine lr decay (``lr_decay``), and each
pixel's reconstruction error weighted by the area of its face part (``region_weight_gamma``),
so that small parts count. PSNR and SSIM on the test split are reported at the end. The
result is a diffusers ``save_pretrained`` folder.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from ..config import AutoencoderConfig, AutoencoderTrainConfig, to_dict
from ..diffusion.objective import region_weights
from ..models.autoencoder import FirstStage, build_autoencoder
from ..models.discriminator import PatchDiscriminator
from .batches import GlobalBatchSampler, make_accelerator, sample_generator
from .checkpoints import Checkpoints, rng_state, set_rng_state
from .log import TrainLog, check_finite, progress_bar
from .lr_schedule import LR_DECAYS, lr_factor


def frozen_encoder(tc: AutoencoderTrainConfig, step: int) -> bool:
    """Is `step` in the decoder-only phase (``freeze_encoder_from``)?"""
    return tc.freeze_encoder_from is not None and step >= tc.freeze_encoder_from


def adaptive_weight(nll: Tensor, g_loss: Tensor, last_layer: Tensor, disc_weight: float) -> Tensor:
    """LDM's d_weight = ||grad nll|| / (||grad g_loss|| + 1e-4), clamped to [0, 1e4], times disc_weight."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    w = torch.norm(nll_grad) / (torch.norm(g_grad) + 1e-4)
    return torch.clamp(w, 0.0, 1e4).detach() * disc_weight


def train_autoencoder(
    ae_cfg: AutoencoderConfig,
    tc: AutoencoderTrainConfig,
    data: str | Path,
    out: str | Path,
    *,
    image_size: tuple[int, int],
    resume: bool = False,
    max_steps: int | None = None,
    dry_run: bool = False,
    progress: bool = True,
    printer=print,
) -> dict[str, Any]:
    from ..data import FaceDataset

    if max_steps is not None:
        tc = dataclasses.replace(tc, max_steps=max_steps)
    out = Path(out)
    if tc.region_weight_gamma < 0:
        raise ValueError(f"autoencoder_training.region_weight_gamma must be >= 0 (0 = off), got {tc.region_weight_gamma}")
    if tc.lr_decay not in LR_DECAYS:
        raise ValueError(f"autoencoder_training.lr_decay must be one of {', '.join(LR_DECAYS)}, got {tc.lr_decay!r}")
    acc = make_accelerator(tc.mixed_precision)
    if acc.num_processes > 1:
        raise ValueError("train-autoencoder runs in one process; launch it without torchrun/accelerate")
    lr = tc.lr * tc.batch_size if tc.scale_lr else tc.lr
    resolved = {"autoencoder": to_dict(ae_cfg), "autoencoder_training": to_dict(tc),
                "resolved": {"lr": lr, "image_size": list(image_size)}}
    printer(yaml.safe_dump(resolved, sort_keys=False).rstrip())
    if dry_run:
        return {"dry_run": True, "config": resolved}

    lpips = None
    if tc.perceptual_weight > 0 and tc.lpips_vgg and tc.lpips_lin:
        from ..eval.lpips import LPIPS

        lpips = LPIPS(tc.lpips_vgg, tc.lpips_lin).to(acc.device).eval().requires_grad_(False)
    # flips are drawn per sample from (seed, step, position), so a resumed run sees the same ones
    dataset = FaceDataset(data, split="train", size=tuple(image_size), flip=False, with_attributes=False)
    num_classes = dataset.label_set.num_classes

    torch.manual_seed(tc.seed)
    ae = build_autoencoder(ae_cfg).to(acc.device)
    disc = PatchDiscriminator(ae_cfg.in_channels, tc.disc_channels, tc.disc_layers).to(acc.device)
    opt_ae = torch.optim.Adam(ae.parameters(), lr=lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.9))
    ckpts = Checkpoints(out, tc.keep_last)
    start = 0
    if resume:
        latest, tensors, objects, state = ckpts.load_latest()
        ae.load_state_dict(tensors["autoencoder"])
        disc.load_state_dict(tensors["discriminator"])
        opt_ae.load_state_dict(objects["opt_ae"])
        opt_d.load_state_dict(objects["opt_d"])
        set_rng_state(objects["rng"])
        start = int(state["step"])
        printer(f"resumed from {latest} (step {start})")
    elif ckpts.latest() is not None:
        raise FileExistsError(f"{out} already holds checkpoints; pass --resume to continue it or choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))

    sampler = GlobalBatchSampler(len(dataset), tc.batch_size, 0, 1, tc.seed, start)
    batches = iter(torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=tc.num_workers,
                                               persistent_workers=tc.num_workers > 0))
    log = TrainLog(out, True, ["loss", "l1", "l2", "perceptual", "reg", "g_loss", "d_loss", "d_weight", "lr"])
    if resume:
        log.truncate_after(start)
    last_layer = ae.decoder.conv_out.weight
    is_vq = ae_cfg.type == "vq"
    bar = progress_bar(tc.max_steps, start, progress, "train autoencoder")
    ae.train()
    disc.train()
    values: dict[str, float] = {}
    for step in range(start, tc.max_steps):
        if frozen_encoder(tc, step) and step in (start, tc.freeze_encoder_from):
            for name in ("encoder", "quant_conv", "quantize"):
                if hasattr(ae, name):
                    getattr(ae, name).requires_grad_(False)
            printer(f"step {step}: encoder frozen, decoder-only fine-tuning to step {tc.max_steps}")
        for opt in (opt_ae, opt_d):
            for g in opt.param_groups:
                g["lr"] = lr * lr_factor(step, 0, tc.max_steps, tc.lr_decay)
        batch = next(batches)
        x, label = batch["image"].to(acc.device), batch["label"].to(acc.device)
        if tc.flip:
            flip = torch.tensor([torch.rand((), generator=sample_generator(tc.seed, step, j)) < 0.5
                                 for j in range(x.shape[0])], device=acc.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            label = torch.where(flip[:, None, None], label.flip(-1), label)  # (areas do not need the l/r swap)
        weighted = tc.region_weight_gamma > 0 and step >= tc.region_weight_from
        pixel_weight = (region_weights(F.one_hot(label, num_classes).permute(0, 3, 1, 2), tuple(x.shape[2:]),
                                       tc.region_weight_gamma) if weighted else None)
        disc_on = step >= tc.disc_start
        with acc.autocast():
            if is_vq:
                out_ = ae(x)
                x_rec, reg = out_.sample, out_.commit_loss.mean() * tc.codebook_weight
            else:
                post = ae.encode(x).latent_dist
                x_rec = ae.decode(post.sample()).sample
                reg = post.kl().mean() * tc.kl_weight
            if frozen_encoder(tc, step):  # the latents are fixed: their regulariser has nothing to train
                reg = torch.zeros((), device=x.device)
            err = x - x_rec
            l1, l2 = err.abs().mean(), err.pow(2).mean()  # logged unweighted, comparable across recipes
            w_l1, w_l2 = ((pixel_weight * err.abs()).mean(), (pixel_weight * err.pow(2)).mean()) if weighted else (l1, l2)
            perceptual = lpips(x, x_rec).mean() if lpips is not None else torch.zeros((), device=x.device)
            nll = tc.l1_weight * w_l1 + tc.l2_weight * w_l2 + tc.perceptual_weight * perceptual
            loss = nll + reg
            g_loss = d_weight = torch.zeros((), device=x.device)
            if disc_on:
                g_loss = -disc(x_rec).mean()
                d_weight = adaptive_weight(nll, g_loss, last_layer, tc.disc_weight)
                loss = loss + d_weight * g_loss
        check_finite({"loss": loss.item()}, step + 1, out)
        opt_ae.zero_grad(set_to_none=True)
        acc.backward(loss)
        opt_ae.step()
        d_loss = torch.zeros(())
        if disc_on:
            with acc.autocast():
                logits_real, logits_fake = disc(x), disc(x_rec.detach())
                d_loss = 0.5 * (F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean())
            opt_d.zero_grad(set_to_none=True)
            acc.backward(d_loss)
            opt_d.step()
        done = step + 1
        values = {"loss": loss.item(), "l1": l1.item(), "l2": l2.item(), "perceptual": perceptual.item(),
                  "reg": reg.item(), "g_loss": g_loss.item(), "d_loss": d_loss.item(), "d_weight": float(d_weight),
                  "lr": opt_ae.param_groups[0]["lr"]}
        bar.update(1)
        bar.set_postfix(l1=f"{values['l1']:.4f}", gan="on" if disc_on else "off")
        if done % tc.log_every == 0 or done == tc.max_steps:
            log.log(done, values)
        if done % tc.checkpoint_every == 0 or done == tc.max_steps:
            ckpts.save(done, {"autoencoder": ae.state_dict(), "discriminator": disc.state_dict()},
                       {"opt_ae": opt_ae.state_dict(), "opt_d": opt_d.state_dict(), "rng": rng_state()},
                       {"step": done, "loss": values["loss"]})
    bar.close()
    log.plot("autoencoder: training loss")
    log.close()
    first_stage = FirstStage(ae.eval())
    first_stage.save_pretrained(out / "autoencoder")
    metrics = evaluate_reconstruction(first_stage, data, image_size, acc.device)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    printer(f"test reconstruction: PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f} "
            f"over {metrics['n']} images; autoencoder in {out / 'autoencoder'}")
    return {"step": tc.max_steps, "last": values, "metrics": metrics, "run": str(out)}


@torch.no_grad()
def evaluate_reconstruction(first_stage: FirstStage, data: str | Path, image_size: tuple[int, int],
                            device: torch.device, max_images: int = 500) -> dict[str, float]:
    """PSNR and SSIM (torchmetrics, images in [0, 1]) of encode -> decode on the test split."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    from ..data import FaceDataset

    try:
        ds = FaceDataset(data, split="test", size=tuple(image_size), flip=False, with_attributes=False)
    except (FileNotFoundError, ValueError):
        return {"psnr": float("nan"), "ssim": float("nan"), "n": 0, "split": "test (missing)"}
    n = min(len(ds), max_images)
    psnr = ssim = 0.0
    for lo in range(0, n, 32):
        x = torch.stack([ds[i]["image"] for i in range(lo, min(n, lo + 32))]).to(device)
        rec = first_stage.decode(first_stage.encode(x)).clamp(-1, 1)
        a, b = (rec + 1) / 2, (x + 1) / 2
        k = x.shape[0]
        psnr += peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3)).sum().item()
        ssim += structural_similarity_index_measure(a, b, data_range=1.0, reduction="none").sum().item()
        _ = k
    return {"psnr": psnr / n, "ssim": ssim / n, "n": n, "split": "test"}
