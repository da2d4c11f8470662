"""Batch upscaling of every image under a prefix, on Ray Data.

    python -m pipeline.upscale --model models:/srgan@champion \\
        --input s3://bucket/scenes/ --output s3://bucket/scenes-x4/

A job (`UpscaleJob`, what `run_upscale` takes) goes: resolve the model once in the driver ->
check the output can take files -> list the inputs and plan an output for each (outputs that
exist are skipped unless --overwrite) -> a pool of Ray actors, each holding the generator,
upscales files whole (pipeline.inference: any format, window by window) -> a manifest row per
input back to the driver (pipeline.manifest). Decoding, inference and encoding happen in the
same actor, so no image travels through the object store.

Resuming: outputs are written whole (S3 upload completion, local temp + rename), so an
output that exists is complete, and a re-run skips it. The exit code is 1 when more inputs
failed than --max-failures allows, 2 for a bad command or model.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import PurePosixPath

from pipeline import cli, formats, storage
from pipeline.errors import DecodeError, UsageError
from pipeline.inference import UpscaleWorker, WorkerSettings
from pipeline.manifest import Manifest, new_row, read_manifest
from pipeline.models import BICUBIC, fetch_generator_bytes
from srgan.generator import SCALES, check_scale
from srgan.precision import PRECISIONS

KILL_AFTER_ENV = "SRGAN_UPSCALE_KILL_AFTER"  # test-only: the driver kills itself after N rows
EXAMPLES = [
    "python -m pipeline.upscale --model models:/srgan@champion --input s3://bucket/scenes/ --output s3://bucket/scenes-x4/",
    "python -m pipeline.upscale --model runs:/<run id> --input data/in --output data/out --bands 3,2,1 --max-failures 10",
]


@dataclass(frozen=True)
class UpscaleJob:
    """One batch job: what to upscale with what, where to, and how."""

    model: str
    input: str
    output: str
    extensions: tuple[str, ...] = formats.EXTENSIONS
    include: tuple[str, ...] = ()
    overwrite: bool = False
    max_failures: int = 0
    bands: tuple[int, ...] | None = None
    tile: int = 256
    batch_tiles: int = 4
    max_pixels: int = 1_000_000
    precision: str = "auto"
    workers: int | None = None
    threads: int | None = None
    gpus_per_worker: float = 1.0
    cpu: bool = False
    scale: int | None = None
    tracking_uri: str | None = None

    def __post_init__(self) -> None:
        least = {"--tile": (self.tile, 0), "--batch-tiles": (self.batch_tiles, 1), "--max-pixels": (self.max_pixels, 1), "--max-failures": (self.max_failures, 0), "--threads": (self.threads, 1), "--workers": (self.workers, 1)}
        for flag, (value, low) in least.items():
            if value is not None and value < low:
                raise UsageError(f"{flag} {value}: give {low} or more")
        if not self.gpus_per_worker > 0:
            raise UsageError(f"--gpus-per-worker {self.gpus_per_worker}: give a share above 0, e.g. 0.5")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision}: use one of {', '.join(PRECISIONS)}")
        if self.bands is not None and (not self.bands or min(self.bands) < 1):
            raise UsageError(f"--bands {self.bands}: band numbers start at 1, e.g. 3,2,1")
        if self.scale is not None:
            check_scale(self.scale)
        if self.model == BICUBIC and self.scale is None:
            raise UsageError(f"--model bicubic needs --scale ({', '.join(map(str, SCALES))})")

    def worker_settings(self, threads: int) -> WorkerSettings:
        return WorkerSettings(self.model, self.tile, self.batch_tiles, self.max_pixels, self.bands, self.precision, threads, self.scale)


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

    def count(self, row: dict) -> None:
        if row["status"] == "done":
            self.done += 1
            self.mpx_in += row["width"] * row["height"] / 1e6
            self.mpx_out += row["out_width"] * row["out_height"] / 1e6
        elif row["status"] == "skipped":
            self.skipped += 1
        else:
            self.failed += 1
            self.failures.append({"key": row["key"], "error": row["error"]})


def output_key(key: str) -> str:
    """The input's relative key, refused when it would leave the output prefix."""
    if not key or key.startswith("/") or any(part in ("..", ".", "") for part in key.split("/")):
        raise DecodeError(f"key {key!r} would escape the output prefix; rename it")
    return PurePosixPath(key).as_posix()


