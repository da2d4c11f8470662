"""Upscale images of any size tile by tile, with a result equal to the untiled one.

Each output tile is computed from an input window that extends `pad` pixels beyond the
tile on every side that is inside the image. With `pad` at least the model's receptive
radius (`measure_radius`: measured on the architecture, not declared), the zero padding at
a window's inner edges never reaches the kept tile, so tiles agree with a whole-image pass
(up to float rounding). At the image border a window simply stops: the model's own zero
padding there is the whole image's.

Tiles divide each side evenly, and the grid is chosen to compute the fewest pixels: `tile`
bounds a window's area at that of a tile x tile tile's window ((tile + 2 pad)^2 pixels,
the memory a tile of that size needs), and among the grids (rows x columns) whose windows
fit, the one whose windows add up to the fewest pixels is taken: a 384 px image at tile
256 is two full-width strips (1.21x its pixels computed), not four 256 px tiles sliding
inward (3.06x).

A model that streams rows (`stream_rows`: srgan.fast's inference form of SRResNet, which
keeps each convolution's last rows for the next strip) computes no row twice: the region
is cut into bands of columns only, each run top to bottom a strip at a time, a strip
holding at most the same (tile + 2 pad)^2 pixels; the fewest bands whose strips stay
MIN_STRIP_ROWS high are taken (a 1024 px image at tile 256: one band, 1.0x its pixels,
where windows compute 1.52x). On a CPU strips are at most CPU_STRIP_ROWS high, which is
faster per pixel than taller ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache

import torch
from torch import nn

MIN_STRIP_ROWS = 16  # thinner strips would run the convolutions on slivers
CPU_STRIP_ROWS = 32  # on a CPU taller strips are slower per pixel (their maps leave the cache)
MAX_BAND_SEARCH = 256  # band counts tried one by one (beyond: the monotone bound's count)


@dataclass(frozen=True)
class Span:
    """One axis of a tile: the input window [win_start, win_stop) and the kept part
    [keep_start, keep_stop) of it, in input pixels (keep is relative to the image)."""

    win_start: int
    win_stop: int
    keep_start: int
    keep_stop: int

    @property
    def size(self) -> int:
        return self.win_stop - self.win_start


def split(length: int, n: int, pad: int, start: int = 0, stop: int | None = None, align: int = 1) -> list[Span]:
    """[start, stop) (default the whole axis) cut into `n` tiles of equal size (give or take
    a pixel), each inside a window of `pad` more pixels on each side, cut at [0, length).
    `align` > 1 starts each window on a multiple of it (a window-attention model partitions
    its input from the input's origin, so a tile must start where the whole image's windows
    do to see the same partition)."""
    stop = length if stop is None else stop
    n = max(1, min(n, stop - start))
    bounds = [start + (i * (stop - start)) // n for i in range(n + 1)]
    return [Span(max(0, a - pad) // align * align, min(length, b + pad), a, b) for a, b in zip(bounds, bounds[1:])]


def spans(length: int, tile: int, pad: int, start: int = 0, stop: int | None = None) -> list[Span]:
    """Cover [start, stop) (default the whole axis) with tiles of at most `tile` pixels,
    as few as that allows and of equal size (see `split`)."""
    if tile <= 0:
        raise ValueError(f"tile size must be > 0, got {tile}")
    stop = length if stop is None else stop
    return split(length, math.ceil((stop - start) / tile), pad, start, stop)


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


def centre_crop(x: torch.Tensor, size: int | None, multiple: int = 1) -> torch.Tensor:
    """The centred `size` x `size` part of (..., H, W) `x`, a side shorter than `size` kept
    whole but cut to a multiple of `multiple`; `size` None: all of `x`, its bottom and right
    cut to multiples of `multiple`."""
    h, w = x.shape[-2:]
    fit_h, fit_w = h - h % multiple, w - w % multiple
    if size is None:
        return x[..., :fit_h, :fit_w]
    ch, cw = min(size, fit_h), min(size, fit_w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top : top + ch, left : left + cw]


def aligned_spans(length: int, block: int, pad: int) -> list[Span]:
    """[0, length) cut every `block` pixels from 0 (the last piece shorter), each piece inside a
    window of `pad` more pixels on each side, cut at [0, length): for reading and writing a
    file window by window, where pieces should start on the file's own block grid."""
    if block <= 0:
        raise ValueError(f"block size must be > 0, got {block}")
    return [
        Span(max(0, a - pad), min(length, a + block + pad), a, min(a + block, length)) for a in range(0, length, block)
    ]


