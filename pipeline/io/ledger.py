"""The ledger of a resumable job over a prefix (prepare, upscale): each run adds typed rows,
written in whole parts under ``<folder>/runs/<run id>-NNNNN.jsonl`` every `every_s` seconds and
at the end, never rewritten; on a re-run the latest row per key says what was done. Ledgers
written before the parts (one ``<run id>.jsonl`` a run) read the same."""

from __future__ import annotations

import dataclasses
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

from pipeline.errors import StorageError
from pipeline.io import storage

Row = TypeVar("Row")
# <run id>[-NNNNN].jsonl, the run id as new_run_id makes it (to the second before it took microseconds)
_PART = re.compile(r"^(?P<run>\d{8}T\d{6}(?:\d{6})?Z-[0-9a-f]{6})(?:-(?P<part>\d{5}))?\.jsonl$")
log = logging.getLogger(__name__)
_warned: set[tuple[str, int]] = set()  # the cut-short lines warned about in this process


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


def read_rows(folder: str, make: Callable[[dict, str], Row], kind: type | None = None) -> list[Row]:
    """Every row of every run under `folder`, oldest run first: `make(fields, run id)`, after
    the fields are checked against dataclass `kind` (its fields without a default present, each
    of the type it declares). A .jsonl file there that is not a ledger part is skipped with a
    warning; a damaged ledger file is not trusted (see `rows_of`)."""
    root = storage.join(folder, "runs")
    if not storage.exists(root):
        return []
    rows = []
    for f in sorted(storage.list_files(root, [".jsonl"]), key=lambda f: f.key):
        run = run_of(f.key)
        if run is None:
            log.warning("skipping %s: not a ledger file (its name is not <run id>[-NNNNN].jsonl)", f.uri)
            continue
        rows += rows_of(f.uri, storage.read_bytes(f.uri), lambda fields, run=run: make(check_fields(fields, kind), run))
    return rows


def rows_of(uri: str, data: bytes, make: Callable[[dict], Row]) -> list[Row]:
    """The rows of ledger file `uri` (its bytes `data`), one JSON object a line. Parts are
    written whole, so a damaged one was damaged afterwards (a copy cut short, an edit): a last
    line cut short (no newline after it) is dropped with a warning, and what it recorded is done
    again; any other line that is not a row stops the job (StorageError naming file and line)."""
    lines = data.split(b"\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line.decode("utf-8"), object_pairs_hook=_once_each)
            if not isinstance(fields, dict):
                raise ValueError(f"a JSON {type(fields).__name__}, not an object")
            rows.append(make(fields))
        except (UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
            reason = _first_line(exc)
            if number == len(lines):  # the last line, and no newline after it: cut short
                if (uri, number) not in _warned:  # a job reads its ledger more than once
                    _warned.add((uri, number))
                    log.warning(
                        "%s line %d is cut short (%s); dropped it: what it recorded is done again", uri, number, reason
                    )
                continue
            raise StorageError(
                f"{uri} line {number} is not a row of this job's ledger ({reason}); the ledger is damaged: "
                "move that file away (what it recorded is done again) or choose a new `output`"
            ) from None
    return rows


def _once_each(pairs: list[tuple[str, object]]) -> dict:
    found = dict(pairs)
    if len(found) != len(pairs):
        twice = next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))
        raise ValueError(f"field {twice!r} is given twice")
    return found


_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def check_fields(fields: dict, kind: type | None) -> dict:
    """`fields` (a row read back), checked against dataclass `kind`: its fields without a
    default present, each known one of the type it declares (ValueError otherwise)."""
    if kind is None:
        return fields
    for f in dataclasses.fields(kind):
        if f.name not in fields:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"field {f.name!r} is missing")
            continue
        wanted = _TYPES.get(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""), ())
        value = fields[f.name]
        if wanted and (not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted)):
            raise ValueError(f"field {f.name!r} is {json.dumps(value)[:40]}, not {f.type}")
    return fields


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


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
