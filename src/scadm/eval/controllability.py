"""The synthetic ground-truth benchmark of controllability (``scadm eval synthetic``).

Held-out synthetic faces (:func:`scadm.data.synthetic_split_ids` ``"test"``) have a known
style per region: a base colour that equals the region's mean colour in the rendered image.
So after an edit we can ask, region by region, whether the generated colour is closer to the
style it should have than to the alternative. All distances are Euclidean in RGB (0..255)
between the *mean colour of the generated image inside the region* (the generation mask,
eroded by one pixel where the region is large enough, so boundary blur does not count) and
a style's base colour.

Protocols (pairs: target = face i, reference = face i + 1 of the test split):

reconstruction_success   own style vs a random other face's style for that region
total_swap_success       reference's style vs the target's, for regions present in both
partial_swap_success     one part p swapped, p cycling over the parts of SWAP_PARTS
                         {skin, hair, l_eye, r_eye, u_lip, cloth} present in both faces (each eye
                         alone): p ends closer to the reference than to the target
partial_swap_preserved   in the same images, every other region present in both faces stays
                         closer to the target than to the reference
partial_swap_all_*       the same two rates with p cycling over *every* class present in both
                         faces (nose, brows, lower lip, mouth, ears ... included): a harder variant
mixed_success            reference style for the parts {hair, l_eye, u_lip, cloth}, the empty
                         style for the rest (from noise, or the target kept when blending):
                         those parts closer to the reference than to a random other face
interpolation_monotonic  alphas 0, .25, .5, .75, 1 on one swapped part (first 100 pairs): the region colour's
                         projection on the target -> reference line never decreases by more
                         than 10 % of the line (parts whose two colours differ by >= 40)
noise_miou_ratio         parser mIoU of noise-based samples / parser mIoU of real test faces

Fidelity, beside the rates (means over faces, with standard errors):

reconstruction_psnr / _ssim / _lpips   the reconstructions against the input crops (PSNR in dB,
                         SSIM: torchmetrics' Gaussian 11x11; LPIPS only when its weights are given)
first_stage_psnr / _ssim the first stage's encode-decode of the same crops: the ceiling of any
                         edit that keeps a face (the latent diffusion cannot give back more);
                         a blended reconstruction is that encode-decode, so it meets the ceiling
unedited_drift           in the partial swap, the mean absolute change (0..255, over RGB) of the
                         pixels outside the swapped part's dilated region (the region latent
                         blending frees: the part's latent pixels grown by the blend margin),
                         against the target crop, before any paste-back
first_stage_drift        the same measure for the first stage's encode-decode of the target on
                         the same pixels: the floor (what blending onto an exact inversion gives)
first_stage_preserved    partial_swap_preserved scored on the first stage's encode-decode of the
                         target: the ceiling of "preserved" for an edit that keeps the rest

Chance is 0.5 for the success rates. Sampled from noise (``inversion none``), a model that
ignores the style scores about 0.5 on reconstruction and mixing, about 0 on swaps (it keeps the
target's colours) and about 1 on "preserved"; a perfect one scores 1 everywhere. With inversion
and blending (the default), a reconstruction is the first stage's encode-decode and measures
the autoencoder, and a total swap is still sampled from noise (nothing of the target is kept):
:func:`edits_description` says so in each report.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..config import SamplingOptions
from ..labels import CELEBAMASK_HQ
from .reporting import write_json

MIX_PARTS = ("hair", "l_eye", "u_lip", "cloth")
#: the parts partial_swap_success / partial_swap_preserved cycle over (partial_swap_all_* uses every class)
SWAP_PARTS = ("skin", "hair", "l_eye", "r_eye", "u_lip", "cloth")
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: the protocols in the order SyntheticBenchmark.run runs them
PROTOCOLS = ("reconstruction", "total_swap", "partial_swap", "partial_swap_all", "mixed", "interpolation", "noise")


# ---------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------
def region_means(image: np.ndarray, label: np.ndarray, erode: bool = True) -> dict[int, np.ndarray]:
    """Mean RGB colour of each class region of an (H, W, 3) uint8 image, by an (H, W) label map."""
    out: dict[int, np.ndarray] = {}
    img = image.astype(np.float64)
    for c in np.unique(label):
        m = label == c
        if erode:
            inner = m.copy()
            inner[1:, :] &= m[:-1, :]
            inner[:-1, :] &= m[1:, :]
            inner[:, 1:] &= m[:, :-1]
            inner[:, :-1] &= m[:, 1:]
            if inner.sum() >= 4:
                m = inner
        out[int(c)] = img[m].mean(axis=0)
    return out


def closer(measured: np.ndarray, wanted: Sequence[float], other: Sequence[float]) -> bool:
    """Is `measured` strictly closer to `wanted` than to `other` (RGB Euclidean)?"""
    return float(np.linalg.norm(measured - np.asarray(wanted))) < float(np.linalg.norm(measured - np.asarray(other)))


def style_colors(styles: dict[str, dict]) -> dict[int, np.ndarray]:
    """{class id: base colour} from a synthetic face's style records."""
    return {CELEBAMASK_HQ.index(name): np.asarray(s["color"], dtype=np.float64) for name, s in styles.items()}


