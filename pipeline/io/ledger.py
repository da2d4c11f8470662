"""The ledger of a resumable job over a prefix (prepare, upscale): each run adds typed rows,
written in whole parts under ``<folder>/runs/<run id>-NNNNN.jsonl`` every `every_s` seconds and
at the end, never rewritten; on a re-run the latest row per key says what was done. Ledgers
written before the parts (one ``<run id>.jsonl`` a run) read the same."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Generic, TypeVar

from pipeline.io import storage

Row = TypeVar("Row")
# <run id>[-NNNNN].jsonl, the run id as new_run_id makes it (to the second before it took microseconds)
_PART = re.compile(r"^(?P<run>\d{8}T\d{6}(?:\d{6})?Z-[0-9a-f]{6})(?:-(?P<part>\d{5}))?\.jsonl$")
log = logging.getLogger(__name__)


def new_run_id() -> str:
    """A job run's id: its start time to the microsecond (ids of later runs sort after earlier
    ones, however quickly they follow) and a random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def plain(values: dict) -> dict:
    """A row as Ray Data hands it back (numpy scalars) with plain Python values."""
    return {k: v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v for k, v in values.items()}


def run_of(name: str) -> str | None:
    """The run id a ledger file belongs to (a part or a whole-run file), None for another file."""
    found = _PART.match(PurePosixPath(name).name)
    return found.group("run") if found else None


class Ledger(Generic[Row]):
    """One run's rows (dataclasses), added as they come and written in whole parts."""

    def __init__(self, folder: str, run_id: str, every_s: float = 10.0) -> None:
        self.folder, self.run_id, self.every_s = folder, run_id, every_s
        self.pending: list[Row] = []
        self.parts = 0
        self.flushed = time.monotonic()

    def add(self, row: Row) -> None:
        self.pending.append(row)
        if time.monotonic() - self.flushed >= self.every_s:
            self.flush()

    def flush(self, force: bool = False) -> None:
        """Write the rows added since the last part as a new part (`force`: even none, so that
        the run is on record before it has a row)."""
        if self.pending or force:
            uri = storage.join(self.folder, "runs", f"{self.run_id}-{self.parts:05d}.jsonl")
            lines = "".join(json.dumps(asdict(row)) + "\n" for row in self.pending)
            storage.write_bytes(uri, lines.encode(), self.run_id)
            self.pending, self.parts = [], self.parts + 1
        self.flushed = time.monotonic()


def read_rows(folder: str, make: Callable[[dict, str], Row]) -> list[Row]:
    """Every row of every run under `folder`, oldest run first: `make(fields, run id)`; a
    .jsonl file there that is not a ledger part is skipped with a warning."""
    root = storage.join(folder, "runs")
    if not storage.exists(root):
        return []
    rows = []
    for f in sorted(storage.list_files(root, [".jsonl"]), key=lambda f: f.key):
        run = run_of(f.key)
        if run is None:
            log.warning("skipping %s: not a ledger file (its name is not <run id>[-NNNNN].jsonl)", f.uri)
            continue
        for line in storage.read_bytes(f.uri).decode().splitlines():
            if line.strip():
                rows.append(make(json.loads(line), run))
    return rows


def recorded_runs(folder: str) -> set[str]:
    """The ids of the runs with a ledger file under `folder`."""
    root = storage.join(folder, "runs")
    if not storage.exists(root):
        return set()
    return {run for f in storage.list_files(root, [".jsonl"]) if (run := run_of(f.key))}


def latest(rows: Iterable[Row], key: Callable[[Row], str], replaces: Callable[[Row], bool] = lambda row: True) -> dict:
    """Per key, the last row that `replaces` an earlier one (the first row of a key always counts)."""
    found: dict[str, Row] = {}
    for row in rows:
        if key(row) not in found or replaces(row):
            found[key(row)] = row
    return found
