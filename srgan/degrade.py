"""Batched, seeded HR -> LR degradations, written as small tensor functions.

Every degradation is called as ``lr = degradation(hr, seed)`` with hr (N, C, H, W) float in
[0, 1] (H and W divisible by the scale) and returns (N, C, H/s, W/s) float in [0, 1]. The
same seed on the same device gives the same LR. Random parameters are drawn per sample
unless noted "per batch" (choices that change tensor sizes or the code path).

  * ``Bicubic``: MATLAB bicubic downscaling, the classic SRGAN setting. No randomness.
  * ``Realistic`` (in srgan/realistic.py): Real-ESRGAN's second-order degradation for
    photographs, as published: two rounds of blur (Gaussian, generalized, plateau or sinc
    kernels), resize, Gaussian or Poisson noise and JPEG; a final resize, sinc filter and JPEG.
  * ``Satellite``: optical Gaussian PSF, detector integration over each LR pixel (area
    average), Poisson-Gaussian sensor noise. No JPEG; any number of bands; values are
    relative to the data range, so 16-bit data works unchanged.
  * ``MRI``: k-space truncation (keep the central 1/s of the spectrum; the LR grid an MR
    scanner acquiring less k-space would produce) and Rician noise (complex Gaussian noise
    on the truncated image, then the magnitude). Meant for single-channel images;
    several channels are treated independently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Protocol

import torch
import torch.nn.functional as F

from srgan.realistic import Realistic, _check_hr, jpeg, usm_sharp
from srgan.resize import imresize

__all__ = [
    "Bicubic",
    "Degradation",
    "MRI",
    "Realistic",
    "Satellite",
    "blur",
    "build_degradation",
    "gaussian_kernels",
    "jpeg",
    "usm_sharp",
]

Range = tuple[float, float]


class Degradation(Protocol):
    scale: int

    def __call__(self, hr: torch.Tensor, seed: int) -> torch.Tensor: ...


# ---------------------------------------------------------------------------- helpers


def _rng(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def _uniform(g: torch.Generator, n: int, bounds: Range) -> torch.Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(n, generator=g, device=g.device)


def gaussian_kernels(sigma_x: torch.Tensor, sigma_y: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """(N,) sigmas and rotation (radians) -> (N, size, size) normalised Gaussian kernels."""
    r = (size - 1) / 2
    coords = torch.arange(size, dtype=sigma_x.dtype, device=sigma_x.device) - r
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    u = cos * xx + sin * yy
    v = -sin * xx + cos * yy
    k = torch.exp(-0.5 * ((u / sigma_x[:, None, None]) ** 2 + (v / sigma_y[:, None, None]) ** 2))
    return k / k.sum(dim=(1, 2), keepdim=True)


def blur(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image of (N, C, H, W) with its own (N, k, k) kernel, reflect-padded."""
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    pad = k // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    x = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode=mode)
    weight = kernels.to(x.dtype).repeat_interleave(c, dim=0).unsqueeze(1)
    return F.conv2d(x, weight, groups=n * c).reshape(n, c, h, w)


# ----------------------------------------------------------------------- degradations


@dataclass(frozen=True)
class Bicubic:
    """MATLAB `imresize(hr, 1/scale, 'bicubic')` (antialiased), clipped to [0, 1]."""

    scale: int = 4

    def __call__(self, hr: torch.Tensor, seed: int = 0) -> torch.Tensor:
        _check_hr(hr, self.scale)
        return imresize(hr, 1.0 / self.scale).clamp(0, 1)


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
        _check_hr(hr, self.scale)
        g = _rng(seed, hr.device)
        n = hr.shape[0]
        sigma = _uniform(g, n, self.psf_sigma) * self.scale
        size = 2 * math.ceil(3 * self.psf_sigma[1] * self.scale) + 1
        x = blur(hr, gaussian_kernels(sigma, sigma, torch.zeros_like(sigma), size))
        x = F.avg_pool2d(x, self.scale).clamp(0, 1)
        electrons = _uniform(g, n, self.full_well).view(n, 1, 1, 1).to(x.dtype)
        x = torch.poisson(x * electrons, generator=g) / electrons
        read = _uniform(g, n, self.read_noise).view(n, 1, 1, 1).to(x.dtype)
        x = (x + read * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)).clamp(0, 1)
        if self.bit_depth:
            levels = 2**self.bit_depth - 1
            x = (x * levels).round() / levels
        return x


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
        _check_hr(hr, self.scale)
        g = _rng(seed, hr.device)
        n, c, h, w = hr.shape
        lh, lw = h // self.scale, w // self.scale
        k = torch.fft.fftshift(torch.fft.fft2(hr.double()), dim=(-2, -1))
        top, left = h // 2 - lh // 2, w // 2 - lw // 2
        k = k[..., top : top + lh, left : left + lw]
        if self.window:
            k = k * (_tukey(lh, hr.device)[:, None] * _tukey(lw, hr.device)[None, :])
        # ifft2 normalises by the LR size while the HR spectrum sums over the HR size.
        img = torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1))) / (self.scale * self.scale)
        sigma = _uniform(g, n, self.noise_sigma).double().view(n, 1, 1, 1)
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


DEGRADATIONS: dict[str, type] = {"bicubic": Bicubic, "realistic": Realistic, "satellite": Satellite, "mri": MRI}


def build_degradation(name: str, scale: int, **params) -> Degradation:
    """The degradation called `name` with `scale` and any of its documented parameters."""
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; choose one of {', '.join(DEGRADATIONS)}")
    cls = DEGRADATIONS[name]
    known = {f.name for f in fields(cls)} - {"scale"}
    unknown = set(params) - known
    if unknown:
        raise ValueError(
            f"degradation {name!r} has no parameter(s) {', '.join(sorted(unknown))}; it takes {', '.join(sorted(known)) or 'none'}"
        )
    return cls(scale=scale, **params)
