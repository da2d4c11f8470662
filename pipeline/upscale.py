"""Batch upscaling of every image under a prefix, on Ray Data.

    python -m pipeline.upscale --model models:/srgan@champion \\
        --input s3://bucket/scenes/ --output s3://bucket/scenes-x4/

A job (`UpscaleJob`, what `run_upscale` takes) goes: resolve the model once in the driver ->
refuse an output that overlaps the input or cannot take files -> list the inputs and plan an
output for each -> record the run and its model identity -> a worker holding the generator
upscales files whole (pipeline.inference: any format, window by window), in this process or
in a pool of Ray actors (pipeline.executors, --executor) -> a manifest row per input back to
the driver (pipeline.manifest). Decoding, inference and encoding happen in the same worker,
so no image travels through Ray's object store.

The user's data is never changed: the input is never written (an overlapping output is
refused), outputs appear whole or not at all (S3 upload completion, local temp + rename),
links never lead outside the two folders, values are never clipped to fit a range, and only
this job's own temporary files are removed. Re-running is idempotent per model: an output
that exists counts as done only when the manifest says the same model (checksum), scale and
settings made it; one made otherwise stops the job (--overwrite redoes it). The exit code is
1 when more inputs failed than --max-failures allows, 2 for a bad command or model.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import signal
import sys
import time
from dataclasses import asdict

from pipeline import cli, formats
from pipeline.errors import StorageError, UsageError
from pipeline.io import s3, storage
from pipeline.io.ledger import new_run_id
from pipeline.models.reference import BICUBIC, fetch_generator_bytes
from pipeline.upscaling import executors
from pipeline.upscaling import manifest as records
from pipeline.upscaling.job import UpscaleJob
from pipeline.upscaling.manifest import MANIFEST_DIR, Manifest, Summary, WorkItem
from pipeline.upscaling.one_file import WINDOW_PIXELS
from pipeline.upscaling.outputs import output_key, plan_outputs  # noqa: F401  (output_key: part of this verb's API)
from srgan.generator import SCALES
from srgan.precision import PRECISIONS

KILL_AFTER_ENV = "SRGAN_UPSCALE_KILL_AFTER"  # test-only: the driver kills itself after N rows
EXAMPLES = [
    "python -m pipeline.upscale --model models:/srgan@champion --input s3://bucket/scenes/ --output s3://bucket/scenes-x4/",
    "python -m pipeline.upscale --model runs:/<run id> --input data/in --output data/out --bands 3,2,1 --max-failures 10",
    "python -m pipeline.upscale --model generator.pt --input data/float-scenes --output data/x4 --value-range stats",
]


def run_upscale(job: UpscaleJob) -> Summary:
    """Run (or resume) `job`; every input ends as a manifest row."""
    run_id = new_run_id()
    s3.set_retry_s(job.s3_retry_s)
    # Resolve the model once, here: workers get its bytes and need no MLflow access.
    generator_bytes, scale, model_id = None, job.scale, BICUBIC
    if job.model != BICUBIC:
        generator_bytes, generator, _ = fetch_generator_bytes(job.model, job.tracking_uri)
        if job.scale and job.scale != generator.scale:
            raise UsageError(
                f"`scale` {job.scale} but {job.model} upscales x{generator.scale}; drop `scale`", param="scale"
            )
        scale, model_id = generator.scale, hashlib.sha256(generator_bytes).hexdigest()[:16]
    ident = records.identity(job.model, model_id, scale, job.pixel_settings(scale))
    in_root = storage.local_or_uri(job.input).rstrip("/")
    out_root = storage.local_or_uri(job.output).rstrip("/")
    storage.check_writable(out_root, "`output`", folder=True)
    storage.check_inside(out_root, storage.join(out_root, MANIFEST_DIR, "runs", "x"), "output")
    earlier_runs = records.recorded_runs(out_root)
    records.read_manifest(out_root)  # a damaged manifest stops the job here, before any work (also with overwrite)
    todo, decided = plan_outputs(
        job, out_root, ident, earlier_runs
    )  # inputs, --include and earlier outputs, before anything is written

    manifest, summary = Manifest(out_root, run_id), Summary(run_id)
    manifest.start(ident)
    removed = storage.remove_partials(out_root, set(earlier_runs))
    if removed:
        print(
            f"removed {removed} partial file(s) an interrupted run of this job left under {out_root}", file=sys.stderr
        )
    for row in decided:
        summary.count(row)
        manifest.add(row)
    print(
        f"upscale {job.input} -> {out_root}: {len(todo) + len(decided)} input(s), {len(todo)} to do, {summary.skipped} already done, {summary.failed} refused; model {job.model} (sha256 {model_id})",
        file=sys.stderr,
        flush=True,
    )

    kill_after = int(os.environ.get(KILL_AFTER_ENV, "0") or 0)
    if todo:
        rows = _rows(job, todo, run_id, ident, in_root, out_root, generator_bytes)
        started = time.perf_counter()  # Mpx/s of the job, not of Ray's start-up
        last_print, seen, recorded, outage = time.monotonic(), 0, set(), ""
        try:
            for row in rows:
                if row.key in recorded:  # a file redone after a lost worker: recorded once
                    continue
                recorded.add(row.key)
                seen += 1
                summary.count(row)
                manifest.add(row)
                if row.status == "failed":
                    print(f"failed: {row.key}: {as_flags(row.error)}", file=sys.stderr, flush=True)
                    if s3.ENDPOINT_DOWN in row.error:  # every file after it would wait as long and fail the same way
                        outage = row.error
                        break
                if kill_after and seen >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)  # test hook: die as a crash would
                if time.monotonic() - last_print > 10:
                    last_print = time.monotonic()
                    rate = summary.mpx_out / (time.perf_counter() - started)
                    print(
                        f"{seen}/{len(todo)} images, {summary.failed} failed, {summary.mpx_out:.1f} Mpx out, {rate:.2f} Mpx/s",
                        file=sys.stderr,
                        flush=True,
                    )
        except StorageError as exc:  # the manifest's own writes met the outage
            if s3.ENDPOINT_DOWN not in str(exc):
                raise
            outage = str(exc)
        finally:
            summary.seconds = time.perf_counter() - started
            if not outage:
                manifest.flush()
        if outage:
            raise StorageError(
                f"{outage}; the job stopped: the {summary.done} output(s) written before are kept and a re-run with the same "
                f"model and settings skips them; {len(todo) - summary.done} input(s) were not done: re-run when the endpoint answers"
            )
        # A worker lost mid-write (a killed process, a lost node) leaves its temporary file;
        # its input was redone by another, so what is left of this run's is garbage now.
        storage.remove_partials(out_root, {run_id})
    summary.manifest = manifest.finish()
    return summary


def _rows(
    job: UpscaleJob,
    todo: list[WorkItem],
    run_id: str,
    ident: dict,
    in_root: str,
    out_root: str,
    generator_bytes: bytes | None,
):
    """The rows of `todo` from the executor the job runs on (pipeline.executors), which it names."""
    executor, why = executors.choose(job.executor, in_root, todo)
    where = f"tile {job.tile}, window {job.window_pixels} px, images decoded whole up to {job.max_pixels} px"
    if executor == "local":
        threads = job.threads or executors.available_cpus()
        print(
            f"executor local ({as_flags(why)}): in this process, {threads} CPU thread(s) or the GPU; {where}",
            file=sys.stderr,
            flush=True,
        )
        return executors.run_local(
            todo, job.worker_settings(threads, run_id, ident, in_root, out_root), generator_bytes
        )
    import ray

    from pipeline.cluster import ensure_ray

    ensure_ray(dashboard=False)
    resources, workers = executors.ray_resources(
        ray.cluster_resources(), job.gpus_per_worker, job.threads, job.workers, job.cpu
    )
    print(
        f"executor ray ({as_flags(why)}): {workers} worker(s), each with {resources}; {where}",
        file=sys.stderr,
        flush=True,
    )
    return executors.run_ray(
        todo,
        job.worker_settings(int(resources["num_cpus"]), run_id, ident, in_root, out_root),
        generator_bytes,
        resources,
        workers,
    )


def print_summary(summary: Summary) -> None:
    print(
        f"upscaled {summary.done} image(s), {summary.skipped} skipped (done before), {summary.failed} failed; "
        f"{summary.mpx_in:.2f} Mpx in, {summary.mpx_out:.2f} Mpx out in {summary.seconds:.1f} s ({summary.mpx_per_s:.2f} Mpx/s)",
        file=sys.stderr,
    )
    cli.print_first([f"failed: {f['key']}: {as_flags(f['error'])}" for f in summary.failures])
    print(f"manifest: {summary.manifest}", file=sys.stderr, flush=True)


def as_flags(text: str) -> str:
    """A library message (a manifest row's error, the executor's reason), which names settings
    as parameters (`bands`), with this command's flags instead (--bands)."""
    return cli.with_flags(text, _flag_names())


