"""The batch upscaler's record of what it did: one row per input per run.

Each run writes ``<output>/_manifest/runs/<run id>.jsonl`` (whole, every `every_s` seconds and
at the end) and then rewrites ``_manifest/manifest.parquet``: the latest row per input over
every run. A row says what became of one input: done, skipped (its output existed) or failed,
with the reason, sizes, seconds and the model.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import PurePosixPath

from pipeline import storage

MANIFEST_DIR = "_manifest"
FIELDS = (
    "key", "input", "output", "status", "format", "width", "height", "bands", "dtype",
    "out_width", "out_height", "bytes_in", "bytes_out", "windows", "seconds", "error", "model", "finished_at",
)


def new_row(item: dict, model: str, **values) -> dict:
    """A row for input `item` ({key, input, output, size}); status failed unless `values` say
    otherwise."""
    row = dict.fromkeys(FIELDS, 0)
    row.update(
        key=item["key"], input=item["input"], output=item["output"], status="failed",
        format=PurePosixPath(item["key"]).suffix.lower().lstrip("."), dtype="", bytes_in=int(item.get("size", 0)),
        seconds=0.0, error="", model=model, finished_at="",
    )
    row.update(values)
    return row


class Manifest:
    """This run's rows, written whole to <output>/_manifest/runs/<run id>.jsonl every
    `every_s` seconds and at the end, when manifest.parquet is rewritten too."""

    def __init__(self, output_root: str, run_id: str, every_s: float = 10.0) -> None:
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
        """Flush this run's rows and rewrite manifest.parquet; returns its URI."""
        import pandas as pd

        self.flush()
        rows = read_manifest(self.output_root)
        latest = pd.DataFrame(rows).drop_duplicates("key", keep="last") if rows else pd.DataFrame(columns=list(FIELDS))
        uri = storage.join(self.output_root, MANIFEST_DIR, "manifest.parquet")
        buf = io.BytesIO()
        latest.sort_values("key").to_parquet(buf, index=False)
        storage.write_bytes(uri, buf.getvalue())
        return uri


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
