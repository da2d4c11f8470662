"""Upscale one file, whatever its format: what each worker of the batch job does per input.

The file is opened by its codec (pipeline.formats; formats decoded whole are refused over
the pixel limit from their header), read window by window with the model's context around
each window, its bands mapped to the model's channels (in the colour order the file
declares), its values mapped to [0, 1] by a stated range and checked against it (never
clipped), upscaled by the tiler, mapped back, and written through the codec into a local
file that is then stored whole under the output name. Reads and writes stay inside the job's
folders (symbolic links are followed only within them). The result is a manifest row,
whatever happens: a bad file is a failed row with the reason, never the end of the job.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from pipeline import formats
from pipeline.data.reader import Range, check_values, declared_range, from_unit, range_rule, to_unit
from pipeline.errors import DecodeError, UserError
from pipeline.io import s3, storage
from pipeline.models.reference import BICUBIC, Upscaler, pick_device, read_generator
from pipeline.upscaling.manifest import ManifestRow, WorkItem, new_row
from srgan.precision import resolve_inference_precision
from srgan.resize import imresize
from srgan.tiling import crop_region

log = logging.getLogger(__name__)


WINDOW_PIXELS = 512 * 512  # default window: a 4-band x4 output window is 64 MB in float32


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker needs to know (plain values: shipped to each worker once)."""

    model: str
    tile: int = 256
    batch_tiles: int | None = None  # None: 4 on a GPU, 1 on a CPU (batching gains nothing there and multiplies memory)
    window_pixels: int = WINDOW_PIXELS  # input pixels upscaled at once (memory per worker)
    max_pixels: int = formats.MAX_PIXELS  # largest image decoded whole (GeoTIFF: windowed, any size)
    bands: tuple[int, ...] | None = None
    value_range: str | tuple[float, float] = "auto"  # or "stats", or (low, high)
    precision: str = "auto"
    threads: int = 1
    scale: int | None = None  # bicubic only: a model brings its own
    run_id: str = "write"  # names this job's temporary files
    input_root: str = ""  # reads and writes must stay inside these
    output_root: str = ""
    identity: dict = field(default_factory=dict)  # the manifest fields naming model and settings
    s3_retry_s: float = s3.DEFAULT_RETRY_S  # how long S3 calls retry while the endpoint does not answer


@dataclass(frozen=True)
class BandPlan:
    """Which bands of an image go through the model, in groups of the model's channel
    count; `replicate` marks a 1-band image fed to a 3-channel model (output: the mean of
    the 3 outputs); `rest` (alpha, bands not mapped) are upscaled bicubic."""

    groups: tuple[tuple[int, ...], ...]
    rest: tuple[int, ...]
    replicate: bool = False


def declared_rgb(colours: tuple[str, ...]) -> tuple[int, int, int] | None:
    """The bands a file declares red, green and blue (0-based, in that order), if it does."""
    found = [[i for i, c in enumerate(colours) if c == name] for name in ("red", "green", "blue")]
    return tuple(f[0] for f in found) if all(len(f) == 1 for f in found) else None


def plan_bands(
    bands: int,
    alpha: bool,
    channels: int | None,
    band_map: tuple[int, ...] | None = None,
    colours: tuple[str, ...] = (),
) -> BandPlan:
    """`colours`: each band's colour as the file declares it; an RGB model gets a file's
    three colour bands in red, green, blue order whatever order they are stored in."""
    colour = list(range(bands - int(alpha)))
    if channels is None:  # bicubic: every band alike
        return BandPlan((tuple(range(bands)),), ())
    rgb = declared_rgb(colours) if channels == 3 and len(colour) == 3 else None
    if band_map and len(colour) > channels:  # the map is for images with more bands than the model takes
        bad = [b for b in band_map if not 1 <= b <= bands]
        if bad:
            raise DecodeError(
                f"`bands` {','.join(map(str, band_map))} names band {bad[0]}, but the image has bands 1-{bands}"
            )
        picked = [b - 1 for b in band_map]
        if channels == 1:
            groups = [(b,) for b in picked]
        elif len(picked) == channels and len(set(picked)) == channels:
            groups = [tuple(picked)]
        else:
            raise DecodeError(
                f"`bands` must name {channels} different bands for this {channels}-channel model, got {','.join(map(str, band_map))}"
            )
    elif rgb is not None:
        groups = [rgb]
    elif len(colour) == channels:
        groups = [tuple(colour)]
    elif channels == 1:
        groups = [(b,) for b in colour]
    elif len(colour) == 1 and channels == 3:
        return BandPlan(((0, 0, 0),), tuple(range(1, bands)), replicate=True)
    else:
        extra = " + alpha" if alpha else ""
        raise DecodeError(
            f"has {len(colour)} band(s){extra}, the model takes {channels}; give `bands` {channels} band numbers (1-{bands}) for the model, the others are upscaled bicubic"
        )
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