def edits_description(run: Any) -> str:
    """How a run's edits of a given face are made (`run`: a resolved SamplingConfig), for reports."""
    if run.inversion == "none":
        return "every edit sampled from noise (inversion none)"
    text = (f"faces inverted ({run.inversion}, {run.sampler}, with the edit's guided eps)" if run.inversion != "virtual"
            else "faces edited beside their noised latent (virtual inversion, no inversion pass, DDIM's grid)")
    if run.blend:
        text += (", latent blending outside the edited parts; a reconstruction is then the first stage's "
                 "encode-decode (no denoiser pass) and a total swap is sampled from noise (nothing to keep)")
    return text + "; noise-based samples from noise"


@dataclass
class Tally:
    """Successes and trials, overall, per part and per face (for the standard error)."""

    hits: int = 0
    trials: int = 0
    per_part: dict[str, list[int]] = field(default_factory=dict)
    per_face: dict[int, list[int]] = field(default_factory=dict)

    def add(self, part: int, ok: bool, face: int | None = None) -> None:
        """One trial; `face` groups the trials of one face (None: a group of its own)."""
        name = CELEBAMASK_HQ.names[part]
        self.hits += int(ok)
        self.trials += 1
        for rec in (self.per_part.setdefault(name, [0, 0]),
                    self.per_face.setdefault(-self.trials if face is None else face, [0, 0])):
            rec[0] += int(ok)
            rec[1] += 1

    @property
    def rate(self) -> float:
        return self.hits / self.trials if self.trials else float("nan")

    @property
    def se(self) -> float:
        """Standard error of :attr:`rate` with the faces as independent clusters (the regions of one
        face are not independent trials): sqrt(n / (n - 1) sum_f (h_f - rate t_f)^2) / T."""
        n = len(self.per_face)
        if n < 2:
            return float("nan")
        h, t = np.array(list(self.per_face.values()), dtype=np.float64).T
        return float(np.sqrt(n / (n - 1) * np.sum((h - self.rate * t) ** 2)) / t.sum())

    def breakdown(self) -> dict[str, dict[str, float]]:
        return {k: {"rate": v[0] / v[1], "n": v[1]} for k, v in sorted(self.per_part.items())}