def _axis_options(
    length: int, pad: int, start: int, stop: int, most: int, align: int = 1
) -> list[tuple[int, int, int]]:
    """(tiles, largest window, sum of windows) along one axis for 1..`most` tiles."""
    out = []
    for n in range(1, min(most, stop - start) + 1):
        windows = [s.size for s in split(length, n, pad, start, stop, align)]
        out.append((n, max(windows), sum(windows)))
    return out


def grid(
    height: int, width: int, tile: int, pad: int, region: tuple[int, int, int, int] | None = None, align: int = 1
) -> tuple[list[Span], list[Span]]:
    """(row spans, column spans) of the tiles of `region` (top, bottom, left, right; default
    the whole image): the grid whose windows each hold at most (tile + 2 pad)^2 pixels and
    together the fewest pixels (fewest windows on a tie)."""
    if tile <= 0:
        raise ValueError(f"tile size must be > 0, got {tile}")
    top, bottom, left, right = region or (0, height, 0, width)
    budget = (tile + 2 * pad + align - 1) ** 2
    # A grid of tile x tile tiles always fits. Thinner rows can let wider columns fit (and the
    # other way round), so each axis may take up to twice as many tiles as that grid's.
    rows = _axis_options(height, pad, top, bottom, 2 * math.ceil((bottom - top) / tile) + 1, align)
    cols = _axis_options(width, pad, left, right, 2 * math.ceil((right - left) / tile) + 1, align)
    best = None
    for nr, tallest, rows_sum in rows:
        fits = [(nc, cols_sum) for nc, widest, cols_sum in cols if tallest * widest <= budget]
        if fits:
            nc, cols_sum = fits[0]  # the fewest columns that fit compute the fewest pixels
            key = (rows_sum * cols_sum, nr * nc)
            best = min(best, (key, nr, nc)) if best else (key, nr, nc)
    assert best is not None
    _, nr, nc = best
    return split(height, nr, pad, top, bottom, align), split(width, nc, pad, left, right, align)


def bands(
    height: int, width: int, tile: int, pad: int, region: tuple[int, int, int, int] | None = None
) -> tuple[Span, list[Span], int]:
    """For a model that streams rows (see srgan.fast: each row computed once, a strip at a
    time): (the row window, the column spans, rows per strip) of `region` (default the whole
    image). A strip of a band holds at most (tile + 2 pad)^2 pixels, the budget of a tile's
    window; the fewest columns (the least horizontal context computed twice) whose strips
    are still MIN_STRIP_ROWS rows high are taken."""
    if tile <= 0:
        raise ValueError(f"tile size must be > 0, got {tile}")
    top, bottom, left, right = region or (0, height, 0, width)
    budget = (tile + 2 * pad) ** 2
    rows = Span(max(0, top - pad), min(height, bottom + pad), top, bottom)
    least = min(MIN_STRIP_ROWS, tile + 2 * pad)  # bands one input column wide always allow that many

    def strip(n: int) -> int:
        return budget // max(c.size for c in split(width, n, pad, left, right))

    # n bands fit when ceil(length / n) + 2 pad, which shrinks as n grows, leaves strips of
    # `least` rows; windows cut at the image border can make fewer fit too (their widest
    # is not monotone in n), so the counts below that bound are tried first.
    length = right - left
    low, high = 1, length
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if budget // (-(-length // mid) + 2 * pad) >= least else (mid + 1, high)
    n = next((k for k in range(1, min(low, MAX_BAND_SEARCH)) if strip(k) >= least), low)
    return rows, split(width, n, pad, left, right), strip(n)


