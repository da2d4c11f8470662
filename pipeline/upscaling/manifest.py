"""The batch upscaler's record of what it did: one row per input per run.

Each run first writes ``<output>/_manifest/runs/<run id>.job.json`` (its model identity and
settings, before any output), then ``runs/<run id>.jsonl`` (whole, every `every_s` seconds and
at the end), and at the end rewrites ``_manifest/manifest.parquet``: per input, the latest row
that did something (a later "skipped" never hides the "done" row it refers to). A row says what
became of one input: done, skipped (its output was made before with the same model and
settings) or failed, with the reason, sizes, seconds, the model reference, its checksum
(`model_id`), the scale and the settings that change pixels.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import PurePosixPath

from pipeline.io import storage

MANIFEST_DIR = "_manifest"
FIELDS = (
    "key",
    "input",
    "output",
    "status",
    "format",
    "width",
    "height",
    "bands",
    "dtype",
    "out_width",
    "out_height",
    "bytes_in",
    "bytes_out",
    "windows",
    "seconds",
    "error",
    "model",
    "model_id",
    "scale",
    "settings",
    "value_range",
    "model_bands",
    "finished_at",
)
IDENTITY = ("model_id", "scale", "settings")  # equal on two rows: the same pixels would be made


def identity(model: str, model_id: str, scale: int, settings: dict) -> dict:
    """The fields that say what made an output: the model reference (as given), its checksum,
    the scale, and the settings that change pixels (a JSON object)."""
    return {"model": model, "model_id": model_id, "scale": int(scale), "settings": json.dumps(settings, sort_keys=True)}


def same_maker(a: dict | None, b: dict | None) -> bool:
    return a is not None and b is not None and all(a.get(k) == b.get(k) for k in IDENTITY)


def describe(ident: dict | None) -> str:
    if not ident or not ident.get("model_id"):
        return "a model this job cannot confirm (an older version's or an interrupted other run's)"
    return f"{ident.get('model')} (sha256 {ident['model_id']}) x{ident.get('scale')} {ident.get('settings')}"


def new_row(item: dict, ident: dict, **values) -> dict:
    """A row for input `item` ({key, input, output, size}) made by `ident` (see `identity`);
    status failed unless `values` say otherwise."""
    row = dict.fromkeys(FIELDS, 0)
    row.update(
        key=item["key"],
        input=item["input"],
        output=item["output"],
        status="failed",
        format=PurePosixPath(item["key"]).suffix.lower().lstrip("."),
        dtype="",
        bytes_in=int(item.get("size", 0)),
        seconds=0.0,
        error="",
        model="",
        model_id="",
        scale=0,
        settings="",
        value_range="",
        model_bands="",
        finished_at="",
    )
    row.update(ident)
    row.update(values)
    return row


class Manifest:
    """This run's rows, written whole to <output>/_manifest/runs/<run id>.jsonl every
    `every_s` seconds and at the end, when manifest.parquet is rewritten too."""

    def __init__(self, output_root: str, run_id: str, every_s: float = 10.0) -> None:
        self.output_root, self.run_id = output_root, run_id
        self.record: dict | None = None
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
            storage.write_bytes(self.uri, "".join(json.dumps(r) + "\n" for r in self.rows).encode(), self.run_id)
        self._flushed = time.monotonic()

    def finish(self) -> str:
        """Flush this run's rows and rewrite manifest.parquet; returns its URI."""
        import pandas as pd

        self.flush()
        if self.record is not None:  # a run that ends here was not interrupted
            self.record["finished_at"] = _now()
            self._write_record()
        rows = [
            {k: _parquet_safe(v) for k, v in r.items()} for r in latest_rows(read_manifest(self.output_root)).values()
        ]
        latest = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(FIELDS))
        uri = storage.join(self.output_root, MANIFEST_DIR, "manifest.parquet")
        buf = io.BytesIO()
        latest.sort_values("key").to_parquet(buf, index=False)
        storage.write_bytes(uri, buf.getvalue(), self.run_id)
        return uri

    def start(self, ident: dict) -> None:
        """Record this run and what it makes outputs with, before it makes any."""
        self.record = {"run": self.run_id, "started_at": _now(), **ident}
        self._write_record()

    def _write_record(self) -> None:
        storage.write_bytes(
            storage.join(self.output_root, MANIFEST_DIR, "runs", f"{self.run_id}.job.json"),
            json.dumps(self.record).encode(),
            self.run_id,
        )


def new_run_id() -> str:
    """A job run's id: its start time to the microsecond (ids of later runs sort after earlier
    ones, however quickly they follow) and a random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _parquet_safe(value):
    """Text parquet can store: a local name that is not valid UTF-8 (kept exactly in the
    JSON lines) gets backslash escapes here."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def latest_rows(rows: list[dict]) -> dict[str, dict]:
    """Per key, the latest row that did something; a "skipped" row only where none did."""
    latest: dict[str, dict] = {}
    for row in rows:
        if row["status"] != "skipped" or row["key"] not in latest:
            latest[row["key"]] = row
    return latest


def recorded_runs(output_root: str) -> dict[str, dict | None]:
    """Every run recorded under `output_root`: run id -> what it made outputs with (None for
    a run of an older version, which recorded no identity)."""
    root = storage.join(output_root, MANIFEST_DIR, "runs")
    if not storage.exists(root):
        return {}
    runs: dict[str, dict | None] = {}
    for f in storage.list_files(root, [".jsonl", ".job.json"]):
        name = PurePosixPath(f.key).name
        if name.endswith(".job.json"):
            runs[name[: -len(".job.json")]] = json.loads(storage.read_bytes(f.uri))
        else:
            runs.setdefault(name[: -len(".jsonl")], None)
    return runs


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


def read_manifest(output_root: str) -> list[dict]:
    """Every row of every run's manifest under `output_root`, oldest run first; each row gets
    `run`, its run id."""
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
