"""Batched, seeded HR -> LR degradations, written as small tensor functions.

Every degradation is called as ``lr = degradation(hr, seed)`` with hr (N, C, H, W) float in
[0, 1] (H and W divisible by the scale) and returns (N, C, H/s, W/s) float in [0, 1]. The
same seed on the same device gives the same LR. Random parameters are drawn per sample
unless noted "per batch" (choices that change tensor sizes or the code path).

  * ``Bicubic``: MATLAB bicubic downscaling, the classic SRGAN setting. No randomness.
  * ``Realistic``: Real-ESRGAN-style high-order degradation for photographs: blur (iso- or
    anisotropic Gaussian kernels), random resize, Gaussian or Poisson noise, JPEG; optionally
    a second round of the same; a final resize to the LR size and JPEG.
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

from srgan.resize import imresize

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


def _chance(g: torch.Generator, n: int, p: float) -> torch.Tensor:
    return torch.rand(n, generator=g, device=g.device) < p


def _check_hr(hr: torch.Tensor, scale: int) -> None:
    if hr.dim() != 4 or not torch.is_floating_point(hr):
        raise ValueError(f"degradations take (N, C, H, W) float tensors in [0, 1], got {tuple(hr.shape)} {hr.dtype}")
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} is not divisible by scale {scale}; crop it to a multiple of {scale} first")


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


def _dct_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    n = torch.arange(8, dtype=dtype, device=device)
    k = n[:, None]
    m = torch.cos((2 * n[None, :] + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m


# ITU-T T.81 Annex K example tables (luminance, chrominance).
_JPEG_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]
_JPEG_CHROMA = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, *([99] * 32),
]


def _quant_tables(quality: torch.Tensor, base: list[int]) -> torch.Tensor:
    """(N,) JPEG qualities 1..100 -> (N, 1, 8, 8) quantisation tables (IJG scaling)."""
    q = quality.clamp(1, 100)
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    table = torch.tensor(base, dtype=quality.dtype, device=quality.device).view(1, 8, 8)
    return torch.floor((table * scale[:, None, None] + 50) / 100).clamp(1, 255).unsqueeze(1)


def _jpeg_plane(plane: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """Quantise the 8x8 DCT of one (N, 1, H, W) plane (values 0..255, H, W multiples of 8)."""
    n, _, h, w = plane.shape
    d = _dct_matrix(plane.device, plane.dtype)
    blocks = (plane - 128).reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)  # (N, bh, bw, 8, 8)
    coeffs = d @ blocks @ d.t()
    q = tables.view(n, 1, 1, 8, 8)
    coeffs = torch.round(coeffs / q) * q
    blocks = d.t() @ coeffs @ d
    return blocks.permute(0, 1, 3, 2, 4).reshape(n, 1, h, w) + 128


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG round trip of (N, C, H, W) in [0, 1] at per-sample `quality` (N,), baseline 4:2:0.

    RGB goes through YCbCr with 2x2 chroma subsampling and triangular ("fancy") chroma
    upsampling, as libjpeg does by default; any other channel count is coded channel by
    channel as grayscale JPEG. Output is 8-bit quantised.
    """
    n, c, h, w = x.shape
    quality = quality.to(x.device, torch.float32)
    luma_q = _quant_tables(quality, _JPEG_LUMA)
    ph, pw = (-h) % 16, (-w) % 16
    v = F.pad(x.float().clamp(0, 1) * 255, (0, pw, 0, ph), mode="replicate").round()
    if c != 3:
        planes = v.reshape(n * c, 1, h + ph, w + pw)
        out = _jpeg_plane(planes, luma_q.repeat_interleave(c, dim=0)).reshape(n, c, h + ph, w + pw)
    else:
        r, g, b = v[:, 0:1], v[:, 1:2], v[:, 2:3]
        y = 0.299 * r + 0.587 * g + 0.114 * b
        cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
        cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
        chroma_q = _quant_tables(quality, _JPEG_CHROMA)
        y = _jpeg_plane(y, luma_q)
        cb = F.interpolate(_jpeg_plane(F.avg_pool2d(cb, 2), chroma_q), scale_factor=2, mode="bilinear", align_corners=False)
        cr = F.interpolate(_jpeg_plane(F.avg_pool2d(cr, 2), chroma_q), scale_factor=2, mode="bilinear", align_corners=False)
        out = torch.cat(
            [y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)], dim=1
        )
    out = out[..., :h, :w].round().clamp(0, 255) / 255
    return out.to(x.dtype)


