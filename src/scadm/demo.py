"""`scadm demo`: every SCA-DM application on fixed held-out synthetic faces, as an HTML report.

Writes ``OUT/index.html`` (figures with captions, in the paper's style: mask, reference,
result), the PNGs, and ``OUT/metrics.json`` with quick per-region style success rates
(the synthetic benchmark of :mod:`scadm.eval.controllability` on a few faces).
"""

from __future__ import annotations

import dataclasses
import html
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .config import SamplingOptions
from .grids import image_grid
from .pipeline import SCADMPipeline

FIGURES = [
    ("reconstruction", "Reconstruction (Sec. 4.1): style and mask of the same face, sampled from noise "
                       "(--inversion none), so that the model must bring the face back; with the default exact "
                       "inversion and blending a reconstruction is the autoencoder's own encode-decode."),
    ("total_swap", "Total style swap (Sec. 4.2): the reference's style on the target's mask (every part is edited, "
                   "so nothing of the target is kept: sampled from noise)."),
    ("partial_swap", "Partial style swap (Sec. 4.3): one part at a time from the reference, a single eye included; "
                     "everything else keeps the target's style."),
    ("interpolation", "Style interpolation (Fig. 6): hair (the target inverted, the rest kept), then every part "
                      "(sampled from noise: nothing to keep), from the target's style (alpha 0) to the reference's "
                      "(alpha 1)."),
    ("noise", "Noise-based generation (Sec. 4.4): no reference; the style comes from the noise (one mask, several seeds)."),
    ("mixed", "Mixed (Fig. 1b): the reference's hair and eyes, random style for the rest."),
    ("keep_face", "Faithful editing: the same partial swaps sampled from noise (--inversion none, every pixel "
                  "regenerated) and from the exactly inverted target with the rest of the face kept (--inversion "
                  "exact --blend). The last row is the change from the target, outside the swapped part, amplified 4x."),
]


#: the part swaps the demo shows (one eye alone, hair, both lips, cloth, skin)
SWAP_FIGURE_PARTS = [["l_eye"], ["r_eye"], ["hair"], ["u_lip", "l_lip"], ["skin"], ["cloth"]]
#: a swapped part's reference colour differs from the target's by at least this much (RGB 0..255)
#: in the demo's figures, so that the change can be seen
VISIBLE_DISTANCE = 60.0


def part_distance(target: Any, reference: Any, classes: list[int]) -> float:
    """The smallest RGB distance, over `classes` present in both faces, between the target's and the
    reference's mean colour of that region (0 when a class is missing from either)."""
    from .eval.controllability import region_means

    a, b = region_means(target.image, target.label), region_means(reference.image, reference.label)
    if not all(c in a and c in b for c in classes):
        return 0.0
    return float(min(np.linalg.norm(a[c] - b[c]) for c in classes))


def pick_reference(faces: list, target: int, classes: list[int]) -> int:
    """The face (other than `target`) whose `classes` differ most in colour from the target's."""
    others = [i for i in range(len(faces)) if i != target]
    return max(others, key=lambda i: part_distance(faces[target], faces[i], classes))


