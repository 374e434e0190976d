"""Evaluation networks and metrics: FID Inception, LPIPS, face parsers, attribute classifier,
FID / KID / SSIM / PSNR / mIoU / LPIPS diversity / attribute accuracy / timing.

Every pretrained network loads a local file the user brings (see docs/evaluation.md);
nothing is downloaded. Names are imported lazily; the face parsers live in
:mod:`scadm.models.face_parser` (photos use them too) and the weight-file lookup in
:mod:`scadm.weights`, and are re-exported here.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MissingWeightsError": "..weights",
    "find_weights": "..weights",
    "load_state_dict": "..weights",
    "FIDInceptionV3": "inception",
    "InceptionFeatures": "inception",
    "LPIPS": "lpips",
    "VGG16Features": "lpips",
    "BiSeNet": "..models.face_parser",
    "BiSeNetParser": "..models.face_parser",
    "load_bisenet": "..models.face_parser",
    "CompactParser": "..models.face_parser",
    "evaluate_parser": "parser",
    "load_parser": "..models.face_parser",
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
        module = _EXPORTS[name]
        value = getattr(importlib.import_module(module if module.startswith(".") else f".{module}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
