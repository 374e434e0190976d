"""The papers' evaluation protocols on a prepared dataset (``scadm eval reconstruction|swap|...``).

Generated images are written to ``WORK/<protocol>/...`` one PNG per id (resumable: existing
files are reused; shardable: run the same command under ``accelerate launch`` / ``torchrun``,
then once more in one process to score). Each protocol returns a dict that records its
protocol next to the numbers.

Quality: FID/KID with the standard Inception weights when they are available; otherwise a
Frechet distance in the parser's feature space, reported as ``parser_fd`` (never "FID").
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..config import SamplingOptions
from ..diffusion.inversion import ROUND_TRIP
from ..sampling_jobs import partial_swap_part, run_record, run_sampling_job, strategy_line


# ---------------------------------------------------------------------------
# loading what a protocol needs
# ---------------------------------------------------------------------------
class Scorer:
    """Real and generated images of a split, with the optional feature networks."""

    def __init__(self, data: str | Path, split: str, n: int | None, size: tuple[int, int], parser=None,
                 inception=None, lpips=None, device: str = "cpu") -> None:
        from ..data import FaceDataset

        self.ds = FaceDataset(data, split=split, size=size, flip=False, with_attributes=True)
        self.ids = self.ds.ids[: n or len(self.ds)]
        self.size, self.parser, self.inception, self.lpips, self.device = size, parser, inception, lpips, device
        self._real: torch.Tensor | None = None

    def real(self) -> torch.Tensor:
        if self._real is None:
            self._real = torch.stack([self.ds[i]["image"] for i in range(len(self.ids))])
        return self._real

    def labels(self) -> torch.Tensor:
        return torch.stack([self.ds[i]["label"] for i in range(len(self.ids))])

    def load(self, folder: Path, ids: list[str] | None = None) -> torch.Tensor:
        from PIL import Image

        ids = ids or self.ids
        def read(path: Path) -> np.ndarray:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))

        arr = np.stack([read(folder / f"{i}.png") for i in ids])
        return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1

    # -------------------------------------------------------------- metrics
    def features(self, x: torch.Tensor, net) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for lo in range(0, len(x), 32):
                out.append(net.features(x[lo:lo + 32].to(self.device)).float().cpu())
        return torch.cat(out)

    def quality(self, fake: torch.Tensor) -> dict[str, Any]:
        from .metrics import frechet_distance, kernel_distance

        real = self.real()
        res: dict[str, Any] = {}
        if self.inception is not None:
            fr, ff = self.features(real, self.inception), self.features(fake, self.inception)
            kid = kernel_distance(fr, ff, subsets=10, subset_size=min(len(fr), len(ff), 1000))
            res.update(fid=frechet_distance(fr, ff), kid=kid[0], kid_std=kid[1],
                       fid_protocol=f"{len(ff)} generated vs {len(fr)} real {self.size[0]}x{self.size[1]} PNG images, "
                                    "Inception resize to 299 (bilinear, TF1-style), torch-fidelity weights")
        if self.parser is not None:
            fr, ff = self.features(real, self.parser), self.features(fake, self.parser)
            res.update(parser_fd=frechet_distance(fr, ff),
                       parser_fd_protocol=f"Frechet distance of parser features, {len(ff)} generated vs {len(fr)} real "
                                          "(NOT FID: no Inception weights involved)")
        return res

    def segmentation(self, fake: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        from .metrics import ConfusionMatrix

        if self.parser is None:
            return {}
        cm = ConfusionMatrix(self.ds.num_classes)
        with torch.no_grad():
            for lo in range(0, len(fake), 32):
                cm.update(self.parser.parse(fake[lo:lo + 32].to(self.device)).cpu(), labels[lo:lo + 32])
        return {"miou": cm.miou(), "pixel_accuracy": cm.pixel_accuracy()}

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS when available, else mean absolute pixel difference (in [-1, 1] units)."""
        if self.lpips is not None:
            with torch.no_grad():
                return torch.cat([self.lpips(a[i:i + 16].to(self.device), b[i:i + 16].to(self.device)).flatten().cpu()
                                  for i in range(0, len(a), 16)])
        return (a - b).abs().flatten(1).mean(1)

    @property
    def distance_name(self) -> str:
        return "lpips" if self.lpips is not None else "pixel_l1"


