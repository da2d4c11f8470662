"""Upscale images of any size tile by tile, with a result equal to the untiled one.

Each output tile is computed from an input window that extends `pad` pixels beyond the
tile on every side that is inside the image. With `pad` at least the model's receptive
radius, the zero padding at a window's inner edges never reaches the kept tile, so tiles
agree with a whole-image pass (up to float rounding). Windows all have the same size --
at the image border they slide inward instead of shrinking -- so they batch together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn


@dataclass(frozen=True)
class Span:
    """One axis of a tile: the input window [win_start, win_stop) and the kept part
    [keep_start, keep_stop) of it, in input pixels (keep is relative to the image)."""

    win_start: int
    win_stop: int
    keep_start: int
    keep_stop: int


def spans(length: int, tile: int, pad: int, start: int = 0, stop: int | None = None) -> list[Span]:
    """Cover [start, stop) (default the whole axis) with tiles of `tile` pixels, each inside
    a window of tile + 2*pad within [0, length)."""
    if tile <= 0:
        raise ValueError(f"tile size must be > 0, got {tile}")
    stop = length if stop is None else stop
    if length <= tile + 2 * pad:  # one window holds the whole axis: one tile, no repeated work
        return [Span(0, length, start, stop)]
    window = tile + 2 * pad
    out = []
    for first in range(start, stop, tile):
        last = min(first + tile, stop)
        win_start = min(max(first - pad, 0), length - window)
        out.append(Span(win_start, win_start + window, first, last))
    return out


@dataclass(frozen=True)
class Tile:
    rows: Span
    cols: Span


def crop_region(x: torch.Tensor, region: tuple[int, int, int, int] | None, scale: int = 1) -> torch.Tensor:
    """The (top, bottom, left, right) part of (..., H, W) `x`, `region` given in input pixels
    of a x`scale` result (None: all of it)."""
    if region is None:
        return x
    top, bottom, left, right = (v * scale for v in region)
    return x[..., top:bottom, left:right]


def tiles(height: int, width: int, tile: int, pad: int, region: tuple[int, int, int, int] | None = None) -> Iterator[Tile]:
    top, bottom, left, right = region or (0, height, 0, width)
    for r in spans(height, tile, pad, top, bottom):
        for c in spans(width, tile, pad, left, right):
            yield Tile(r, c)


def model_pad(model: nn.Module) -> int:
    """Padding a tiled run of `model` needs: its receptive radius in input pixels."""
    radius = getattr(model, "receptive_radius", None)
    if radius is None:
        raise ValueError(f"{type(model).__name__} does not declare receptive_radius; pass pad= explicitly")
    return int(radius)


@torch.no_grad()
def upscale_tiled(
    model: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    scale: int,
    tile: int = 256,
    pad: int | None = None,
    batch_size: int = 4,
    out_device: torch.device | str = "cpu",
    region: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    """Run `model` over (C, H, W) or (N, C, H, W) `image` tile by tile; return the upscaled
    image on `out_device` with the input's leading shape and the model's output channels.

    `region` (top, bottom, left, right in input pixels) upscales only that part, using the
    rest of `image` as context: a caller that reads an image window by window passes each
    window with its margins and gets exactly the window's share of the whole-image result.

    The input may live on the CPU while the model runs on a GPU: each batch of windows is
    moved to the model's device, and only one batch is there at a time.
    tile <= 0 runs the whole image at once.
    """
    squeeze = image.dim() == 3
    x = image.unsqueeze(0) if squeeze else image
    if pad is None:
        pad = model_pad(model)  # type: ignore[arg-type]
    device = next(model.parameters()).device if isinstance(model, nn.Module) else x.device
    n, _, h, w = x.shape
    top, bottom, left, right = region or (0, h, 0, w)
    if tile <= 0:
        out = crop_region(model(x.to(device)).to(out_device), region, scale)
        return out[0] if squeeze else out

    out: torch.Tensor | None = None
    plan = list(tiles(h, w, tile, pad, region))
    for i in range(n):
        for start in range(0, len(plan), batch_size):
            chunk = plan[start : start + batch_size]
            windows = torch.stack([x[i, :, t.rows.win_start : t.rows.win_stop, t.cols.win_start : t.cols.win_stop] for t in chunk])
            result = model(windows.to(device)).to(out_device)
            if out is None:
                # float32 at least: a bf16/fp16 model's tiles are stored without further rounding.
                out = torch.empty((n, result.shape[1], (bottom - top) * scale, (right - left) * scale), dtype=torch.promote_types(result.dtype, torch.float32), device=out_device)
            for t, r in zip(chunk, result):
                y = (t.rows.keep_start - t.rows.win_start) * scale
                x0 = (t.cols.keep_start - t.cols.win_start) * scale
                hh = (t.rows.keep_stop - t.rows.keep_start) * scale
                ww = (t.cols.keep_stop - t.cols.keep_start) * scale
                r0, c0 = (t.rows.keep_start - top) * scale, (t.cols.keep_start - left) * scale
                out[i, :, r0 : r0 + hh, c0 : c0 + ww] = r[:, y : y + hh, x0 : x0 + ww]
    assert out is not None
    return out[0] if squeeze else out