def tiles(
    height: int, width: int, tile: int, pad: int, region: tuple[int, int, int, int] | None = None, align: int = 1
) -> Iterator[Tile]:
    rows, cols = grid(height, width, tile, pad, region, align)
    for r in rows:
        for c in cols:
            yield Tile(r, c)


def computed_pixels(height: int, width: int, tile: int, pad: int, streams: bool = False) -> float:
    """Input pixels the tiler computes per input pixel of a height x width image (1.0: none
    twice); tile <= 0 runs the whole image at once. `streams`: for a model that streams
    rows (bands, no row computed twice)."""
    if tile <= 0:
        return 1.0
    if streams:
        _, cols, _ = bands(height, width, tile, pad)
        return sum(c.size for c in cols) / width
    rows, cols = grid(height, width, tile, pad)
    return sum(r.size for r in rows) * sum(c.size for c in cols) / (height * width)


def model_pad(model: nn.Module) -> int:
    """Padding a tiled run of `model` needs: its receptive radius in input pixels."""
    radius = getattr(model, "receptive_radius", None)
    if radius is None:
        raise ValueError(f"{type(model).__name__} does not declare receptive_radius; pass pad= explicitly")
    return int(radius)


def measure_radius(
    model: nn.Module, scale: int, channels: int, guess: int = 16, limit: int | None = None
) -> int | None:
    """How far (in input pixels) an output pixel of `model` can see, measured: the model is
    run in float64 with positive weights (every path through it then carries a non-zero
    gradient, so no tap hides behind a cancellation or a dead ReLU) on a positive image, and
    the input pixels with a non-zero gradient of the output block of the centre pixel are
    found. `model` is changed: give a throwaway copy of the architecture (a narrow one does:
    the radius depends on the layers, not their width). With `limit`, a radius of at least
    `limit` gives None (a model that sees further than any tile: attention, global pooling)."""
    with torch.enable_grad():  # callers often run under no_grad (and must build `model` outside inference_mode)
        return _measure_radius(model.double().eval(), scale, channels, guess, limit)


def _measure_radius(model: nn.Module, scale: int, channels: int, guess: int, limit: int | None) -> int | None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
            for name, p in m.named_parameters(recurse=False):
                fan_in = p[0].numel() if p.dim() > 1 else 1
                p.uniform_(0.5, 1.5).div_(fan_in if name == "weight" and p.dim() > 1 else 10)
    size = 2 * guess + 1
    while True:
        x = torch.ones(1, channels, size, size, dtype=torch.float64, requires_grad=True)
        c = size // 2
        model(x)[..., c * scale : (c + 1) * scale, c * scale : (c + 1) * scale].sum().backward()
        rows, cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1)), as_tuple=True)
        radius = int(max((rows - c).abs().max(), (cols - c).abs().max()))
        if limit is not None and radius >= limit:
            return None
        if radius < c:  # the field fits inside the image: this is all of it
            return radius
        size = 2 * size + 1


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
    if streams(model):
        out = _upscale_bands(model, x, scale, tile, pad, batch_size, device, out_device, (top, bottom, left, right))
        return out[0] if squeeze else out

    out: torch.Tensor | None = None
    by_shape: dict[tuple[int, int], list[Tile]] = {}  # only windows of one shape batch together
    for t in tiles(h, w, tile, pad, region, int(getattr(model, "align", 1))):
        by_shape.setdefault((t.rows.size, t.cols.size), []).append(t)
    for i in range(n):
        for group in by_shape.values():
            for start in range(0, len(group), batch_size):
                chunk = group[start : start + batch_size]
                windows = torch.stack(
                    [x[i, :, t.rows.win_start : t.rows.win_stop, t.cols.win_start : t.cols.win_stop] for t in chunk]
                )
                result = model(windows.to(device)).to(out_device)
                if out is None:
                    out = _empty_output(n, result, scale, (top, bottom, left, right), out_device)
                for t, r in zip(chunk, result):
                    y = (t.rows.keep_start - t.rows.win_start) * scale
                    x0 = (t.cols.keep_start - t.cols.win_start) * scale
                    hh = (t.rows.keep_stop - t.rows.keep_start) * scale
                    ww = (t.cols.keep_stop - t.cols.keep_start) * scale
                    r0, c0 = (t.rows.keep_start - top) * scale, (t.cols.keep_start - left) * scale
                    out[i, :, r0 : r0 + hh, c0 : c0 + ww] = r[:, y : y + hh, x0 : x0 + ww]
                del result
    assert out is not None
    return out[0] if squeeze else out


