"""Bulk generation over a dataset split (``scadm sample``): resumable and shardable.

Each id's output is ``OUT/<id>.png``; ids already written are skipped, so an interrupted job
continues where it stopped. Under ``accelerate launch`` / ``torchrun`` every process takes
ids ``rank, rank + N, ...``. Image k of the split (in split order) always uses seed
``seed + k``, so the result does not depend on the number of processes or the batch size.

Modes: ``reconstruction`` (own style, own mask), ``swap`` (total swap; reference = the next
id of the split), ``partial-swap`` (one part from the next id: the k-th part present in both
masks, cycling, recorded in ``parts.json``), ``noise`` (noise-based, the id's mask).

Edits of a dataset face follow the sampling options' ``inversion`` and ``blend`` (the model's
defaults when not given). ``OUT/run.json`` records the mode and the resolved settings, these
two included; a folder made with other settings is refused rather than mixed into.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable

from .config import SamplingConfig, SamplingOptions
from .diffusion.inversion import ROUND_TRIP
from .tempfiles import remove_stale, temp_path

#: the settings that decide a sampled image; a folder's images must all share them
RUN_KEYS = ("mode", "split", "sampler", "steps", "eta", "guidance_scale", "null_condition", "clip_x0", "seed",
            "precision", "inversion", "blend")


def _shard() -> tuple[int, int]:
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", 1))
    return rank, world


def run_sampling_job(data: str | Path, out: str | Path, *, mode: str = "reconstruction", split: str = "test",
                     limit: int | None = None, batch_size: int = 8, model: str | Path | None = None,
                     device: str | None = None, sampling: SamplingOptions | None = None,
                     printer: Callable[[str], Any] = print, progress: bool = True) -> dict[str, Any]:
    """Generate OUT/<id>.png for each id of the split not yet written. `sampling`: the sampler settings;
    its ``seed`` is the split's base seed (image k uses seed + k). Returns the counts made and skipped,
    and ``run``: the job's record (:func:`run_record`)."""
    from tqdm.auto import tqdm

    from . import checks
    from .data.layout import DatasetLayout
    from .models.ldm import read_model_config
    from .pipeline import SCADMPipeline, default_model_folder

    layout = DatasetLayout(data)
    ids = layout.ids(split)
    if limit is not None:
        ids = ids[:limit]
    rank, world = _shard()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out)  # images half-written by a killed earlier run
    sampling = dataclasses.replace(sampling or SamplingOptions(), progress=False)
    seed = sampling.seed if isinstance(sampling.seed, int) else int(sampling.seed[0])
    folder = checks.model_folder(model, "model") if model is not None else default_model_folder()
    record = run_record(mode, split, seed, sampling, read_model_config(folder).sampling)
    check_run_record(out, {**record, "model": str(folder.resolve())}, any(out.glob("*.png")))
    printer(f"sample {mode}: {strategy_line(mode, record)}")
    mine = [(k, i) for k, i in enumerate(ids) if k % world == rank]
    todo = [(k, i) for k, i in mine if not (out / f"{i}.png").is_file()]
    printer(f"sample {mode}: {len(mine)} ids for process {rank}/{world}, {len(mine) - len(todo)} already done")
    if not todo:
        return {"done": 0, "skipped": len(mine), "run": record}
    pipe = SCADMPipeline.from_pretrained(folder, device=device)
    parts_file = out / "parts.json"
    parts_done: dict[str, str] = json.loads(parts_file.read_text()) if parts_file.is_file() else {}
    bar = tqdm(total=len(todo), desc=f"sample {mode}", disable=not progress)
    def crop(key: str) -> tuple:
        """A dataset face as the model's crop: resized to the model's size (never reframed as a photo)."""
        return pipe.inputs.load_image(layout.image_path(key)), pipe.inputs.load_mask(layout.label_path(key))

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
    return {"done": len(todo), "skipped": len(mine) - len(todo), "run": record}


def run_record(mode: str, split: str, seed: int, sampling: SamplingOptions, defaults: SamplingConfig) -> dict[str, Any]:
    """What a sampling job computes: its mode and the resolved settings (inversion and blend included)."""
    face = mode != "noise"
    run = sampling.resolve(defaults, noise_based=not face, face=face)
    settings = {k: v for k, v in dataclasses.asdict(run).items() if k in RUN_KEYS}
    return {"mode": mode, "split": split, **settings, "seed": seed, "precision": sampling.precision}


def strategy_line(mode: str, record: dict[str, Any]) -> str:
    """One line on how the job's images are made: from noise, or the face inverted (and what that measures)."""
    if record["inversion"] == "none":
        return f"{record['sampler']}, {record['steps']} steps, every image sampled from noise (inversion none)"
    line = (f"{record['sampler']}, {record['steps']} steps, each face inverted ({record['inversion']})"
            + (", latent blending keeps what is not edited" if record["blend"] else ""))
    if mode == "reconstruction" and (record["blend"] or record["inversion"] in ROUND_TRIP):
        line += ("; a reconstruction then returns the first stage's encode-decode of each face: it measures the "
                 "first stage (autoencoder), not the denoiser")
    elif mode == "swap" and record["blend"]:
        line += "; a total swap edits every part, so it keeps nothing and samples from noise"
    return line


def check_run_record(out: Path, record: dict[str, Any], has_images: bool) -> None:
    """Write OUT/run.json, or check it: a folder's images must all come from the same settings."""
    path = out / "run.json"
    if path.is_file():
        old = json.loads(path.read_text())
        diff = [k for k in RUN_KEYS if old.get(k) != record.get(k)]
        if diff:
            shown = ", ".join(f"{k} {old.get(k)!r} (now {record.get(k)!r})" for k in diff)
            raise ValueError(f"{out} holds images made with other settings: {shown}; give another output folder, "
                             "or the same settings to continue it")
        return
    if has_images:
        raise ValueError(f"{out} holds images but no run.json saying how they were made; give an empty or new "
                         "output folder")
    tmp = temp_path(path)
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)


def partial_swap_part(layout, target_id: str, reference_id: str, k: int) -> int:
    """The part swapped for split position k: the k-th (cyclically) class present in both masks, background excluded."""
    import numpy as np

    from .data.layout import load_label

    shared = sorted((set(np.unique(load_label(layout.label_path(target_id)))) &
                     set(np.unique(load_label(layout.label_path(reference_id))))) - {0})
    if not shared:
        return 0
    return int(shared[k % len(shared)])