def plan_outputs(job: UpscaleJob, out_root: str) -> tuple[list[dict], list[dict]]:
    """(items to process, rows decided without processing: skipped or refused). `include`:
    shell-style patterns on the key relative to the input; a file must match one of them."""
    in_root = storage.local_or_uri(job.input).rstrip("/")
    files = storage.list_files(in_root, job.extensions)
    if job.include:
        files = [f for f in files if any(fnmatch.fnmatchcase(f.key, pattern) for pattern in job.include)]
        if not files:
            raise UsageError(f"no input under {in_root} matches --include {' '.join(job.include)} (patterns match the key relative to --input, e.g. 'satellite/*' or '*.tif')")
    inside = out_root.startswith(in_root + "/")
    prefix = out_root[len(in_root) + 1 :] + "/" if inside else None
    existing = set()
    if not job.overwrite and storage.exists(out_root):
        existing = {f.key for f in storage.list_files(out_root)}
    todo, decided = [], []
    for f in files:
        if prefix and f.key.startswith(prefix):
            continue  # our own outputs, when the output prefix lies inside the input one
        item = {"key": f.key, "input": f.uri, "output": "", "size": f.size}
        try:
            key = output_key(f.key)
        except DecodeError as exc:
            decided.append(new_row(item, job.model, status="failed", error=str(exc)))
            continue
        item["output"] = storage.join(out_root, key)
        if key in existing:
            decided.append(new_row(item, job.model, status="skipped", error="output exists (--overwrite to redo)"))
        else:
            todo.append(item)
    return todo, decided


def _resources(job: UpscaleJob, cluster: dict) -> tuple[dict, int]:
    """(Ray resources of one actor, number of actors): one per GPU share, else per CPU group."""
    gpus = float(cluster.get("GPU", 0))
    if gpus > 0 and not job.cpu:
        workers = job.workers or max(1, int(gpus / job.gpus_per_worker))
        return {"num_gpus": job.gpus_per_worker, "num_cpus": job.threads or 1}, workers
    cpus = int(cluster.get("CPU", os.cpu_count() or 1))
    threads = job.threads or max(1, min(4, cpus))
    return {"num_cpus": threads}, job.workers or max(1, cpus // threads)


def run_upscale(job: UpscaleJob) -> Summary:
    """Run (or resume) `job`; every input ends as a manifest row."""
    import ray

    from pipeline.cluster import ensure_ray

    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    # Resolve the model once, here: workers get its bytes and need no MLflow access.
    generator_bytes = None
    if job.model != BICUBIC:
        generator_bytes, generator, _ = fetch_generator_bytes(job.model, job.tracking_uri)
        if job.scale and job.scale != generator.scale:
            raise UsageError(f"--scale {job.scale} but {job.model} upscales x{generator.scale}; drop --scale")
    out_root = storage.local_or_uri(job.output).rstrip("/")
    storage.check_destination(out_root, "--output")
    todo, decided = plan_outputs(job, out_root)  # the inputs and --include, before anything is written

    removed = storage.remove_partials(out_root)
    if removed:
        print(f"removed {removed} partial file(s) an interrupted run left under {out_root}", file=sys.stderr)
    previous = {r.get("model") for r in read_manifest(out_root) if r.get("status") == "done"} if storage.exists(out_root) else set()
    if previous - {job.model} and not job.overwrite:
        print(f"warning: outputs under {out_root} were made by {', '.join(sorted(previous - {job.model}))}; existing ones are kept (--overwrite to redo them with {job.model})", file=sys.stderr)

    manifest, summary = Manifest(out_root, run_id), Summary(run_id)
    for row in decided:
        summary.count(row)
        manifest.add(row)
    print(f"upscale {job.input} -> {out_root}: {len(todo) + len(decided)} input(s), {len(todo)} to do, {summary.skipped} already done, {summary.failed} refused; model {job.model}", file=sys.stderr, flush=True)

    kill_after = int(os.environ.get(KILL_AFTER_ENV, "0") or 0)
    if todo:
        ensure_ray()
        started = time.perf_counter()  # Mpx/s of the job, not of Ray's start-up
        resources, workers = _resources(job, ray.cluster_resources())
        settings = job.worker_settings(threads=int(resources["num_cpus"]))
        print(f"{workers} worker(s), each with {resources}; tile {job.tile}, window budget {job.max_pixels} px", file=sys.stderr, flush=True)
        ds = ray.data.from_items(todo, override_num_blocks=min(len(todo), 1000))
        ds = ds.map(UpscaleWorker, fn_constructor_kwargs={"settings": settings, "generator_bytes": generator_bytes}, compute=ray.data.ActorPoolStrategy(size=workers), **resources)
        last_print, seen = time.monotonic(), 0
        try:
            for row in ds.iter_rows():
                row = dict(row)
                seen += 1
                summary.count(row)
                manifest.add(row)
                if row["status"] == "failed":
                    print(f"failed: {row['key']}: {row['error']}", file=sys.stderr, flush=True)
                if kill_after and seen >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)  # test hook: die as a crash would
                if time.monotonic() - last_print > 10:
                    last_print = time.monotonic()
                    rate = summary.mpx_out / (time.perf_counter() - started)
                    print(f"{seen}/{len(todo)} images, {summary.failed} failed, {summary.mpx_out:.1f} Mpx out, {rate:.2f} Mpx/s", file=sys.stderr, flush=True)
        finally:
            summary.seconds = time.perf_counter() - started
            manifest.flush()
    summary.manifest = manifest.finish()
    return summary