def _empty_output(
    n: int, first: torch.Tensor, scale: int, region: tuple[int, int, int, int], out_device
) -> torch.Tensor:
    """The output of `n` images of `region` at x`scale`, shaped after the model's first result:
    float32 at least (a bf16/fp16 model's pieces are stored without further rounding)."""
    top, bottom, left, right = region
    return torch.empty(
        (n, first.shape[1], (bottom - top) * scale, (right - left) * scale),
        dtype=torch.promote_types(first.dtype, torch.float32),
        device=out_device,
    )


def streams(model: object) -> bool:
    """Whether `model` computes its result strip by strip (stream_rows, see srgan.fast)."""
    return bool(getattr(model, "streams", False)) and hasattr(model, "stream_rows")


def _upscale_bands(
    model,
    x: torch.Tensor,
    scale: int,
    tile: int,
    pad: int,
    batch_size: int,
    device,
    out_device,
    region: tuple[int, int, int, int],
) -> torch.Tensor:
    """upscale_tiled for a model that streams rows: each band of columns is run top to bottom
    a strip at a time, its kept output rows written as they come."""
    n, _, h, w = x.shape
    left = region[2]
    rows, cols, strip = bands(h, w, tile, pad, region)
    # A CPU runs thin strips faster; a GPU gets strips of `batch_size` windows' pixels, the
    # memory and parallelism a batch of windows would have.
    strip = min(strip, CPU_STRIP_ROWS) if torch.device(device).type == "cpu" else strip * batch_size
    keep_start, keep_stop = (rows.keep_start - rows.win_start) * scale, (rows.keep_stop - rows.win_start) * scale
    out: torch.Tensor | None = None
    for i in range(n):
        for c in cols:
            window = x[
                i : i + 1, :, rows.win_start : rows.win_stop, c.win_start : c.win_stop
            ]  # moved a strip at a time
            x0, ww, c0 = (
                (c.keep_start - c.win_start) * scale,
                (c.keep_stop - c.keep_start) * scale,
                (c.keep_start - left) * scale,
            )
            y0 = 0  # the first output row of the window that `part` holds
            for part in model.stream_rows(window, strip):
                part = part.to(out_device)
                if out is None:
                    out = _empty_output(n, part, scale, region, out_device)
                y1 = y0 + part.shape[-2]
                a, b = max(y0, keep_start), min(y1, keep_stop)
                if a < b:
                    out[i, :, a - keep_start : b - keep_start, c0 : c0 + ww] = part[0, :, a - y0 : b - y0, x0 : x0 + ww]
                y0 = y1
                if y0 >= keep_stop:  # the rows below were context only
                    break
    assert out is not None
    return out


@lru_cache(maxsize=64)
def measured_radius(spec, build: Callable[[object], nn.Module]) -> int:
    """`measure_radius` of the architecture a generator spec describes, built by `build` on a
    2-feature copy (the radius depends on the layers, not their width); the caller's RNG is
    left as it was. Cached per (spec, builder)."""
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False):
        narrow = build(replace(spec, num_features=min(spec.num_features, 2), growth=min(getattr(spec, "growth", 2), 2)))
        return measure_radius(narrow, spec.scale, spec.in_channels, guess=2 * spec.num_blocks + 12)
