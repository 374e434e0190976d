"""Evaluation metrics: FID / KID, SSIM / PSNR, mIoU / pixel accuracy, LPIPS distance and
diversity, attribute accuracy and timing (see docs/evaluation.md for the protocols).

Feature extractors follow one protocol: an object with ``.features(images) -> (B, F)`` for
images in [-1, 1] (:class:`~scadm.eval.inception.InceptionFeatures`, the compact parser,
BiSeNet). A Frechet distance on anything other than the FID Inception's features is *not*
FID and is reported under another name (e.g. "parser-feature Frechet distance").
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import nn

__all__ = [
    "FeatureExtractor",
    "frechet_distance",
    "kernel_distance",
    "extract_features",
    "fid_from_features",
    "TorchmetricsFID",
    "make_fid_metric",
    "make_kid_metric",
    "ssim",
    "psnr",
    "ConfusionMatrix",
    "segmentation_scores",
    "mean_pairwise_distance",
    "attribute_accuracy",
    "time_per_call",
]


@runtime_checkable
class FeatureExtractor(Protocol):
    def features(self, images: torch.Tensor) -> torch.Tensor:  # images (B, 3, H, W) in [-1, 1]
        ...


# ----------------------------------------------------------------------------- FID / KID
def _as_f64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array (N, F), got shape {x.shape}")
    return x


def _sqrtm(m: np.ndarray) -> np.ndarray:
    import warnings

    from scipy import linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = linalg.sqrtm(m)
    return out[0] if isinstance(out, tuple) else out


def frechet_distance(feats_a, feats_b, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, F) and (M, F).

    ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` with unbiased covariances, the
    square root by scipy.linalg.sqrtm (adding ``eps`` to the diagonals when it is singular),
    as in the reference FID code.
    """
    a, b = _as_f64(feats_a), _as_f64(feats_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Frechet distance needs at least 2 samples per set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    diff = mu_a - mu_b
    covmean = _sqrtm(s_a.dot(s_b))
    if not np.isfinite(covmean).all():
        offset = np.eye(s_a.shape[0]) * eps
        covmean = _sqrtm((s_a + offset).dot(s_b + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean))


def kernel_distance(
    feats_a,
    feats_b,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: unbiased MMD^2 with the polynomial kernel ``(gamma <x, y> + coef)^degree``
    (gamma = 1 / F), averaged over ``subsets`` random subsets of ``subset_size`` from each set
    (capped at the set sizes). Returns (mean, std) over subsets."""
    a, b = _as_f64(feats_a), _as_f64(feats_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    g = 1.0 / a.shape[1] if gamma is None else gamma
    rng = np.random.default_rng(seed)
    vals = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (g * x @ x.T + coef) ** degree
        kyy = (g * y @ y.T + coef) ** degree
        kxy = (g * x @ y.T + coef) ** degree
        vals[i] = (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2.0 * kxy.mean()
        )
    return float(vals.mean()), float(vals.std())


@torch.no_grad()
def extract_features(
    extractor: FeatureExtractor, images: Iterable[torch.Tensor], device: torch.device | str | None = None
) -> np.ndarray:
    """Concatenate ``extractor.features(batch)`` over batches of images in [-1, 1] -> (N, F) float64."""
    out = []
    for batch in images:
        if device is not None:
            batch = batch.to(device)
        out.append(extractor.features(batch).detach().double().cpu().numpy())
    if not out:
        raise ValueError("no images to extract features from")
    return np.concatenate(out, 0)


def fid_from_features(real, fake) -> float:
    """FID from two sets of Inception features (an alias of :func:`frechet_distance`)."""
    return frechet_distance(real, fake)


class _ToUnit(nn.Module):
    """Adapter: torchmetrics passes what ``update`` receives; map our [-1, 1] images to ``.features``."""

    def __init__(self, extractor: FeatureExtractor, num_features: int | None) -> None:
        super().__init__()
        self.extractor = extractor
        if num_features is not None:
            self.num_features = int(num_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.extractor.features(images)


def _feature_module(extractor, num_features):
    if num_features is None:
        num_features = getattr(extractor, "num_features", None)
    return _ToUnit(extractor, num_features)


def make_fid_metric(extractor: FeatureExtractor, num_features: int | None = None, reset_real_features: bool = True):
    """torchmetrics ``FrechetInceptionDistance`` using ``extractor.features``; call
    ``.update(images_in_minus1_1, real=True/False)`` then ``.compute()``. Works without torch-fidelity."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    return FrechetInceptionDistance(
        feature=_feature_module(extractor, num_features), reset_real_features=reset_real_features, normalize=True
    )


def make_kid_metric(extractor: FeatureExtractor, subsets: int = 100, subset_size: int = 1000, num_features: int | None = None):
    """torchmetrics ``KernelInceptionDistance`` using ``extractor.features`` (images in [-1, 1]).
    ``subset_size`` must not exceed the number of images per set."""
    import warnings

    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        return KernelInceptionDistance(
            feature=_feature_module(extractor, num_features), subsets=subsets, subset_size=subset_size, normalize=True
        )


TorchmetricsFID = make_fid_metric


# ----------------------------------------------------------------------------- SSIM / PSNR
def _unit(x: torch.Tensor) -> torch.Tensor:
    return x.float().clamp(0, 1)


def ssim(preds: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM of (B, 3, H, W) images in [0, 1] (torchmetrics: Gaussian 11x11, sigma 1.5, data_range 1)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return float(structural_similarity_index_measure(_unit(preds), _unit(target), data_range=1.0))


def psnr(preds: torch.Tensor, target: torch.Tensor, per_image: bool = True) -> float:
    """PSNR in dB of images in [0, 1], data_range 1. ``per_image`` averages per-image PSNRs
    (the usual protocol); False computes one PSNR from the pooled MSE."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    p, t = _unit(preds), _unit(target)
    if per_image and p.ndim == 4:
        vals = peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3))
        return float(vals.mean())
    return float(peak_signal_noise_ratio(p, t, data_range=1.0))


# ----------------------------------------------------------------------------- segmentation
def iou_from_counts(counts: np.ndarray) -> np.ndarray:
    """IoU per class from (true positives, predicted, target) pixel counts, shape (3, K); NaN where
    a class is absent from both predictions and targets."""
    tp, predicted, target = np.asarray(counts, dtype=np.float64)
    union = predicted + target - tp
    return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_iou(iou: np.ndarray, ignore_absent: bool = True) -> float:
    """Mean of per-class IoUs over the classes present (NaN when none), or over all with absent = 0."""
    if ignore_absent:
        iou = iou[~np.isnan(iou)]
        return float(iou.mean()) if iou.size else float("nan")
    return float(np.nan_to_num(iou, nan=0.0).mean())


class ConfusionMatrix:
    """Accumulated (num_classes x num_classes) confusion matrix; rows = target, cols = prediction.

    Pixels whose target is ``ignore_index`` (or outside 0..num_classes-1) are skipped.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.matrix.zero_()

    def update(self, pred, target) -> "ConfusionMatrix":
        p = torch.as_tensor(np.asarray(pred) if isinstance(pred, np.ndarray) else pred).reshape(-1).long().cpu()
        t = torch.as_tensor(np.asarray(target) if isinstance(target, np.ndarray) else target).reshape(-1).long().cpu()
        if p.shape != t.shape:
            raise ValueError(f"prediction and target differ in size: {p.numel()} vs {t.numel()}")
        keep = (t >= 0) & (t < self.num_classes)
        if self.ignore_index is not None:
            keep &= t != self.ignore_index
        p, t = p[keep], t[keep]
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= self.num_classes):
            raise ValueError(f"predicted class id out of range 0..{self.num_classes - 1}")
        self.matrix += torch.bincount(t * self.num_classes + p, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )
        return self

    def counts(self) -> np.ndarray:
        """(3, num_classes): true positives, predicted and target pixels of each class (all IoU needs)."""
        m = self.matrix
        return torch.stack([m.diag(), m.sum(0), m.sum(1)]).numpy()

    def per_class_iou(self) -> np.ndarray:
        """IoU per class; NaN for classes absent from both predictions and targets."""
        return iou_from_counts(self.counts())

    def miou(self, ignore_absent: bool = True) -> float:
        """Mean IoU over classes present in predictions or targets (all classes if not ``ignore_absent``, absent = 0)."""
        return mean_iou(self.per_class_iou(), ignore_absent)

    def pixel_accuracy(self) -> float:
        total = int(self.matrix.sum())
        return float(self.matrix.diag().sum()) / total if total else float("nan")

    def scores(self, ignore_absent: bool = True) -> dict:
        return {
            "miou": self.miou(ignore_absent),
            "pixel_accuracy": self.pixel_accuracy(),
            "per_class_iou": [None if np.isnan(v) else float(v) for v in self.per_class_iou()],
        }


def segmentation_scores(pred_ids, target_ids, num_classes: int, ignore_absent: bool = True) -> dict:
    """mIoU, pixel accuracy and per-class IoU of predicted vs target id maps (any matching shapes),
    pooled over all pixels given (one confusion matrix over the set)."""
    return ConfusionMatrix(num_classes).update(pred_ids, target_ids).scores(ignore_absent)


# ----------------------------------------------------------------------------- LPIPS diversity
@torch.no_grad()
def mean_pairwise_distance(images: torch.Tensor | Sequence[torch.Tensor], dist_fn: Callable) -> float:
    """Mean of ``dist_fn(a, b)`` over all unordered pairs of a set of images (N, 3, H, W).

    With LPIPS this is the diversity of N samples generated for one condition (the
    multi-conditioning paper uses 10 samples per mask and averages over masks).
    """
    x = torch.stack(list(images)) if not isinstance(images, torch.Tensor) else images
    n = x.shape[0]
    if n < 2:
        raise ValueError("mean_pairwise_distance needs at least 2 images")
    i, j = torch.triu_indices(n, n, offset=1)
    d = dist_fn(x[i], x[j])
    d = torch.as_tensor(d, dtype=torch.float64)
    return float(d.mean())


# ----------------------------------------------------------------------------- attributes
def attribute_accuracy(logits_or_probs, targets, threshold: float | None = None) -> float:
    """Mean accuracy over attributes and samples of binary predictions.

    Inputs with values outside [0, 1] are taken as logits (threshold 0), else as probabilities
    (threshold 0.5), unless ``threshold`` is given. Targets are 0/1 (or -1/1).
    """
    p = torch.as_tensor(logits_or_probs).float()
    t = torch.as_tensor(targets).float()
    if p.shape != t.shape:
        raise ValueError(f"predictions {tuple(p.shape)} and targets {tuple(t.shape)} differ in shape")
    if threshold is None:
        threshold = 0.0 if (p.min() < 0 or p.max() > 1) else 0.5
    t = (t > 0).float() if t.min() < 0 else t
    pred = (p > threshold).float()
    return float((pred == (t > 0.5).float()).float().mean())


# ----------------------------------------------------------------------------- timing
def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_per_call(fn: Callable[[], object], repeats: int = 10, warmup: int = 2) -> float:
    """Mean wall-clock seconds per call of ``fn()`` after ``warmup`` calls (CUDA synchronised)."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    for _ in range(max(0, warmup)):
        fn()
    _sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync()
    return (time.perf_counter() - start) / repeats
