"""MATLAB-compatible bicubic resize (`imresize(x, scale, 'bicubic')`) on batched tensors.

The SR evaluation protocol (and the classic SRGAN degradation) is defined by MATLAB's
`imresize`: Keys cubic kernel with a = -0.5, the kernel widened by 1/scale when shrinking
(antialiasing), and symmetric ("mirror with edge repeated") boundary handling. We build
the per-axis weight matrices once and apply them as two matrix products, so the same code
runs batched on CPU or GPU for any float range.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's `cubic`)."""
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=64)
def _weight_matrix(in_len: int, out_len: int, scale: float, antialias: bool) -> torch.Tensor:
    """Dense (out_len, in_len) float64 matrix M such that out = M @ in along one axis.

    Follows MATLAB's `contributions`: output pixel x (1-based) maps to input coordinate
    u = x / scale + 0.5 * (1 - 1 / scale); taps outside [1, in_len] are mirrored back
    (symmetric padding) and their weights accumulated on the mirrored pixel.
    """
    kernel_width = 4.0
    shrink = antialias and scale < 1
    if shrink:
        kernel_width /= scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]  # 1-based
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if shrink else _cubic(dist)
    w = w / w.sum(dim=1, keepdim=True)
    # Symmetric boundary: 1-based index i outside [1, n] maps into the sequence
    # 1..n, n..1 (period 2n), as MATLAB's `aux = [1:n, n:-1:1]` does.
    period = 2 * in_len
    zero_based = torch.remainder(idx - 1, period).long()
    mirrored = torch.where(zero_based < in_len, zero_based, period - 1 - zero_based)
    matrix = torch.zeros(out_len, in_len, dtype=torch.float64)
    matrix.scatter_add_(1, mirrored, w)
    return matrix


def output_size(in_len: int, scale: float) -> int:
    """MATLAB's output length for a scale factor: ceil(in_len * scale)."""
    return math.ceil(in_len * scale - 1e-9)


def imresize(
    x: torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> torch.Tensor:
    """Bicubic resize as MATLAB `imresize(x, scale)` does it.

    x: (..., H, W) tensor, any leading batch/channel dims. Float tensors keep their range
    and dtype (float64 is computed in float64, anything else in float32). Integer tensors
    are computed in float64 and rounded and clipped to their dtype's range after each axis
    pass, as MATLAB does for uint8/uint16 input.
    Give either `scale` (same factor for both axes, e.g. 0.25 to shrink by 4) or `size`
    (out_h, out_w); with `size`, each axis uses the factor out/in.
    """
    if (scale is None) == (size is None):
        raise ValueError("imresize: give exactly one of scale= or size=")
    in_h, in_w = x.shape[-2], x.shape[-1]
    if size is None:
        if scale <= 0:
            raise ValueError(f"imresize: scale must be > 0, got {scale}")
        out_h, out_w = output_size(in_h, scale), output_size(in_w, scale)
        scale_h = scale_w = float(scale)
    else:
        out_h, out_w = size
        if out_h <= 0 or out_w <= 0:
            raise ValueError(f"imresize: size must be positive, got {size}")
        scale_h, scale_w = out_h / in_h, out_w / in_w

    is_int = not torch.is_floating_point(x)
    if is_int:
        info = torch.iinfo(x.dtype)
    work_dtype = torch.float64 if (is_int or x.dtype == torch.float64) else torch.float32
    y = x.to(work_dtype)
    # Resize the axis that shrinks the data most first, as MATLAB orders its passes
    # (smaller intermediate, and identical results up to rounding).
    order = ("h", "w") if scale_h <= scale_w else ("w", "h")
    for axis in order:
        if axis == "h" and (out_h != in_h or scale_h != 1.0):
            m = _weight_matrix(in_h, out_h, scale_h, antialias).to(y.device, work_dtype)
            y = torch.matmul(m, y)
        elif axis == "w" and (out_w != in_w or scale_w != 1.0):
            m = _weight_matrix(in_w, out_w, scale_w, antialias).to(y.device, work_dtype)
            y = torch.matmul(y, m.t())
        else:
            continue
        if is_int:
            # MATLAB's imresizemex returns the input's class after every axis pass.
            y = y.round().clamp(info.min, info.max)
    return y.to(x.dtype)


@lru_cache(maxsize=16)
def _phase_taps(scale: int) -> torch.Tensor:
    """(scale, 5) float64 weights of input offsets -2..2 for each output phase of an integer
    bicubic upscale (MATLAB's contributions: output x = scale*i + p + 1 maps to input
    u = i + 1/2 + (p + 1/2)/scale, 1-based)."""
    p = torch.arange(scale, dtype=torch.float64)[:, None]
    d = torch.arange(-2, 3, dtype=torch.float64)[None, :]
    w = _cubic((p + 0.5) / scale - 0.5 - d)
    return w / w.sum(dim=1, keepdim=True)


def upscale_by_convolution(x: torch.Tensor, scale: int) -> torch.Tensor:
    """`imresize(x, scale)` for an integer `scale` >= 1 and images of at least 2 x 2 pixels,
    as a 5 x 5 convolution per output phase and a pixel shuffle: equal within float rounding,
    and traceable with dynamic sizes (ONNX export). x: (N, C, H, W) float."""
    n, c, h, w = x.shape
    flat = x.reshape(n * c, 1, h, w)
    # MATLAB's symmetric padding (the edge pixel repeated) by the 2 pixels the taps reach.
    flat = torch.cat([flat[..., :2, :].flip(-2), flat, flat[..., -2:, :].flip(-2)], dim=-2)
    flat = torch.cat([flat[..., :2].flip(-1), flat, flat[..., -2:].flip(-1)], dim=-1)
    taps = _phase_taps(scale).to(x.device, x.dtype)
    kernels = (taps[:, None, :, None] * taps[None, :, None, :]).reshape(scale * scale, 1, 5, 5)  # phase (row, col)
    out = torch.nn.functional.pixel_shuffle(torch.nn.functional.conv2d(flat, kernels), scale)
    return out.reshape(n, c, h * scale, w * scale)
