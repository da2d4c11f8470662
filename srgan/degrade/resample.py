"""Real-ESRGAN's random resize stage: F.interpolate's area, bilinear and bicubic without antialias, exactly and
faster on a CPU (MATLAB's antialiased imresize is srgan/resize.py)."""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from srgan.degrade.base import piece_size

RESIZE_DIRECTIONS = ("up", "down", "keep")
RESIZE_MODES = ("area", "bilinear", "bicubic")


def resize(
    x: torch.Tensor, mode: str, size: tuple[int, int] | None = None, factor: float | None = None
) -> torch.Tensor:
    """F.interpolate(x, size or scale_factor=factor, mode) as feed_data calls it (no antialias,
    align_corners False): the same weights along each axis, applied as a few weighted row
    gathers per axis (PyTorch's CPU kernels are 1.5 to 4 times slower, area 3 to 5 times)."""
    n, c, h, w = x.shape
    if size is None:
        size = (math.floor(h * factor), math.floor(w * factor))  # F.interpolate's output size
    if tuple(size) == (h, w) and (mode != "bicubic" or factor in (None, 1.0)):
        return x  # every mode then samples each pixel where it is
    rows, cols = (
        _tap_list(n_in, n_out, mode, factor, x.device, x.dtype) for n_in, n_out in ((h, size[0]), (w, size[1]))
    )
    out = x.new_empty(n, c, *size)
    per_piece = piece_size(x)
    for i in range(0, n, per_piece):  # on a CPU, pieces whose passes stay in cache
        y = _resample(x[i : i + per_piece].reshape(-1, h, w), rows)  # (planes, out_h, W)
        y = _resample(y.transpose(1, 2).contiguous(), cols)  # (planes, out_w, out_h)
        out[i : i + per_piece] = y.transpose(1, 2).view(-1, c, *size)
    return out


def _resample(x: torch.Tensor, taps: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """(P, L, M) -> (P, O, M): out[:, o] = sum over taps t of weight_t[o] x[:, index_t[o]]."""
    (index, weight), *rest = taps
    out = x.index_select(1, index).mul_(weight)
    for index, weight in rest:
        out.addcmul_(x.index_select(1, index), weight)
    return out


@lru_cache(maxsize=256)
def _tap_list(
    n_in: int, n_out: int, mode: str, factor: float | None, device: torch.device, dtype: torch.dtype
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """_taps as (index (O,), weight (O, 1)) pairs per tap, on the device, in the dtype."""
    index, weight = _taps(n_in, n_out, mode, factor)
    return [(i.contiguous().to(device), w.to(device, dtype)[:, None]) for i, w in zip(index.t(), weight.t())]


@lru_cache(maxsize=64)
def _taps(n_in: int, n_out: int, mode: str, factor: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_out, T) input indices and float64 weights of PyTorch's CPU kernels along one axis.
    area: adaptive average pooling over [floor(i n_in / n_out), ceil((i + 1) n_in / n_out)).
    bilinear, bicubic (Keys, A = -0.75): sampled at (i + 0.5) * scale - 0.5, scale 1 / factor
    when a factor is given (not n_in / n_out), taps beyond the border clamped to it; bilinear
    leaves an axis of unchanged length as it is."""
    if mode == "area":
        i = torch.arange(n_out)
        start, end = (i * n_in) // n_out, ((i + 1) * n_in + n_out - 1) // n_out
        index = start[:, None] + torch.arange(int((end - start).max()))
        return index.clamp(max=n_in - 1), (index < end[:, None]).double() / (end - start)[:, None]
    if mode == "bilinear" and n_in == n_out:
        return torch.arange(n_in)[:, None], torch.ones(n_in, 1, dtype=torch.float64)
    scale = 1 / factor if factor else n_in / n_out
    src = scale * (torch.arange(n_out, dtype=torch.float64) + 0.5) - 0.5
    if mode == "bilinear":
        src = src.clamp_min(0)
    first = torch.floor(src).clamp(max=n_in - 1)
    t = (src - first).clamp(0, 1)
    if mode == "bilinear":
        offsets, weight = torch.tensor([0.0, 1.0]), torch.stack([1 - t, t], dim=1)
    elif mode == "bicubic":
        a = -0.75
        near = lambda d: ((a + 2) * d - (a + 3)) * d * d + 1  # noqa: E731
        far = lambda d: ((a * d - 5 * a) * d + 8 * a) * d - 4 * a  # noqa: E731
        offsets, weight = (
            torch.tensor([-1.0, 0.0, 1.0, 2.0]),
            torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], dim=1),
        )
    else:
        raise ValueError(f"unknown resize mode {mode!r}; use one of {RESIZE_MODES}")
    return (first[:, None] + offsets).clamp(0, n_in - 1).long(), weight
