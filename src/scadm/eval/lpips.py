"""LPIPS (v0.1, VGG variant), written for this project; loads the standard weight files.

- Backbone: VGG16 ``features`` keyed like torchvision's ``vgg16-397923af.pth``
  (``features.0.weight`` ... ``features.28.bias``; the file's ``classifier.*`` keys are ignored).
- Linear heads: ``lin0`` .. ``lin4`` keyed like the lpips package's ``weights/v0.1/vgg.pth``
  (``linK.model.1.weight`` of shape (1, C, 1, 1), C = 64, 128, 256, 512, 512).

Distance between images x, y in [-1, 1]: scale with the lpips package's constants
(shift (-0.030, -0.088, -0.188), scale (0.458, 0.448, 0.450)), take the VGG16 activations after
relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3, unit-normalise each position's feature vector
over channels, square the difference, weight channels with the linear head (1x1 conv, no bias),
average over space and sum over the five layers.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..weights import MissingWeightsError, find_weights, load_state_dict, load_strict

__all__ = ["VGG16Features", "LPIPS", "VGG16_WEIGHTS", "LPIPS_LIN_WEIGHTS", "VGG16_SOURCE", "LPIPS_LIN_SOURCE"]

VGG16_WEIGHTS = "vgg16-397923af.pth"
VGG16_SOURCE = "torchvision's model zoo (download.pytorch.org/models/vgg16-397923af.pth)"
LPIPS_LIN_WEIGHTS = "vgg.pth"
LPIPS_LIN_SOURCE = (
    "the lpips wheel, file lpips/weights/v0.1/vgg.pth (`pip download lpips --no-deps`, unzip the wheel; "
    "you may rename it lpips-vgg-v0.1.pth)"
)
_LIN_NAMES = (LPIPS_LIN_WEIGHTS, "lpips-vgg-v0.1.pth", "lpips_vgg.pth")

_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# end index (exclusive) in `features` of each tapped ReLU: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_TAPS = (4, 9, 16, 23, 30)
LPIPS_CHANNELS = (64, 128, 256, 512, 512)


class VGG16Features(nn.Module):
    """torchvision's VGG16 ``features`` (13 convs, ReLUs and max pools; indices as torchvision)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                cin = int(v)
        self.features = nn.Sequential(*layers)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, start = [], 0
        for end in _TAPS:
            for i in range(start, end):
                x = self.features[i](x)
            out.append(x)
            start = end
        return out


class NetLinLayer(nn.Module):
    """A linear head: dropout (inactive at eval) then a bias-free 1x1 conv to one channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _unit_normalize(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + eps)


class LPIPS(nn.Module):
    """LPIPS v0.1 (VGG). ``LPIPS(vgg_path, lin_path)(x, y) -> (B,)`` distances for images in [-1, 1].

    Args:
        vgg_path: torchvision's ``vgg16-397923af.pth`` (or a folder with it); None = search
            ``$SCADM_WEIGHTS`` then ``$TORCH_HOME/hub/checkpoints``.
        lin_path: the lpips package's ``weights/v0.1/vgg.pth`` (or a folder with it); None = search.
        pretrained: False keeps random weights (tests only).
    """

    def __init__(
        self,
        vgg_path: str | os.PathLike | None = None,
        lin_path: str | os.PathLike | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.net = VGG16Features()
        for i, c in enumerate(LPIPS_CHANNELS):
            setattr(self, f"lin{i}", NetLinLayer(c))
        if pretrained:
            self._load(vgg_path, lin_path)
        self.eval()
        self.requires_grad_(False)

    def _load(self, vgg_path, lin_path) -> None:
        errors = []
        paths = []
        for names, explicit, what, source in (
            (VGG16_WEIGHTS, vgg_path, "LPIPS backbone (VGG16)", VGG16_SOURCE),
            (_LIN_NAMES, lin_path, "LPIPS linear heads", LPIPS_LIN_SOURCE),
        ):
            try:
                paths.append(find_weights(names, explicit, what=what, source=source))
            except MissingWeightsError as exc:
                errors.append(str(exc))
        if errors:
            raise MissingWeightsError(
                f"LPIPS needs two files, {VGG16_WEIGHTS} (torchvision VGG16) and {LPIPS_LIN_WEIGHTS} "
                f"(lpips v0.1 linear heads): " + " | ".join(errors)
            )
        vgg = load_state_dict(paths[0])
        load_strict(self.net, {k: v for k, v in vgg.items() if k.startswith("features.")}, str(paths[0]))
        lins = load_state_dict(paths[1])
        lin_modules = nn.ModuleDict({f"lin{i}": getattr(self, f"lin{i}") for i in range(5)})
        load_strict(lin_modules, lins, str(paths[1]))
        self.weight_paths = (str(paths[0]), str(paths[1]))

    def train(self, mode: bool = True) -> "LPIPS":
        return super().train(False)

    def layer_distances(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer distances, each (B,)."""
        if x.shape != y.shape:
            raise ValueError(f"LPIPS needs images of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        fx = self.net.taps((x - self.shift) / self.scale)
        fy = self.net.taps((y - self.shift) / self.scale)
        out = []
        for i, (a, b) in enumerate(zip(fx, fy)):
            d = (_unit_normalize(a) - _unit_normalize(b)) ** 2
            out.append(getattr(self, f"lin{i}")(d).mean(dim=(1, 2, 3)))
        return out

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) x2 in [-1, 1] -> (B,) LPIPS distances."""
        return torch.stack(self.layer_distances(x.float(), y.float()), 0).sum(0)

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.forward(x, y)
