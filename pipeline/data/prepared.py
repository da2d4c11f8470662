"""Prepared datasets: what `python -m pipeline.prepare` leaves under <root>/_prepared/, and how
training takes its file list from the manifest there instead of listing and decoding every file.

The manifest (`manifest.jsonl`) is written last, whole: its presence means the prepare finished.
Its first line is a header (input, settings, counts); then one line per usable image or
sub-image and one per bad input with its reason.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field, fields

from pipeline.data.batches import BadInput, ImageSpec, Scan, scan_files
from pipeline.data.reader import range_pair, range_text
from pipeline.errors import DataError, StorageError
from pipeline.formats import ValueRange
from pipeline.io import ledger, storage
from pipeline.io.redact import redact_uri

PREPARED_DIR = "_prepared"
SETTINGS = "settings.json"  # written first: what the folder is being prepared with
MANIFEST = "manifest.jsonl"  # written last
# 2: GeoTIFFs declare their range by the plain TIFF's rule (MaxSampleValue, STATISTICS_MAXIMUM),
# so a set of format 1 may hold verdicts and ranges that no longer hold: it is refused.
FORMAT = 2


def prepared_uri(root: str, *parts: str) -> str:
    return storage.join(root, PREPARED_DIR, *parts)


def write_manifest(root: str, header: dict, images: list[dict], bad: list[dict], owner: str) -> str:
    """Write <root>/_prepared/manifest.jsonl whole; returns its URI. `images` rows: key (relative
    to the folder header["files"] names), bytes, width, height, bands, dtype, source, high,
    range, from_dtype; `bad` rows: source, reason."""
    lines = [
        {
            "kind": "header",
            "format": FORMAT,
            "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **header,
        }
    ]
    lines += [{"kind": "image", **row} for row in images] + [{"kind": "bad", **row} for row in bad]
    uri = prepared_uri(root, MANIFEST)
    storage.write_bytes(uri, "".join(json.dumps(line) + "\n" for line in lines).encode(), owner)
    return uri


@dataclass
class PrepareRecord:
    """What became of one source in one prepare run: done (its rows in `images`, JSON), bad
    (a bad input, with the reason) or failed (a read or write that may work next time)."""

    source: str
    bytes: int
    status: str = "done"
    reason: str = ""
    images: str = "[]"
    job: str = ""  # the job_id of the prepare that recorded it ("" before it was recorded)

    @classmethod
    def from_dict(cls, values: dict, run: str = "") -> PrepareRecord:
        """A record from its JSON or Ray form (numpy scalars as Python values)."""
        plain = ledger.plain(values)
        return cls(**{f.name: plain[f.name] for f in fields(cls) if f.name in plain})


def ledger_folder(out_root: str) -> str:
    """Where prepare's job ledger lives (pipeline.io.ledger): <out_root>/_prepared/."""
    return prepared_uri(out_root)


def job_id(out_root: str) -> str:
    """What names the prepare of `out_root` in its records: a checksum of its settings.json
    (written once, when the prepare begins)."""
    return hashlib.sha256(storage.read_bytes(prepared_uri(out_root, SETTINGS))).hexdigest()[:16]


def _checked(record: PrepareRecord) -> PrepareRecord:
    """`record` as read back, refused (ValueError) when its status or image rows do not read."""
    if record.status not in ("done", "bad", "failed"):
        raise ValueError(f"status {record.status!r} is not done, bad or failed")
    try:
        images = json.loads(record.images)
    except json.JSONDecodeError:
        images = None
    if not isinstance(images, list) or not all(isinstance(i, dict) and isinstance(i.get("key"), str) for i in images):
        raise ValueError(f"images of {record.source!r} is not a JSON list of image rows")
    return record


def read_records(out_root: str) -> tuple[dict[str, PrepareRecord], set[str]]:
    """(the latest result prepare recorded per source, the ids of the runs that recorded them).
    Several records of one source are normal (a re-run redoes a failed or changed source): the
    latest counts. A damaged ledger file, or a record of another prepare (its job_id is not
    this folder's), is refused: StorageError naming the file."""
    folder, ours = ledger_folder(out_root), job_id(out_root)
    rows = ledger.read_rows(folder, lambda fields, run: _checked(PrepareRecord.from_dict(fields)), PrepareRecord)
    for row in rows:
        if row.job and row.job != ours:
            raise StorageError(
                f"the prepare ledger under {folder} holds a record of another prepare (job {row.job}, this "
                f"folder's is {ours}, from its {SETTINGS}) for {row.source!r}; move the ledger files of other "
                "jobs out of its runs/ folder, or choose a new `output`"
            )
    return ledger.latest(rows, key=lambda r: r.source), ledger.recorded_runs(folder)


def remove_manifest(root: str) -> None:
    """Mark `root` as not a finished dataset (while a prepare works on it)."""
    uri = prepared_uri(root, MANIFEST)
    if storage.exists(uri):
        fs, path = storage.filesystem(uri)
        fs.delete_file(path)


