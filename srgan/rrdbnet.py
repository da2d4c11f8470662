"""RRDBNet, the ESRGAN generator (Wang et al., ESRGAN 2018, sec. 3.1; Real-ESRGAN 2021), with
BasicSR's module names (``archs/rrdbnet_arch.py``), so that its published checkpoints load by
their own keys and the trainer can build one from a spec.

A 3x3 head, B residual-in-residual dense blocks (each three 5-conv dense blocks of growth G,
LeakyReLU(0.2), residuals scaled by 0.2), a 3x3 conv closing the trunk with a skip from the
head, two x2 stages of nearest-neighbour upsampling + 3x3 conv + LeakyReLU(0.2), a 3x3 conv
at full resolution and the 3x3 tail. x4 as is; x2 and x1 first fold the input into 4 or 16
times the bands by pixel-unshuffle (Real-ESRGAN x2plus), so the trunk always runs at a
quarter of the output's side. Images are (N, C, H, W) float in [0, 1] on both sides.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srgan.errors import UserError
from srgan.tiling import measured_radius

SCALES = (1, 2, 4)  # x4 directly; x2 and x1 through pixel-unshuffle by 2 and 4


def unshuffle_factor(scale: int) -> int:
    """The pixel-unshuffle that brings an x`scale` RRDBNet's input to the trunk's size."""
    return 4 // scale


class DenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the input and every earlier conv's output (growth G)."""

    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, growth, 3, 1, 1)
        self.conv2 = nn.Conv2d(features + growth, growth, 3, 1, 1)
        self.conv3 = nn.Conv2d(features + 2 * growth, growth, 3, 1, 1)
        self.conv4 = nn.Conv2d(features + 3 * growth, growth, 3, 1, 1)
        self.conv5 = nn.Conv2d(features + 4 * growth, features, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = F.leaky_relu(self.conv1(x), 0.2)
        x2 = F.leaky_relu(self.conv2(torch.cat((x, x1), 1)), 0.2)
        x3 = F.leaky_relu(self.conv3(torch.cat((x, x1, x2), 1)), 0.2)
        x4 = F.leaky_relu(self.conv4(torch.cat((x, x1, x2, x3), 1)), 0.2)
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        self.rdb1 = DenseBlock(features, growth)
        self.rdb2 = DenseBlock(features, growth)
        self.rdb3 = DenseBlock(features, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    def __init__(self, spec) -> None:
        super().__init__()
        if spec.scale not in SCALES:
            raise UserError(f"RRDBNet upscales x{', x'.join(map(str, SCALES))}, not x{spec.scale}")
        if spec.batch_norm or spec.bicubic_skip:
            raise UserError("RRDBNet has no BatchNorm and no bicubic skip: set batch_norm and bicubic_skip false")
        self.spec = spec
        features, growth = spec.num_features, spec.growth
        folded = spec.in_channels * unshuffle_factor(spec.scale) ** 2
        self.conv_first = nn.Conv2d(folded, features, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(features, growth) for _ in range(spec.num_blocks)])
        self.conv_body = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_hr = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_last = nn.Conv2d(features, spec.out_channels, 3, 1, 1)
        for module in self.modules():  # BasicSR's default_init_weights(scale=0.1) for the dense convs
            if isinstance(module, DenseBlock):
                for conv in module.children():
                    nn.init.kaiming_normal_(conv.weight)
                    conv.weight.data.mul_(0.1)
                    nn.init.zeros_(conv.bias)

    @property
    def scale(self) -> int:
        return self.spec.scale

    @property
    def receptive_radius(self) -> int:
        """Measured; plus the fold, as a window's size that is not a multiple of it is padded."""
        factor = unshuffle_factor(self.spec.scale)
        return measured_radius(self.spec, RRDBNet) + (factor if factor > 1 else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor, (h, w) = unshuffle_factor(self.spec.scale), x.shape[-2:]
        if factor > 1:  # reflect up to a multiple of the fold (Real-ESRGAN's mod_pad), cut off below
            x = F.pad(x, (0, -w % factor, 0, -h % factor), mode="reflect" if min(h, w) > factor else "replicate")
            x = F.pixel_unshuffle(x, factor)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        out = self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))
        return out[..., : h * self.spec.scale, : w * self.spec.scale]
