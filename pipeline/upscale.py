"""Batch upscaling of every image under a prefix, on Ray Data.

    python -m pipeline.upscale --model models:/srgan@champion \\
        --input s3://bucket/scenes/ --output s3://bucket/scenes-x4/

The way of one input file:

  list (driver; outputs that already exist are skipped unless --overwrite) ->
  an actor of the pool (the generator loaded once per actor, on a GPU when the cluster has
  them) reads the file, decodes it, runs the srgan tiler over it, encodes it in the input's
  own format and writes it under the same relative key below --output, whole ->
  one manifest row back to the driver, which keeps the manifest under the output prefix.

Decoding, inference and encoding happen in the same actor so that no image travels through
the object store; run more actors than GPUs (``--gpus-per-worker 0.5``) to overlap one
actor's I/O with another's inference.

Per format (see pipeline.formats): 8/16-bit PNG, JPEG, BMP and TIFF keep their bit depth and
band count; grayscale goes through a 1- or 3-channel model; alpha is upscaled separately
(bicubic); bands the model does not take (``--bands`` picks those it does) are upscaled
bicubic. GeoTIFFs are read and written window by window (``--max-pixels`` input pixels per
window), so memory stays bounded for any raster size; DICOM slices keep their tags.

Resuming: outputs are written whole (S3 PUT/multipart completion, local temp + rename), so an
output that exists is complete, and a re-run skips it. The manifest,
``<output>/_manifest/runs/<run id>.jsonl`` per run and ``_manifest/manifest.parquet`` (the
latest row per input over all runs), records for every input: status (done, skipped,
failed), output, sizes, seconds and the error. The exit code is 1 when more inputs failed
than ``--max-failures`` allows.
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from pipeline import formats, storage
from pipeline.formats import dicom, geotiff
from pipeline.formats.errors import DecodeError
from pipeline.models import PRECISIONS, ModelRefError, Upscaler, generator_file
from srgan.resize import imresize
from srgan.tiling import crop_region, spans
from srgan.weights import load_generator

log = logging.getLogger(__name__)

EXTENSIONS = formats.IMAGE_EXTENSIONS + formats.DICOM_EXTENSIONS
MANIFEST_DIR = "_manifest"
KILL_AFTER_ENV = "SRGAN_UPSCALE_KILL_AFTER"  # test-only: the driver kills itself after N rows


class JobError(ValueError):
    """A job that cannot start; the message names the bad value and the fix."""


@dataclass(frozen=True)
class JobSettings:
    """What every actor needs to know (plain values: shipped to each actor once)."""

    model: str
    tile: int = 256
    batch_size: int = 4
    max_pixels: int = 1_000_000
    bands: tuple[int, ...] | None = None
    precision: str = "auto"
    threads: int = 1
    scale: int | None = None  # bicubic only


# -- bands -------------------------------------------------------------------------------


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


# -- one file ----------------------------------------------------------------------------


def output_key(key: str) -> str:
    """The input's relative key, refused when it would leave the output prefix."""
    path = PurePosixPath(key)
    if not key or key.startswith("/") or any(part in ("..", ".", "") for part in key.split("/")):
        raise DecodeError(f"key {key!r} would escape the output prefix; rename it")
    return path.as_posix()


def _row(item: dict, settings: JobSettings, **values) -> dict:
    row = {
        "key": item["key"],
        "input": item["input"],
        "output": item["output"],
        "status": "failed",
        "format": PurePosixPath(item["key"]).suffix.lower().lstrip("."),
        "width": 0,
        "height": 0,
        "bands": 0,
        "dtype": "",
        "out_width": 0,
        "out_height": 0,
        "bytes_in": int(item.get("size", 0)),
        "bytes_out": 0,
        "windows": 0,
        "seconds": 0.0,
        "error": "",
        "model": settings.model,
        "finished_at": "",
    }
    row.update(values)
    return row


def _value_range(dtype: np.dtype, meta: dict) -> float | None:
    """The stored value that maps to the model's 1.0: the model's training data_range when it
    has one, else the dtype's maximum (None) for integers and 1.0 for floats."""
    declared = meta.get("data_range")
    if declared:
        return float(declared)
    return None if np.issubdtype(dtype, np.integer) else 1.0