def _luma(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:
        return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    return x.mean(dim=1, keepdim=True)


def add_noise(x: torch.Tensor, g: torch.Generator, gaussian_sigma: torch.Tensor, poisson_scale: torch.Tensor, use_poisson: bool, gray: torch.Tensor) -> torch.Tensor:
    """Gaussian (sigma per sample) or Poisson (8-bit shot noise times a per-sample scale)
    noise; where `gray` is set, one noise field is shared by all channels."""
    n, c, h, w = x.shape
    if use_poisson:
        clean = x.clamp(0, 1)
        colour = (torch.poisson(clean * 255, generator=g) / 255 - clean)
        luma = _luma(clean)
        mono = (torch.poisson(luma * 255, generator=g) / 255 - luma).expand(n, c, h, w)
        noise = torch.where(gray.view(n, 1, 1, 1), mono, colour) * poisson_scale.view(n, 1, 1, 1)
    else:
        colour = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
        mono = torch.randn((n, 1, h, w), generator=g, device=x.device, dtype=x.dtype).expand(n, c, h, w)
        noise = torch.where(gray.view(n, 1, 1, 1), mono, colour) * gaussian_sigma.view(n, 1, 1, 1)
    return (x + noise).clamp(0, 1)


_RESIZE_MODES = ("bilinear", "bicubic", "area")


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True).clamp(0, 1)


# ----------------------------------------------------------------------- degradations


@dataclass(frozen=True)
class Bicubic:
    """MATLAB `imresize(hr, 1/scale, 'bicubic')` (antialiased), clipped to [0, 1]."""

    scale: int = 4

    def __call__(self, hr: torch.Tensor, seed: int = 0) -> torch.Tensor:
        _check_hr(hr, self.scale)
        return imresize(hr, 1.0 / self.scale).clamp(0, 1)


@dataclass(frozen=True)
class Realistic:
    """Real-ESRGAN-style degradation for photographs (see module docstring).

    blur_sigma: Gaussian std range in HR pixels; aniso_prob: chance of an anisotropic,
    rotated kernel; resize_range: random intermediate resize factor (per batch, mode per
    batch from bilinear/bicubic/area); noise_sigma: Gaussian noise std in [0, 1] units;
    poisson_prob: chance (per batch) the noise is Poisson instead; poisson_scale: Poisson
    noise multiplier; gray_noise_prob: chance a sample's noise is shared across channels;
    jpeg_quality: JPEG quality range; second_order_prob: chance (per batch) of a second
    blur/resize/noise/JPEG round with the `*2` ranges.
    """

    scale: int = 4
    kernel_size: int = 21
    blur_sigma: Range = (0.2, 3.0)
    aniso_prob: float = 0.5
    resize_range: Range = (0.15, 1.5)
    noise_sigma: Range = (1 / 255, 30 / 255)
    poisson_prob: float = 0.4
    poisson_scale: Range = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_quality: Range = (30, 95)
    second_order_prob: float = 0.5
    blur_sigma2: Range = (0.2, 1.5)
    resize_range2: Range = (0.3, 1.2)
    noise_sigma2: Range = (1 / 255, 25 / 255)
    poisson_scale2: Range = (0.05, 2.5)
    jpeg_quality2: Range = (30, 95)

    def _round(self, x: torch.Tensor, g: torch.Generator, sigma: Range, resize: Range, noise: Range, pscale: Range, ref_size: tuple[int, int]) -> torch.Tensor:
        n = x.shape[0]
        sx = _uniform(g, n, sigma)
        aniso = _chance(g, n, self.aniso_prob)
        sy = torch.where(aniso, _uniform(g, n, sigma), sx)
        theta = torch.where(aniso, _uniform(g, n, (0.0, math.pi)), torch.zeros_like(sx))
        x = blur(x, gaussian_kernels(sx, sy, theta, self.kernel_size))
        factor = _uniform(g, 1, resize).item()
        mode = _RESIZE_MODES[int(torch.randint(len(_RESIZE_MODES), (1,), generator=g, device=g.device).item())]
        size = (max(8, round(ref_size[0] * factor)), max(8, round(ref_size[1] * factor)))
        x = _resize(x, size, mode)
        use_poisson = bool(_chance(g, 1, self.poisson_prob).item())
        return add_noise(x, g, _uniform(g, n, noise), _uniform(g, n, pscale), use_poisson, _chance(g, n, self.gray_noise_prob))

    def __call__(self, hr: torch.Tensor, seed: int) -> torch.Tensor:
        _check_hr(hr, self.scale)
        g = _rng(seed, hr.device)
        n, _, h, w = hr.shape
        x = self._round(hr, g, self.blur_sigma, self.resize_range, self.noise_sigma, self.poisson_scale, (h, w))
        if bool(_chance(g, 1, self.second_order_prob).item()):
            x = jpeg(x, _uniform(g, n, self.jpeg_quality).round())
            x = self._round(x, g, self.blur_sigma2, self.resize_range2, self.noise_sigma2, self.poisson_scale2, tuple(x.shape[-2:]))
            quality = self.jpeg_quality2
        else:
            quality = self.jpeg_quality
        mode = _RESIZE_MODES[int(torch.randint(len(_RESIZE_MODES), (1,), generator=g, device=g.device).item())]
        x = _resize(x, (h // self.scale, w // self.scale), mode)
        return jpeg(x, _uniform(g, n, quality).round())


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
        raise ValueError(f"degradation {name!r} has no parameter(s) {', '.join(sorted(unknown))}; it takes {', '.join(sorted(known)) or 'none'}")
    return cls(scale=scale, **params)
