"""No-learning upscalers a trained generator must beat: bicubic post-processed by an unsharp
mask or by faint Gaussian noise (batched torch functions on (N, C, H, W) in [0, 1]), and the
family the promotion gate races against (docs/sweeps-and-promotion.md)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from srgan.resize import imresize

NOISE_SEED = 0


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, kernel radius ceil(3 sigma), reflected borders. Same shape."""
    radius = max(1, math.ceil(3 * sigma))
    if min(x.shape[-2:]) <= radius:
        raise ValueError(f"gaussian_blur: image {tuple(x.shape[-2:])} is too small for sigma {sigma}")
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def unsharp_mask(x: torch.Tensor, amount: float, sigma: float) -> torch.Tensor:
    """x + amount * (x - blur(x, sigma)), clamped to [0, 1]: the classic sharpening filter."""
    return (x + amount * (x - gaussian_blur(x, sigma))).clamp(0, 1)


def add_noise(x: torch.Tensor, sigma: float, seed: int = NOISE_SEED) -> torch.Tensor:
    """x plus Gaussian noise of standard deviation `sigma` (1/255 = one 8-bit level), seeded,
    clamped to [0, 1]."""
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    return (x + sigma * noise.to(x.device, x.dtype)).clamp(0, 1)


@dataclass(frozen=True)
class NoLearning:
    """One post-process of the bicubic upscale: `name` says which and with what parameters."""

    name: str
    apply: Callable[[torch.Tensor], torch.Tensor]


def usm(amount: float, sigma: float) -> NoLearning:
    return NoLearning(f"bicubic+usm(amount={amount:g}, sigma={sigma:g})", lambda x: unsharp_mask(x, amount, sigma))


def noise(sigma_255: float) -> NoLearning:
    return NoLearning(f"bicubic+noise(sigma={sigma_255:g}/255)", lambda x: add_noise(x, sigma_255 / 255))


BICUBIC = NoLearning("bicubic", lambda x: x)
USM_AMOUNTS = (0.5, 1.0, 2.0)
USM_SIGMAS = (1.5, 3.0)
NOISE_SIGMAS = (2.0,)  # in 8-bit levels


def family() -> list[NoLearning]:
    """The baselines every perceptual candidate races: bicubic, USM over a grid, faint noise."""
    return [BICUBIC, *(usm(a, s) for a in USM_AMOUNTS for s in USM_SIGMAS), *(noise(s) for s in NOISE_SIGMAS)]


@dataclass(frozen=True)
class FilterSpec:
    in_channels: int
    scale: int


class FilterUpscaler:
    """A no-learning filter as a generator: LR (N, C, h, w) in [0, 1] from 8-bit images ->
    bicubic x `scale` in uint8 (as the protocol's bicubic is made, rounding after each pass)
    -> the filter. Run it on whole images (tile 0): the noise is drawn for the whole image,
    like the baseline's."""

    def __init__(self, baseline: NoLearning, scale: int, in_channels: int = 3) -> None:
        self.baseline, self.spec = baseline, FilterSpec(in_channels, scale)
        self.receptive_radius, self.device = 8, torch.device("cpu")

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        lr_u8 = (lr.float().clamp(0, 1) * 255).round().to(torch.uint8)
        return self.baseline.apply(imresize(lr_u8, float(self.spec.scale)).float() / 255)
