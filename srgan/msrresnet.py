"""MSRResNet, BasicSR's SRResNet variant (Wang et al., ESRGAN 2018, sec. 3.1), so that its
published checkpoints run here as they were trained (srgan.foreign maps their keys).

Against the paper's SRResNet it has no BatchNorm, 3x3 convolutions everywhere, ReLU inside
the residual blocks and LeakyReLU(0.1) elsewhere, no skip from the head around the trunk,
an extra 3x3 convolution at full resolution before the last one, and the input's bilinear
upscale (align_corners False) added to the output. x2 and x3 take one sub-pixel stage, x4
two of x2. Images are (N, C, H, W) float in [0, 1] on both sides.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srgan.errors import UserError
from srgan.tiling import measured_radius

SCALES = (2, 3, 4)


class PlainBlock(nn.Module):
    """x + conv2(relu(conv1(x))), no normalisation."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class ShuffleStage(nn.Module):
    """conv to factor^2 x features, PixelShuffle(factor), LeakyReLU(0.1)."""

    def __init__(self, features: int, factor: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(features, features * factor * factor, 3, padding=1)
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(F.pixel_shuffle(self.conv(x), self.factor), 0.1)


class MSRResNet(nn.Module):
    def __init__(self, spec) -> None:
        super().__init__()
        if spec.scale not in SCALES:
            raise UserError(f"MSRResNet upscales x{', x'.join(map(str, SCALES))}, not x{spec.scale}")
        if spec.batch_norm or spec.bicubic_skip or spec.in_channels != spec.out_channels:
            raise UserError(
                "MSRResNet has no BatchNorm, its own bilinear skip and as many output bands as input bands: set batch_norm and bicubic_skip false, out_channels = in_channels"
            )
        self.spec = spec
        c, features = spec.in_channels, spec.num_features
        self.head = nn.Conv2d(c, features, 3, padding=1)
        self.body = nn.Sequential(*[PlainBlock(features) for _ in range(spec.num_blocks)])
        self.upsample = nn.Sequential(
            *[ShuffleStage(features, f) for f in ([spec.scale] if spec.scale < 4 else [2, 2])]
        )
        self.hr_conv = nn.Conv2d(features, features, 3, padding=1)
        self.tail = nn.Conv2d(features, spec.out_channels, 3, padding=1)

    @property
    def scale(self) -> int:
        return self.spec.scale

    @property
    def receptive_radius(self) -> int:
        return measured_radius(self.spec, MSRResNet)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(F.leaky_relu(self.head(x), 0.1))
        out = self.tail(F.leaky_relu(self.hr_conv(self.upsample(out)), 0.1))
        return out + F.interpolate(x, scale_factor=self.spec.scale, mode="bilinear", align_corners=False)