def run_demo(out: str | Path, model: str | Path | None = None, steps: int | None = None,
             metric_faces: int = 12, device: str | None = None,
             printer: Callable[[str], Any] = print) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from .data.synthetic import render_face, synthetic_split_ids
    from .eval.controllability import SyntheticBenchmark, edits_description

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = SCADMPipeline.from_pretrained(model, device=device)
    size = pipe.image_size
    faces = [render_face(i, size=size) for i in synthetic_split_ids("test", 8)]
    sampling = SamplingOptions(steps=steps, seed=0)
    opts = {"sampling": sampling}
    face = lambda i: (faces[i].image, faces[i].label)  # noqa: E731
    real = lambda idx: torch.stack([torch.from_numpy(faces[i].image).permute(2, 0, 1) for i in idx]).float() / 127.5 - 1  # noqa: E731
    ls = pipe.label_set
    bar = tqdm(total=len(FIGURES) + 1, desc="demo", unit="figure")
    figs: dict[str, Path] = {}

    def save(name: str, rows: dict, masks=None, titles=None) -> None:
        figs[name] = out / f"{name}.png"
        image_grid(rows, figs[name], label_set=ls, masks=masks, column_titles=titles)
        bar.update(1)

    # 1. reconstruction
    r = pipe.reconstruct([faces[i].image for i in range(4)], [faces[i].label for i in range(4)],
                         sampling=dataclasses.replace(sampling, inversion="none"))
    save("reconstruction", {"input": real(range(4)), "reconstruction": r.tensors},
         masks=np.stack([faces[i].label for i in range(4)]))
    # 2. total swap: targets 0-3, references 4-7
    r = pipe.swap([face(i) for i in range(4)], [face(i) for i in range(4, 8)], None, **opts)
    save("total_swap", {"target": real(range(4)), "reference": real(range(4, 8)), "result": r.tensors},
         masks=np.stack([faces[i].label for i in range(4)]))
    # 3. partial swap of single parts into target 0, each from the face whose part differs most
    parts = SWAP_FIGURE_PARTS
    refs = [pick_reference(faces, 0, ls.indices(p)) for p in parts]
    results = [pipe.swap(face(0), face(r), p, **opts).tensors for p, r in zip(parts, refs)]
    save("partial_swap", {"target": real([0] * len(parts)), "reference": real(refs), "result": torch.cat(results)},
         titles=["+".join(p) for p in parts])
    # 4. interpolation into target 2, from the face whose hair differs most
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    ref = pick_reference(faces, 2, ls.indices(["hair"]))
    hair = pipe.interpolate(face(2), face(ref), ["hair"], alphas=alphas, **opts).tensors
    full = pipe.interpolate(face(2), face(ref), None, alphas=alphas, **opts).tensors
    save("interpolation", {"hair": hair, "all parts": full}, titles=[f"alpha {a:g}" for a in alphas])
    # 5. noise-based, mask of face 0
    r = pipe.generate(faces[0].label, n=6, **opts)
    save("noise", {"samples": r.tensors}, masks=np.stack([faces[0].label] * 6))
    # 6. mixed: mask 1, reference 2
    r = pipe.mix(faces[1].label, face(2), ["hair", "l_eye", "r_eye"], n=4, **opts)
    save("mixed", {"reference": real([2] * 4), "result": r.tensors}, masks=np.stack([faces[1].label] * 4))

    # 7. the same partial swaps, from noise and from the inverted target with the rest kept
    parts = [["l_eye"], ["hair"], ["u_lip", "l_lip"], ["cloth"]]
    refs = [pick_reference(faces, 0, ls.indices(p)) for p in parts]
    k = len(parts)
    from_noise = SamplingOptions(steps=steps, seed=0, inversion="none")
    keep = SamplingOptions(steps=steps, seed=0, inversion="exact", blend=True)
    noise = torch.cat([pipe.swap(face(0), face(r), p, sampling=from_noise).tensors for p, r in zip(parts, refs)])
    kept = torch.cat([pipe.swap(face(0), face(r), p, sampling=keep).tensors for p, r in zip(parts, refs)])
    target = real([0] * k).to(kept.device)
    outside = torch.stack([torch.from_numpy(~np.isin(faces[0].label, ls.indices(p))) for p in parts])[:, None].to(kept.device)
    change = lambda x: ((x - target).abs() * 4 * outside - 1).clamp(-1, 1)  # noqa: E731
    save("keep_face", {"target": target, "reference": real(refs), "from noise": noise, "change (noise)": change(noise),
                       "inverted, rest kept": kept, "change (kept)": change(kept)},
         titles=["+".join(p) for p in parts])

    bench = SyntheticBenchmark(pipe, n=metric_faces, seed=0, sampling=sampling)
    metrics = bench.run(protocols=("reconstruction", "total_swap", "partial_swap"))
    bar.update(1)
    bar.close()
    metrics = {"protocol": f"scadm.eval.controllability on {metric_faces} held-out synthetic faces "
                           f"(quick; `scadm eval synthetic` runs the full benchmark)",
               "model": str(model or "bundled synthetic-64"),
               "steps": sampling.resolve(pipe.cfg.sampling).steps,
               "edits": edits_description(sampling.resolve(pipe.cfg.sampling)),
               **{k: v for k, v in metrics.items() if not k.endswith("per_part")},
               "seconds_total": round(time.perf_counter() - t0, 1)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _write_html(out / "index.html", figs, metrics, pipe)
    printer(f"demo report: {out / 'index.html'} ({metrics['seconds_total']} s)")
    return metrics


def _write_html(path: Path, figs: dict[str, Path], metrics: dict, pipe: SCADMPipeline) -> None:
    from .eval.reporting import DESCRIPTIONS

    errors = metrics.get("standard_errors", {})
    rows = "".join(
        f"<tr><td>{html.escape(DESCRIPTIONS[k][0])}</td><td>{metrics[k]:.3f}</td>"
        f"<td>{errors[k]:.3f}</td><td>{html.escape(DESCRIPTIONS[k][1])}</td></tr>"
        for k in DESCRIPTIONS if isinstance(metrics.get(k), float) and isinstance(errors.get(k), float)
    )
    sections = "".join(
        f"<figure><img src='{figs[name].name}' alt='{name}'><figcaption><b>{name.replace('_', ' ')}</b>: "
        f"{html.escape(caption)}</figcaption></figure>"
        for name, caption in FIGURES if name in figs
    )
    cfg = pipe.cfg
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>scadm demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
figure{{margin:2em 0}} img{{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}}
figcaption{{margin-top:.4em}} table{{border-collapse:collapse}} td{{border:1px solid #ccc;padding:2px 8px}}</style>
</head><body><h1>scadm demo</h1>
<p>Model <code>{html.escape(cfg.name)}</code>: {cfg.image_size[0]}x{cfg.image_size[1]} images,
{cfg.latent_size[0]}x{cfg.latent_size[1]} latents, cross-attention <code>{pipe.model.unet.cross_attention}</code>,
sampler {cfg.sampling.sampler} ({metrics['steps']} steps), guidance s = {cfg.sampling.guidance_scale}.
Rows of each grid: the mask (label colours), the inputs, the result. Faces are held-out synthetic test faces
(<code>scadm.data.synthetic</code>).</p>
{sections}
<h2>Quick metrics</h2><p>On {metrics['n']} held-out synthetic faces (the full benchmark:
<code>scadm eval synthetic</code>), at the model's defaults: {html.escape(metrics['edits'])}. Rates are fractions (chance is 0.5); the standard error treats each face as one
sample (<code>scadm.eval.controllability</code>).</p>
<table><tr><th>measure</th><th>value</th><th>standard error</th><th>what it counts</th></tr>{rows}</table>
<h2>Try it</h2>
<pre>scadm app                                            # the web editor, in your browser
scadm fetch sca-dm                                   # the authors' model, downloaded and converted
scadm fetch parser                                   # a face parser for photos (79999_iter.pth)
scadm edit swap --model sca-dm --target you.jpg --reference them.jpg --parts hair --out out.png
                                                     # your own photo
scadm convert sca-dm last.ckpt models/sca-dm         # or a checkpoint you have, then --model models/sca-dm
scadm info                                           # what a model and its parser were trained on</pre>
</body></html>"""
    path.write_text(page)
