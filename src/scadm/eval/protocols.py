"""The papers' evaluation protocols on a dataset (``scadm eval reconstruction|swap|...``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def timing_protocol(model: str | Path | None, *, sampler: str = "ddim", steps: list[int] = (50,), batch_size: int = 1,
                    repeats: int = 3, device: str | None = None) -> list[dict[str, Any]]:
    """Wall-clock seconds per image and per denoising step, after one warm-up call.

    Guided generation (reconstruction, s != 0) runs a doubled batch; noise-based generation does not.
    """
    from ..data.synthetic import render_face, synthetic_split_ids
    from ..pipeline import SCADMPipeline

    pipe = SCADMPipeline.from_pretrained(model, device=device)
    faces = [render_face(i, size=pipe.image_size) for i in synthetic_split_ids("test", batch_size)]
    images, labels = [f.image for f in faces], [f.label for f in faces]
    rows = []
    for n in steps:
        for kind, fn in (("noise-based", lambda: pipe.generate(np.stack(labels), n=batch_size, sampler=sampler, steps=n)),
                         ("reconstruction (guided)", lambda: pipe.reconstruct(images, labels, sampler=sampler, steps=n))):
            fn()  # warm-up
            t = []
            for _ in range(repeats):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                fn()
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                t.append(time.perf_counter() - t0)
            sec = float(np.median(t))
            rows.append({"mode": kind, "sampler": sampler, "steps": n, "batch": batch_size,
                         "s_per_image": sec / batch_size, "s_per_step": sec / n, "device": str(pipe.device)})
    return rows
