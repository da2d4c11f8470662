"""MRI: k-space truncation (keep the central 1/s of the spectrum, the LR grid a scanner acquiring less k-space
makes) and Rician noise (complex Gaussian noise on the truncated image, then the magnitude)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from srgan.degrade.base import Range, check_hr, seeded, uniform


@dataclass(frozen=True)
class MRI:
    """k-space truncation to the LR grid, then Rician noise (see module docstring).

    noise_sigma: std of the complex Gaussian noise in [0, 1] units, per sample;
    window: apply a separable Hann-like (Tukey, alpha 0.3) window to the kept k-space to
    damp Gibbs ringing, as some scanners do (False: plain truncation, visible ringing).
    """

    scale: int = 4
    noise_sigma: Range = (0.005, 0.03)
    window: bool = False

    def __call__(self, hr: torch.Tensor, seed: int) -> torch.Tensor:
        check_hr(hr, self.scale)
        g = seeded(seed, hr.device)
        n, c, h, w = hr.shape
        lh, lw = h // self.scale, w // self.scale
        k = torch.fft.fftshift(torch.fft.fft2(hr.double()), dim=(-2, -1))
        top, left = h // 2 - lh // 2, w // 2 - lw // 2
        k = k[..., top : top + lh, left : left + lw]
        if self.window:
            k = k * (_tukey(lh, hr.device)[:, None] * _tukey(lw, hr.device)[None, :])
        # ifft2 normalises by the LR size while the HR spectrum sums over the HR size.
        img = torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1))) / (self.scale * self.scale)
        sigma = uniform(g, n, self.noise_sigma).double().view(n, 1, 1, 1)
        real = img.real + sigma * torch.randn(img.shape, generator=g, device=hr.device, dtype=torch.float64)
        imag = img.imag + sigma * torch.randn(img.shape, generator=g, device=hr.device, dtype=torch.float64)
        return torch.sqrt(real**2 + imag**2).clamp(0, 1).to(hr.dtype)


def _tukey(length: int, device: torch.device, alpha: float = 0.3) -> torch.Tensor:
    x = torch.linspace(0, 1, length, dtype=torch.float64, device=device)
    w = torch.ones_like(x)
    edge = alpha / 2
    lo, hi = x < edge, x > 1 - edge
    w[lo] = 0.5 * (1 + torch.cos(math.pi * (x[lo] / edge - 1)))
    w[hi] = 0.5 * (1 + torch.cos(math.pi * ((x[hi] - 1) / edge + 1)))
    return w
