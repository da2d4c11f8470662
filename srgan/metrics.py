"""Super-resolution metrics: PSNR and SSIM as the SR literature computes them.

`psnr_y` / `ssim_y` follow the standard protocol behind published tables (EDSR, RCAN,
ESRGAN): images quantised to 8 bit, MATLAB's BT.601 luma (`rgb2ycbcr`, Y in [16, 235]),
a border of `crop` pixels (= the scale) removed, SSIM with an 11x11 Gaussian window
(sigma 1.5) over the valid region. `psnr` / `ssim` are the data-range-aware variants for
16-bit and N-band images: computed per band against `data_range` and averaged.

`high_frequency_ratio` is a perception-oriented measure that needs no learned weights: the
energy SR puts into spatial frequencies the LR cannot carry (above its Nyquist limit),
relative to the HR's. Bicubic is far below 1 (blurry); a GAN that hallucinates plausible
texture comes close to 1; above 1 means noise or ringing. It complements PSNR, which
rewards blur (the perception-distortion trade-off of Blau & Michaeli 2018).

`gmsd` (Xue, Zhang, Mou & Bovik 2014) is a full-reference perceptual measure with no
learned weights: the standard deviation of the gradient magnitude similarity map on Y.
0 = the reference's gradients everywhere; higher = more distortion.

All functions take (N, C, H, W) float tensors and return one value per image, shape (N,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# MATLAB rgb2ycbcr luma row, for RGB in [0, 1] giving Y in [16, 235].
_Y_COEFFS = (65.481, 128.553, 24.966)


def rgb_to_y(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 1, H, W) BT.601 luma in [16, 235] (8-bit units)."""
    if rgb.shape[1] != 3:
        raise ValueError(f"rgb_to_y expects 3 channels, got {rgb.shape[1]}")
    w = torch.tensor(_Y_COEFFS, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * w).sum(dim=1, keepdim=True) + 16.0


def quantize(x: torch.Tensor, levels: int = 255) -> torch.Tensor:
    """Round [0, 1] values to the nearest of `levels` + 1 steps, as saving to 8 bit does."""
    return (x.clamp(0, 1) * levels).round() / levels


def _luma_255(x: torch.Tensor) -> torch.Tensor:
    """Y channel in 8-bit units: BT.601 for RGB, the channel itself for grayscale."""
    x = x.double()
    if x.shape[1] == 3:
        return rgb_to_y(x)
    if x.shape[1] == 1:
        return x * 255.0
    raise ValueError(f"Y-channel metrics need 1 or 3 channels, got {x.shape[1]}; use psnr()/ssim()")


def _crop(x: torch.Tensor, border: int) -> torch.Tensor:
    if border <= 0:
        return x
    if x.shape[-2] <= 2 * border or x.shape[-1] <= 2 * border:
        raise ValueError(f"image {tuple(x.shape[-2:])} too small for a border crop of {border}")
    return x[..., border:-border, border:-border]


def _check_pair(sr: torch.Tensor, hr: torch.Tensor) -> None:
    if sr.shape != hr.shape or sr.dim() != 4:
        raise ValueError(
            f"metrics need two (N, C, H, W) tensors of one shape, got {tuple(sr.shape)} and {tuple(hr.shape)}"
        )


def _psnr(a: torch.Tensor, b: torch.Tensor, data_range: float) -> torch.Tensor:
    mse = (a - b).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-20))


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """PSNR in dB on the Y channel of [0, 1] images, border `crop` removed. Shape (N,)."""
    _check_pair(sr, hr)
    return _psnr(_crop(_luma_255(sr), crop), _crop(_luma_255(hr), crop), 255.0).float()


def psnr(sr: torch.Tensor, hr: torch.Tensor, data_range: float = 1.0, crop: int = 0) -> torch.Tensor:
    """PSNR in dB over all bands against `data_range` (e.g. 65535 for raw 16-bit). Shape (N,)."""
    _check_pair(sr, hr)
    return _psnr(_crop(sr.double(), crop), _crop(hr.double(), crop), float(data_range)).float()


def _gaussian_1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """'valid' 2-D Gaussian filtering as two 1-D passes (the window is separable)."""
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    return F.conv2d(x, g.view(1, 1, 1, -1))


