"""JPEG compression round trip of a batch, per-sample quality, as libjpeg codes baseline 4:2:0."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from srgan.degrade.base import piece_size


@lru_cache(maxsize=8)
def _dct64(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The 64 x 64 matrix of the orthonormal 8x8 2-D DCT on row-major blocks: D kron D."""
    n = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return torch.kron(d, d).to(device, dtype)


# ITU-T T.81 Annex K example tables (luminance, chrominance).
_JPEG_LUMA = [
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
]
_JPEG_CHROMA = [
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
]


@lru_cache(maxsize=8)
def _quant_tables(device: torch.device) -> torch.Tensor:
    """(2, 101, 64) luminance and chrominance quantisation tables for qualities 0..100 (IJG
    scaling; quality 0 is taken as 1)."""
    q = torch.arange(101, dtype=torch.float64).clamp(1, 100)[:, None]
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    base = torch.tensor([_JPEG_LUMA, _JPEG_CHROMA], dtype=torch.float64).view(2, 1, 64)
    return torch.floor((base * scale + 50) / 100).clamp(1, 255).float().to(device)


def _quantise_dct(planes: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """Quantise the 8x8 block DCT of level-shifted (N, C, H, W) planes (H, W multiples of 8)
    with (N, C, 8, 8) tables and transform back: each block as a row of 64 values times the
    64 x 64 DCT matrix, one matrix product for all blocks."""
    n, c, h, w = planes.shape
    dct = _dct64(planes.device, planes.dtype)
    q = tables.reshape(n * c, 1, 64)
    blocks = planes.reshape(n * c, h // 8, 8, w // 8, 8).transpose(2, 3).reshape(n * c, -1, 64)
    coeffs = (blocks @ dct.t()).div_(q).round_().mul_(q)
    return (coeffs @ dct).view(n, c, h // 8, w // 8, 8, 8).transpose(3, 4).reshape(n, c, h, w)


# JFIF's YCbCr of 0..255 RGB, Y shifted by -128 for the DCT (Cb, Cr come centred on 0); back to
# RGB every channel is Y + 128 plus a combination of Cb and Cr.
_TO_YCC = [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
_CHROMA_TO_RGB = [[0.0, 1.402], [-0.344136, -0.714136], [1.772, 0.0]]


def jpeg(x: torch.Tensor, quality: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """JPEG round trip of (N, C, H, W) in [0, 1] at per-sample `quality` (N,) (whole numbers,
    as libjpeg takes them; others are rounded), baseline 4:2:0. Into `out` if given (x itself:
    in place), else a new tensor.

    RGB goes through YCbCr with 2x2 chroma subsampling and triangular ("fancy") chroma
    upsampling, as libjpeg does by default; any other channel count is coded channel by
    channel as grayscale JPEG. Output is 8-bit quantised.
    """
    n, c, h, w = x.shape
    luma, chroma = _quant_tables(x.device)[:, quality.to(x.device).round().clamp(0, 100).long()].view(2, n, 1, 8, 8)
    tables = luma.expand(n, c, 8, 8), chroma.expand(n, 2, 8, 8)
    per_piece = piece_size(x)
    if per_piece >= n and out is None:
        return _jpeg(x, *tables)
    # On a CPU its dozen passes over the batch run faster on pieces that stay in cache.
    out = torch.empty_like(x) if out is None else out
    for i in range(0, n, per_piece):
        out[i : i + per_piece] = _jpeg(x[i : i + per_piece], *(t[i : i + per_piece] for t in tables))
    return out


def _jpeg(x: torch.Tensor, luma_q: torch.Tensor, chroma_q: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    ph, pw = (-h) % 16, (-w) % 16
    v = x.float().clamp(0, 1)
    if ph or pw:
        v = F.pad(v, (0, pw, 0, ph), mode="replicate")
    v = v.mul_(255).round_()
    hp, wp = h + ph, w + pw
    if c != 3:
        out = _quantise_dct(v.sub_(128), luma_q).add_(128)
    else:
        to_ycc, to_rgb = (torch.tensor(m, device=x.device) for m in (_TO_YCC, _CHROMA_TO_RGB))
        ycc = (to_ycc @ v.view(n, 3, hp * wp)).view(n, 3, hp, wp)
        luma = _quantise_dct(ycc[:, :1].sub_(128), luma_q[:, :1])
        chroma = _double(_double(_quantise_dct(_halve(ycc[:, 1:]), chroma_q), 2), 3)
        out = (to_rgb @ chroma.view(n, 2, hp * wp)).add_(luma.view(n, 1, hp * wp).add_(128)).view(n, 3, hp, wp)
    return out[..., :h, :w].round().clamp_(0, 255).div_(255).to(x.dtype)


def _halve(x: torch.Tensor) -> torch.Tensor:
    """Means of 2x2 pixels (4:2:0 chroma subsampling); four strided sums beat avg_pool2d on a CPU."""
    return (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]).mul_(0.25)


def _double(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Twice the samples along dim (2 or 3 of (N, C, H, W)) by libjpeg's triangular ("fancy")
    upsampling, 3/4 of the nearer and 1/4 of the farther input, the edge repeated:
    F.interpolate(scale_factor=2, bilinear) along one axis, twice as fast on a CPU."""
    n = x.shape[dim]
    padded = F.pad(x, (1, 1, 0, 0) if dim == 3 else (0, 0, 1, 1), mode="replicate")
    out = x.new_empty(*x.shape[:dim], n, 2, *x.shape[dim + 1 :])
    even, odd = out.unbind(dim + 1)
    middle = padded.narrow(dim, 1, n)
    torch.lerp(middle, padded.narrow(dim, 0, n), 0.25, out=even)
    torch.lerp(middle, padded.narrow(dim, 2, n), 0.25, out=odd)
    return out.flatten(dim, dim + 1)
