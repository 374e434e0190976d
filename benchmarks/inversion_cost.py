"""What inversion adds to one edit: per-stage seconds at the bundled size and at paper-256 (prints figures; not a test).

    python benchmarks/inversion_cost.py [--threads 2] [--repeats 3] [--paper-steps 9,200]

An edit with ``--inversion`` runs, beside the edit from noise, one encode of the target (shared
with nothing else: the style encoder takes pixels) and the inversion's denoiser evaluations: one
guided evaluation per step, as many as the generation's, so the sampling part of the cost doubles.

- bundled: a partial swap on the bundled model, each stage timed on its own (encode, style tokens,
  inversion, sampling, decode) with the model's own sampler and steps, and the whole call with and
  without ``inversion="dpm++", blend=True``;
- paper-256: random weights (the timing does not depend on them), one guided denoiser evaluation,
  encode and decode timed, the edit's cost composed from them for each of --paper-steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def bundled(repeats: int) -> None:
    from scadm.conditions import Conditions
    from scadm.data.synthetic import render_face, synthetic_split_ids
    from scadm.diffusion import ClassifierFreeGuidance, invert, regeneration_kwargs, sample
    from scadm.pipeline import SCADMPipeline

    pipe = SCADMPipeline.from_pretrained(None, device="cpu")
    run = pipe.cfg.sampling
    faces = [render_face(i, seed=0, size=pipe.image_size) for i in synthetic_split_ids("test", 2)]
    target, reference = (faces[0].image, faces[0].label), (faces[1].image, faces[1].label)
    x, ids = pipe.load_image(faces[0].image), pipe.load_mask(faces[0].label)
    tokens = pipe.style_tokens(x, ids)
    cond = pipe.model.prepare(Conditions(mask=pipe.one_hot(ids), tokens=tokens), pipe.cfg.latent_size)
    null = pipe.model.prepare(pipe.model.conditioner.null(pipe.one_hot(ids), run.null_condition), pipe.cfg.latent_size)
    fn = ClassifierFreeGuidance(pipe.model.unet, null, run.guidance_scale)
    z0 = pipe.first_stage.encode(x)
    shape = tuple(z0.shape)
    stages = {
        "encode the target": lambda: pipe.first_stage.encode(x),
        "style tokens": lambda: pipe.style_tokens(x, ids),
        f"inversion ({run.sampler}, {run.steps} guided evaluations)":
            lambda: invert(fn, z0, cond, pipe.schedule, sampler=run.sampler, steps=run.steps),
        f"sampling ({run.sampler}, {run.steps} steps)":
            lambda: sample(fn, shape, cond, pipe.schedule, sampler=run.sampler, steps=run.steps, x_T=torch.randn(shape),
                           scheduler_kwargs=regeneration_kwargs(run.sampler)),
        "decode": lambda: pipe.first_stage.decode(z0),
    }
    print(f"bundled model ({pipe.image_size[0]} px, {shape[-1]}x{shape[-2]} latents), one image:")
    for name, f in stages.items():
        print(f"  {name:<45} {seconds(f, repeats) * 1000:8.1f} ms")
    plain = seconds(lambda: pipe.swap(target, reference, ["hair"]), repeats)
    kept = seconds(lambda: pipe.swap(target, reference, ["hair"], inversion="dpm++", blend=True), repeats)
    print(f"  {'partial swap from noise (whole call)':<45} {plain * 1000:8.1f} ms")
    print(f"  {'partial swap, dpm++ inversion + blend':<45} {kept * 1000:8.1f} ms  ({kept / plain:.2f}x)")


@torch.no_grad()
def paper(repeats: int, steps: list[int]) -> None:
    from scadm.conditions import Conditions
    from scadm.config import load_recipe
    from scadm.diffusion import ClassifierFreeGuidance
    from scadm.models.autoencoder import FirstStage, build_autoencoder
    from scadm.models.ldm import SemanticLDM

    recipe = load_recipe("paper-256")
    torch.manual_seed(0)
    model = SemanticLDM(recipe.model).eval()
    fs = FirstStage(build_autoencoder(recipe.autoencoder).eval())
    cfg = model.cfg
    h, w = cfg.image_size
    x = torch.rand(1, 3, h, w) * 2 - 1
    ids = torch.randint(0, cfg.unet.num_classes, (1, h, w))
    mask = torch.nn.functional.one_hot(ids, cfg.unet.num_classes).permute(0, 3, 1, 2).float()
    tokens = model.conditions(mask, x).tokens
    cond = model.prepare(Conditions(mask=mask, tokens=tokens), cfg.latent_size)
    null = model.prepare(model.conditioner.null(mask, "style"), cfg.latent_size)
    fn = ClassifierFreeGuidance(model.unet, null, 1.2)
    z = fs.encode(x)
    t = torch.full((1,), 500, dtype=torch.long)
    enc = seconds(lambda: fs.encode(x), repeats)
    step = seconds(lambda: fn(z, t, cond), repeats)
    dec = seconds(lambda: fs.decode(z), repeats)
    print(f"paper-256 ({h} px, random weights): encode {enc:.2f} s, one guided evaluation {step:.2f} s, decode {dec:.2f} s")
    for n in steps:
        plain = n * step + dec
        kept = enc + 2 * n * step + dec
        print(f"  {n:>3} steps: edit from noise {plain:7.1f} s; with inversion {kept:7.1f} s ({kept / plain:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--paper-steps", default="9,200")
    ap.add_argument("--skip-paper", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    bundled(a.repeats)
    if not a.skip_paper:
        paper(a.repeats, [int(s) for s in a.paper_steps.split(",")])


if __name__ == "__main__":
    main()