def _split(scorer: Scorer) -> str:
    return getattr(scorer.ds, "split", "test")


def sampling_record(model, mode: str, split: str, sampling: SamplingOptions) -> dict[str, Any]:
    """The resolved settings a protocol's images are made with (see scadm.sampling_jobs.run_record)."""
    from ..models.ldm import read_model_config
    from ..pipeline import default_model_folder

    folder = Path(model) if model is not None else default_model_folder()
    return run_record(mode, split, _base_seed(sampling), sampling, read_model_config(folder).sampling)


def strategy(record: dict[str, Any]) -> dict[str, Any]:
    """A report's account of how its images were made: ``inversion``, ``blend`` and one line."""
    return {"inversion": record["inversion"], "blend": record["blend"],
            "sampling_protocol": strategy_line(record["mode"], record)}


def _gen(work: Path, data, mode: str, scorer: Scorer, model, sampling: SamplingOptions, printer) -> tuple[Path, dict]:
    """Generate (or reuse) a protocol's images: ``WORK/<mode>`` from noise, ``WORK/<mode>-<inversion>[-blend]``
    for edits of the dataset's faces by inversion, so that the two never share a folder."""
    record = sampling_record(model, mode, _split(scorer), sampling)
    name = mode if record["inversion"] == "none" else f"{mode}-{record['inversion']}" + ("-blend" if record["blend"] else "")
    folder = work / name
    run_sampling_job(data, folder, mode=mode, split=_split(scorer), limit=len(scorer.ids), model=model,
                     sampling=sampling, printer=printer)
    return folder, record


def _base_seed(sampling: SamplingOptions) -> int:
    return sampling.seed if isinstance(sampling.seed, int) else int(sampling.seed[0])


# ---------------------------------------------------------------------------
# protocols
# ---------------------------------------------------------------------------
def reconstruction_protocol(scorer: Scorer, data, work: Path, model, sampling: SamplingOptions,
                            printer: Callable = print) -> dict[str, Any]:
    """SCA-DM Table 1: SSIM (and PSNR) to the input, FID, parser mIoU and accuracy against the mask."""
    from .metrics import psnr, ssim

    folder, record = _gen(work, data, "reconstruction", scorer, model, sampling, printer)
    fake, real = scorer.load(folder), scorer.real()
    first_stage = record["blend"] or record["inversion"] in ROUND_TRIP
    res = {"protocol": f"reconstruction of {len(fake)} {_split(scorer)} images: own style, own mask", **strategy(record),
           "measures": "the first stage (autoencoder), not the denoiser" if first_stage else "the denoiser",
           "ssim": ssim((fake + 1) / 2, (real + 1) / 2), "psnr": psnr((fake + 1) / 2, (real + 1) / 2)}
    res.update(scorer.quality(fake))
    res.update(scorer.segmentation(fake, scorer.labels()))
    return res


def swap_protocol(scorer: Scorer, data, work: Path, model, sampling: SamplingOptions, partial: bool = False,
                  printer: Callable = print) -> dict[str, Any]:
    """Total or partial style swap (reference = the next id): quality, mask fidelity and, for partial
    swaps, disentanglement: change against the reconstruction (same seed) inside the swapped part
    versus outside it."""
    mode = "partial-swap" if partial else "swap"
    folder, record = _gen(work, data, mode, scorer, model, sampling, printer)
    fake = scorer.load(folder)
    labels = scorer.labels()
    res: dict[str, Any] = {"protocol": f"{mode} on {len(fake)} images; reference = the next id of the split",
                           **strategy(record)}
    res.update(scorer.quality(fake))
    res.update(scorer.segmentation(fake, labels))
    if partial:
        recon = scorer.load(_gen(work, data, "reconstruction", scorer, model, sampling, printer)[0])
        from ..data.layout import DatasetLayout

        layout = DatasetLayout(data)
        ids = scorer.ids
        change = (fake - recon).abs().mean(1)  # (N, H, W) per-pixel change
        inside, outside, per_part = [], [], {}
        for k, i in enumerate(ids):
            part = partial_swap_part(layout, i, ids[(k + 1) % len(ids)], k)
            m = labels[k] == part
            if m.sum() == 0 or (~m).sum() == 0:
                continue
            a, b = change[k][m].mean().item(), change[k][~m].mean().item()
            inside.append(a)
            outside.append(b)
            name = scorer.ds.label_set.names[part]
            per_part.setdefault(name, []).append((a, b))
        res.update(
            change_inside=float(np.mean(inside)), change_outside=float(np.mean(outside)),
            leakage_ratio=float(np.mean(outside) / max(np.mean(inside), 1e-8)),
            change_per_part={p: {"inside": float(np.mean([x[0] for x in v])), "outside": float(np.mean([x[1] for x in v])),
                                 "n": len(v)} for p, v in sorted(per_part.items())},
            disentanglement_protocol="mean |partial swap - reconstruction| (same seed, pixel units in [-1, 1]) inside the "
                                     "swapped part vs outside it; leakage_ratio = outside / inside (0 = no leakage)",
        )
    return res


