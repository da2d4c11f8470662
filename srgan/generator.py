"""SRResNet, the SRGAN generator (Ledig et al. 2017, fig. 4).

9x9 head conv + PReLU, B residual blocks (conv-BN-PReLU-conv-BN with identity skip), a
conv-BN closing the trunk with a global skip from the head, one PixelShuffle(2) stage per
factor of two (PixelShuffle(3) for x3), and a 9x9 tail conv. Images are (N, C, H, W) float
in [0, 1] on both sides; the tail is linear (no tanh), as in current SRResNet practice.

`bicubic_skip=True` (not in the paper; off by default) adds the MATLAB bicubic upscale of
the input (the evaluation baseline) to the output, so the network learns only the residual (VDSR-style global residual
learning) and starts from the bicubic baseline: small models trained briefly then beat
bicubic instead of trailing it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from srgan.errors import UserError
from srgan.resize import imresize
from srgan.tiling import measured_radius

SCALES = (2, 3, 4, 8)  # the upscaling factors SRResNet's sub-pixel stages make: the project's one list


class ScaleError(UserError, ValueError):
    """A scale the generator cannot make (a ValueError too, so config validators report it)."""


def check_scale(scale: int) -> int:
    """`scale`, if it is one of SCALES."""
    if scale not in SCALES:
        raise ScaleError(f"scale {scale} is not supported; use one of {', '.join(map(str, SCALES))}")
    return scale


@dataclass(frozen=True)
class GeneratorSpec:
    """Everything needed to rebuild a generator: saved beside its weights."""

    scale: int = 4
    in_channels: int = 3
    out_channels: int = 3
    num_blocks: int = 16
    num_features: int = 64
    batch_norm: bool = True
    bicubic_skip: bool = False
    arch: str = "srresnet"  # or "msrresnet" (srgan.msrresnet), "rrdbnet" (srgan.rrdbnet), "spandrel:<id>"
    growth: int = 32  # RRDBNet's dense-block growth channels
    output: str = "linear"  # SRResNet's last activation: "linear", or "tanh" for (tanh(x) + 1) / 2

    def to_dict(self) -> dict:
        return asdict(self)


class ResidualBlock(nn.Module):
    def __init__(self, features: int, batch_norm: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=not batch_norm)
        self.bn1 = nn.BatchNorm2d(features) if batch_norm else nn.Identity()
        self.act = nn.PReLU(features)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=not batch_norm)
        self.bn2 = nn.BatchNorm2d(features) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class UpsampleBlock(nn.Module):
    """conv to factor^2 x features, PixelShuffle(factor), PReLU."""

    def __init__(self, features: int, factor: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(features, features * factor * factor, 3, padding=1)
        self.shuffle = nn.PixelShuffle(factor)
        self.act = nn.PReLU(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class SRResNet(nn.Module):
    def __init__(
        self,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_blocks: int = 16,
        num_features: int = 64,
        batch_norm: bool = True,
        bicubic_skip: bool = False,
        output: str = "linear",
    ) -> None:
        super().__init__()
        check_scale(scale)
        if min(in_channels, out_channels, num_blocks, num_features) < 1:
            raise ValueError("generator channels, blocks and features must all be >= 1")
        if bicubic_skip and in_channels != out_channels:
            raise ValueError("bicubic_skip needs in_channels == out_channels")
        self.spec = GeneratorSpec(
            scale, in_channels, out_channels, num_blocks, num_features, batch_norm, bicubic_skip, output=output
        )  # arch srresnet
        self.head = nn.Sequential(nn.Conv2d(in_channels, num_features, 9, padding=4), nn.PReLU(num_features))
        self.body = nn.Sequential(*[ResidualBlock(num_features, batch_norm) for _ in range(num_blocks)])
        self.body_tail = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1, bias=not batch_norm),
            nn.BatchNorm2d(num_features) if batch_norm else nn.Identity(),
        )
        factors = [3] if scale == 3 else [2] * int(math.log2(scale))
        self.upsample = nn.Sequential(*[UpsampleBlock(num_features, f) for f in factors])
        self.tail = nn.Conv2d(num_features, out_channels, 9, padding=4)
        if not batch_norm:
            # Without BN the residual branches start near identity (EDSR/BasicSR practice),
            # which keeps deep plain stacks stable from the first step.
            for block in self.body:
                nn.init.kaiming_normal_(block.conv1.weight)
                block.conv1.weight.data.mul_(0.1)
                nn.init.kaiming_normal_(block.conv2.weight)
                block.conv2.weight.data.mul_(0.1)
        if bicubic_skip:
            # The network learns a residual over bicubic: a zero tail makes the untrained
            # model exactly bicubic, so training starts from the baseline, not below it.
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    @property
    def scale(self) -> int:
        return self.spec.scale

    @property
    def receptive_radius(self) -> int:
        """How far (in input pixels) an output pixel can see: the padding tiling needs,
        measured on this architecture (srgan.tiling.measure_radius). For the paper's x4
        model: head 9x9 -> 4; each residual block two 3x3 -> 2; trunk closing conv -> 1;
        each upsample conv at the resolution reached so far; the 9x9 tail at full scale:
        ceil(4 + 32 + 1 + 1 + 1/2 + 4/4) = 40."""
        return measured_radius(self.spec, build_generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, h, w) in [0, 1] -> (N, out_channels, h*scale, w*scale)."""
        head = self.head(x)
        trunk = self.body_tail(self.body(head)) + head
        out = self.tail(self.upsample(trunk))
        if self.spec.output == "tanh":  # the block1..block8 SRGAN reimplementation's output
            out = (torch.tanh(out) + 1) / 2
        if self.spec.bicubic_skip:
            out = out + imresize(x, float(self.spec.scale))
        return out


