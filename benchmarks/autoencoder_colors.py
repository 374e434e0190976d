"""How well a first stage keeps the colours the synthetic benchmark measures (prints figures; not a test).

    python benchmarks/autoencoder_colors.py [--autoencoder src/scadm/bundled/synthetic-64/autoencoder] [--n 200]
                                            [--picture docs/benchmark/autoencoder.png]

On n held-out synthetic faces, encode -> decode (posterior mode, no diffusion) and report:
- region success: the protocol of `scadm eval synthetic`'s reconstruction (a region's mean
  colour closer to its own style than to a random other face's), overall and per part. This
  bounds what any diffusion model on these latents can score;
- the decoder's error on the mean colour of each f x f block (one latent pixel), per channel,
  and how much of each principal colour direction of the blocks it reproduces (slope);
- the correlation of each latent channel with the blocks' R, G and B.
With --picture, a grid of inputs (top) and reconstructions (bottom).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from scadm.data.synthetic import render_face, synthetic_split_ids
from scadm.eval.controllability import Tally, closer, region_means, style_colors
from scadm.models.autoencoder import FirstStage


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--autoencoder", default="src/scadm/bundled/synthetic-64/autoencoder")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--picture", default=None, help="write inputs over reconstructions of 8 faces to this PNG")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    first = FirstStage.from_pretrained(args.autoencoder)
    f = first.downsample
    faces = [render_face(i, seed=0, size=(args.size, args.size)) for i in synthetic_split_ids("test", args.n)]
    x = torch.stack([torch.from_numpy(np.ascontiguousarray(face.image)).permute(2, 0, 1).float() / 127.5 - 1
                     for face in faces])
    with torch.no_grad():
        z = torch.cat([first.encode(x[k:k + 50]) for k in range(0, args.n, 50)])
        rec = torch.cat([first.decode(z[k:k + 50]) for k in range(0, args.n, 50)])

    colors = [style_colors(face.styles) for face in faces]
    rng = np.random.default_rng(args.seed)
    tally = Tally()
    images = to_uint8(rec)
    for i, face in enumerate(faces):
        means = region_means(images[i], face.label)
        for c, col in colors[i].items():
            others = [j for j in range(args.n) if j != i and c in colors[j]]
            if c in means and others:
                tally.add(c, closer(means[c], col, colors[int(rng.choice(others))][c]))
    print(f"{args.autoencoder}: region success {tally.rate:.3f} over {tally.trials} regions of {args.n} faces")
    print("  " + ", ".join(f"{k} {v['rate']:.2f}" for k, v in tally.breakdown().items()))

    blocks = F.avg_pool2d(x, f).permute(0, 2, 3, 1).reshape(-1, 3)
    rec_blocks = F.avg_pool2d(rec, f).permute(0, 2, 3, 1).reshape(-1, 3)
    err = (rec_blocks - blocks).abs().mean(0) * 127.5
    print(f"mean colour of {f}x{f} blocks, mean abs error / 255: R {err[0]:.1f}, G {err[1]:.1f}, B {err[2]:.1f}")
    # The same blocks along the principal colour directions of the data: a slope of 1 means the
    # direction is kept, 0 that the decoder returns the average whatever the input.
    eigval, eigvec = np.linalg.eigh(np.cov(blocks.T.numpy()))
    centre = blocks.numpy().mean(0)
    true_pc, rec_pc = (blocks.numpy() - centre) @ eigvec, (rec_blocks.numpy() - centre) @ eigvec
    for k in reversed(range(3)):
        d = eigvec[:, k] * np.sign(eigvec[np.abs(eigvec[:, k]).argmax(), k])
        slope = np.polyfit(true_pc[:, k], rec_pc[:, k], 1)[0]
        print(f"colour direction {d[0]:+.2f} R {d[1]:+.2f} G {d[2]:+.2f} B (std {np.sqrt(eigval[k]) * 127.5:.1f} / 255): "
              f"reconstructed with slope {slope:.2f}")
    lat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    corr = np.corrcoef(torch.cat([lat, blocks], 1).T.numpy())[: z.shape[1], z.shape[1]:]
    for k, row in enumerate(corr):
        print(f"latent channel {k}: correlation with block R {row[0]:+.2f}, G {row[1]:+.2f}, B {row[2]:+.2f}")

    if args.picture:
        from PIL import Image

        k = min(8, args.n)
        grid = np.concatenate([np.concatenate(list(to_uint8(x[:k])), 1), np.concatenate(list(images[:k]), 1)], 0)
        Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(args.picture)
        print(f"picture: {args.picture}")


if __name__ == "__main__":
    main()
