"""Training speed and memory at the paper's size (prints figures; not a test).

    python benchmarks/paper_train_step.py [--config paper-256] [--batch-sizes 1,2] [--steps 3] [--threads 2]

One training step = the style encoder and the UNet forward on cached latents, the loss,
backward and AdamW, exactly what `scadm train` does per micro-batch (the first stage is not in
it: `training.cache_latents`). For each precision (fp32; on a GPU also bf16 autocast), with and
without gradient checkpointing (`training.gradient_checkpointing`), and each batch size:
seconds per step (median of --steps after one warm-up), samples per second, and the peak
memory. Each setting runs in a fresh process, so its peak is its own (CUDA:
max_memory_allocated; CPU: the process's peak resident set, VmHWM). Memory per sample is the
slope of the peak between the smallest and the largest batch; the fixed part (weights,
gradients, AdamW's two moments: 16 bytes per parameter in fp32) is printed next to it.

Random weights and inputs (the timing does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from scadm.config import autocast_dtype, load_recipe
from scadm.diffusion import NoiseSchedule, diffusion_loss
from scadm.models.ldm import SemanticLDM

from paper_step import median_seconds  # benchmarks/ is the script's folder


def _peak_gib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20  # kB
    return float("nan")


def one_setting(config: str, precision: str, ckpt: bool, b: int, steps: int) -> dict:
    """Time `steps` training steps (after one warm-up) of one setting in this process."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = load_recipe(config).model
    torch.manual_seed(0)
    model = SemanticLDM(cfg).to(device).train()
    model.unet.gradient_checkpointing = ckpt
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    schedule = NoiseSchedule(cfg.schedule)
    h, w = cfg.image_size
    C = cfg.unet.num_classes
    g = torch.Generator().manual_seed(b)
    ids = F.interpolate(torch.randint(0, C, (b, 1, h // 16, w // 16), generator=g).float(), size=(h, w))[:, 0]
    mask = F.one_hot(ids.long(), C).permute(0, 3, 1, 2).float().to(device)
    image = (torch.rand(b, 3, h, w, generator=g) * 2 - 1).to(device)
    z0 = torch.randn(b, cfg.latent_channels, *cfg.latent_size, generator=g).to(device)
    dtype = autocast_dtype(precision)

    def step() -> None:
        with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            loss, _ = diffusion_loss(model, z0, model.conditions(mask, image), schedule)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    seconds = median_seconds(step, steps, device)  # its warm-up also creates AdamW's state
    return {"seconds": seconds, "peak_gib": _peak_gib(device),
            "params": sum(p.numel() for p in model.parameters()), "device": device,
            "threads": torch.get_num_threads(), "latent": list(cfg.latent_size)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="paper-256")
    ap.add_argument("--batch-sizes", default="1,2")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precisions", default=None, help="comma-separated fp32,bf16 (default: fp32 on CPU, both on GPU)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # precision,checkpointing,batch: one setting
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        precision, ckpt, b = args.one.split(",")
        print(json.dumps(one_setting(args.config, precision, ckpt == "1", int(b), args.steps)))
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precisions = (args.precisions or ("fp32,bf16" if device == "cuda" else "fp32")).split(",")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    rows = {}
    for precision in precisions:
        for ckpt in (False, True):
            for b in batches:
                cmd = [sys.executable, __file__, "--config", args.config, "--steps", str(args.steps),
                       "--one", f"{precision},{int(ckpt)},{b}"] + (["--threads", str(args.threads)] if args.threads else [])
                r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
                if not rows:
                    fixed = r["params"] * 16 / 2**30
                    print(f"{args.config} on {r['device']} ({r['threads']} threads): {r['params'] / 1e6:.1f} M parameters, "
                          f"latent {r['latent']}; weights + gradients + AdamW moments: {fixed:.2f} GiB")
                rows[precision, ckpt, b] = r
                print(f"{precision:>4}  checkpointing {'on ' if ckpt else 'off'}  batch {b:>3}: {r['seconds']:7.2f} s/step, "
                      f"{b / r['seconds']:6.2f} samples/s, peak {r['peak_gib']:6.2f} GiB", flush=True)
    if len(batches) > 1:
        lo, hi = min(batches), max(batches)
        for precision in precisions:
            for ckpt in (False, True):
                slope = (rows[precision, ckpt, hi]["peak_gib"] - rows[precision, ckpt, lo]["peak_gib"]) / (hi - lo)
                print(f"{precision} checkpointing {'on ' if ckpt else 'off'}: {slope:.2f} GiB per sample "
                      f"(peak slope between batch {lo} and {hi})")


if __name__ == "__main__":
    main()
