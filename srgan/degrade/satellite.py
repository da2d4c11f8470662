"""Earth-observation rasters: optical Gaussian PSF, detector integration over each LR pixel (area average) and
Poisson-Gaussian sensor noise. No JPEG; any number of bands; values relative to the data range (16-bit works)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from srgan.degrade.base import Range, check_hr, seeded, uniform
from srgan.degrade.convolve import blur
from srgan.degrade.kernels import gaussian_kernels


@dataclass(frozen=True)
class Satellite:
    """Optical PSF + detector integration + Poisson-Gaussian sensor noise, for EO rasters.

    psf_sigma: Gaussian PSF std in LR (detector) pixels; full_well: photo-electrons at full
    scale (sets shot noise: fewer electrons, more noise); read_noise: Gaussian read noise std
    as a fraction of full scale; bit_depth: quantise the LR to this many bits (None: keep
    float). Bands share the PSF and get independent noise.
    """

    scale: int = 4
    psf_sigma: Range = (0.3, 0.7)
    full_well: Range = (500.0, 20000.0)
    read_noise: Range = (0.0005, 0.004)
    bit_depth: int | None = None

    def __call__(self, hr: torch.Tensor, seed: int) -> torch.Tensor:
        check_hr(hr, self.scale)
        g = seeded(seed, hr.device)
        n = hr.shape[0]
        sigma = uniform(g, n, self.psf_sigma) * self.scale
        size = 2 * math.ceil(3 * self.psf_sigma[1] * self.scale) + 1
        x = blur(hr, gaussian_kernels(sigma, sigma, torch.zeros_like(sigma), size))
        x = F.avg_pool2d(x, self.scale).clamp(0, 1)
        electrons = uniform(g, n, self.full_well).view(n, 1, 1, 1).to(x.dtype)
        x = torch.poisson(x * electrons, generator=g) / electrons
        read = uniform(g, n, self.read_noise).view(n, 1, 1, 1).to(x.dtype)
        x = (x + read * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)).clamp(0, 1)
        if self.bit_depth:
            levels = 2**self.bit_depth - 1
            x = (x * levels).round() / levels
        return x
