"""PatchGAN discriminator (pix2pix / taming-transformers' NLayerDiscriminator) for first-stage training."""

from __future__ import annotations

from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """conv(4, s2) + LeakyReLU, (n_layers - 1) x [conv(4, s2), BatchNorm, LeakyReLU], conv(4, s1) + BN + LReLU, conv -> 1 logit map."""

    def __init__(self, in_channels: int = 3, channels: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(channels * prev, channels * mult, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(channels * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(channels * prev, channels * mult, 4, 1, 1, bias=False),
                   nn.BatchNorm2d(channels * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(channels * mult, 1, 4, 1, 1)]
        self.main = nn.Sequential(*layers)
        for m in self.modules():  # taming's weights_init
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)
