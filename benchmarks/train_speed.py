"""Training and sampling speed of a config on this machine (prints figures; not a test).

    python benchmarks/train_speed.py --config synthetic-64 [--steps 20] [--threads 2]

Training: full steps (style encoder + UNet forward, backward, AdamW) on random inputs of the
config's shapes and batch size, after 2 warm-up steps. Sampling: DDIM with the config's
default steps and classifier-free guidance (doubled batch), images per second.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from scadm.conditions import Conditions
from scadm.config import load_recipe
from scadm.diffusion import ClassifierFreeGuidance, NoiseSchedule, sample
from scadm.models.ldm import SemanticLDM


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="synthetic-64")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--sample-batch", type=int, default=8)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.config)
    cfg, tc = recipe.model, recipe.training
    b = args.batch_size or tc.batch_size
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = SemanticLDM(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    h, w = cfg.image_size
    C = cfg.unet.num_classes
    mask = F.one_hot(torch.randint(0, C, (b, h // 8, w // 8)), C).permute(0, 3, 1, 2).float()
    mask = F.interpolate(mask, size=(h, w), mode="nearest").to(device)
    image = torch.rand(b, 3, h, w, device=device) * 2 - 1
    z0 = torch.randn(b, cfg.latent_channels, *cfg.latent_size, device=device)
    schedule = NoiseSchedule(cfg.schedule)

    def step() -> None:
        t = torch.randint(0, 1000, (b,), device=device)
        eps = torch.randn_like(z0)
        z_t = schedule.q_sample(z0, t, eps)
        loss = (model(z_t, t, model.conditions(mask, image)) - eps).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    dt = (time.perf_counter() - t0) / args.steps
    print(f"config {cfg.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
          f"device {device}, threads {torch.get_num_threads()}")
    print(f"training: batch {b}, {1 / dt:.3f} it/s, {b / dt:.1f} samples/s ({dt:.3f} s/step, mean of {args.steps})")

    model.eval()
    sb, n_steps = args.sample_batch, cfg.sampling.steps
    with torch.no_grad():
        cond = model.conditions(mask[:sb], image[:sb])
        null = model.conditioner.null(mask[:sb])
        fn = ClassifierFreeGuidance(model.unet, model.prepare(null), cfg.sampling.guidance_scale)
        prepared = model.prepare(cond)
        gens = [torch.Generator(device).manual_seed(i) for i in range(sb)]
        shape = (sb, cfg.latent_channels, *cfg.latent_size)
        sample(fn, shape, prepared, schedule, steps=2, generator=gens, device=device)  # warm-up
        t0 = time.perf_counter()
        sample(fn, shape, prepared, schedule, steps=n_steps, generator=gens, device=device)
        dt = time.perf_counter() - t0
    print(f"sampling: DDIM {n_steps} steps, guidance on, batch {sb}: {sb / dt:.2f} latents/s "
          f"({dt / n_steps * 1000:.1f} ms per step for the batch; decoding not included)")


if __name__ == "__main__":
    main()