def upscale_array(upscaler: Upscaler, array: np.ndarray, alpha: bool, band_map, value_range=None, offset: float = 0.0, region=None) -> np.ndarray:
    """(H, W, C) array -> (H*s, W*s, C) array of the same dtype (of the region's size when
    `region` is given: see `upscale_bands`)."""
    plan = plan_bands(array.shape[2], alpha, upscaler.in_channels, band_map)
    x = formats.to_unit(array, value_range, offset)
    y = upscale_bands(upscaler, x, plan, region)
    return formats.from_unit(y, array.dtype, value_range, offset)


def _process_plain(data: bytes, item: dict, upscaler: Upscaler, settings: JobSettings) -> dict:
    array, alpha = formats.decode_with_alpha(data, item["key"])
    out = upscale_array(upscaler, array, alpha, settings.bands, _value_range(array.dtype, upscaler.meta))
    encoded = formats.encode(out, item["key"], alpha=alpha)
    storage.write_bytes(item["output"], encoded)
    h, w, c = array.shape
    return {"width": w, "height": h, "bands": c, "dtype": str(array.dtype), "out_width": out.shape[1], "out_height": out.shape[0], "bytes_out": len(encoded), "windows": 1}


def _process_dicom(data: bytes, item: dict, upscaler: Upscaler, settings: JobSettings) -> dict:
    ds, frames, offset, value_range = dicom.decode(data)
    if upscaler.meta.get("data_range"):
        value_range = float(upscaler.meta["data_range"])
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB"):
        raise DecodeError(f"DICOM PhotometricInterpretation {photometric} is not supported; MONOCHROME1/2 and RGB are")
    work = frames.astype(np.int32) if offset else frames
    out = np.stack([upscale_array(upscaler, f, False, settings.bands, value_range, offset) for f in work])
    encoded = dicom.encode(ds, out, upscaler.scale, upscaler.name)
    storage.write_bytes(item["output"], encoded)
    _, h, w, c = frames.shape
    return {"width": w, "height": h, "bands": c, "dtype": str(frames.dtype), "out_width": out.shape[2], "out_height": out.shape[1], "bytes_out": len(encoded), "windows": len(frames)}