def upscale_array(
    upscaler: Upscaler,
    array: np.ndarray,
    plan: BandPlan,
    value_range: float | None = None,
    offset: float = 0.0,
    region=None,
) -> np.ndarray:
    """(H, W, C) stored values -> (H*s, W*s, C) of the same dtype (of the region's size when
    `region` is given: see `upscale_bands`); values map to [0, 1] as (v + offset) / range."""
    x = to_unit(array, value_range, offset)
    y = upscale_bands(upscaler, x, plan, region)
    return from_unit(y, array.dtype, value_range, offset)


def window_block(upscaler: Upscaler, window_pixels: int) -> int:
    """Side of a window holding at most `window_pixels` input pixels, a multiple of 256 when
    it can be (windows of a tiled output format then fill whole 256 px blocks of it at any
    scale, so no block is written twice)."""
    side = max(16, int(math.sqrt(window_pixels)))
    return side // 256 * 256 if side >= 256 else side


def _valid(array: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return array if mask is None else array[~mask]


def measured_range(raster: formats.Raster, block: int) -> tuple[float, float]:
    """(min, max) of the raster's stored values, no-data excluded (one read pass)."""
    low, high = np.inf, -np.inf
    anything = Range(-np.inf, np.inf, "")
    for window in raster.windows(block, 0):
        array, mask = raster.read(window)
        values = array if mask is None else array[~mask]
        if values.size:
            check_values(values, None, anything)
            low, high = min(low, float(values.min())), max(high, float(values.max()))
    if low > high:
        raise DecodeError("holds no data (every pixel is no-data)")
    return (low, high) if high > low else (low, low + 1.0)


RANGE_HINT = "set `value_range` to stats (each file's own min and max) or LOW,HIGH"


def value_range(
    raster: formats.Raster, setting: str | tuple[float, float], model_range: float | None, block: int
) -> Range:
    """The range stored values are read with (pipeline.data.reader's one rule): `setting`,
    else the model's data_range, else the file's declaration, else its dtype's."""
    if isinstance(setting, tuple):
        return range_rule(raster.dtype, explicit=setting, hint=RANGE_HINT, explicit_name="`value_range`")
    if setting == "stats":
        measured = measured_range(raster, block)
        return range_rule(raster.dtype, explicit=measured, hint=RANGE_HINT, explicit_name="the file's min and max")
    return range_rule(raster.dtype, declared_range(raster), model_range=model_range, hint=RANGE_HINT)


def file_precision(upscaler: Upscaler, requested: str, dtype: np.dtype) -> Upscaler:
    """The upscaler to run a file of `dtype` with: `precision` auto computes 8-bit files in
    bf16 where the device computes it natively (GPUs with bf16, CPUs with AVX512-BF16 or
    AMX), everything finer (16-bit, float) in fp32. Measured on an SRResNet-16 x4
    (benchmarks/precision.py): bf16 moves 8-bit outputs by at most one level, 16-bit ones
    by over a hundred units."""
    if requested != "auto" or upscaler.precision == "fp32" or np.dtype(dtype) == np.uint8:
        return upscaler
    return replace(upscaler, precision="fp32")


def _upscale_file(item: WorkItem, upscaler: Upscaler, settings: WorkerSettings) -> dict:
    s = upscaler.scale
    suffix = PurePosixPath(item.key).suffix.lower()
    if settings.input_root:
        storage.check_inside(settings.input_root, item.input, "input")
    if settings.output_root:
        storage.check_inside(settings.output_root, item.output, "output")
    with tempfile.TemporaryDirectory(prefix="srgan-upscale-") as tmp:
        source = storage.local_copy(item.input, Path(tmp) / f"input{suffix}")
        out_path = Path(tmp) / f"output{suffix}"
        with formats.open_raster(source, item.key, settings.max_pixels) as raster:
            upscaler = file_precision(upscaler, settings.precision, raster.dtype)
            plan = plan_bands(raster.bands, raster.alpha, upscaler.in_channels, settings.bands, raster.colours)
            block = window_block(upscaler, settings.window_pixels)
            used = value_range(raster, settings.value_range, upscaler.data_range, block)
            low, high = used.low, used.high
            notes = {"model": upscaler.name, "scale": str(s), "value_range": f"{low:g},{high:g}"}
            model_bands = ",".join(str(b + 1) for g in plan.groups for b in g)
            if plan.groups[0] != tuple(range(len(plan.groups[0]))) and not plan.replicate:
                notes["model_bands"] = model_bands
            if plan.rest:
                notes["bicubic_bands"] = ",".join(str(b + 1) for b in plan.rest)
            windows = 0
            with raster.create(out_path, s, notes) as writer:  # complete only when the loop ends
                for window in raster.windows(block, upscaler.pad):
                    array, mask = raster.read(window)
                    check_values(array, mask, used, RANGE_HINT)
                    region = (
                        None if window.rows == window.keep_rows and window.cols == window.keep_cols else window.region
                    )
                    writer.write(window, upscale_array(upscaler, array, plan, high - low, -low, region), mask)
                    windows += 1
        storage.upload_file(out_path, item.output, settings.run_id)
        return {
            "width": raster.width,
            "height": raster.height,
            "bands": raster.bands,
            "dtype": str(raster.dtype),
            "out_width": raster.width * s,
            "out_height": raster.height * s,
            "bytes_out": out_path.stat().st_size,
            "windows": windows,
            "value_range": notes["value_range"],
            "model_bands": notes.get("model_bands", ""),
        }


def process_file(item: WorkItem, upscaler: Upscaler, settings: WorkerSettings) -> ManifestRow:
    """Upscale one input to its output; a manifest row whatever
    happens."""
    started = time.perf_counter()
    try:
        values, status, error = _upscale_file(item, upscaler, settings), "done", ""
    except UserError as exc:  # a bad file, band map, model input or storage path
        values, status, error = {}, "failed", str(exc)
    except Exception as exc:  # an unexpected error on one file must not end the job
        log.exception("upscaling %s failed", item.key)
        values, status, error = {}, "failed", f"{type(exc).__name__}: {exc}"
    finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return new_row(
        item,
        settings.identity or {"model": settings.model},
        status=status,
        error=error,
        seconds=round(time.perf_counter() - started, 3),
        finished_at=finished,
        **values,
    )


def build_upscaler(settings: WorkerSettings, generator_bytes: bytes | None, device: torch.device) -> Upscaler:
    batch = settings.batch_tiles or (4 if device.type == "cuda" else 1)
    if generator_bytes is None:
        return Upscaler(name=BICUBIC, scale=int(settings.scale or 4), tile=settings.tile, batch_size=batch)
    generator, meta = read_generator(generator_bytes, settings.model, device, settings.threads)
    onnx = not isinstance(generator, torch.nn.Module)  # an ONNX export runs as exported, in fp32
    return Upscaler(
        name=settings.model,
        scale=generator.scale,
        generator=generator,
        meta=meta,
        tile=settings.tile,
        batch_size=batch,
        precision="fp32" if onnx else resolve_inference_precision(settings.precision, device),
    )


class UpscaleWorker:
    """One worker of the pool: holds the generator, upscales the files it is handed."""

    def __init__(self, settings: WorkerSettings, generator_bytes: bytes | None) -> None:
        torch.set_num_threads(max(1, settings.threads))
        s3.set_retry_s(settings.s3_retry_s)
        device = pick_device()
        self.settings, self.upscaler, self.refused = settings, None, ""
        try:
            self.upscaler = build_upscaler(settings, generator_bytes, device)
        except UserError as exc:  # e.g. bf16 on a GPU without it: every file says why
            self.refused = str(exc)

    def __call__(self, values: dict) -> dict:
        """The row of one input, both as the plain dicts Ray Data carries."""
        item = WorkItem.from_dict(values)
        if self.upscaler is None:
            return new_row(item, self.settings.identity or {"model": self.settings.model}, error=self.refused).to_dict()
        return process_file(item, self.upscaler, self.settings).to_dict()
