"""Real-ESRGAN's unsharp masking (USMSharp) of HR training targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def usm_sharp(hr: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> torch.Tensor:
    """Real-ESRGAN's USMSharp for HR targets, (N, C, H, W) in [0, 1]: add weight * (hr - blur)
    where the residual exceeds threshold/255, feathered by the same Gaussian (OpenCV's kernel for
    size radius|1 and sigma 0, i.e. sigma 8 for radius 50)."""
    size = radius + 1 - radius % 2
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g1 = torch.exp(-(t**2) / (2 * sigma**2))
    g1 = (g1 / g1.sum()).to(hr.device, hr.dtype)
    residual = hr - _separable(hr, g1)
    soft = _separable((residual.abs() * 255 > threshold).to(hr.dtype), g1)
    sharp = (hr + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * hr


def _separable(x: torch.Tensor, g1: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    pad = len(g1) // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    x = F.pad(x, (pad, pad, pad, pad), mode=mode)
    x = F.conv2d(x, g1.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g1.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