def _process_geotiff(path: Path, item: dict, upscaler: Upscaler, settings: JobSettings) -> dict:
    """Window by window: each window of at most max_pixels input pixels (plus the model's
    context) is read, upscaled and written, so memory is bounded by the window."""
    s = upscaler.scale
    with geotiff.Reader(path) as src:
        value_range = _value_range(src.dtype, upscaler.meta)
        side = max(16, int(math.sqrt(settings.max_pixels)))
        # Whole tiles per window: the tiler then wastes nothing inside a window.
        block = max(upscaler.tile, side // upscaler.tile * upscaler.tile) if upscaler.tile > 0 else side
        pad = upscaler.pad
        tags = {"SRGAN_MODEL": upscaler.name, "SRGAN_SCALE": str(s)}
        plan = plan_bands(src.count, src.alpha, upscaler.in_channels, settings.bands)
        if plan.rest:
            tags["SRGAN_BICUBIC_BANDS"] = ",".join(str(b + 1) for b in plan.rest)
        windows = 0
        with tempfile.TemporaryDirectory(prefix="srgan-upscale-") as tmp:
            out_path = Path(tmp) / PurePosixPath(item["key"]).name
            with geotiff.Writer(out_path, src.upscaled_profile(s), src, tags) as dst:
                for rows in spans(src.height, block, pad):
                    for cols in spans(src.width, block, pad):
                        window = src.read((rows.win_start, rows.win_stop), (cols.win_start, cols.win_stop))
                        mask = None
                        if src.nodata is not None:
                            mask = (window == src.nodata).any(axis=2) if not np.isnan(src.nodata) else np.isnan(window).any(axis=2)
                            window = np.where(mask[..., None], np.zeros((), window.dtype), window)
                        # Only the window's own part is upscaled; its margins are context.
                        region = (rows.keep_start - rows.win_start, rows.keep_stop - rows.win_start, cols.keep_start - cols.win_start, cols.keep_stop - cols.win_start)
                        up = upscale_array(upscaler, window, src.alpha, settings.bands, value_range, region=region)
                        if mask is not None:
                            kept = mask[region[0] : region[1], region[2] : region[3]]
                            if kept.any():
                                up[np.repeat(np.repeat(kept, s, axis=0), s, axis=1)] = src.nodata
                        dst.write((rows.keep_start * s, rows.keep_stop * s), (cols.keep_start * s, cols.keep_stop * s), up)
                        windows += 1
            size = out_path.stat().st_size
            storage.upload_file(out_path, item["output"])
        return {"width": src.width, "height": src.height, "bands": src.count, "dtype": str(src.dtype), "out_width": src.width * s, "out_height": src.height * s, "bytes_out": size, "windows": windows}


def process_file(item: dict, upscaler: Upscaler, settings: JobSettings) -> dict:
    """Upscale one input file to its output; a manifest row whatever happens."""
    started = time.perf_counter()
    try:
        ext = PurePosixPath(item["key"]).suffix.lower()
        if ext in (".tif", ".tiff") and geotiff.available():
            with tempfile.TemporaryDirectory(prefix="srgan-in-") as tmp:
                local = storage.local_or_uri(item["input"])
                if storage.is_s3(local):
                    path = Path(tmp) / "input.tif"
                    storage.download(local, path)
                else:
                    path = Path(local)
                if path.stat().st_size == 0:
                    raise DecodeError("empty file (0 bytes)")
                if geotiff.is_georeferenced(path):
                    values = _process_geotiff(path, item, upscaler, settings)
                else:
                    values = _process_plain(path.read_bytes(), item, upscaler, settings)
        else:
            data = storage.read_bytes(item["input"])
            if ext in formats.DICOM_EXTENSIONS:
                if not data:
                    raise DecodeError("empty file (0 bytes)")
                values = _process_dicom(data, item, upscaler, settings)
            else:
                if ext in (".tif", ".tiff") and _looks_geotiff(data):
                    raise DecodeError("is a GeoTIFF and rasterio is not installed: pip install 'srgan-pipeline[geo]'")
                values = _process_plain(data, item, upscaler, settings)
        status, error = "done", ""
    except (DecodeError, ModelRefError, storage.StorageError) as exc:
        values, status, error = {}, "failed", str(exc)
    except Exception as exc:  # an unexpected error on one file must not end the job
        log.exception("upscaling %s failed", item["key"])
        values, status, error = {}, "failed", f"{type(exc).__name__}: {exc}"
    finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return _row(item, settings, status=status, error=error, seconds=round(time.perf_counter() - started, 3), finished_at=finished, **values)


def _looks_geotiff(data: bytes) -> bool:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            return bool(tif.pages[0].is_geotiff)
    except Exception:
        return False


# -- the actor pool ----------------------------------------------------------------------


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def build_upscaler(settings: JobSettings, generator_bytes: bytes | None, device: torch.device) -> Upscaler:
    if generator_bytes is None:
        return Upscaler(name="bicubic", scale=int(settings.scale or 4), tile=settings.tile, batch_size=settings.batch_size)
    generator, meta = load_generator(io.BytesIO(generator_bytes), map_location=device)
    return Upscaler(
        name=settings.model,
        scale=generator.scale,
        generator=generator,
        meta=meta,
        tile=settings.tile,
        batch_size=settings.batch_size,
        precision=resolve_precision(settings.precision, device),
    )


class UpscaleWorker:
    """One actor of the pool: holds the generator, upscales the files it is handed."""

    def __init__(self, settings: JobSettings, generator_bytes: bytes | None):
        torch.set_num_threads(max(1, settings.threads))
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.settings = settings
        self.upscaler = build_upscaler(settings, generator_bytes, device)

    def __call__(self, item: dict) -> dict:
        return process_file(item, self.upscaler, self.settings)


# -- manifest ----------------------------------------------------------------------------


class Manifest:
    """This run's rows, written whole to <output>/_manifest/runs/<run id>.jsonl every
    `every_s` seconds and at the end, when manifest.parquet (the latest row per input over
    every run) is rewritten too."""

    def __init__(self, output_root: str, run_id: str, every_s: float = 10.0):
        self.output_root = output_root
        self.uri = storage.join(output_root, MANIFEST_DIR, "runs", f"{run_id}.jsonl")
        self.rows: list[dict] = []
        self.every_s = every_s
        self._flushed = time.monotonic()

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if time.monotonic() - self._flushed >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            storage.write_bytes(self.uri, "".join(json.dumps(r) + "\n" for r in self.rows).encode())
        self._flushed = time.monotonic()

    def finish(self) -> str:
        self.flush()
        import pandas as pd

        rows = read_manifest(self.output_root)
        latest = pd.DataFrame(rows).drop_duplicates("key", keep="last") if rows else pd.DataFrame(columns=list(_row({"key": "", "input": "", "output": ""}, JobSettings(model=""))))
        uri = storage.join(self.output_root, MANIFEST_DIR, "manifest.parquet")
        buf = io.BytesIO()
        latest.sort_values("key").to_parquet(buf, index=False)
        storage.write_bytes(uri, buf.getvalue())
        return uri


def read_manifest(output_root: str) -> list[dict]:
    """Every row of every run's manifest under `output_root`, oldest run first."""
    root = storage.join(output_root, MANIFEST_DIR, "runs")
    if not storage.exists(root):
        return []
    rows = []
    for f in storage.list_files(root, [".jsonl"]):
        for line in storage.read_bytes(f.uri).decode().splitlines():
            if line.strip():
                row = json.loads(line)
                row["run"] = PurePosixPath(f.key).stem
                rows.append(row)
    return rows


# -- the job -----------------------------------------------------------------------------


@dataclass
class Summary:
    run_id: str
    done: int = 0
    skipped: int = 0
    failed: int = 0
    mpx_in: float = 0.0
    mpx_out: float = 0.0
    seconds: float = 0.0
    manifest: str = ""
    failures: list[dict] = field(default_factory=list)

    @property
    def mpx_per_s(self) -> float:
        return self.mpx_out / self.seconds if self.seconds > 0 else 0.0


def _plan(input_uri: str, output_uri: str, extensions, overwrite: bool, settings: JobSettings, include: tuple[str, ...] = ()) -> tuple[list[dict], list[dict]]:
    """(items to process, rows decided without processing: skipped or refused). `include`:
    shell-style patterns on the key relative to the input; a file must match one of them."""
    in_root, out_root = storage.local_or_uri(input_uri).rstrip("/"), storage.local_or_uri(output_uri).rstrip("/")
    files = storage.list_files(in_root, extensions)
    if include:
        files = [f for f in files if any(fnmatch.fnmatchcase(f.key, pattern) for pattern in include)]
        if not files:
            raise JobError(f"no input under {in_root} matches --include {' '.join(include)} (patterns match the key relative to --input, e.g. 'satellite/*' or '*.tif')")
    inside = out_root.startswith(in_root + "/")
    prefix = out_root[len(in_root) + 1 :] + "/" if inside else None
    existing = set()
    if not overwrite and storage.exists(out_root):
        existing = {f.key for f in storage.list_files(out_root)}
    todo, decided = [], []
    for f in files:
        if prefix and f.key.startswith(prefix):
            continue  # our own outputs, when the output prefix lies inside the input one
        item = {"key": f.key, "input": f.uri, "output": "", "size": f.size}
        try:
            key = output_key(f.key)
        except DecodeError as exc:
            decided.append(_row(item, settings, status="failed", error=str(exc)))
            continue
        item["output"] = storage.join(out_root, key)
        if key in existing:
            decided.append(_row(item, settings, status="skipped", error="output exists (--overwrite to redo)"))
        else:
            todo.append(item)
    return todo, decided


def _resources(args, cluster: dict) -> tuple[dict, int]:
    gpus = float(cluster.get("GPU", 0))
    if gpus > 0 and not args.cpu:
        per = args.gpus_per_worker
        workers = args.workers or max(1, int(gpus / per))
        return {"num_gpus": per, "num_cpus": args.threads or 1}, workers
    cpus = int(cluster.get("CPU", os.cpu_count() or 1))
    threads = args.threads or max(1, min(4, cpus))
    workers = args.workers or max(1, cpus // threads)
    return {"num_cpus": threads}, workers


def run_upscale(args) -> Summary:
    import ray

    from pipeline.cluster import ensure_ray

    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    settings = JobSettings(
        model=args.model,
        tile=args.tile,
        batch_size=args.batch_tiles,
        max_pixels=args.max_pixels,
        bands=tuple(args.bands) if args.bands else None,
        precision=args.precision,
        scale=args.scale,
    )
    # Resolve the model once, here: workers get its bytes and need no MLflow access.
    generator_bytes = None
    if args.model == "bicubic":
        if not args.scale:
            raise JobError("--model bicubic needs --scale (2, 3, 4 or 8)")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            generator_bytes = generator_file(args.model, Path(tmp), args.tracking_uri).read_bytes()
        scale = load_generator(io.BytesIO(generator_bytes))[0].scale
        if args.scale and args.scale != scale:
            raise JobError(f"--scale {args.scale} but {args.model} upscales x{scale}; drop --scale")

    out_root = storage.local_or_uri(args.output).rstrip("/")
    removed = storage.remove_partials(out_root)
    if removed:
        print(f"removed {removed} partial file(s) an interrupted run left under {out_root}", file=sys.stderr)
    previous = {r.get("model") for r in read_manifest(out_root) if r.get("status") == "done"} if storage.exists(out_root) else set()
    if previous - {args.model} and not args.overwrite:
        print(f"warning: outputs under {out_root} were made by {', '.join(sorted(previous - {args.model}))}; existing ones are kept (--overwrite to redo them with {args.model})", file=sys.stderr)

    todo, decided = _plan(args.input, out_root, tuple(args.ext) if args.ext else EXTENSIONS, args.overwrite, settings, tuple(args.include or ()))
    manifest = Manifest(out_root, run_id)
    summary = Summary(run_id)
    for row in decided:
        _count(summary, row)
        manifest.add(row)
    total = len(todo) + len(decided)
    print(f"upscale {args.input} -> {out_root}: {total} input(s), {len(todo)} to do, {summary.skipped} already done, {summary.failed} refused; model {args.model}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    kill_after = int(os.environ.get(KILL_AFTER_ENV, "0") or 0)
    if todo:
        ensure_ray()
        started = time.perf_counter()  # Mpx/s of the job, not of Ray's start-up
        resources, workers = _resources(args, ray.cluster_resources())
        settings = JobSettings(**{**asdict(settings), "threads": int(resources["num_cpus"])})
        print(f"{workers} worker(s), each with {resources}; tile {settings.tile}, window budget {settings.max_pixels} px", file=sys.stderr, flush=True)
        ds = ray.data.from_items(todo, override_num_blocks=min(len(todo), 1000))
        ds = ds.map(UpscaleWorker, fn_constructor_kwargs={"settings": settings, "generator_bytes": generator_bytes}, compute=ray.data.ActorPoolStrategy(size=workers), **resources)
        last_print = time.monotonic()
        seen = 0
        try:
            for row in ds.iter_rows():
                row = dict(row)
                seen += 1
                _count(summary, row)
                manifest.add(row)
                if row["status"] == "failed":
                    print(f"failed: {row['key']}: {row['error']}", file=sys.stderr, flush=True)
                if kill_after and seen >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)  # test hook: die as a crash would
                if time.monotonic() - last_print > 10:
                    last_print = time.monotonic()
                    elapsed = time.perf_counter() - started
                    print(f"{seen}/{len(todo)} images, {summary.failed} failed, {summary.mpx_out:.1f} Mpx out, {summary.mpx_out / elapsed:.2f} Mpx/s", file=sys.stderr, flush=True)
        finally:
            summary.seconds = time.perf_counter() - started
            manifest.flush()
    summary.manifest = manifest.finish()
    return summary


def _count(summary: Summary, row: dict) -> None:
    if row["status"] == "done":
        summary.done += 1
        summary.mpx_in += row["width"] * row["height"] / 1e6
        summary.mpx_out += row["out_width"] * row["out_height"] / 1e6
    elif row["status"] == "skipped":
        summary.skipped += 1
    else:
        summary.failed += 1
        summary.failures.append({"key": row["key"], "error": row["error"]})


def _bands(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bands {text!r}: give 1-based band numbers separated by commas, e.g. 3,2,1") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--bands {text!r}: band numbers start at 1, e.g. 3,2,1")
    return values


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.upscale", description="Upscale every image under a prefix with an SRGAN generator, on Ray Data.")
    p.add_argument("--model", required=True, help="models:/<name>@<alias>, runs:/<run id>, a generator .pt / checkpoint folder (local or s3://), or bicubic")
    p.add_argument("--input", required=True, help="s3://bucket/prefix/ or a local folder (recursive)")
    p.add_argument("--output", required=True, help="s3://bucket/prefix/ or a local folder; each output keeps its input's relative key")
    p.add_argument("--ext", action="append", help=f"only these extensions (repeatable; default {' '.join(EXTENSIONS)})")
    p.add_argument("--include", action="append", metavar="PATTERN", help="only keys (relative to --input) matching this shell-style pattern, e.g. 'satellite/*' or '*.tif' (repeatable; default all)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    p.add_argument("--max-failures", type=_positive, default=0, help="exit 0 despite up to N failed inputs (default 0)")
    p.add_argument("--bands", type=_bands, help="for images with more bands than the model takes: the 1-based bands it takes (e.g. 3,2,1); the others are upscaled bicubic")
    p.add_argument("--tile", type=int, default=256, help="input tile size for inference, 0 = whole image/window at once (default 256)")
    p.add_argument("--batch-tiles", type=int, default=4, help="tiles per forward pass (default 4)")
    p.add_argument("--max-pixels", type=int, default=1_000_000, help="GeoTIFF window budget in input pixels (default 1000000: about 1.5 GB per worker for a 4-band x4 model)")
    p.add_argument("--precision", choices=["auto", *PRECISIONS], default="auto", help="auto: bf16 on GPU, fp32 on CPU")
    p.add_argument("--workers", type=int, help="actors in the pool (default: one per GPU / per --threads CPUs)")
    p.add_argument("--threads", type=int, help="CPU threads per actor (default min(4, CPUs))")
    p.add_argument("--gpus-per-worker", type=float, default=1.0, help="GPU share per actor; 0.5 runs two actors per GPU")
    p.add_argument("--cpu", action="store_true", help="ignore GPUs")
    p.add_argument("--scale", type=int, help="scale for --model bicubic (a model brings its own)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI for models:/ and runs:/ (default MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line on stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = run_upscale(args)
    except (JobError, ModelRefError, storage.StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"upscaled {summary.done} image(s), {summary.skipped} skipped (done before), {summary.failed} failed; "
        f"{summary.mpx_in:.2f} Mpx in, {summary.mpx_out:.2f} Mpx out in {summary.seconds:.1f} s ({summary.mpx_per_s:.2f} Mpx/s)",
        file=sys.stderr,
    )
    for f in summary.failures[:20]:
        print(f"  failed: {f['key']}: {f['error']}", file=sys.stderr)
    if len(summary.failures) > 20:
        print(f"  ... and {len(summary.failures) - 20} more (see the manifest)", file=sys.stderr)
    print(f"manifest: {summary.manifest}", file=sys.stderr)
    if args.json:
        print(json.dumps({**asdict(summary), "mpx_per_s": summary.mpx_per_s}), flush=True)
    if summary.failed > args.max_failures:
        print(f"{summary.failed} input(s) failed (more than --max-failures {args.max_failures}); fix or remove them and re-run: finished outputs are kept", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
