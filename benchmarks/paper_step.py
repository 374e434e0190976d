"""The paper-size guided step and a whole edit: seconds, peak memory, achieved GFLOP/s (prints figures; not a test).

    python benchmarks/paper_step.py [--config paper-256] [--repeats 3] [--steps 2] [--threads 2]

- matmul peak: the best median GFLOP/s of square fp32 matmuls (1024, 2048, 4096) on this machine,
  measured in the same run;
- guided step: one denoiser evaluation of the doubled batch (1 image -> 2), with the
  time-invariant conditioning prepared once as sampling does; its FLOPs are counted with
  torch's FlopCounterMode, so "achieved" is FLOPs actually needed / seconds;
- whole edit: encode the target, style tokens, prepare, N guided DDIM steps, decode;
- with --profile: where the guided step's time goes, by kind of operator (torch.profiler,
  self CPU time), so that "what is left to gain" is a figure rather than a guess.

Random weights (the timing does not depend on them; the zero-initialised layers drawn too); the released null ('zero') as the null.
On a GPU (or with --variants) the step also runs under bf16 and fp16 autocast, each with and
without channels-last and torch.compile, and prints images per second at 200 steps.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from scadm.conditions import Conditions
from scadm.config import PRECISIONS, autocast_dtype, load_recipe
from scadm.diffusion import ClassifierFreeGuidance, NoiseSchedule, sample
from scadm.models.autoencoder import FirstStage, build_autoencoder
from scadm.models.ldm import SemanticLDM


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(device: str, repeats: int, sizes=(1024, 2048, 4096)) -> tuple[float, int]:
    """The best median fp32 matmul throughput over a few square sizes: (GFLOP/s, size)."""
    best = (0.0, 0)
    for n in sizes:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        sec = median_seconds(lambda: a @ b, max(repeats, 5), device)
        best = max(best, (2 * n**3 / sec / 1e9, n))
    return best


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


#: operator kinds of the profile (the first pattern an operator's name contains wins)
KINDS = (
    ("convolution", ("conv",)),
    ("matmul (linear, attention)", ("addmm", "mm", "bmm", "matmul", "linear", "attention")),
    ("normalisation (GroupNorm, LayerNorm)", ("norm",)),
    ("activation (SiLU, GELU)", ("silu", "gelu")),
    ("elementwise (SPADE's 1 + gamma, beta; residual adds)", ("add", "mul", "sub", "div")),
    ("data movement (copies, cat, layout)", ("copy", "cat", "contiguous", "clone", "to_", "index", "gather")),
)


def profile(guided, z, t, prepared) -> None:
    """Self CPU time of one guided step by kind of operator, and the ten costliest operators."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        guided(z, t, prepared)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    by_kind: dict[str, float] = {}
    for e in events:
        kind = next((k for k, pats in KINDS if any(p in e.key.lower() for p in pats)), "other")
        by_kind[kind] = by_kind.get(kind, 0.0) + e.self_cpu_time_total
    print(f"profile of one guided step ({total / 1e6:.2f} s of self CPU time under the profiler):")
    for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<55} {us / 1e3:9.1f} ms  {us / total:6.1%}")
    print("  costliest operators:")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:10]:
        print(f"    {e.key:<50} {e.count:5d} calls  {e.self_cpu_time_total / 1e3:9.1f} ms  "
              f"{e.self_cpu_time_total / total:6.1%}")


