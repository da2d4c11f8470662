"""Which inputs an upscale job still has to do: each input's output key, and what an output
that exists already means (done by this model and settings, or someone else's).
"""

from __future__ import annotations

import fnmatch
from dataclasses import replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from pipeline.errors import DecodeError, UsageError
from pipeline.io import storage
from pipeline.upscaling import manifest as records
from pipeline.upscaling.manifest import MANIFEST_DIR, new_row

if TYPE_CHECKING:
    from pipeline.upscaling.job import UpscaleJob


def output_key(key: str) -> str:
    """The input's relative key, refused when it would leave the output prefix."""
    if not key or key.startswith("/") or any(part in ("..", ".", "") for part in key.split("/")):
        raise DecodeError(f"key {key!r} would escape the output prefix; rename it")
    return PurePosixPath(key).as_posix()


def plan_outputs(
    job: UpscaleJob, out_root: str, ident: dict, runs: dict | None = None
) -> tuple[list[records.WorkItem], list[records.ManifestRow]]:
    """(items to process, rows decided without processing: skipped or refused). `include`:
    shell-style patterns on the key relative to the input; a file must match one of them.
    An output that exists is skipped when the same model and settings (`ident`) made it, and
    stops the job (UsageError) when another did, unless `overwrite`. `runs`: the runs recorded
    under `out_root` (manifest.recorded_runs), read here when not given."""
    in_root = storage.local_or_uri(job.input).rstrip("/")
    files, outside = storage.list_inputs(in_root, job.extensions)
    if job.include:
        files = [f for f in files if any(fnmatch.fnmatchcase(f.key, pattern) for pattern in job.include)]
        if not files:
            raise UsageError(
                f"no input under {in_root} matches `include` {' '.join(job.include)} (patterns match the key relative to `input`, e.g. 'satellite/*' or '*.tif')",
                param=("include", "input"),
            )
    owners, existing = {}, set()
    if not job.overwrite and storage.exists(out_root):
        existing = {f.key for f in storage.list_files(out_root) if not f.key.startswith(MANIFEST_DIR + "/")}
        owners = {
            k: r
            for k, r in records.latest_rows(records.read_manifest(out_root)).items()
            if r.status in ("done", "skipped")
        }
    runs = records.recorded_runs(out_root) if runs is None else runs
    todo, decided, conflicts = [], [], []
    for f in outside:
        item = records.WorkItem(f.key, f.uri)
        decided.append(new_row(item, ident, error="a symbolic link that leads outside `input`; not read"))
    for f in files:
        item = records.WorkItem(f.key, f.uri, size=f.size)
        try:
            key = output_key(f.key)
        except DecodeError as exc:
            decided.append(new_row(item, ident, status="failed", error=str(exc)))
            continue
        item = replace(item, output=storage.join(out_root, key))
        if key not in existing:
            todo.append(item)
        elif key in owners:
            reason = _not_ours(owners[key], item, ident, runs)
            if reason:
                conflicts.append((key, reason))
                continue
            decided.append(new_row(item, ident, status="skipped", error="done before with this model and settings"))
        elif runs and all(records.same_maker(r, ident) for r in runs.values()):
            # Written by an interrupted run of this same job before its row was recorded.
            decided.append(
                new_row(item, ident, status="skipped", error="made by an interrupted run with this model and settings")
            )
        elif runs:
            conflicts.append((key, "has no row, and a run with other settings was interrupted there"))
        else:
            decided.append(
                new_row(
                    item,
                    ident,
                    error="an output of this name exists that no run of this job made; move it away or use `overwrite`",
                )
            )
    if conflicts:
        key, reason = conflicts[0]
        raise UsageError(
            f"{len(conflicts)} output(s) under {out_root} cannot count as done by {records.describe(ident)}: e.g. {key!r} {reason}; "
            "re-run with `overwrite` to redo them, or choose a new `output` prefix",
            param=("overwrite", "output"),
        )
    return todo, decided


def _not_ours(owner: records.ManifestRow, item: records.WorkItem, ident: dict, runs: dict) -> str:
    """Why an existing output whose latest row is `owner` is not this job's to skip, or ""
    when it is: the same maker, from the same input bytes, and no run with other settings was
    interrupted after it (such a run may have rewritten the file before writing its row)."""
    if not records.same_maker(owner, ident):
        return f"was made by {records.describe(owner)}"
    if owner.input != item.input or int(owner.bytes_in) != item.size:
        return f"was made from {owner.input} ({owner.bytes_in} bytes), not from {item.input} ({item.size} bytes)"
    later = [
        r
        for run, r in runs.items()
        if run > owner.run and r is not None and not r.get("finished_at") and not records.same_maker(r, ident)
    ]
    if later:
        return f"may have been rewritten by the interrupted run {later[0]['run']} ({records.describe(later[0])})"
    return ""
