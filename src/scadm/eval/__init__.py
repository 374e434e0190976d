"""Evaluation networks and metrics: FID Inception, LPIPS, face parsers, attribute classifier,
FID / KID / SSIM / PSNR / mIoU / LPIPS diversity / attribute accuracy / timing.

Every pretrained network loads a local file the user brings (see docs/evaluation.md);
nothing is downloaded. Names are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MissingWeightsError": "weights",
    "find_weights": "weights",
    "load_state_dict": "weights",
    "FIDInceptionV3": "inception",
    "InceptionFeatures": "inception",
    "LPIPS": "lpips",
    "VGG16Features": "lpips",
    "BiSeNet": "parser",
    "BiSeNetParser": "parser",
    "load_bisenet": "parser",
    "CompactParser": "parser",
    "evaluate_parser": "parser",
    "load_parser": "parser",
    "AttributeClassifier": "classifier",
    "evaluate_classifier": "classifier",
    "load_classifier": "classifier",
    "FeatureExtractor": "metrics",
    "frechet_distance": "metrics",
    "kernel_distance": "metrics",
    "extract_features": "metrics",
    "make_fid_metric": "metrics",
    "make_kid_metric": "metrics",
    "ssim": "metrics",
    "psnr": "metrics",
    "ConfusionMatrix": "metrics",
    "segmentation_scores": "metrics",
    "mean_pairwise_distance": "metrics",
    "attribute_accuracy": "metrics",
    "time_per_call": "metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
