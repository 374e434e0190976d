"""What inversion adds to one edit: per-stage seconds at the bundled size and at paper-256 (prints figures; not a test).

    python benchmarks/inversion_cost.py [--threads 2] [--repeats 3] [--paper-steps 9,200]

Denoiser evaluations of one edit with `steps` sampling steps (each guided evaluation is one
doubled batch, the conditional and the null prediction together):

    --inversion none    steps                      (the edit from noise)
    --inversion ddim    steps + steps              (inversion, then the edit)
    --inversion exact   steps + steps + steps      (inversion, the offsets' record, the edit)

plus one first-stage encode of the target (the style encoder takes pixels, so nothing shares it).
Blending costs no evaluation. One target is inverted once for every image of a call (the alphas
of an interpolation, the n images of a mix), so there the inversion's share shrinks with n.
A face inverted once (`pipe.invert`) and passed to its later edits (`inversion=`) makes every
edit after the first cost `steps` evaluations, what an edit from noise costs; the web editor
does this by itself.

- bundled: a partial swap on the bundled model, each stage timed on its own with the model's own
  sampler and steps, and the whole call for each strategy;
- the web editor: the first partial swap of a face (it inverts), a second one of other parts (it
  reuses the inversion) and the same edit with "keep the rest of the face" off (from noise), each
  through `Editor.run` as the page calls it;
- paper-256: random weights (the timing does not depend on them), one guided denoiser evaluation,
  encode and decode timed, the edit's cost composed from them for each of --paper-steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

#: extra denoiser passes per sampling step, per strategy (see the docstring)
EXTRA_PASSES = {"none": 0, "ddim": 1, "exact": 2}


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
    from scadm.data.synthetic import render_face, synthetic_split_ids
    from scadm.diffusion import invert, regeneration_kwargs, sample
    from scadm.pipeline import SCADMPipeline

    pipe = SCADMPipeline.from_pretrained(None, device="cpu")
    run = pipe.cfg.sampling
    faces = [render_face(i, seed=0, size=pipe.image_size) for i in synthetic_split_ids("test", 2)]
    target, reference = (faces[0].image, faces[0].label), (faces[1].image, faces[1].label)
    x, ids = pipe.inputs.load_image(faces[0].image), pipe.inputs.load_mask(faces[0].label)
    source = pipe.source(x, ids, pipe.style_tokens(x, ids), ids > 0)
    cond = pipe.model.prepare(source.conditions, pipe.cfg.latent_size)
    fn = pipe._guided(source.conditions.mask, run.null_condition, run.guidance_scale, None)
    z0 = pipe.first_stage.encode(x)
    shape = tuple(z0.shape)
    kw = regeneration_kwargs(run.sampler)
    stages = {
        "encode the target": lambda: pipe.first_stage.encode(x),
        "style tokens": lambda: pipe.style_tokens(x, ids),
        f"inversion ({run.sampler}, {run.steps} guided evaluations)":
            lambda: invert(fn, z0, cond, pipe.schedule, sampler=run.sampler, steps=run.steps),
        f"inversion + offsets ({2 * run.steps} evaluations)":
            lambda: invert(fn, z0, cond, pipe.schedule, sampler=run.sampler, steps=run.steps, exact=True),
        f"sampling ({run.sampler}, {run.steps} steps)":
            lambda: sample(fn, shape, cond, pipe.schedule, sampler=run.sampler, steps=run.steps, x_T=torch.randn(shape),
                           scheduler_kwargs=kw),
        "decode": lambda: pipe.first_stage.decode(z0),
    }
    print(f"bundled model ({pipe.image_size[0]} px, {shape[-1]}x{shape[-2]} latents), one image:")
    for name, f in stages.items():
        print(f"  {name:<45} {seconds(f, repeats) * 1000:8.1f} ms")
    plain = seconds(lambda: pipe.swap(target, reference, ["hair"], inversion="none"), repeats)
    print(f"  {'partial swap from noise (whole call)':<45} {plain * 1000:8.1f} ms")
    for inversion in ("ddim", "exact"):
        t = seconds(lambda: pipe.swap(target, reference, ["hair"], inversion=inversion, blend=True), repeats)
        print(f"  {'partial swap, ' + inversion + ' inversion + blend':<45} {t * 1000:8.1f} ms  ({t / plain:.2f}x)")
    inverted = pipe.invert(target)
    t = seconds(lambda: pipe.swap(target, reference, ["hair"], inversion=inverted), repeats)
    print(f"  {'partial swap, exact + blend, inversion reused':<45} {t * 1000:8.1f} ms  ({t / plain:.2f}x)  "
          "(the second and later edits of a face)")


def editor(repeats: int) -> None:
    from scadm.app import Editor

    page = Editor(None, device="cpu", examples=3)
    target, target_mask = page.example("face 1")
    reference, reference_mask = page.example("face 2")
    args = (target, page.editor_value(target_mask), reference, reference_mask)

    def swap(parts: list[str], keep: bool) -> None:
        page.run("partial swap", *args, parts, keep=keep, progress=False)

    def first() -> None:
        page.inversions.clear()
        swap(["hair"], True)

    t_first = seconds(first, repeats)
    swap(["hair"], True)  # the page now holds this face's inversion
    t_later = seconds(lambda: swap(["skin"], True), repeats)
    t_noise = seconds(lambda: swap(["skin"], False), repeats)
    print("web editor (bundled model, Editor.run as the page calls it), partial swaps of one face:")
    print(f"  {'first edit (inverts the face)':<45} {t_first * 1000:8.1f} ms  ({t_first / t_noise:.2f}x)")
    print(f"  {'second and later edits (inversion reused)':<45} {t_later * 1000:8.1f} ms  ({t_later / t_noise:.2f}x)")
    print(f"  {'an edit from noise (keep the rest off)':<45} {t_noise * 1000:8.1f} ms")


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
        line = f"  {n:>3} steps: edit from noise {plain:7.1f} s"
        for name in ("ddim", "exact"):
            cost = enc + (1 + EXTRA_PASSES[name]) * n * step + dec
            line += f"; {name} {cost:7.1f} s ({cost / plain:.2f}x)"
        print(line + f"; later edits of an inverted face {plain:7.1f} s (1.00x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--paper-steps", default="9,200")
    ap.add_argument("--skip-paper", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    bundled(a.repeats)
    editor(a.repeats)
    if not a.skip_paper:
        paper(a.repeats, [int(s) for s in a.paper_steps.split(",")])


if __name__ == "__main__":
    main()