def variants(model, guided, z, t, prepared, device: str, args) -> None:
    """The guided step in fp32 / bf16 / fp16 autocast, with and without channels-last and
    torch.compile; images per second at the released 200 steps (one image per call)."""
    base = None
    for compiled in (False, True):
        for channels_last in (False, True):
            model.unet.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            unet = torch.compile(model.unet) if compiled else model.unet
            fn = ClassifierFreeGuidance(unet, guided.null_cond, s=1.2)
            for name, dtype in ((p, autocast_dtype(p)) for p in PRECISIONS):
                with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
                    sec = median_seconds(lambda: fn(z, t, prepared), args.repeats, device)
                    out = fn(z, t, prepared).float()
                base = out if base is None else base
                rel = ((out - base).norm() / base.norm()).item()
                print(f"guided step {name:>4}, channels-last {'on ' if channels_last else 'off'}, "
                      f"compile {'on ' if compiled else 'off'}: {sec:.3f} s, {1 / (200 * sec):.3f} images/s at 200 steps "
                      f"(output differs from fp32 by {rel:.1e} relative)", flush=True)
    model.unet.to(memory_format=torch.contiguous_format)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="paper-256")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2, help="guided DDIM steps of the whole edit")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--variants", action="store_true",
                    help="also on a CPU: the precision / channels-last / torch.compile variants a GPU runs by default")
    ap.add_argument("--profile", action="store_true", help="where the guided step's time goes, by kind of operator")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    recipe = load_recipe(args.config)
    cfg = recipe.model
    torch.manual_seed(0)
    with torch.no_grad():
        model = SemanticLDM(cfg).eval().to(device)
        for p in model.parameters():  # LDM starts residual branches and the output at zero: give them
            if p.dim() > 1 and not p.any():  # weights, so that outputs (and their precision) mean something
                torch.nn.init.normal_(p, std=0.02)
        first_stage = FirstStage(build_autoencoder(recipe.autoencoder).eval()).to(device)
        h, w = cfg.image_size
        ids = torch.randint(0, cfg.unet.num_classes, (1, h, w), device=device)
        mask = torch.nn.functional.one_hot(ids, cfg.unet.num_classes).permute(0, 3, 1, 2).float()
        image = torch.rand(1, 3, h, w, device=device) * 2 - 1
        print(f"{args.config} on {device} ({torch.get_num_threads()} threads): UNet "
              f"{sum(p.numel() for p in model.unet.parameters()) / 1e6:.1f} M parameters, latent {cfg.latent_size}")
        peak, n = matmul_peak(device, args.repeats)
        print(f"matmul peak (fp32, best median over 1024/2048/4096, here {n}^3): {peak:.1f} GFLOP/s")

        cond = model.conditions(mask, image)
        null = model.conditioner.null(mask, "zero")
        prepared = model.prepare(cond)
        guided = ClassifierFreeGuidance(model.unet, model.prepare(null), s=1.2)
        z = torch.randn(1, cfg.latent_channels, *cfg.latent_size, device=device)
        t = torch.tensor([500], device=device)
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            guided(z, t, prepared)
        flops = counter.get_total_flops()
        sec = median_seconds(lambda: guided(z, t, prepared), args.repeats, device)
        print(f"guided step (batch 1 -> 2): {sec:.2f} s, {flops / 1e9:.0f} GFLOP, achieved {flops / sec / 1e9:.1f} "
              f"GFLOP/s = {flops / sec / 1e9 / peak:.0%} of the matmul peak; peak RSS so far {peak_rss_gib():.2f} GiB")
        if args.profile:
            profile(guided, z, t, prepared)
        if device == "cuda" or args.variants:
            variants(model, guided, z, t, prepared, device, args)

        def edit() -> None:
            z0 = first_stage.encode(image)
            c = model.conditions(mask, image)
            fn = ClassifierFreeGuidance(model.unet, model.prepare(model.conditioner.null(mask, "zero")), s=1.2)
            zT = sample(fn, tuple(z0.shape), model.prepare(Conditions(mask=c.mask, tokens=c.tokens)),
                        NoiseSchedule(cfg.schedule), sampler="ddim", steps=args.steps, device=device,
                        generator=torch.Generator(device).manual_seed(0))
            first_stage.decode(zT)

        t0 = time.perf_counter()
        edit()
        _sync(device)
        total = time.perf_counter() - t0
        print(f"whole edit with {args.steps} guided DDIM steps: {total:.1f} s "
              f"(so about {total - args.steps * sec + 200 * sec:.0f} s with the released 200 steps); "
              f"peak RSS {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
