"""The FID Inception-v3 network (TensorFlow graph of 2015-12-05, as ported by pytorch-fid
and torch-fidelity), written for this project.

The module names and shapes are those of torch-fidelity's feature extractor, so its weight
file ``weights-inception-2015-12-05-6726825d.pth`` (a plain state dict, 1008-way ``fc``)
loads strictly. The TF graph differs from torchvision's Inception in four places, all
reproduced here: BatchNorm eps 0.001, average pools that exclude the zero padding in the
A, C and E blocks, and a max pool (not an average pool) in the pool branch of the last E block.

Preprocessing follows torch-fidelity: images as [0, 255] values, TensorFlow-1.x bilinear
resize to 299 x 299 (no half-pixel offset), then ``(x - 128) / 128``; the 2048-d output of
the global average pool is the FID/KID feature.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from ..weights import find_weights, load_state_dict, load_strict

__all__ = [
    "INCEPTION_WEIGHTS",
    "INCEPTION_SOURCE",
    "FIDInceptionV3",
    "InceptionFeatures",
    "resize_bilinear_tf1",
]

INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_SOURCE = (
    "torch-fidelity's GitHub release v0.2.0 "
    "(github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth)"
)


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's 3x3 average pool ignores the padded zeros.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_avg3(x))
        return torch.cat([a, b, c, d], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = self.branch7x7dbl_1(x)
        for i in range(2, 6):
            c = getattr(self, f"branch7x7dbl_{i}")(c)
        d = self.branch_pool(_avg3(x))
        return torch.cat([a, b, c, d], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = x
        for i in range(1, 5):
            b = getattr(self, f"branch7x7x3_{i}")(b)
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """E block; ``pool="avg"`` (Mixed_7b, padding excluded) or ``pool="max"`` (Mixed_7c, as in the TF graph)."""

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        b = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], 1)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        c = torch.cat([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], 1)
        p = _avg3(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([a, b, c, self.branch_pool(p)], 1)


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize as TensorFlow 1.x ``resize_bilinear(align_corners=False)``: source
    coordinate = destination index * (in / out), no half-pixel offset, edge clamped."""
    h_in, w_in = x.shape[-2:]
    h_out, w_out = size
    if (h_in, w_in) == (h_out, w_out):
        return x

    def axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = torch.arange(n_out, dtype=torch.float32, device=x.device) * (n_in / n_out)
        lo = pos.long().clamp_max(n_in - 1)
        hi = (lo + 1).clamp_max(n_in - 1)
        return lo, hi, (pos - lo.float()).to(x.dtype)

    ylo, yhi, dy = axis(h_in, h_out)
    xlo, xhi, dx = axis(w_in, w_out)
    top, bot = x[..., ylo, :], x[..., yhi, :]
    rows = top + (bot - top) * dy.view(-1, 1)
    left, right = rows[..., xlo], rows[..., xhi]
    return left + (right - left) * dx


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 (TF 2015-12-05 graph), keyed like torch-fidelity's weight file.

    ``forward`` takes images already resized to 299 and normalised to [-1, 1] and returns
    the 2048-d pooled features; ``logits`` gives the 1008-way output.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.MaxPool_1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.MaxPool_2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.AvgPool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2048, 1008)

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        for name in (
            "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
            "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
            "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool",
        ):
            x = getattr(self, name)(x)
        return torch.flatten(x, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool_features(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool_features(x))


class InceptionFeatures(FIDInceptionV3):
    """FID/KID feature extractor: the pretrained FID Inception with torch-fidelity's preprocessing.

    ``forward(images)`` takes uint8 images in [0, 255] or float images in [0, 1], (B, 3, H, W),
    and returns (B, 2048) float32 features; it is what torchmetrics' ``FrechetInceptionDistance(feature=...)``
    calls. ``features(images)`` takes images in [-1, 1] (the project's convention), quantises
    them to uint8 as saving a PNG would, and returns the same features.

    Args:
        weights_path: the weight file (or a folder holding it); None = ``$SCADM_WEIGHTS`` then
            ``$TORCH_HOME/hub/checkpoints``. Missing -> :class:`MissingWeightsError`. Never downloads.
        pretrained: False builds a randomly initialised network (tests only).
    """

    num_features = 2048
    input_size = 299

    def __init__(self, weights_path: str | os.PathLike | None = None, pretrained: bool = True) -> None:
        super().__init__()
        self.weights_path = None
        if pretrained:
            path = find_weights(INCEPTION_WEIGHTS, weights_path, what="FID Inception network", source=INCEPTION_SOURCE)
            load_strict(self, load_state_dict(path), str(path))
            self.weights_path = str(path)
        self.eval()
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> "InceptionFeatures":
        return super().train(False)  # always inference (BatchNorm running statistics)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        x = images.float() if images.dtype == torch.uint8 else images.float() * 255.0
        x = resize_bilinear_tf1(x, (self.input_size, self.input_size))
        x = (x - 128.0) / 128.0
        return self.pool_features(x).float()

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 2048)."""
        u8 = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return self.forward(u8)