@dataclass
class Prepared:
    """A prepared dataset's manifest, read."""

    root: str
    header: dict
    images: list[dict]
    bad: list[BadInput]
    files: list[storage.StoredFile] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Sub-images live beside the manifest (found again if the folder is moved or copied);
        # a manifest-only prepare points at the input it validated.
        files_root = self.root if self.header["files"] == "output" else self.header["input"]
        for row in self.images:
            uri = storage.join(files_root, row["key"])
            self.files.append(
                storage.StoredFile(
                    uri=uri,
                    path=uri[len("s3://") :] if storage.is_s3(uri) else uri,
                    key=row["key"],
                    size=int(row["bytes"]),
                )
            )

    def describe(self) -> str:
        s = self.header["settings"]
        cut = f"sub-images {s['sub_images']} px, step {s['step']}" if s["sub_images"] else "whole images"
        return (
            f"{len(self.images)} images ({cut}) prepared from {redact_uri(s['input'])} at {self.header['prepared_at']}"
        )

    def scan(self, files: list[storage.StoredFile], spec: ImageSpec, what: str) -> Scan:
        """What `pipeline.data.scan_files` would find in `files` (some of this manifest's), from
        the manifest: prepare decoded every one with the same checks. Images smaller than
        `spec.min_size` are skipped here; a prepare made for other bands or another data range
        is refused, since its verdicts do not hold for this spec."""
        settings = self.header["settings"]
        fix = f"re-run python -m pipeline.prepare --input {settings['input']} with {{}} and a new --output, or point {what} at the raw images"
        if settings["channels"] != spec.channels:
            raise DataError(
                f"{what}: {self.root} was prepared for {settings['channels']}-band models (--channels {settings['channels']}), the model takes {spec.channels}; "
                + fix.format(f"--channels {spec.channels}")
            )
        wanted = range_pair(spec.data_range)
        if range_pair(settings["data_range"]) != wanted:
            flag = "no --data-range" if wanted is None else f"--data-range {range_text(spec.data_range)}"
            raise DataError(
                f"{what}: {self.root} was prepared with --data-range {range_text(settings['data_range'])}, data.data_range is {range_text(spec.data_range)}; "
                + fix.format(flag)
            )
        rows = {row["key"]: row for row in self.images}
        found = Scan([], list(self.bad), Counter())
        for f in files:
            row = rows[f.key]
            if min(row["width"], row["height"]) < spec.min_size:
                found.bad.append(
                    BadInput(
                        f.key,
                        f"is {row['width']}x{row['height']}, smaller than the {spec.min_size}x{spec.min_size} patch",
                    )
                )
                continue
            found.good.append(f)
            found.ranges[ValueRange(float(row["high"]), row["range"], bool(row["from_dtype"]))] += 1
        return found


def open_prepared(uri: str | None, what: str = "data.train") -> Prepared | None:
    """The prepared dataset at `uri`, or None when `uri` is not one (plain images to list and
    scan). A folder whose prepare has not finished is refused rather than half-used."""
    if not uri:
        return None
    root = storage.local_or_uri(uri).rstrip("/")
    manifest = prepared_uri(root, MANIFEST)
    if not storage.exists(manifest):
        if storage.exists(prepared_uri(root, SETTINGS)):
            raise DataError(
                f"{what}: {uri} is a prepared dataset whose prepare has not finished (no {PREPARED_DIR}/{MANIFEST}); re-run python -m pipeline.prepare with the same arguments"
            )
        return None
    header, images, bad = {}, [], []
    for number, line in enumerate(storage.read_bytes(manifest).split(b"\n"), 1):
        if not line.strip():
            continue
        try:  # written whole, last: a line that does not read means the file was damaged since
            row = json.loads(line.decode("utf-8"))
            kind = row.pop("kind") if isinstance(row, dict) else None
            if kind not in ("header", "image", "bad"):
                raise ValueError("no kind header, image or bad")
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError among them
            raise DataError(
                f"{what}: {manifest} line {number} does not read ({str(exc)[:80]}); the manifest is damaged: "
                "re-run python -m pipeline.prepare with the same arguments to write it again"
            ) from None
        if kind == "header":
            header = row
        elif kind == "image":
            images.append(row)
        else:
            bad.append(BadInput(row["source"], row["reason"]))
    if header.get("format") == 1:
        raise DataError(
            f"{what}: {uri} was prepared by an older version (manifest format 1, before GeoTIFFs declared their range as TIFFs do); re-run python -m pipeline.prepare --input {header.get('input')} into a new --output"
        )
    if header.get("format") != FORMAT:
        raise DataError(
            f"{what}: {manifest} is not a manifest this version reads (format {header.get('format')}); re-run python -m pipeline.prepare into a new --output"
        )
    return Prepared(root, header, images, bad)


def scan_images(
    prepared: Prepared | None, files: list[storage.StoredFile], spec: ImageSpec, read_cpus: float, what: str
) -> Scan:
    """Usable files and bad inputs for training: from a prepared dataset's manifest (decoded and
    checked when it was prepared), else by decoding every file once on Ray Data."""
    if prepared is None:
        return scan_files(files, spec, read_cpus)
    print(
        f"{what}: prepared dataset {redact_uri(prepared.root)}, {prepared.describe()}; taking its manifest, not scanning",
        flush=True,
    )
    return prepared.scan(files, spec, what)
