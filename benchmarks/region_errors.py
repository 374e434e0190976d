"""Where a model's reconstructions lose a region's colour: the first stage or the diffusion model
(prints figures; not a test).

    python benchmarks/region_errors.py [--model src/scadm/bundled/synthetic-64] [--n 48] [--face-seed 1]

On n synthetic faces (generator seed --face-seed; 1 = faces the benchmark never scores),
per class, the mean absolute error per channel (/ 255) of the region's mean colour against
the rendered image's:
- `first stage`: encode -> decode of the image, no diffusion (what any diffusion model on
  these latents is held to);
- `model`: the model's reconstruction (own style, own mask, the model's sampler, sampled from
  noise: with inversion and blending a reconstruction would be the first stage's own);
- `slope`: the model's region colours regressed on the true ones (1 = follows the style,
  0 = always the same colour);
- `bias`: the model's mean signed error in R, G, B.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from scadm.data.synthetic import render_face, synthetic_split_ids
from scadm.eval.controllability import region_means
from scadm.labels import CELEBAMASK_HQ
from scadm.pipeline import SCADMPipeline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="src/scadm/bundled/synthetic-64")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--face-seed", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = SCADMPipeline.from_pretrained(args.model)
    size = tuple(pipe.image_size)
    faces = [render_face(i, seed=args.face_seed, size=size) for i in synthetic_split_ids("test", args.n)]

    generated, decoded = [], []
    for lo in range(0, args.n, args.batch_size):
        batch = faces[lo:lo + args.batch_size]
        result = pipe.reconstruct([f.image for f in batch], [f.label for f in batch], seed=lo, inversion="none")
        generated += [np.asarray(im.convert("RGB")) for im in result.images]
        x = torch.stack([torch.from_numpy(np.ascontiguousarray(f.image)).permute(2, 0, 1) for f in batch])
        x = (x.float() / 127.5 - 1).to(pipe.device)
        with torch.no_grad():
            rec = pipe.first_stage.decode(pipe.first_stage.encode(x)).clamp(-1, 1)
        decoded += list(((rec + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())

    rows: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for face, gen, dec in zip(faces, generated, decoded):
        truth, g, d = (region_means(im, face.label) for im in (face.image, gen, dec))
        for c in truth:
            rows.setdefault(c, []).append((truth[c], d[c], g[c]))

    print(f"{args.model}, {args.n} faces of generator seed {args.face_seed}; errors / 255 per channel")
    print(f"{'class':11s} {'n':>4s} {'first stage':>12s} {'model':>7s} {'slope':>6s}  bias (R, G, B)")
    totals = []
    for c in sorted(rows):
        truth, dec, gen = (np.array(v) for v in zip(*rows[c]))
        e_dec, e_gen = np.abs(dec - truth).mean(), np.abs(gen - truth).mean()
        x, y = (truth - truth.mean(0)).ravel(), (gen - truth.mean(0)).ravel()
        slope = float((x * y).sum() / max((x * x).sum(), 1e-9))
        bias = " ".join(f"{b:+6.1f}" for b in (gen - truth).mean(0))
        print(f"{CELEBAMASK_HQ.names[c]:11s} {len(truth):4d} {e_dec:12.1f} {e_gen:7.1f} {slope:6.2f}  {bias}")
        totals.append((len(truth), e_dec, e_gen))
    n = sum(t[0] for t in totals)
    print(f"{'all':11s} {n:4d} {sum(t[0] * t[1] for t in totals) / n:12.1f} {sum(t[0] * t[2] for t in totals) / n:7.1f}")


if __name__ == "__main__":
    main()