def noise_protocol(scorer: Scorer, data, work: Path, model, sampling: SamplingOptions,
                   steps_list=(50, 100, 200, 1000), printer: Callable = print) -> dict[str, Any]:
    """SCA-DM Fig. 7: noise-based generation at several DDIM step counts: quality and time per image."""
    rows = []
    for steps in steps_list:
        t0 = time.perf_counter()
        folder = work / f"noise-{steps}"
        done_before = len(list(folder.glob("*.png"))) if folder.is_dir() else 0
        job = run_sampling_job(data, folder, mode="noise", split=_split(scorer), limit=len(scorer.ids),
                               model=model, sampling=dataclasses.replace(sampling, steps=steps), printer=printer)
        made = len(scorer.ids) - done_before
        sec = (time.perf_counter() - t0) / made if made > 0 else float("nan")
        fake = scorer.load(folder)
        row = {"steps": steps, "s_per_image": sec, **scorer.quality(fake), **scorer.segmentation(fake, scorer.labels())}
        rows.append({k: v for k, v in row.items() if not k.endswith("protocol")})
    return {"protocol": f"noise-based generation for {len(scorer.ids)} masks at each step count ({job['run']['sampler']}); "
                        "time per image measured on this run's newly generated images (nan when all were reused)",
            **strategy(job["run"]), "rows": rows}


def diversity_protocol(scorer: Scorer, model, sampling: SamplingOptions, samples: int = 10) -> dict[str, Any]:
    """Multi-conditioning paper: `samples` noise-based images per mask, mean pairwise distance."""
    from ..pipeline import SCADMPipeline
    from .metrics import mean_pairwise_distance

    record = sampling_record(model, "noise", _split(scorer), sampling)  # noise-based: a face-inverting option stops here
    pipe = SCADMPipeline.from_pretrained(model)
    labels = scorer.labels()
    seed = _base_seed(sampling)
    scores = []
    for k in range(len(scorer.ids)):
        imgs = pipe.generate(labels[k:k + 1], n=samples, sampling=sampling, seed=seed + k * samples).tensors.cpu()
        scores.append(mean_pairwise_distance(imgs, scorer.distance))
    return {"protocol": f"{samples} noise-based samples per mask for {len(scores)} masks, mean pairwise "
                        f"{scorer.distance_name}", **strategy(record), "diversity": float(np.mean(scores)),
            "metric": scorer.distance_name}


def timing_protocol(model: str | Path | None, *, sampler: str = "ddim", steps: list[int] = (50,), batch_size: int = 1,
                    repeats: int = 3, device: str | None = None) -> list[dict[str, Any]]:
    """Wall-clock seconds per image and per denoising step, after one warm-up call.

    Guided generation (reconstruction, s != 0) runs a doubled batch; noise-based generation does not.
    Both sample from noise (``inversion none``): a blended reconstruction would time the first stage alone.
    """
    from ..data.synthetic import render_face, synthetic_split_ids
    from ..pipeline import SCADMPipeline

    pipe = SCADMPipeline.from_pretrained(model, device=device)
    faces = [render_face(i, size=pipe.image_size) for i in synthetic_split_ids("test", batch_size)]
    images, labels = [f.image for f in faces], [f.label for f in faces]
    rows = []
    for n in steps:
        for kind, fn in (("noise-based", lambda: pipe.generate(np.stack(labels), n=batch_size, sampler=sampler, steps=n)),
                         ("reconstruction (guided)", lambda: pipe.reconstruct(images, labels, sampler=sampler, steps=n,
                                                                              inversion="none"))):
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


