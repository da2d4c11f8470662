"""The SRGAN discriminator (Ledig et al. 2017, fig. 4), made input-size agnostic.

Eight 3x3 convs 64 -> 512 (stride 2 on every second conv, BN after all but the first,
LeakyReLU 0.2), then dense 1024 + LeakyReLU + dense 1 giving one logit per image. The
paper's dense layer sees a 6x6 map for 96 px input; an adaptive average pool to 6x6 keeps
that shape for any input size. With `spectral_norm=True` every conv/linear is spectrally
normalised and BN is dropped (the usual pairing: BN and SN fight over the scale).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn


@dataclass(frozen=True)
class DiscriminatorSpec:
    in_channels: int = 3
    base_features: int = 64
    spectral_norm: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class Discriminator(nn.Module):
    POOL = 6  # the paper's 96 px input gives a 6x6 map before the dense layers

    def __init__(self, in_channels: int = 3, base_features: int = 64, spectral_norm: bool = False) -> None:
        super().__init__()
        self.spec = DiscriminatorSpec(in_channels, base_features, spectral_norm)
        wrap = _sn if spectral_norm else (lambda m: m)
        f = base_features
        # (in, out, stride) for the paper's eight convs: k3n64s1, k3n64s2, k3n128s1, ...
        plan = [
            (in_channels, f, 1),
            (f, f, 2),
            (f, 2 * f, 1),
            (2 * f, 2 * f, 2),
            (2 * f, 4 * f, 1),
            (4 * f, 4 * f, 2),
            (4 * f, 8 * f, 1),
            (8 * f, 8 * f, 2),
        ]
        stages = []
        for i, (cin, cout, stride) in enumerate(plan):
            use_bn = i > 0 and not spectral_norm
            layers: list[nn.Module] = [wrap(nn.Conv2d(cin, cout, 3, stride, 1, bias=not use_bn))]
            if use_bn:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(self.POOL)
        self.head = nn.Sequential(
            nn.Flatten(),
            wrap(nn.Linear(8 * f * self.POOL * self.POOL, 1024)),
            nn.LeakyReLU(0.2, inplace=True),
            wrap(nn.Linear(1024, 1)),
        )

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after each of the eight conv stages, for feature-matching losses."""
        return stage_features(self.stages, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [0, 1], any H, W >= 16 -> (N,) logits (real > 0)."""
        for stage in self.stages:
            x = stage(x)
        return self.head(self.pool(x)).squeeze(1)


def stage_features(stages: nn.ModuleList, x: torch.Tensor) -> list[torch.Tensor]:
    """The activations after each of `stages` run in turn on `x` (the discriminator's conv
    stages, or a frozen copy of them)."""
    feats = []
    for stage in stages:
        x = stage(x)
        feats.append(x)
    return feats