# ---------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------
class SyntheticBenchmark:
    """Runs the protocols with anything that has the pipeline's operations (a real
    :class:`~scadm.pipeline.SCADMPipeline`, or a test double) on n held-out faces."""

    def __init__(self, pipe: Any, n: int = 200, seed: int = 0, size: tuple[int, int] | None = None,
                 batch_size: int = 16, sampling: SamplingOptions | None = None, progress: Callable[[str, int], None] | None = None,
                 face_seed: int = 0, lpips: Any = None) -> None:
        from ..data.synthetic import render_face, synthetic_split_ids

        self.pipe, self.n, self.seed, self.batch_size = pipe, n, seed, batch_size
        self.sampling = sampling or SamplingOptions()  # its seed is replaced by the protocol's seeds
        size = size or tuple(pipe.image_size)
        ids = synthetic_split_ids("test", n + 1)
        self.faces = [render_face(i, seed=face_seed, size=size) for i in ids]
        self.colors = [style_colors(f.styles) for f in self.faces]
        self.progress = progress or (lambda what, k: None)
        self.rng = np.random.default_rng(seed)
        self.timings: dict[str, float] = {}
        self.lpips = lpips  # an LPIPS module (scadm.eval.lpips) for reconstruction_lpips, or None
        self._first_stage_cache: list[np.ndarray] | None = None

    # -------------------------------------------------------------- helpers
    def _other(self, i: int, c: int) -> np.ndarray:
        """The colour of class c in a random other face that has it."""
        for _ in range(100):
            j = int(self.rng.integers(0, len(self.faces)))
            if j != i and c in self.colors[j]:
                return self.colors[j][c]
        return np.full(3, 127.5)

    def _batches(self, items: list, fn: Callable[[list], list[np.ndarray]], what: str) -> list[np.ndarray]:
        t0 = time.perf_counter()
        out: list[np.ndarray] = []
        for lo in range(0, len(items), self.batch_size):
            out.extend(fn(items[lo:lo + self.batch_size]))
            self.progress(what, len(out))
        self.timings[what] = time.perf_counter() - t0
        return out

    @staticmethod
    def _arrays(result) -> list[np.ndarray]:
        return [np.asarray(im.convert("RGB")) for im in result.images]

    def _face(self, i: int):
        f = self.faces[i]
        return (f.image, f.label)

    @property
    def _inverting(self) -> bool:
        """Whether edits of a given face invert it (this run's options, else the model's default)."""
        cfg = getattr(getattr(self.pipe, "cfg", None), "sampling", None)
        return cfg is not None and self.sampling.resolve(cfg).inversion != "none"

    def _fidelity(self, gens: Sequence[np.ndarray], prefix: str, lpips: bool = True) -> dict[str, list[float]]:
        """Per-face PSNR, SSIM (and LPIPS) of uint8 images against the input crops."""
        from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

        out: dict[str, list[float]] = {f"{prefix}_psnr": [], f"{prefix}_ssim": []}
        if lpips and self.lpips is not None:
            out[f"{prefix}_lpips"] = []
        for lo in range(0, len(gens), 32):
            g = torch.from_numpy(np.stack(gens[lo:lo + 32])).permute(0, 3, 1, 2).float() / 255
            r = torch.from_numpy(np.stack([self.faces[i].image for i in range(lo, lo + len(g))])).permute(0, 3, 1, 2).float() / 255
            out[f"{prefix}_psnr"] += peak_signal_noise_ratio(g, r, data_range=1.0, reduction="none", dim=(1, 2, 3)).tolist()
            out[f"{prefix}_ssim"] += structural_similarity_index_measure(g, r, data_range=1.0, reduction="none").tolist()
            if f"{prefix}_lpips" in out:
                with torch.no_grad():
                    d = self.lpips(g * 2 - 1, r * 2 - 1)
                out[f"{prefix}_lpips"] += d.reshape(-1).tolist()
        return out

    def _first_stage_images(self) -> list[np.ndarray] | None:
        """The first stage's encode-decode of the n input crops, uint8 (None: a pipeline without one); computed once."""
        fs = getattr(self.pipe, "first_stage", None)
        if fs is None:
            return None
        if self._first_stage_cache is None:
            def run(b: list[int]) -> list[np.ndarray]:
                x = torch.cat([self.pipe.inputs.load_image(self.faces[i].image) for i in b])
                with torch.no_grad():
                    y = fs.decode(fs.encode(x)).clamp(-1, 1)
                return list(((y + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy())

            self._first_stage_cache = self._batches(list(range(self.n)), run, "first stage")
        return self._first_stage_cache

    def first_stage(self) -> dict[str, list[float]]:
        """PSNR and SSIM of the first stage's encode-decode of the n input crops (the ceiling)."""
        images = self._first_stage_images()
        return {} if images is None else self._fidelity(images, "first_stage", lpips=False)

    def _kept(self, label: np.ndarray, part: int) -> np.ndarray:
        """(H, W) bool: the pixels outside the part's dilated region (the region latent blending frees)."""
        from ..pipeline.plan import blend_region

        edited = label == part
        cfg = getattr(self.pipe, "cfg", None)
        if cfg is None:  # a stand-in pipeline without a model config
            return ~edited
        r = blend_region(torch.from_numpy(edited)[None], 1, cfg.latent_size).cpu()
        r = torch.nn.functional.interpolate(r, size=label.shape, mode="nearest")[0, 0] > 0
        return ~r.numpy()

    # -------------------------------------------------------------- protocols
    def reconstruction(self) -> Tally:
        idx = list(range(self.n))
        gens = self._batches(idx, lambda b: self._arrays(self.pipe.reconstruct(
            [self.faces[i].image for i in b], [self.faces[i].label for i in b], sampling=self.sampling,
            seed=self.seed + b[0])),
            "reconstruction")
        tally = Tally()
        for i, g in zip(idx, gens):
            means = region_means(g, self.faces[i].label)
            for c, col in self.colors[i].items():
                if c in means:
                    tally.add(c, closer(means[c], col, self._other(i, c)), i)
        self.reconstruction_fidelity = self._fidelity(gens, "reconstruction")
        return tally

    def total_swap(self) -> Tally:
        idx = list(range(self.n))
        gens = self._batches(idx, lambda b: self._arrays(self.pipe.swap(
            [self._face(i) for i in b], [self._face(i + 1) for i in b], None, sampling=self.sampling,
            seed=self.seed + b[0])),
            "total swap")
        tally = Tally()
        for i, g in zip(idx, gens):
            means = region_means(g, self.faces[i].label)
            for c in self.colors[i]:
                if c in self.colors[i + 1] and c in means:
                    tally.add(c, closer(means[c], self.colors[i + 1][c], self.colors[i][c]), i)
        return tally

    def _swap_parts(self, among: Sequence[str] | None = None) -> list[int]:
        """Part swapped in pair i: cycles through the classes present in both faces (background
        excluded), restricted to `among` when given and at least one of them is present."""
        allowed = None if among is None else {CELEBAMASK_HQ.index(p) for p in among}
        parts = []
        for i in range(self.n):
            shared = sorted(set(self.colors[i]) & set(self.colors[i + 1]) - {0})
            chosen = [c for c in shared if allowed is None or c in allowed] or shared
            parts.append(chosen[i % len(chosen)])
        return parts

    def partial_swap(self, among: Sequence[str] | None = SWAP_PARTS) -> tuple[Tally, Tally]:
        """Swap one part per pair (cycling over `among`; None: every class); rates of the swapped
        part and of the preserved rest."""
        parts = self._swap_parts(among)
        idx = list(range(self.n))

        gens = self._batches(idx, lambda b: self._arrays(self.pipe.swap(
            [self._face(i) for i in b], [self._face(i + 1) for i in b], [[parts[i]] for i in b],
            sampling=self.sampling, seed=self.seed + b[0])), "partial swap" + (" (all)" if among is None else ""))
        swapped, preserved, kept_by_first_stage = Tally(), Tally(), Tally()
        ceiling = self._first_stage_images() if among is not None else None
        self.drift = {"unedited_drift": [], **({"first_stage_drift": []} if ceiling is not None else {})}

        def drift(image: np.ndarray, i: int, kept: np.ndarray) -> float:
            d = np.abs(image.astype(np.float64) - self.faces[i].image.astype(np.float64))[kept]
            return float(d.mean()) if d.size else math.nan

        for i, g in zip(idx, gens):
            means = region_means(g, self.faces[i].label)
            p = parts[i]
            kept = self._kept(self.faces[i].label, p)
            self.drift["unedited_drift"].append(drift(g, i, kept))
            if ceiling is not None:
                self.drift["first_stage_drift"].append(drift(ceiling[i], i, kept))
            if p in means:
                swapped.add(p, closer(means[p], self.colors[i + 1][p], self.colors[i][p]), i)
            floor = region_means(ceiling[i], self.faces[i].label) if ceiling is not None else {}
            for c in self.colors[i]:
                if c != p and c in self.colors[i + 1] and c in means:
                    preserved.add(c, closer(means[c], self.colors[i][c], self.colors[i + 1][c]), i)
                    if c in floor:
                        kept_by_first_stage.add(c, closer(floor[c], self.colors[i][c], self.colors[i + 1][c]), i)
        self.first_stage_preserved = kept_by_first_stage
        return swapped, preserved

    def mixed(self) -> Tally:
        idx = list(range(self.n))
        parts = [CELEBAMASK_HQ.index(p) for p in MIX_PARTS]

        def targets(b: list[int]) -> Any:  # faces when inverting (their images are inverted), else masks
            if self._inverting:
                from ..pipeline import Face

                return [Face(self.faces[i].image, self.faces[i].label) for i in b]
            return np.stack([self.faces[i].label for i in b])

        gens = self._batches(idx, lambda b: self._arrays(self.pipe.mix(
            targets(b), [self._face(i + 1) for i in b], list(MIX_PARTS),
            sampling=self.sampling, seed=self.seed + b[0])), "mixed")
        tally = Tally()
        for i, g in zip(idx, gens):
            means = region_means(g, self.faces[i].label)
            for c in parts:
                if c in means and c in self.colors[i + 1]:
                    tally.add(c, closer(means[c], self.colors[i + 1][c], self._other(i + 1, c)), i)
        return tally

    def interpolation(self, n: int | None = 100, min_distance: float = 40.0, tolerance: float = 0.1) -> Tally:
        """On the first `n` pairs (100 by default: five images per pair)."""
        parts = self._swap_parts()
        idx = [i for i in range(min(n or self.n, self.n))
               if np.linalg.norm(self.colors[i][parts[i]] - self.colors[i + 1][parts[i]]) >= min_distance]

        def run(b: list[int]) -> list[np.ndarray]:
            out = []
            for i in b:
                r = self.pipe.interpolate(self._face(i), self._face(i + 1), [parts[i]], alphas=ALPHAS,
                                          sampling=self.sampling, seed=self.seed + i)
                out.append(np.stack(self._arrays(r)))
            return out

        gens = self._batches(idx, run, "interpolation")
        tally = Tally()
        for i, g in zip(idx, gens):
            p = parts[i]
            a, b = self.colors[i][p], self.colors[i + 1][p]
            proj = []
            for frame in g:
                m = region_means(frame, self.faces[i].label).get(p)
                proj.append(float(np.dot(m - a, b - a) / np.dot(b - a, b - a)) if m is not None else math.nan)
            ok = all(not math.isnan(x) for x in proj) and all(y >= x - tolerance for x, y in zip(proj, proj[1:]))
            tally.add(p, ok, i)
        return tally

    def noise_miou(self, parser) -> dict[str, float]:
        """Parser mIoU on noise-based samples relative to its mIoU on the real test faces."""
        from .metrics import ConfusionMatrix

        idx = list(range(self.n))
        # noise-based samples have no face to invert: they are drawn from noise whatever the inversion
        noise = dataclasses.replace(self.sampling, inversion=None, blend=None)
        gens = self._batches(idx, lambda b: self._arrays(self.pipe.generate(
            np.stack([self.faces[i].label for i in b]), n=len(b), sampling=noise,
            seed=self.seed + b[0])), "noise-based")
        k = CELEBAMASK_HQ.num_classes
        fake, real = ConfusionMatrix(k), ConfusionMatrix(k)
        per_face = np.zeros((2, self.n, 3, k), dtype=np.int64)  # (fake, real) IoU counts of each face
        with torch.no_grad():
            for lo in range(0, self.n, 32):
                hi = min(self.n, lo + 32)
                labels = torch.from_numpy(np.stack([self.faces[i].label for i in range(lo, hi)]).astype(np.int64))
                for which, images in enumerate((np.stack(gens[lo:hi]),
                                                np.stack([self.faces[i].image for i in range(lo, hi)]))):
                    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
                    pred = parser.parse(x).cpu()
                    for j in range(hi - lo):
                        face = ConfusionMatrix(k).update(pred[j], labels[j])
                        (fake, real)[which].matrix += face.matrix
                        per_face[which, lo + j] = face.counts()
        f, r = fake.miou(), real.miou()
        per_part = {
            CELEBAMASK_HQ.names[c]: {"noise": float(a), "real": float(b)}
            for c, (a, b) in enumerate(zip(fake.per_class_iou(), real.per_class_iou())) if not np.isnan(b)
        }
        return {"noise_miou": f, "real_miou": r, "noise_miou_ratio": f / r if r > 0 else float("nan"),
                "noise_pixel_accuracy": fake.pixel_accuracy(), "real_pixel_accuracy": real.pixel_accuracy(),
                "noise_iou_per_part": per_part, "_generated": gens, "_ratio_se": bootstrap_se([per_face]),
                "_per_face": per_face}

    # -------------------------------------------------------------- everything
    def _protocol(self, name: str, parser: Any, se: dict[str, float], per_face: dict[str, Any]) -> dict[str, Any]:
        """Run one protocol: its report entries; its rates' standard errors and per-face rows go to se, per_face."""
        def rate(key: str, t: Tally) -> float:
            se[key] = t.se
            per_face[key] = [[int(face), int(h), int(n)] for face, (h, n) in sorted(t.per_face.items())]
            return t.rate

        def means(values: dict[str, list[float]]) -> dict[str, float]:
            out = {}
            for key, v in values.items():
                a = np.asarray(v, dtype=np.float64)
                a = a[np.isfinite(a)]
                out[key] = float(a.mean()) if a.size else math.nan
                se[key] = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else math.nan
                per_face[key] = [float(x) for x in v]
            return out

        if name == "reconstruction":
            t = self.reconstruction()
            return dict(reconstruction_success=rate("reconstruction_success", t), reconstruction_per_part=t.breakdown(),
                        **means(self.reconstruction_fidelity), **means(self.first_stage()))
        if name == "total_swap":
            t = self.total_swap()
            return dict(total_swap_success=rate("total_swap_success", t), total_swap_per_part=t.breakdown())
        if name == "partial_swap":
            s, p = self.partial_swap()
            return dict(partial_swap_success=rate("partial_swap_success", s), partial_swap_per_part=s.breakdown(),
                        partial_swap_preserved=rate("partial_swap_preserved", p),
                        partial_swap_preserved_per_part=p.breakdown(), **means(self.drift),
                        **({"first_stage_preserved": rate("first_stage_preserved", self.first_stage_preserved)}
                           if self.first_stage_preserved.trials else {}))
        if name == "partial_swap_all":
            s, p = self.partial_swap(among=None)
            return dict(partial_swap_all_success=rate("partial_swap_all_success", s),
                        partial_swap_all_per_part=s.breakdown(),
                        partial_swap_all_preserved=rate("partial_swap_all_preserved", p))
        if name == "mixed":
            t = self.mixed()
            return dict(mixed_success=rate("mixed_success", t), mixed_per_part=t.breakdown())
        if name == "interpolation":
            t = self.interpolation()
            return dict(interpolation_monotonic=rate("interpolation_monotonic", t), interpolation_n=t.trials,
                        interpolation_per_part=t.breakdown())
        if name == "noise":
            scores = self.noise_miou(parser)
            scores.pop("_generated")
            se["noise_miou_ratio"] = scores.pop("_ratio_se")
            per_face["noise_miou_ratio"] = scores.pop("_per_face").tolist()
            return scores
        raise AssertionError(name)

    def run(self, parser=None, protocols: Sequence[str] | None = None, checkpoint: str | Path | None = None,
            identity: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every protocol (or those named), in a fixed order; the noise protocol needs a parser.

        checkpoint: a JSON file written after each protocol (what is done, the report so far, the
        random state), from which a stopped run resumes where it stopped, to the same report as
        an unbroken run. It must come from the same settings (n, seed, sampling and ``identity``,
        e.g. the model), or a ValueError names it. The caller deletes it once the report is kept.
        """
        protocols = list(protocols or PROTOCOLS)
        unknown = sorted(set(protocols) - set(PROTOCOLS))
        if unknown:
            raise ValueError(f"unknown protocol(s) {', '.join(unknown)}; choose from {', '.join(PROTOCOLS)}")
        sampling = {k: v for k, v in dataclasses.asdict(self.sampling).items() if k not in ("seed", "progress")}
        report: dict[str, Any] = {"n": self.n, "sampling": sampling, "seed": self.seed}
        key = json.loads(json.dumps({**report, "batch_size": self.batch_size, "identity": identity or {}}, default=str))
        se: dict[str, float] = {}
        per_face: dict[str, Any] = {}  # every face's outcomes, for paired comparisons (paired_standard_errors)
        done: list[str] = []
        path = Path(checkpoint) if checkpoint else None
        if path is not None and path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("key") != key:
                other = saved.get("key") or {}
                differ = [k for k in key if other.get(k) != key[k]] or ["format"]
                raise ValueError(f"{path}: a stopped benchmark run with other settings ({', '.join(differ)} differ); "
                                 "delete it to start afresh, or give the settings it was made with")
            report, se, per_face, done = saved["report"], saved["standard_errors"], saved["per_face"], saved["done"]
            self.timings.update(saved["seconds"])
            self.rng.bit_generator.state = saved["rng"]

        for name in PROTOCOLS:
            if name not in protocols or name in done or (name == "noise" and parser is None):
                continue
            report.update(self._protocol(name, parser, se, per_face))
            done.append(name)
            if path is not None:
                write_json({"key": key, "done": done, "report": report, "standard_errors": se,
                            "per_face": per_face, "seconds": self.timings, "rng": self.rng.bit_generator.state}, path)
        report["standard_errors"] = se
        report["per_face"] = per_face
        report["seconds"] = dict(self.timings)
        return report



def _miou_ratio(counts: np.ndarray) -> float:
    """Noise-based / real mIoU from summed (2, 3, K) IoU counts."""
    from .metrics import iou_from_counts, mean_iou

    real = mean_iou(iou_from_counts(counts[1]))
    return mean_iou(iou_from_counts(counts[0])) / real if real > 0 else float("nan")


def bootstrap_se(per_face: Sequence[np.ndarray], resamples: int = 500, seed: int = 0) -> float:
    """Bootstrap standard error of the noise-based / real mIoU ratio, the faces resampled with
    replacement (the same faces for both images of a face), `resamples` times. per_face: one
    (2, n, 3, K) array of per-face IoU counts; with two (two runs on the same faces), the standard
    error of the difference of their ratios, the same faces drawn for both (a paired bootstrap)."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(a, dtype=np.int64) for a in per_face]
    n = arrays[0].shape[1]
    values = []
    for _ in range(resamples):
        pick = np.bincount(rng.integers(0, n, n), minlength=n)
        r = [_miou_ratio(np.tensordot(pick, a, axes=(0, 1))) for a in arrays]
        if not any(math.isnan(x) for x in r):
            values.append(r[0] - r[1] if len(r) == 2 else r[0])
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def paired_standard_errors(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Standard error of each rate's difference a - b between two reports of the same faces and
    seeds (``scadm eval synthetic`` JSONs with ``per_face``). The runs are paired: a face that is
    hard for one sampler is hard for the other, so this is smaller than the unpaired
    sqrt(se_a^2 + se_b^2). Rates: the faces as clusters, the difference of the two ratio
    estimators linearised, z_f = (h_af - r_a t_af) / T_a - (h_bf - r_b t_bf) / T_b and
    se = sqrt(n / (n - 1) sum_f z_f^2); the mIoU ratio: a paired bootstrap over faces; means over
    faces (PSNR, SSIM, drift): the standard error of the per-face differences."""
    out: dict[str, float] = {}
    pa, pb = a.get("per_face", {}), b.get("per_face", {})
    for key in pa.keys() & pb.keys():
        if key == "noise_miou_ratio":
            out[key] = bootstrap_se([np.asarray(pa[key]), np.asarray(pb[key])])
            continue
        if pa[key] and not isinstance(pa[key][0], (list, tuple)):  # a mean over faces (PSNR, drift): one value each
            d = np.asarray(pa[key], dtype=np.float64) - np.asarray(pb[key], dtype=np.float64)
            d = d[np.isfinite(d)]
            out[key] = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
            continue
        index = {f: i for i, f in enumerate(sorted({row[0] for row in pa[key] + pb[key]}))}

        def centred(rows: list) -> np.ndarray:  # (h_f - r t_f) / T per face, 0 for a face without trials
            h, t = np.zeros(len(index)), np.zeros(len(index))
            for f, hits, trials in rows:
                h[index[f]], t[index[f]] = hits, trials
            return (h - h.sum() / t.sum() * t) / t.sum() if t.sum() else h

        z, n = centred(pa[key]) - centred(pb[key]), len(index)
        out[key] = float(np.sqrt(n / (n - 1) * np.sum(z**2))) if n > 1 else float("nan")
    return out