def conditioning_protocol(scorer: Scorer, work: Path, model, sampling: SamplingOptions, *, eta: float = 0.0,
                          classifier=None, diversity_masks: int = 0, samples: int = 10,
                          printer: Callable = print) -> dict[str, Any]:
    """The multi-conditioning paper's Table 4: one sample per validation condition (its attributes
    and/or its mask), then FID/KID (or parser FD), attribute accuracy (classifier on the samples
    against the conditioning attributes), mask accuracy and mIoU (parser against the
    conditioning mask) and LPIPS diversity over `samples` samples per condition."""
    from ..pipeline import SCADMPipeline
    from .metrics import attribute_accuracy, mean_pairwise_distance

    pipe = SCADMPipeline.from_pretrained(model)
    kind = pipe.mode.name
    uses_mask = pipe.mode.reads_mask or bool(pipe.cfg.unet.spade_parts)
    seed = _base_seed(sampling)
    folder = work / f"conditioning-eta{eta:g}"
    folder.mkdir(parents=True, exist_ok=True)
    labels = scorer.labels()
    attrs = torch.stack([scorer.ds[i]["attributes"] for i in range(len(scorer.ids))]) if scorer.ds.has_attributes else None
    todo = [k for k, i in enumerate(scorer.ids) if not (folder / f"{i}.png").is_file()]
    printer(f"conditioning ({kind}, eta {eta:g}): {len(scorer.ids) - len(todo)} of {len(scorer.ids)} samples already made")
    for lo in range(0, len(todo), 8):
        ks = todo[lo:lo + 8]
        a = attrs[ks] if (attrs is not None and pipe.uses_attributes) else None
        r = pipe.generate(labels[ks], n=len(ks), attributes=a, sampling=sampling, seed=[seed + k for k in ks], eta=eta)
        for k, im in zip(ks, r.images):
            im.save(folder / f"{scorer.ids[k]}.png")
    fake = scorer.load(folder)
    res: dict[str, Any] = {"protocol": f"{kind} conditioning, one sample per {getattr(scorer.ds, 'split', 'test')} "
                                       f"condition ({len(fake)}), DDIM eta {eta:g} ({'d.' if eta == 0 else 's.'})",
                           "condition": kind, "eta": eta}
    res.update({k: v for k, v in scorer.quality(fake).items()})
    if classifier is not None and attrs is not None and pipe.uses_attributes:
        with torch.no_grad():
            probs = torch.cat([classifier.predict(fake[i:i + 32]) for i in range(0, len(fake), 32)])
            real_probs = torch.cat([classifier.predict(scorer.real()[i:i + 32]) for i in range(0, len(fake), 32)])
        res["attribute_accuracy"] = attribute_accuracy(probs, attrs)
        res["attribute_accuracy_real"] = attribute_accuracy(real_probs, attrs)
    if uses_mask:
        seg = scorer.segmentation(fake, labels)
        if seg:
            res.update(mask_accuracy=seg["pixel_accuracy"], miou=seg["miou"])
            real_seg = scorer.segmentation(scorer.real(), labels)
            res.update(mask_accuracy_real=real_seg["pixel_accuracy"], miou_real=real_seg["miou"])
    if diversity_masks > 0:
        scores = []
        for k in range(min(diversity_masks, len(scorer.ids))):
            a = attrs[k:k + 1].expand(samples, -1) if (attrs is not None and pipe.uses_attributes) else None
            imgs = pipe.generate(labels[k:k + 1], n=samples, attributes=a, sampling=sampling,
                                 seed=seed + 10_000 + k * samples, eta=1.0).tensors.cpu()
            scores.append(mean_pairwise_distance(imgs, scorer.distance))
        res[scorer.distance_name + "_diversity"] = float(np.mean(scores))
        res["diversity_protocol"] = (f"{samples} stochastic (eta 1) samples per condition for {len(scores)} conditions, "
                                     f"mean pairwise {scorer.distance_name}")
    return res