def _ssim_per_band(a: torch.Tensor, b: torch.Tensor, data_range: float) -> torch.Tensor:
    """Mean SSIM per (image, band) over the 'valid' region, as Wang et al.'s ssim.m. (N, C)."""
    n, c, h, w = a.shape
    if h < 11 or w < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 after cropping, got {h}x{w}")
    g = _gaussian_1d(11, 1.5, a.dtype, a.device)
    a = a.reshape(n * c, 1, h, w)
    b = b.reshape(n * c, 1, h, w)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_a = _filter_valid(a, g)
    mu_b = _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.flatten(1).mean(dim=1).view(n, c)


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """SSIM on the Y channel of [0, 1] images, border `crop` removed. Shape (N,)."""
    _check_pair(sr, hr)
    a, b = _crop(_luma_255(sr), crop), _crop(_luma_255(hr), crop)
    return _ssim_per_band(a, b, 255.0).mean(dim=1).float()


def ssim(sr: torch.Tensor, hr: torch.Tensor, data_range: float = 1.0, crop: int = 0) -> torch.Tensor:
    """SSIM averaged over bands against `data_range`. Shape (N,)."""
    _check_pair(sr, hr)
    a, b = _crop(sr.double(), crop), _crop(hr.double(), crop)
    return _ssim_per_band(a, b, float(data_range)).mean(dim=1).float()


def _hann(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return (
        torch.hann_window(n, periodic=False, dtype=dtype, device=device)
        if n > 1
        else torch.ones(1, dtype=dtype, device=device)
    )


def high_frequency_ratio(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Spectral energy above the LR Nyquist frequency (1 / (2 * scale) cycles per HR pixel),
    SR over HR, on the luma (RGB) or the band mean (other band counts). Images are
    Hann-windowed so their borders do not leak into the spectrum. Shape (N,); 1 = HR's detail."""
    _check_pair(sr, hr)

    def plane(x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        x = rgb_to_y(x) if x.shape[1] == 3 else x.mean(dim=1, keepdim=True)
        return x[:, 0]

    a, b = plane(sr), plane(hr)
    h, w = a.shape[-2:]
    window = _hann(h, a.dtype, a.device)[:, None] * _hann(w, a.dtype, a.device)[None, :]
    fy = torch.fft.fftfreq(h, dtype=a.dtype, device=a.device)[:, None]
    fx = torch.fft.fftfreq(w, dtype=a.dtype, device=a.device)[None, :]
    high = torch.sqrt(fy**2 + fx**2) > 0.5 / scale

    def energy(x: torch.Tensor) -> torch.Tensor:
        x = (x - x.mean(dim=(-2, -1), keepdim=True)) * window
        return (torch.fft.fft2(x).abs() ** 2 * high).flatten(1).sum(dim=1)

    return (energy(a) / energy(b).clamp_min(1e-20)).float()


GMSD_T = 170.0  # the paper's stability constant for 8-bit luma


def gmsd(sr: torch.Tensor, hr: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """GMSD on the Y channel of [0, 1] images (1 or 3 bands), border `crop` removed, as the
    authors' GMSD.m: 2x2 mean (conv2 'same': zero padding below and right), every second pixel, 3x3 Prewitt
    gradients (zero padding), similarity (2 m1 m2 + T) / (m1^2 + m2^2 + T), its sample
    standard deviation (std2). Shape (N,); 0 for identical images, higher = worse."""
    _check_pair(sr, hr)
    a, b = _crop(_luma_255(sr), crop), _crop(_luma_255(hr), crop)
    if min(a.shape[-2:]) < 4:
        raise ValueError(f"GMSD needs images of at least 4x4 after cropping, got {tuple(a.shape[-2:])}")
    prewitt = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=a.dtype, device=a.device) / 3

    def magnitude(y: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(F.pad(y, (0, 1, 0, 1)), 2, stride=1)[..., ::2, ::2]
        gx = F.conv2d(y, prewitt.view(1, 1, 3, 3), padding=1)
        gy = F.conv2d(y, prewitt.t().contiguous().view(1, 1, 3, 3), padding=1)
        return torch.sqrt(gx**2 + gy**2)

    m1, m2 = magnitude(a), magnitude(b)
    similarity = (2 * m1 * m2 + GMSD_T) / (m1**2 + m2**2 + GMSD_T)
    return similarity.flatten(1).std(dim=1).float()
