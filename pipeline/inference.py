"""Upscale one file, whatever its format: what each worker of the batch job does per input.

The file is opened by its codec (pipeline.formats), read window by window with the model's
context around each window, its bands mapped to the model's channels, upscaled by the tiler,
and written through the codec into a local file that is then stored whole under the output
name. The result is a manifest row, whatever happens: a bad file is a failed row with the
reason, never the end of the job.
"""

from __future__ import annotations

import io
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from pipeline import formats, storage
from pipeline.errors import DecodeError, UserError
from pipeline.manifest import new_row
from pipeline.models import BICUBIC, Upscaler
from srgan.precision import resolve_precision
from srgan.resize import imresize
from srgan.tiling import crop_region
from srgan.weights import load_generator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker needs to know (plain values: shipped to each worker once)."""

    model: str
    tile: int = 256
    batch_tiles: int = 4
    max_pixels: int = 1_000_000
    bands: tuple[int, ...] | None = None
    precision: str = "auto"
    threads: int = 1
    scale: int | None = None  # bicubic only: a model brings its own


@dataclass(frozen=True)
class BandPlan:
    """Which bands of an image go through the model, in groups of the model's channel
    count; `replicate` marks a 1-band image fed to a 3-channel model (output: the mean of
    the 3 outputs); `rest` (alpha, bands not mapped) are upscaled bicubic."""

    groups: tuple[tuple[int, ...], ...]
    rest: tuple[int, ...]
    replicate: bool = False


def plan_bands(bands: int, alpha: bool, channels: int | None, band_map: tuple[int, ...] | None = None) -> BandPlan:
    colour = list(range(bands - int(alpha)))
    if channels is None:  # bicubic: every band alike
        return BandPlan((tuple(range(bands)),), ())
    if band_map and len(colour) > channels:  # the map is for images with more bands than the model takes
        bad = [b for b in band_map if not 1 <= b <= bands]
        if bad:
            raise DecodeError(f"--bands {','.join(map(str, band_map))} names band {bad[0]}, but the image has bands 1-{bands}")
        picked = [b - 1 for b in band_map]
        if channels == 1:
            groups = [(b,) for b in picked]
        elif len(picked) == channels and len(set(picked)) == channels:
            groups = [tuple(picked)]
        else:
            raise DecodeError(f"--bands must name {channels} different bands for this {channels}-channel model, got {','.join(map(str, band_map))}")
    elif len(colour) == channels:
        groups = [tuple(colour)]
    elif channels == 1:
        groups = [(b,) for b in colour]
    elif len(colour) == 1 and channels == 3:
        return BandPlan(((0, 0, 0),), tuple(range(1, bands)), replicate=True)
    else:
        extra = " + alpha" if alpha else ""
        raise DecodeError(f"has {len(colour)} band(s){extra}, the model takes {channels}; pass --bands with {channels} band numbers (1-{bands}) for the model, the others are upscaled bicubic")
    used = {b for g in groups for b in g}
    return BandPlan(tuple(groups), tuple(b for b in range(bands) if b not in used))


def upscale_bands(upscaler: Upscaler, x: torch.Tensor, plan: BandPlan, region=None) -> torch.Tensor:
    """(C, h, w) in [0, 1] -> (C, h*s, w*s): model groups batched through the upscaler, the
    other bands bicubic; the band order of the input. `region` (top, bottom, left, right):
    only that part of x is upscaled, the rest is context."""
    c = x.shape[0]
    top, bottom, left, right = region or (0, x.shape[1], 0, x.shape[2])
    h, w = bottom - top, right - left
    s = upscaler.scale
    batch = torch.stack([x[list(g)] for g in plan.groups])
    result = upscaler(batch, region)
    if len(plan.groups) == 1 and not plan.replicate and list(plan.groups[0]) == list(range(c)):
        return result[0]  # every band through the model: no copy
    out = torch.empty((c, h * s, w * s), dtype=torch.float32)
    if plan.replicate:
        out[0] = result[0].mean(0)
    else:
        for g, r in zip(plan.groups, result):
            out[list(g)] = r
    del result
    if plan.rest:
        out[list(plan.rest)] = crop_region(imresize(x[list(plan.rest)].float(), float(s)).clamp(0, 1), region, s)
    return out


def upscale_array(upscaler: Upscaler, array: np.ndarray, plan: BandPlan, value_range: float | None = None, offset: float = 0.0, region=None) -> np.ndarray:
    """(H, W, C) stored values -> (H*s, W*s, C) of the same dtype (of the region's size when
    `region` is given: see `upscale_bands`); values map to [0, 1] as (v + offset) / range."""
    x = formats.to_unit(array, value_range, offset)
    y = upscale_bands(upscaler, x, plan, region)
    return formats.from_unit(y, array.dtype, value_range, offset)


def window_block(upscaler: Upscaler, max_pixels: int) -> int:
    """Side of a window holding at most `max_pixels` input pixels, in whole tiles (the tiler
    then wastes nothing inside a window)."""
    side = max(16, int(math.sqrt(max_pixels)))
    return max(upscaler.tile, side // upscaler.tile * upscaler.tile) if upscaler.tile > 0 else side


def _upscale_file(item: dict, upscaler: Upscaler, settings: WorkerSettings) -> dict:
    s = upscaler.scale
    suffix = PurePosixPath(item["key"]).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="srgan-upscale-") as tmp:
        source = storage.local_copy(item["input"], Path(tmp) / f"input{suffix}")
        out_path = Path(tmp) / f"output{suffix}"
        with formats.open_raster(source, item["key"]) as raster:
            plan = plan_bands(raster.bands, raster.alpha, upscaler.in_channels, settings.bands)
            declared = upscaler.meta.get("data_range")  # the model's training range wins
            span = float(declared) if declared else raster.value_span
            notes = {"model": upscaler.name, "scale": str(s)}
            if plan.rest:
                notes["bicubic_bands"] = ",".join(str(b + 1) for b in plan.rest)
            windows = 0
            with raster.create(out_path, s, notes) as writer:  # complete only when the loop ends
                for window in raster.windows(window_block(upscaler, settings.max_pixels), upscaler.pad):
                    array, mask = raster.read(window)
                    region = None if window.rows == window.keep_rows and window.cols == window.keep_cols else window.region
                    writer.write(window, upscale_array(upscaler, array, plan, span, raster.value_offset, region), mask)
                    windows += 1
        storage.upload_file(out_path, item["output"])
        return {
            "width": raster.width, "height": raster.height, "bands": raster.bands, "dtype": str(raster.dtype),
            "out_width": raster.width * s, "out_height": raster.height * s, "bytes_out": out_path.stat().st_size, "windows": windows,
        }


def process_file(item: dict, upscaler: Upscaler, settings: WorkerSettings) -> dict:
    """Upscale one input {key, input, output, size} to its output; a manifest row whatever
    happens."""
    started = time.perf_counter()
    try:
        values, status, error = _upscale_file(item, upscaler, settings), "done", ""
    except UserError as exc:  # a bad file, band map, model input or storage path
        values, status, error = {}, "failed", str(exc)
    except Exception as exc:  # an unexpected error on one file must not end the job
        log.exception("upscaling %s failed", item["key"])
        values, status, error = {}, "failed", f"{type(exc).__name__}: {exc}"
    finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return new_row(item, settings.model, status=status, error=error, seconds=round(time.perf_counter() - started, 3), finished_at=finished, **values)


def build_upscaler(settings: WorkerSettings, generator_bytes: bytes | None, device: torch.device) -> Upscaler:
    if generator_bytes is None:
        return Upscaler(name=BICUBIC, scale=int(settings.scale or 4), tile=settings.tile, batch_size=settings.batch_tiles)
    generator, meta = load_generator(io.BytesIO(generator_bytes), map_location=device)
    return Upscaler(
        name=settings.model,
        scale=generator.scale,
        generator=generator,
        meta=meta,
        tile=settings.tile,
        batch_size=settings.batch_tiles,
        precision=resolve_precision(settings.precision, device),
    )


class UpscaleWorker:
    """One worker of the pool: holds the generator, upscales the files it is handed."""

    def __init__(self, settings: WorkerSettings, generator_bytes: bytes | None) -> None:
        torch.set_num_threads(max(1, settings.threads))
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.settings, self.upscaler, self.refused = settings, None, ""
        try:
            self.upscaler = build_upscaler(settings, generator_bytes, device)
        except UserError as exc:  # e.g. bf16 on a GPU without it: every file says why
            self.refused = str(exc)

    def __call__(self, item: dict) -> dict:
        if self.upscaler is None:
            return new_row(item, self.settings.model, error=self.refused)
        return process_file(item, self.upscaler, self.settings)