@functools.cache
def _flag_names() -> dict[str, str]:
    return cli.flag_names(build_parser(), extensions="--ext")


def _bands(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give 1-based band numbers separated by commas, e.g. 3,2,1"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: band numbers start at 1, e.g. 3,2,1")
    return values


def _value_range(text: str) -> str | tuple[float, float]:
    if text in ("auto", "stats"):
        return text
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give auto, stats or LOW,HIGH, e.g. -2,2 or 0,4095") from None
    if not low < high:
        raise argparse.ArgumentTypeError(f"{text!r}: LOW must be below HIGH")
    return low, high


def build_parser() -> cli.Parser:
    p = cli.Parser(
        "python -m pipeline.upscale",
        "Upscale every image under a prefix with an SRGAN generator, on Ray Data.",
        EXAMPLES,
    )
    p.add_argument(
        "--model",
        required=True,
        help="models:/<name>@<alias>, runs:/<run id>, a model file (.pt, .pth, .ckpt, .safetensors, .onnx: recognised by its keys) or checkpoint folder (local or s3://), or bicubic",
    )
    p.add_argument("--input", required=True, help="s3://bucket/prefix/ or a local folder (recursive)")
    p.add_argument(
        "--output",
        required=True,
        help="s3://bucket/prefix/ or a local folder; each output keeps its input's relative key",
    )
    p.add_argument(
        "--ext", action="append", help=f"only these extensions, repeatable (default: {' '.join(formats.EXTENSIONS)})"
    )
    p.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="only keys (relative to --input) matching this shell-style pattern, e.g. 'satellite/*' or '*.tif', repeatable (default: all)",
    )
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    p.add_argument("--max-failures", type=cli.non_negative_int, default=0, help="exit 0 despite up to N failed inputs")
    p.add_argument(
        "--bands",
        type=_bands,
        help="for images with more bands than the model takes: the 1-based bands it takes (e.g. 3,2,1); the others are upscaled bicubic (default: none)",
    )
    p.add_argument(
        "--tile",
        type=cli.non_negative_int,
        default=256,
        help="input tile size for inference, 0 = whole image/window at once",
    )
    p.add_argument(
        "--batch-tiles",
        type=cli.positive_int,
        help="tiles per forward pass (default: 4 on a GPU, 1 on a CPU, where batching gains nothing and multiplies memory)",
    )
    p.add_argument(
        "--value-range",
        type=_value_range,
        default="auto",
        metavar="auto|stats|LOW,HIGH",
        help="stored values that become the model's 0..1, mapped back after: auto = the model's data_range, else the integer type's range (signed ones from their minimum) or DICOM's BitsStored, and [0, 1] for floats; stats = each file's own min and max; LOW,HIGH = these. A value outside fails the file, never clipped; the range goes into the manifest and TIFF/GeoTIFF metadata",
    )
    p.add_argument(
        "--max-pixels",
        type=cli.positive_int,
        default=formats.MAX_PIXELS,
        help="largest PNG/JPEG/BMP/TIFF/DICOM image (all frames) decoded whole, checked from the header before any pixel is allocated; larger ones fail with the reason; GeoTIFFs are read by windows and never refused",
    )
    p.add_argument(
        "--window-pixels",
        type=cli.positive_int,
        default=WINDOW_PIXELS,
        help="input pixels upscaled at once, every format; memory per worker grows with it (the default holds a 4-band x4 window's output in 64 MB of float32)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: 8-bit files in bf16 where the device computes it natively (GPUs with bf16, CPUs with AVX512-BF16 or AMX), 16-bit and float files in fp32",
    )
    p.add_argument(
        "--workers", type=cli.positive_int, help="actors in the pool (default: one per GPU share / per --threads CPUs)"
    )
    p.add_argument("--threads", type=cli.positive_int, help="CPU threads per actor (default: min(4, CPUs))")
    p.add_argument(
        "--gpus-per-worker",
        type=cli.positive_float,
        default=1.0,
        help="GPU share per actor; 0.5 runs two actors per GPU",
    )
    p.add_argument("--cpu", action="store_true", help="ignore GPUs")
    p.add_argument(
        "--s3-retry-s",
        type=cli.positive_float,
        default=s3.DEFAULT_RETRY_S,
        help="how long an S3 read or write is retried, with backoff, while the endpoint does not answer; then the file fails naming the endpoint",
    )
    p.add_argument(
        "--executor",
        choices=executors.EXECUTORS,
        default="auto",
        help="local: in this process; ray: a Ray Data actor pool; auto: local for a local input of at most 256 MiB when no Ray cluster is configured (RAY_ADDRESS), else ray",
    )
    p.add_argument("--scale", type=int, choices=SCALES, help="scale for --model bicubic (default: the model's own)")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI for models:/ and runs:/ (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line on stdout")
    return p


def job_from_args(args) -> UpscaleJob:
    return UpscaleJob(
        model=args.model,
        input=args.input,
        output=args.output,
        extensions=tuple(args.ext) if args.ext else formats.EXTENSIONS,
        include=tuple(args.include or ()),
        overwrite=args.overwrite,
        max_failures=args.max_failures,
        bands=args.bands,
        tile=args.tile,
        batch_tiles=args.batch_tiles,
        window_pixels=args.window_pixels,
        max_pixels=args.max_pixels,
        value_range=args.value_range,
        precision=args.precision,
        workers=args.workers,
        threads=args.threads,
        gpus_per_worker=args.gpus_per_worker,
        cpu=args.cpu,
        scale=args.scale,
        tracking_uri=args.tracking_uri,
        executor=args.executor,
        s3_retry_s=args.s3_retry_s,
    )


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with cli.naming_flags(parser, extensions="--ext"):
        job = job_from_args(args)
        summary = run_upscale(job)
    print_summary(summary)
    if args.json:
        print(json.dumps({**asdict(summary), "mpx_per_s": summary.mpx_per_s}), flush=True)
    if summary.failed > job.max_failures:
        print(
            f"{summary.failed} input(s) failed (more than --max-failures {job.max_failures}); fix or remove them and re-run: finished outputs are kept",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