ARCHS = ("srresnet", "msrresnet", "rrdbnet")
OUTPUTS = ("linear", "tanh")
# Bounds on every size a spec may hold, checked before anything is built: a file that names a
# million blocks is refused at once, not after minutes of building (the largest published
# models: RRDBNet 23 blocks of 64, SRResNet 16 of 64, EDSR 32 of 256).
BOUNDS = {
    "num_blocks": (0, 128),
    "num_features": (1, 1024),
    "growth": (1, 512),
    "in_channels": (1, 16),
    "out_channels": (1, 16),
}


def check_spec(spec: GeneratorSpec | dict) -> GeneratorSpec:
    """`spec` (or its dict form) as a GeneratorSpec, if every field is known and every size
    within BOUNDS; UserError naming the field otherwise."""
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(GeneratorSpec.__dataclass_fields__))
        if unknown:
            raise UserError(f"generator spec has unknown fields {', '.join(map(str, unknown))}")
        spec = GeneratorSpec(**spec)
    for name, (low, high) in BOUNDS.items():
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise UserError(f"generator spec {name} = {value!r} is outside {low}..{high}")
    if not isinstance(spec.scale, int) or not 1 <= spec.scale <= 8:
        raise UserError(f"generator spec scale = {spec.scale!r} is outside 1..8")
    if spec.output not in OUTPUTS:
        raise UserError(f"generator spec output {spec.output!r} is not one of {', '.join(OUTPUTS)}")
    return spec


def build_generator(spec: GeneratorSpec | dict) -> nn.Module:
    """Generator from a spec (or its dict form, as stored in checkpoints and MLflow)."""
    spec = check_spec(spec)
    if spec.arch == "msrresnet":
        from srgan.msrresnet import MSRResNet

        return MSRResNet(spec)
    if spec.arch == "rrdbnet":
        from srgan.rrdbnet import RRDBNet

        return RRDBNet(spec)
    if spec.arch != "srresnet":
        raise UserError(f"generator arch {spec.arch!r} is not one of {', '.join(ARCHS)}")
    return SRResNet(**{k: v for k, v in spec.to_dict().items() if k not in ("arch", "growth")})
