"""Bulk generation over a dataset split (``scadm sample``): resumable and shardable.

Each id's output is ``OUT/<id>.png``; ids already written are skipped, so an interrupted job
continues where it stopped. Under ``accelerate launch`` / ``torchrun`` every process takes
ids ``rank, rank + N, ...``. Image k of the split (in split order) always uses seed
``seed + k``, so the result does not depend on the number of processes or the batch size.

Modes: ``reconstruction`` (own style, own mask), ``swap`` (total swap; reference = the next
id of the split), ``partial-swap`` (one part from the next id: the k-th part present in both
masks, cycling, recorded in ``parts.json``), ``noise`` (noise-based, the id's mask).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable

from .config import SamplingOptions
from .tempfiles import remove_stale, temp_path


def _shard() -> tuple[int, int]:
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", 1))
    return rank, world


def run_sampling_job(data: str | Path, out: str | Path, *, mode: str = "reconstruction", split: str = "test",
                     limit: int | None = None, batch_size: int = 8, model: str | Path | None = None,
                     device: str | None = None, sampling: SamplingOptions | None = None,
                     printer: Callable[[str], Any] = print, progress: bool = True) -> dict[str, int]:
    """Generate OUT/<id>.png for each id of the split not yet written. `sampling`: the sampler settings;
    its ``seed`` is the split's base seed (image k uses seed + k)."""
    from tqdm.auto import tqdm

    from .data.layout import DatasetLayout
    from .pipeline import SCADMPipeline

    layout = DatasetLayout(data)
    ids = layout.ids(split)
    if limit is not None:
        ids = ids[:limit]
    rank, world = _shard()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out)  # images half-written by a killed earlier run
    mine = [(k, i) for k, i in enumerate(ids) if k % world == rank]
    todo = [(k, i) for k, i in mine if not (out / f"{i}.png").is_file()]
    printer(f"sample {mode}: {len(mine)} ids for process {rank}/{world}, {len(mine) - len(todo)} already done")
    if not todo:
        return {"done": 0, "skipped": len(mine)}
    pipe = SCADMPipeline.from_pretrained(model, device=device)
    sampling = dataclasses.replace(sampling or SamplingOptions(), progress=False)
    seed = sampling.seed if isinstance(sampling.seed, int) else int(sampling.seed[0])
    parts_file = out / "parts.json"
    parts_done: dict[str, str] = json.loads(parts_file.read_text()) if parts_file.is_file() else {}
    bar = tqdm(total=len(todo), desc=f"sample {mode}", disable=not progress)
    def crop(key: str) -> tuple:
        """A dataset face as the model's crop: resized to the model's size (never reframed as a photo)."""
        return pipe.load_image(layout.image_path(key)), pipe.load_mask(layout.label_path(key))

    for lo in range(0, len(todo), batch_size):
        chunk = todo[lo:lo + batch_size]
        seeds = [seed + k for k, _ in chunk]
        crops = [crop(i) for _, i in chunk]
        images, masks = [c[0] for c in crops], [c[1] for c in crops]
        if mode == "reconstruction":
            result = pipe.reconstruct(images, masks, sampling=dataclasses.replace(sampling, seed=seeds))
        elif mode == "swap":
            refs = [ids[(k + 1) % len(ids)] for k, _ in chunk]
            result = pipe.swap(crops, [crop(r) for r in refs], None, sampling=dataclasses.replace(sampling, seed=seeds))
        elif mode == "partial-swap":
            refs = [ids[(k + 1) % len(ids)] for k, _ in chunk]
            tensors = []
            for (k, i), r, seed_k in zip(chunk, refs, seeds):
                part = partial_swap_part(layout, i, r, k)
                parts_done[i] = pipe.label_set.names[part]
                tensors.append(pipe.swap(crop(i), crop(r), [part], sampling=dataclasses.replace(sampling, seed=seed_k)))
            result = type(tensors[0])([im for t in tensors for im in t.images], None, [], {})
        elif mode == "noise":
            import torch

            ids_t = torch.cat(masks)
            result = pipe.generate(ids_t, n=len(chunk), sampling=dataclasses.replace(sampling, seed=seeds))
        else:
            raise ValueError(f"unknown mode {mode!r}")
        for (_, i), im in zip(chunk, result.images):
            tmp = temp_path(out / f"{i}.png")
            im.save(tmp, format="PNG")
            tmp.replace(out / f"{i}.png")
        bar.update(len(chunk))
        if mode == "partial-swap" and rank == 0 and world == 1:
            tmp = temp_path(parts_file)
            tmp.write_text(json.dumps(parts_done, indent=1))
            tmp.replace(parts_file)
    bar.close()
    return {"done": len(todo), "skipped": len(mine) - len(todo)}


def partial_swap_part(layout, target_id: str, reference_id: str, k: int) -> int:
    """The part swapped for split position k: the k-th (cyclically) class present in both masks, background excluded."""
    import numpy as np

    from .data.layout import load_label

    shared = sorted((set(np.unique(load_label(layout.label_path(target_id)))) &
                     set(np.unique(load_label(layout.label_path(reference_id))))) - {0})
    if not shared:
        return 0
    return int(shared[k % len(shared)])
