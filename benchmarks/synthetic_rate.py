"""Synthetic-face generation rate on one CPU core.

    python benchmarks/synthetic_rate.py [--size 64] [--n 2000] [--seed 0]

Prints faces per second for `scadm.data.synthetic.render_face` (rendering only, no PNG
writing). Threads are pinned to 1 so the figure is per core; the target is >= 200 faces/s
at 64 px (aim: 500+).
"""

from __future__ import annotations

import os

# Pin BLAS/OpenMP pools before numpy/torch load them: the figure is for one core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import time

import torch

from scadm.data.layout import parse_size
from scadm.data.synthetic import render_face


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="64", help="64 or HxW")
    ap.add_argument("--n", type=int, default=2000, help="faces to time")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    size = parse_size(args.size)
    for i in range(20):  # warm-up: imports, grid cache
        render_face(i, seed=args.seed, size=size)
    t0 = time.perf_counter()
    for i in range(args.n):
        render_face(i, seed=args.seed, size=size)
    dt = time.perf_counter() - t0
    print(f"synthetic faces at {size[0]}x{size[1]}: {args.n / dt:.0f} faces/s on 1 core ({dt / args.n * 1e3:.2f} ms/face, n={args.n})")


if __name__ == "__main__":
    main()
