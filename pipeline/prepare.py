"""Prepare a folder or prefix of HR images for training at scale, on Ray Data.

    python -m pipeline.prepare --input s3://bucket/DIV2K_train_HR/ --output s3://bucket/DIV2K_sub/ --sub-images 480 --step 240

Every image is read and decoded once with the checks training applies (pipeline.data.ImageSpec);
with --sub-images it is cut into overlapping square sub-images as BasicSR's
extract_subimages.py cuts DIV2K (a window every --step pixels, plus one flush with the far edge),
so that a training read decodes a small file, not a 2K image, for its few patches. A manifest
(pipeline.datasets) lists the usable images or sub-images and the bad inputs with their reasons;
training on the output folder takes its file list from it and does not scan.

Resume-safe: outputs appear whole (temp + rename locally, completed uploads on S3); each source's
result is recorded under _prepared/runs/ after its outputs are written, so a re-run with the same
arguments skips the sources recorded with all outputs present and redoes the rest. Other
arguments against a prepared output, an output holding other files, or an output overlapping
the input are refused (exit 2). Exit 1 when some sources could not be read or written.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath

import numpy as np

from pipeline import cli, formats
from pipeline.data.batches import ImageSpec
from pipeline.data.prepared import (
    SETTINGS,
    PrepareRecord,
    job_id,
    ledger_folder,
    prepared_uri,
    read_records,
    remove_manifest,
    write_manifest,
)
from pipeline.data.reader import Range, read_image
from pipeline.errors import DecodeError, StorageError, UsageError
from pipeline.formats import png_tiff
from pipeline.io import ledger, storage
from pipeline.io.ledger import Ledger, new_run_id
from pipeline.io.redact import redact_uri

KILL_AFTER_ENV = "SRGAN_PREPARE_KILL_AFTER"  # test-only: the driver kills itself after N recorded sources
EXAMPLES = [
    "python -m pipeline.prepare --input s3://bucket/DIV2K_train_HR/ --output s3://bucket/DIV2K_train_HR_sub/ --sub-images 480 --step 240",
    "python -m pipeline.prepare --input data/hr --output data/hr-checked      # validate and list only",
    "python -m pipeline.train --config configs/srgan_x4.yaml --set data.train=s3://bucket/DIV2K_train_HR_sub/",
]


@dataclass(frozen=True)
class PrepareJob:
    """What to prepare, where to, and how."""

    input: str
    output: str
    sub_images: int | None = None
    step: int | None = None  # default: half of sub_images, as BasicSR's DIV2K settings
    channels: int = 3
    min_size: int = 1
    data_range: float | None = None
    extensions: tuple[str, ...] = formats.EXTENSIONS
    cpus_per_task: float = 0.5

    def __post_init__(self) -> None:
        if self.step is not None and not self.sub_images:
            raise UsageError(f"`step` {self.step} needs `sub_images` SIZE (the step is between sub-images)")
        if self.sub_images and self.step is None:
            object.__setattr__(self, "step", max(1, self.sub_images // 2))
        if self.sub_images and self.sub_images < self.min_size:
            raise UsageError(
                f"`sub_images` {self.sub_images} is below `min_size` {self.min_size}: every sub-image would be too small; raise `sub_images`"
            )
        if storage.overlaps(self.input, self.output):
            raise UsageError(
                f"`output` {self.output} overlaps `input` {self.input} (the same folder or prefix, or one inside the other); choose an output outside the input"
            )

    def settings(self) -> dict:
        """What decides the outputs and the verdicts: equal settings, equal results."""
        return {
            "input": storage.local_or_uri(self.input).rstrip("/"),
            "sub_images": self.sub_images,
            "step": self.step,
            "channels": self.channels,
            "min_size": self.min_size,
            "data_range": self.data_range,
            "extensions": sorted(e.lower() for e in self.extensions),
        }


@dataclass
class PrepareSummary:
    output: str
    manifest: str = ""
    sources: int = 0
    done_before: int = 0
    made: int = 0
    bad: int = 0
    failed: int = 0
    images: int = 0
    seconds: float = 0.0
    bad_inputs: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)


def sub_image_starts(length: int, size: int, step: int) -> list[int]:
    """Where windows of `size` start along a side of `length` px: every `step` px, plus one
    flush with the far edge when a remainder is left (BasicSR's rule with thresh_size 0). A side
    shorter than `size` gets one window, the whole side (BasicSR would fail there)."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, step))
    if length - (starts[-1] + size) > 0:
        starts.append(length - size)
    return starts


def sub_image_key(source_key: str, index: int, ext: str) -> str:
    """`a/b/0001.png`, 3, `.png` -> `a/b/0001_s003.png` (BasicSR's names, folders kept)."""
    path = PurePosixPath(source_key)
    return str(path.with_name(f"{path.stem}_s{index:03d}{ext}"))


def _encode_sub_image(crop: np.ndarray, used: Range) -> tuple[bytes, str]:
    """Lossless bytes that read back as the source does: PNG (compression 3, as BasicSR) for
    8/16-bit data read over its dtype's range (alpha is dropped, as training drops it), else
    TIFF with the range as MaxSampleValue."""
    if crop.dtype in (np.uint8, np.uint16) and not used.declared and crop.shape[2] in (1, 3):
        return png_tiff.encode_png(crop, level=3), ".png"
    return png_tiff.encode_tiff(
        crop, False, max_value=int(used.high) if used.declared and used.low == 0 else None
    ), ".tif"


def _validate_and_cut(data: bytes, key: str, job: PrepareJob, out_root: str, owner: str) -> list[dict]:
    """Manifest rows of one source: itself, or its sub-images, written under `out_root`.
    Raises DecodeError for a bad input (the same verdict training's scan would give)."""
    spec = ImageSpec(channels=job.channels, data_range=job.data_range, min_size=job.min_size)
    _, _, used = spec.decode_with_range(data, key)  # training's verdict, by the one reader
    image = read_image(data, key, explicit=job.data_range, min_size=job.min_size)  # the stored values, to cut
    array = image.pixels
    height, width, bands = array.shape
    row = {
        "bands": bands,
        "dtype": str(array.dtype),
        "source": key,
        "high": used.high,
        "range": used.source,
        "from_dtype": used.from_dtype,
    }
    if not job.sub_images:
        return [{"key": key, "bytes": len(data), "width": width, "height": height, **row}]
    rows, size = [], job.sub_images
    for top in sub_image_starts(height, size, job.step):
        for left in sub_image_starts(width, size, job.step):
            crop = np.ascontiguousarray(array[top : top + size, left : left + size])
            payload, ext = _encode_sub_image(crop, image.range)
            out_key = sub_image_key(key, len(rows) + 1, ext)
            if not rows:  # decoded back as training will: the range must survive the cut
                _, _, got = spec.decode_with_range(payload, out_key)
                if (got.high, got.from_dtype) != (used.high, used.from_dtype) or image.range.low != 0:
                    raise DecodeError(
                        f"its value range ({used.source}) would read as {got.source} in a sub-image; prepare it without --sub-images"
                    )
                row.update(range=got.source)
            out_uri = storage.join(out_root, out_key)
            storage.check_inside(out_root, out_uri, "output")
            storage.write_bytes(out_uri, payload, owner)
            rows.append({"key": out_key, "bytes": len(payload), "width": crop.shape[1], "height": crop.shape[0], **row})
    return rows


def prepare_source(values: dict, job: PrepareJob, out_root: str, owner: str) -> dict:
    """Ray Data task: one source (a StoredFile) -> its PrepareRecord, both as the plain dicts
    Ray Data carries."""
    source = storage.StoredFile(**ledger.plain(values))
    result = PrepareRecord(source=source.key, bytes=source.size)
    try:
        data = storage.read_bytes(source.uri)
        result.images = json.dumps(_validate_and_cut(data, source.key, job, out_root, owner))
    except DecodeError as exc:
        result.status, result.reason = "bad", str(exc)
    except StorageError as exc:
        result.status, result.reason = "failed", str(exc)
    return asdict(result)


def _check_output(job: PrepareJob, out_root: str) -> bool:
    """Refuse an output prepared with other settings, or holding files no prepare made; True
    when it was prepared (or begun) with these settings."""
    storage.check_writable(out_root, "`output`", folder=True)
    settings_uri = prepared_uri(out_root, SETTINGS)
    if storage.exists(settings_uri):
        try:
            before = json.loads(storage.read_bytes(settings_uri).decode("utf-8"))
            if not isinstance(before, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError among them
            raise StorageError(
                f"{settings_uri} is damaged ({str(exc)[:120]}); it says what {out_root} is prepared with: choose a new `output`"
            ) from None
        if before.get("extensions") == sorted(png_tiff.EXTENSIONS) and tuple(job.extensions) == formats.EXTENSIONS:
            before["extensions"] = job.settings()["extensions"]  # the default before DICOM joined it
        for name, value in job.settings().items():
            if before.get(name) != value:
                raise UsageError(
                    f"{out_root} was prepared with {_flag(name, before.get(name))}, this run has {_flag(name, value)}; re-run with the same arguments to resume, or choose a new `output`"
                )
        return True
    if storage.exists(out_root) and storage.list_files(out_root):
        raise UsageError(f"`output` {out_root} holds files that no prepare made; choose an empty or new folder")
    return False


def _flag(name: str, value) -> str:
    if value is None:
        return f"no `{name}`"
    return f"`{name}` {' '.join(value) if isinstance(value, list) else value}"


def _plan(
    job: PrepareJob, in_root: str, out_root: str, records: dict
) -> tuple[list[storage.StoredFile], list[PrepareRecord], list[dict]]:
    """(sources to do, results carried from earlier runs, bad inputs decided by their names)."""
    files, outside = storage.list_inputs(in_root, job.extensions)
    refused = [{"source": f.key, "reason": "a symbolic link that leads outside --input; not read"} for f in outside]
    names: dict[str, list[str]] = {}
    for f in files:
        names.setdefault(str(PurePosixPath(f.key).with_suffix("")), []).append(f.key)
    existing = {f.key for f in storage.list_files(out_root)} if job.sub_images and storage.exists(out_root) else set()
    todo, carried = [], []
    for f in files:
        twins = names[str(PurePosixPath(f.key).with_suffix(""))]
        if job.sub_images and len(twins) > 1:  # their sub-images would take the same names
            refused.append(
                {
                    "source": f.key,
                    "reason": f"shares its name before the extension with {', '.join(t for t in twins if t != f.key)}; rename one to cut sub-images of both",
                }
            )
            continue
        record = records.get(f.key)
        if (
            record
            and record.bytes == f.size
            and (
                record.status == "bad"
                or not job.sub_images
                or all(r["key"] in existing for r in json.loads(record.images))
            )
        ):
            carried.append(record)
        else:
            todo.append(f)
    return todo, carried, refused


def _run(
    job: PrepareJob, todo: list[storage.StoredFile], out_root: str, log: Ledger[PrepareRecord], summary: PrepareSummary
) -> list[PrepareRecord]:
    """Cut and validate `todo` on Ray Data; every result is recorded as it arrives."""
    import ray

    from pipeline.cluster import ensure_ray

    ensure_ray()
    ray.data.DataContext.get_current().enable_progress_bars = False  # one line per 10% or 10 s instead
    ds = ray.data.from_items([asdict(f) for f in todo], override_num_blocks=min(len(todo), 2000))
    ds = ds.map(
        prepare_source, fn_kwargs={"job": job, "out_root": out_root, "owner": log.run_id}, num_cpus=job.cpus_per_task
    )
    kill_after = int(os.environ.get(KILL_AFTER_ENV, "0") or 0)
    ours = job_id(out_root)  # every record names this prepare, so that another's is told apart
    results, started, shown = [], time.monotonic(), time.monotonic()
    try:
        for row in ds.iter_rows():
            row = PrepareRecord.from_dict(dict(row))
            row.job = ours
            results.append(row)
            if row.status == "failed":
                summary.failures.append({"source": row.source, "reason": row.reason})
                print(f"failed: {row.source}: {row.reason}", file=sys.stderr, flush=True)
            else:
                log.add(row)  # recorded only after its outputs were written
            if kill_after and len(results) >= kill_after:
                log.flush()
                os.kill(os.getpid(), signal.SIGKILL)  # test hook: die as a crash would
            if (
                len(results) == len(todo)
                or len(results) % max(1, len(todo) // 10) == 0
                or time.monotonic() - shown > 10
            ):
                shown = time.monotonic()
                print(
                    f"{len(results)}/{len(todo)} sources, {sum(r.status == 'bad' for r in results)} bad, {len(results) / (shown - started):.1f} sources/s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        log.flush()
    return results


def prepare(job: PrepareJob) -> PrepareSummary:
    """Prepare (or resume preparing) `job`; see the module docstring."""
    started = time.perf_counter()
    in_root, out_root = storage.local_or_uri(job.input).rstrip("/"), storage.local_or_uri(job.output).rstrip("/")
    storage.check_inside(out_root, prepared_uri(out_root, "x"), "output")
    begun = _check_output(job, out_root)
    records, earlier_runs = read_records(out_root) if begun else ({}, set())
    todo, carried, refused = _plan(job, in_root, out_root, records)
    summary = PrepareSummary(out_root, sources=len(todo) + len(carried) + len(refused), done_before=len(carried))
    print(
        f"prepare {redact_uri(in_root)} -> {redact_uri(out_root)}: {summary.sources} source(s), {len(todo)} to do, {len(carried)} done before",
        file=sys.stderr,
        flush=True,
    )
    if not begun:
        storage.write_bytes(prepared_uri(out_root, SETTINGS), json.dumps(job.settings()).encode(), "prepare")
    results = []
    if todo:
        run_id = new_run_id()
        removed = storage.remove_partials(out_root, earlier_runs)
        if removed:
            print(f"removed {removed} partial file(s) an interrupted prepare left under {out_root}", file=sys.stderr)
        log = Ledger[PrepareRecord](ledger_folder(out_root), run_id)
        log.flush(force=True)  # an empty first part names this run, so that a re-run can clean up after it
        remove_manifest(out_root)  # from now on the folder is not a finished dataset
        results = _run(job, todo, out_root, log, summary)
    by_source = {r.source: r for r in carried + results if r.status != "failed"}
    bad = refused + [{"source": r.source, "reason": r.reason} for r in by_source.values() if r.status == "bad"]
    images = [image for r in by_source.values() if r.status == "done" for image in json.loads(r.images)]
    summary.failed = len(summary.failures)
    summary.made = sum(r.status == "done" for r in results)
    summary.bad, summary.images, summary.bad_inputs = len(bad), len(images), sorted(bad, key=lambda b: b["source"])
    if not summary.failed:  # rewritten on every finished run: sources gone from --input leave it
        header = {
            "input": job.settings()["input"],
            "files": "output" if job.sub_images else "input",
            "settings": job.settings(),
            "counts": {
                "sources": summary.sources,
                "usable_sources": summary.sources - summary.bad,
                "bad": summary.bad,
                "images": summary.images,
            },
        }
        summary.manifest = write_manifest(
            out_root, header, sorted(images, key=lambda r: r["key"]), summary.bad_inputs, "prepare"
        )
    summary.seconds = time.perf_counter() - started
    return summary


def print_summary(summary: PrepareSummary) -> None:
    print(
        f"prepared {summary.output}: {summary.sources} source(s), {summary.made} done now, {summary.done_before} done before, "
        f"{summary.bad} bad, {summary.failed} failed; {summary.images} training image(s) in {summary.seconds:.1f} s",
        file=sys.stderr,
    )
    cli.print_first([f"bad: {b['source']}: {b['reason']}" for b in summary.bad_inputs])
    if summary.failed:
        print(
            f"{summary.failed} source(s) could not be read or written (first: {summary.failures[0]['source']}: {summary.failures[0]['reason']}); no manifest written: re-run to retry them",
            file=sys.stderr,
        )
    else:
        print(f"manifest: {summary.manifest}", file=sys.stderr, flush=True)


def build_parser() -> cli.Parser:
    p = cli.Parser(
        "python -m pipeline.prepare",
        "List, validate and optionally cut HR images into sub-images for training, on Ray Data.",
        EXAMPLES,
    )
    p.add_argument("--input", required=True, help="s3://bucket/prefix/ or a local folder of HR images (recursive)")
    p.add_argument(
        "--output",
        required=True,
        help="s3://bucket/prefix/ or a local folder, outside --input; give it as data.train (or data.val)",
    )
    p.add_argument(
        "--sub-images",
        type=cli.positive_int,
        metavar="SIZE",
        help="cut each image into SIZE x SIZE sub-images, e.g. 480 for DIV2K (default: none; keep whole images, validate and list them only)",
    )
    p.add_argument("--step", type=cli.positive_int, help="pixels between sub-images (default: half of --sub-images)")
    p.add_argument(
        "--channels", type=cli.positive_int, default=3, help="bands the model takes (model.generator.in_channels)"
    )
    p.add_argument(
        "--min-size",
        type=cli.positive_int,
        default=1,
        help="smallest usable side in px; training also skips images under data.patch_size",
    )
    p.add_argument(
        "--data-range",
        type=cli.positive_float,
        help="pixel value that maps to 1.0, as data.data_range (default: none; what each file declares)",
    )
    p.add_argument(
        "--ext",
        action="append",
        help=f"only these extensions, repeatable (default: {' '.join(formats.EXTENSIONS)})",
    )
    p.add_argument("--cpus-per-task", type=cli.positive_float, default=0.5, help="CPUs per Ray Data task")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line on stdout")
    return p


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with cli.naming_flags(parser, extensions="--ext"):
        return _main(args)


def _main(args) -> int:
    job = PrepareJob(
        input=args.input,
        output=args.output,
        sub_images=args.sub_images,
        step=args.step,
        channels=args.channels,
        min_size=args.min_size,
        data_range=args.data_range,
        extensions=tuple(args.ext) if args.ext else formats.EXTENSIONS,
        cpus_per_task=args.cpus_per_task,
    )
    summary = prepare(job)
    print_summary(summary)
    if args.json:
        print(json.dumps(asdict(summary)), flush=True)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
