"""Training speed and memory at the paper's size (prints figures; not a test).

    python benchmarks/paper_train_step.py [--config paper-256] [--batch-sizes 1,2] [--steps 3] [--threads 2]

One training step = the style encoder and the UNet forward on cached latents, the loss,
backward and AdamW, exactly what `scadm train` does per micro-batch (the first stage is not in
it: `training.cache_latents`). For each precision (fp32; on a GPU also bf16 autocast), with and
without gradient checkpointing (`training.gradient_checkpointing`), and each batch size:
seconds per step (median of --steps after one warm-up), samples per second, and the peak memory
of the step above what the model and optimiser hold (CUDA: max_memory_allocated; CPU: the
process's peak resident set, reset before each setting). Memory per sample is the slope of
that peak between the smallest and the largest batch.

Random weights and inputs (the timing does not depend on them).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from scadm.config import load_recipe
from scadm.diffusion import NoiseSchedule, diffusion_loss
from scadm.models.ldm import SemanticLDM


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _rss_gib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20  # kB
    return float("nan")


def reset_peak(device: str) -> float:
    """Reset the peak counter; -> the memory in use now (GiB)."""
    gc.collect()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**30
    try:  # Linux: writing 5 to clear_refs resets VmHWM (the peak resident set) to the current one
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _rss_gib("VmRSS")


def peak(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else _rss_gib("VmHWM")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="paper-256")
    ap.add_argument("--batch-sizes", default="1,2")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precisions", default=None, help="comma-separated fp32,bf16 (default: fp32 on CPU, both on GPU)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precisions = (args.precisions or ("fp32,bf16" if device == "cuda" else "fp32")).split(",")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    cfg = load_recipe(args.config).model
    torch.manual_seed(0)
    model = SemanticLDM(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    schedule = NoiseSchedule(cfg.schedule)
    h, w = cfg.image_size
    C = cfg.unet.num_classes
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.config} on {device} ({torch.get_num_threads()} threads): {n_params / 1e6:.1f} M parameters "
          f"(UNet {sum(p.numel() for p in model.unet.parameters()) / 1e6:.1f} M), latent {cfg.latent_size}")

    def inputs(b: int):
        g = torch.Generator().manual_seed(b)
        ids = F.interpolate(torch.randint(0, C, (b, 1, h // 16, w // 16), generator=g).float(), size=(h, w))[:, 0]
        mask = F.one_hot(ids.long(), C).permute(0, 3, 1, 2).float().to(device)
        image = (torch.rand(b, 3, h, w, generator=g) * 2 - 1).to(device)
        z0 = torch.randn(b, cfg.latent_channels, *cfg.latent_size, generator=g).to(device)
        return mask, image, z0

    def step(mask, image, z0, dtype) -> None:
        with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            loss, _ = diffusion_loss(model, z0, model.conditions(mask, image), schedule)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    # the optimiser's state exists from the first step on: one step first, so that every
    # setting's peak is measured above the same resident model + AdamW state
    step(*inputs(1), None)
    rows = []
    for precision in precisions:
        dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
        for ckpt in (False, True):
            model.unet.gradient_checkpointing = ckpt
            for b in batches:
                data = inputs(b)
                base = reset_peak(device)
                step(*data, dtype)  # warm-up
                times = []
                for _ in range(args.steps):
                    _sync(device)
                    t0 = time.perf_counter()
                    step(*data, dtype)
                    _sync(device)
                    times.append(time.perf_counter() - t0)
                sec = statistics.median(times)
                extra = peak(device) - base
                rows.append((precision, ckpt, b, sec, extra))
                print(f"{precision:>4}  checkpointing {'on ' if ckpt else 'off'}  batch {b:>3}: {sec:7.2f} s/step, "
                      f"{b / sec:6.2f} samples/s, step peak {extra:6.2f} GiB above the model and optimiser "
                      f"({base:.2f} GiB)", flush=True)
    if len(batches) > 1:
        lo, hi = min(batches), max(batches)
        for precision in precisions:
            for ckpt in (False, True):
                m = {b: e for p, c, b, _, e in rows if p == precision and c == ckpt}
                print(f"{precision} checkpointing {'on ' if ckpt else 'off'}: memory per sample "
                      f"{(m[hi] - m[lo]) / (hi - lo):.2f} GiB (slope between batch {lo} and {hi})")


if __name__ == "__main__":
    main()
