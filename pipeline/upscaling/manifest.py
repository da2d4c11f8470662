"""The batch upscaler's record of what it did: one typed row per input per run, in the job
ledger (pipeline.io.ledger) under ``<output>/_manifest/``.

Each run first writes ``_manifest/runs/<run id>.job.json`` (its model identity and settings,
before any output), then its rows in parts (``runs/<run id>-NNNNN.jsonl``), and at the end
rewrites ``_manifest/manifest.parquet``: per input, the latest row that did something (a later
"skipped" never hides the "done" row it refers to). A row says what became of one input:
done, skipped (its output was made before with the same model and settings) or failed, with
the reason, sizes, seconds, the model reference, its checksum (`model_id`), the scale and the
settings that change pixels.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import PurePosixPath

from pipeline.errors import StorageError
from pipeline.io import ledger, storage

MANIFEST_DIR = "_manifest"
IDENTITY = ("model_id", "scale", "settings")  # equal on two rows: the same pixels would be made
STATUSES = ("done", "skipped", "failed")


@dataclass(frozen=True)
class WorkItem:
    """One input of a job: its key under the input root, where it is read and written, its size."""

    key: str
    input: str
    output: str = ""
    size: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> WorkItem:
        """An item from the plain dict Ray Data carries."""
        return cls(str(values["key"]), str(values["input"]), str(values["output"]), int(values["size"]))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ManifestRow:
    """What became of one input in one run."""

    key: str
    input: str
    output: str
    status: str = "failed"  # done | skipped | failed
    format: str = ""
    width: int = 0
    height: int = 0
    bands: int = 0
    dtype: str = ""
    out_width: int = 0
    out_height: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    windows: int = 0
    seconds: float = 0.0
    error: str = ""
    model: str = ""
    model_id: str = ""
    scale: int = 0
    settings: str = ""  # JSON of the settings that change pixels
    value_range: str = ""
    model_bands: str = ""
    finished_at: str = ""
    run: str = ""  # the run that wrote it (set when read back)

    @classmethod
    def from_dict(cls, values: dict, run: str = "") -> ManifestRow:
        """A row from its JSON or Ray form; fields a row of an older version lacks keep their defaults."""
        known = {f.name for f in fields(cls)}
        row = cls(**{k: v for k, v in ledger.plain(values).items() if k in known})
        if row.status not in STATUSES:
            raise ValueError(f"status {row.status!r} is not one of {', '.join(STATUSES)}")
        if run:
            row.run = run
        return row

    def to_dict(self) -> dict:
        return asdict(self)


FIELDS = tuple(f.name for f in fields(ManifestRow) if f.name != "run")


def identity(model: str, model_id: str, scale: int, settings: dict) -> dict:
    """The fields that say what made an output: the model reference (as given), its checksum,
    the scale, and the settings that change pixels (a JSON object)."""
    return {"model": model, "model_id": model_id, "scale": int(scale), "settings": json.dumps(settings, sort_keys=True)}


def _identity_of(maker: dict | ManifestRow | None) -> dict | None:
    return asdict(maker) if isinstance(maker, ManifestRow) else maker


def same_maker(a: dict | ManifestRow | None, b: dict | ManifestRow | None) -> bool:
    a, b = _identity_of(a), _identity_of(b)
    return a is not None and b is not None and all(a.get(k) == b.get(k) for k in IDENTITY)


def describe(maker: dict | ManifestRow | None) -> str:
    ident = _identity_of(maker)
    if not ident or not ident.get("model_id"):
        return "a model this job cannot confirm (an older version's or an interrupted other run's)"
    return f"{ident.get('model')} (sha256 {ident['model_id']}) x{ident.get('scale')} {ident.get('settings')}"


def new_row(item: WorkItem, ident: dict, **values) -> ManifestRow:
    """A row for input `item` made by `ident` (see `identity`); status failed unless `values`
    say otherwise."""
    return ManifestRow(
        key=item.key,
        input=item.input,
        output=item.output,
        format=PurePosixPath(item.key).suffix.lower().lstrip("."),
        bytes_in=item.size,
        **{**ident, **values},
    )


class Manifest(ledger.Ledger[ManifestRow]):
    """This run's rows in the job ledger under <output>/_manifest/, and the run's record."""

    def __init__(self, output_root: str, run_id: str, every_s: float = 10.0) -> None:
        super().__init__(storage.join(output_root, MANIFEST_DIR), run_id, every_s)
        self.output_root = output_root
        self.record: dict | None = None

    def start(self, ident: dict) -> None:
        """Record this run and what it makes outputs with, before it makes any."""
        self.record = {"run": self.run_id, "started_at": ledger.now(), **ident}
        self._write_record()

    def finish(self) -> str:
        """Flush this run's rows and rewrite manifest.parquet; returns its URI."""
        import pandas as pd

        self.flush()
        if self.record is not None:  # a run that ends here was not interrupted
            self.record["finished_at"] = ledger.now()
            self._write_record()
        rows = [
            {k: _parquet_safe(v) for k, v in r.to_dict().items()}
            for r in latest_rows(read_manifest(self.output_root)).values()
        ]
        latest = pd.DataFrame(rows) if rows else pd.DataFrame(columns=[*FIELDS, "run"])
        uri = storage.join(self.output_root, MANIFEST_DIR, "manifest.parquet")
        buf = io.BytesIO()
        latest.sort_values("key").to_parquet(buf, index=False)
        storage.write_bytes(uri, buf.getvalue(), self.run_id)
        return uri

    def _write_record(self) -> None:
        storage.write_bytes(
            storage.join(self.folder, "runs", f"{self.run_id}.job.json"), json.dumps(self.record).encode(), self.run_id
        )


