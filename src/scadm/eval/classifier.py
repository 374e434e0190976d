"""Attribute classifier: a ResNet-18 (torchvision layout) with a 40-way multi-label head.

Used for attribute accuracy of generated images (the multi-conditioning paper fine-tunes an
ImageNet ResNet-18 on CelebA-HQ attributes). ``scadm train-classifier``
(:mod:`scadm.train.classifier`) trains it with binary cross-entropy on any dataset with
``attributes.csv``; ``--init`` takes torchvision's ``resnet18-f37072fd.pth`` as a local file
(never downloaded).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..nn.resnet import ResNet18, adapt_torchvision_state_dict
from .metrics import attribute_accuracy
from ..weights import find_weights, load_state_dict, load_strict

__all__ = ["AttributeClassifier", "evaluate_classifier", "load_classifier", "RESNET18_WEIGHTS"]

RESNET18_WEIGHTS = "resnet18-f37072fd.pth"
RESNET18_SOURCE = "torchvision's model zoo (download.pytorch.org/models/resnet18-f37072fd.pth)"
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class AttributeClassifier(nn.Module):
    """ResNet-18 multi-label classifier; ``forward(images in [-1, 1]) -> (B, num_attributes)`` logits.

    Images are mapped to [0, 1] and normalised with ImageNet mean/std inside, so torchvision's
    ImageNet weights are a meaningful initialisation.
    """

    def __init__(self, num_attributes: int = 40) -> None:
        super().__init__()
        self.num_attributes = num_attributes
        self.backbone = ResNet18(in_channels=3, num_classes=num_attributes)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.num_features = 512
        self.attribute_names: tuple[str, ...] = ()

    def config(self) -> dict:
        return {"num_attributes": self.num_attributes}

    def _prep(self, images: torch.Tensor) -> torch.Tensor:
        return ((images.float() + 1) / 2 - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(self._prep(images))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(B, num_attributes) probabilities."""
        return torch.sigmoid(self.forward(images))

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 512) pooled backbone features."""
        return self.backbone.forward_pooled(self._prep(images))

    def load_torchvision(self, path: str | os.PathLike) -> None:
        """Initialise the backbone from torchvision's ``resnet18-f37072fd.pth`` (the 1000-way fc is dropped)."""
        p = find_weights(RESNET18_WEIGHTS, path, what="classifier initialisation (ResNet-18)", source=RESNET18_SOURCE)
        state = adapt_torchvision_state_dict(load_state_dict(p), self.backbone, keep_fc=False)
        missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"fc.weight", "fc.bias"}:
            raise ValueError(f"{p}: not a torchvision ResNet-18 state dict (missing {missing[:3]}, unexpected {unexpected[:3]})")


@torch.no_grad()
def evaluate_classifier(model: AttributeClassifier, loader, device: torch.device | str = "cpu") -> dict:
    """Mean and per-attribute accuracy of thresholded predictions over a loader of FaceDataset items."""
    was = model.training
    model.eval()
    logits, targets = [], []
    for batch in loader:
        logits.append(model(batch["image"].to(device)).cpu())
        targets.append(batch["attributes"])
    model.train(was)
    lg, tg = torch.cat(logits), torch.cat(targets)
    per_attr = ((lg > 0).float() == (tg > 0.5).float()).float().mean(0)
    return {
        "mean_accuracy": attribute_accuracy(lg, tg, threshold=0.0),
        "per_attribute_accuracy": [float(v) for v in per_attr],
        "majority_baseline": float(torch.maximum(tg.mean(0), 1 - tg.mean(0)).mean()),
    }


def save_classifier(model: AttributeClassifier, out: str | os.PathLike, info: dict) -> Path:
    """Write classifier.safetensors + classifier.json (``kind`` and ``config`` are filled in)."""
    from safetensors.torch import save_file

    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    model.cpu()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(outp / "classifier.safetensors"))
    meta = {"kind": "attribute-classifier", "config": model.config(), **info}
    (outp / "classifier.json").write_text(json.dumps(meta, indent=2) + "\n")
    return outp


def load_classifier(path: str | os.PathLike) -> AttributeClassifier:
    """Load a `scadm train-classifier` run folder (or its classifier.json / .safetensors)."""
    from safetensors.torch import load_file

    p = Path(path).expanduser()
    folder = p.parent if p.is_file() else p
    meta_path, weights = folder / "classifier.json", folder / "classifier.safetensors"
    if not weights.is_file() or not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: no classifier.safetensors + classifier.json; train one with `scadm train-classifier`")
    meta = json.loads(meta_path.read_text())
    if meta.get("kind") != "attribute-classifier":
        raise ValueError(f"{meta_path}: not an attribute-classifier description")
    model = AttributeClassifier(**meta["config"])
    load_strict(model, load_file(str(weights)), str(weights))
    model.attribute_names = tuple(meta.get("attribute_names", ()))
    model.metrics = meta.get("metrics", {})
    return model.eval()