def print_summary(summary: Summary) -> None:
    print(
        f"upscaled {summary.done} image(s), {summary.skipped} skipped (done before), {summary.failed} failed; "
        f"{summary.mpx_in:.2f} Mpx in, {summary.mpx_out:.2f} Mpx out in {summary.seconds:.1f} s ({summary.mpx_per_s:.2f} Mpx/s)",
        file=sys.stderr,
    )
    for f in summary.failures[:20]:
        print(f"  failed: {f['key']}: {f['error']}", file=sys.stderr)
    if len(summary.failures) > 20:
        print(f"  ... and {len(summary.failures) - 20} more (see the manifest)", file=sys.stderr)
    print(f"manifest: {summary.manifest}", file=sys.stderr, flush=True)


def _bands(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1-based band numbers separated by commas, e.g. 3,2,1") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: band numbers start at 1, e.g. 3,2,1")
    return values


def build_parser() -> cli.Parser:
    p = cli.Parser("python -m pipeline.upscale", "Upscale every image under a prefix with an SRGAN generator, on Ray Data.", EXAMPLES)
    p.add_argument("--model", required=True, help="models:/<name>@<alias>, runs:/<run id>, a generator .pt / checkpoint folder (local or s3://), or bicubic")
    p.add_argument("--input", required=True, help="s3://bucket/prefix/ or a local folder (recursive)")
    p.add_argument("--output", required=True, help="s3://bucket/prefix/ or a local folder; each output keeps its input's relative key")
    p.add_argument("--ext", action="append", help=f"only these extensions, repeatable (default: {' '.join(formats.EXTENSIONS)})")
    p.add_argument("--include", action="append", metavar="PATTERN", help="only keys (relative to --input) matching this shell-style pattern, e.g. 'satellite/*' or '*.tif', repeatable (default: all)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    p.add_argument("--max-failures", type=cli.non_negative_int, default=0, help="exit 0 despite up to N failed inputs")
    p.add_argument("--bands", type=_bands, help="for images with more bands than the model takes: the 1-based bands it takes (e.g. 3,2,1); the others are upscaled bicubic (default: none)")
    p.add_argument("--tile", type=cli.non_negative_int, default=256, help="input tile size for inference, 0 = whole image/window at once")
    p.add_argument("--batch-tiles", type=cli.positive_int, default=4, help="tiles per forward pass")
    p.add_argument("--max-pixels", type=cli.positive_int, default=1_000_000, help="GeoTIFF window budget in input pixels (1000000: about 1.5 GB per worker for a 4-band x4 model)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="auto: bf16 on GPUs that have it, fp32 otherwise")
    p.add_argument("--workers", type=cli.positive_int, help="actors in the pool (default: one per GPU share / per --threads CPUs)")
    p.add_argument("--threads", type=cli.positive_int, help="CPU threads per actor (default: min(4, CPUs))")
    p.add_argument("--gpus-per-worker", type=cli.positive_float, default=1.0, help="GPU share per actor; 0.5 runs two actors per GPU")
    p.add_argument("--cpu", action="store_true", help="ignore GPUs")
    p.add_argument("--scale", type=int, choices=SCALES, help="scale for --model bicubic (default: the model's own)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI for models:/ and runs:/ (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line on stdout")
    return p


def job_from_args(args) -> UpscaleJob:
    return UpscaleJob(
        model=args.model, input=args.input, output=args.output, extensions=tuple(args.ext) if args.ext else formats.EXTENSIONS,
        include=tuple(args.include or ()), overwrite=args.overwrite, max_failures=args.max_failures, bands=args.bands,
        tile=args.tile, batch_tiles=args.batch_tiles, max_pixels=args.max_pixels, precision=args.precision, workers=args.workers,
        threads=args.threads, gpus_per_worker=args.gpus_per_worker, cpu=args.cpu, scale=args.scale, tracking_uri=args.tracking_uri,
    )


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    job = job_from_args(args)
    summary = run_upscale(job)
    print_summary(summary)
    if args.json:
        print(json.dumps({**asdict(summary), "mpx_per_s": summary.mpx_per_s}), flush=True)
    if summary.failed > job.max_failures:
        print(f"{summary.failed} input(s) failed (more than --max-failures {job.max_failures}); fix or remove them and re-run: finished outputs are kept", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
