"""ResNet-18 with torchvision's parameter and buffer names.

The module tree (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``layer4.0.downsample.0/1``, ``fc``)
matches ``torchvision.models.resnet18`` exactly, so torchvision's ``resnet18-f37072fd.pth``
loads strictly into ``ResNet18(in_channels=3, num_classes=1000)``. The face-parsing BiSeNet's
context path uses the same names (without ``fc``), so it reuses this class.

Extras: a configurable number of input channels (the multi-conditioning paper feeds an
18-channel mask), no classifier head with ``num_classes=None``, and access to every stage.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "ResNet18", "adapt_torchvision_state_dict"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (1x1 conv + BN shortcut when the shape changes)."""

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet18(nn.Module):
    """ResNet-18 (BasicBlock, [2, 2, 2, 2]) keyed like torchvision.

    Args:
        in_channels: input channels of ``conv1`` (3 for images, 18 for a mask without background).
        num_classes: size of the ``fc`` head; None = no head (``forward`` returns pooled features).
    """

    stage_channels = (64, 128, 256, 512)

    def __init__(self, in_channels: int = 3, num_classes: int | None = None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        chans = (64,) + self.stage_channels
        for i in range(4):
            stride = 1 if i == 0 else 2
            blocks = nn.Sequential(BasicBlock(chans[i], chans[i + 1], stride), BasicBlock(chans[i + 1], chans[i + 1]))
            setattr(self, f"layer{i + 1}", blocks)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc: nn.Linear | None = nn.Linear(512, num_classes) if num_classes is not None else None
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of layer1..layer4: strides 4, 8, 16, 32 with 64, 128, 256, 512 channels."""
        x = self.stem(x)
        feats = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            feats.append(x)
        return feats

    def forward_spatial(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 512, H/32, W/32): the last stage before global pooling."""
        return self.features(x)[-1]

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 512): globally average-pooled last stage."""
        return torch.flatten(self.avgpool(self.forward_spatial(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.forward_pooled(x)
        return pooled if self.fc is None else self.fc(pooled)


def adapt_torchvision_state_dict(
    state: Mapping[str, torch.Tensor], model: ResNet18, keep_fc: bool | None = None
) -> dict[str, torch.Tensor]:
    """Adapt a torchvision ResNet-18 state dict to ``model``.

    Drops ``fc.*`` unless the model has a head of the same size (or ``keep_fc`` says so), and
    when ``model.in_channels != 3`` replaces ``conv1.weight`` by the mean over RGB repeated
    over the input channels (scaled by 3 / in_channels), the usual way to reuse ImageNet
    weights for other inputs. The result loads with ``strict=False`` missing only ``fc`` keys.
    """
    out = {k: v for k, v in state.items() if not k.startswith("fc.")}
    fc_w = state.get("fc.weight")
    if keep_fc is None:
        keep_fc = model.fc is not None and fc_w is not None and tuple(fc_w.shape) == tuple(model.fc.weight.shape)
    if keep_fc:
        out["fc.weight"], out["fc.bias"] = state["fc.weight"], state["fc.bias"]
    w = out.get("conv1.weight")
    if w is not None and w.shape[1] != model.in_channels:
        mean = w.mean(dim=1, keepdim=True)
        out["conv1.weight"] = mean.repeat(1, model.in_channels, 1, 1) * (3.0 / model.in_channels)
    return out