def _parquet_safe(value):
    """Text parquet can store: a local name that is not valid UTF-8 (kept exactly in the
    JSON lines) gets backslash escapes here."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def latest_rows(rows: list[ManifestRow]) -> dict[str, ManifestRow]:
    """Per key, the latest row that did something; a "skipped" row only where none did."""
    return ledger.latest(rows, key=lambda r: r.key, replaces=lambda r: r.status != "skipped")


def recorded_runs(output_root: str) -> dict[str, dict | None]:
    """Every run recorded under `output_root`: run id -> what it made outputs with (None for
    a run of an older version, which recorded no identity)."""
    folder = storage.join(output_root, MANIFEST_DIR)
    root = storage.join(folder, "runs")
    if not storage.exists(root):
        return {}
    runs: dict[str, dict | None] = dict.fromkeys(ledger.recorded_runs(folder))
    for f in storage.list_files(root, [".job.json"]):
        runs[PurePosixPath(f.key).name[: -len(".job.json")]] = _run_record(f.uri)
    return runs


def _run_record(uri: str) -> dict:
    """A run's record (written whole before its rows): one that does not read is refused."""
    try:
        record = json.loads(storage.read_bytes(uri).decode("utf-8"))
        if not isinstance(record, dict) or not all(k in record for k in ("run", *IDENTITY)):
            raise ValueError(f"not a run record (it needs run, {', '.join(IDENTITY)})")
    except (UnicodeDecodeError, ValueError) as exc:
        raise StorageError(
            f"{uri} is damaged ({str(exc)[:120]}); it says what made that run's outputs: move it away "
            "(they then count as made by a model this job cannot confirm) or choose a new `output`"
        ) from None
    return record


@dataclass
class Summary:
    """A job's tally of its rows."""

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

    def count(self, row: ManifestRow) -> None:
        if row.status == "done":
            self.done += 1
            self.mpx_in += row.width * row.height / 1e6
            self.mpx_out += row.out_width * row.out_height / 1e6
        elif row.status == "skipped":
            self.skipped += 1
        else:
            self.failed += 1
            self.failures.append({"key": row.key, "error": row.error})


def read_manifest(output_root: str) -> list[ManifestRow]:
    """Every row of every run's manifest under `output_root`, oldest run first, with its run.
    A row that says another model or settings made it than its run's record says (a part of
    another job's manifest) is refused: StorageError."""
    rows = ledger.read_rows(storage.join(output_root, MANIFEST_DIR), ManifestRow.from_dict, ManifestRow)
    runs = recorded_runs(output_root) if rows else {}
    for row in rows:
        record = runs.get(row.run)
        if record is not None and row.model_id and not same_maker(row, record):
            raise StorageError(
                f"the manifest under {output_root} holds a row of another job: run {row.run} recorded "
                f"{describe(record)}, its row for {row.key!r} says {describe(row)}; move the files of run "
                f"{row.run} out of {storage.join(output_root, MANIFEST_DIR, 'runs')}, or choose a new `output`"
            )
    return rows
