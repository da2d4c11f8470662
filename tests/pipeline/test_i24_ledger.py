"""Issue 24, point 10: a damaged job ledger (upscale's manifest, prepare's log) is repaired with a
warning or refused with exit 2, never silently trusted. Real ledgers written by the verbs, then
damaged on disk as a crash, a copy or a hand would."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipeline.data.prepared import open_prepared
from pipeline.errors import DataError
from pipeline.prepare import main as prepare_main
from pipeline.upscale import main as upscale_main
from tests.helpers import one_error_line, write_images


def _parts(runs: Path) -> list[Path]:
    """The ledger parts under `runs` that hold rows, oldest first."""
    return [p for p in sorted(runs.glob("*.jsonl")) if p.read_text().strip()]


def _cut_last_line(part: Path) -> int:
    """Cut `part` in the middle of its last line, as a write that stopped would; its line number."""
    text = part.read_text()
    lines = text.splitlines()
    part.write_text(text[: len(text) - len(lines[-1]) // 2 - 1])
    return len(lines)


# upscale: the manifest under <output>/_manifest/


@pytest.fixture
def upscaled(tmp_path) -> tuple[list[str], Path]:
    write_images(tmp_path / "in", 3, size=(16, 16))
    args = ["--model", "bicubic", "--scale", "2", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    args += ["--executor", "local"]
    assert upscale_main(args) == 0
    return args, tmp_path / "out" / "_manifest" / "runs"


def test_upscale_drops_a_cut_short_last_line_with_a_warning_and_resumes(upscaled, capsys, caplog):
    args, runs = upscaled
    part = _parts(runs)[-1]
    number = _cut_last_line(part)
    with caplog.at_level(logging.WARNING, logger="pipeline.io.ledger"):
        assert upscale_main(args) == 0
    warned = [r.getMessage() for r in caplog.records if "cut short" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(f"{part} line {number} is cut short"), warned
    assert "Traceback" not in capsys.readouterr().err
    table = pd.read_parquet(runs.parent / "manifest.parquet")
    assert sorted(table.status) == ["done", "done", "skipped"]  # the dropped row's output: kept, counted once


def test_upscale_refuses_a_damaged_line_that_is_not_the_last(upscaled, capsys):
    args, runs = upscaled
    part = _parts(runs)[-1]
    part.write_text('{"key": "img_000.png", "input": "x", "out\n' + part.read_text())
    line = one_error_line(capsys, upscale_main(args))
    assert line.startswith(f"error: {part} line 1 is not a row of this job's ledger"), line
    assert line.endswith("move that file away (what it recorded is done again) or choose a new --output"), line


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda row: json.dumps(row)[:-1] + ', "status": "failed"}', "field 'status' is given twice"),
        (lambda row: json.dumps({**row, "status": "maybe"}), "status 'maybe' is not one of done, skipped, failed"),
        (lambda row: json.dumps({**row, "width": "wide"}), "field 'width' is \"wide\", not int"),
        (lambda row: json.dumps({k: v for k, v in row.items() if k != "key"}), "field 'key' is missing"),
        (lambda row: json.dumps([row]), "a JSON list, not an object"),
    ],
)
def test_upscale_refuses_a_row_that_does_not_read_as_one(upscaled, capsys, damage, reason):
    args, runs = upscaled
    part = _parts(runs)[-1]
    lines = part.read_text().splitlines()
    lines[0] = damage(json.loads(lines[0]))
    part.write_text("\n".join(lines) + "\n")
    line = one_error_line(capsys, upscale_main(args))
    assert line.startswith(f"error: {part} line 1 is not a row of this job's ledger ({reason})"), line


def test_upscale_refuses_rows_of_another_model_in_a_run_that_recorded_its_own(upscaled, capsys):
    """Another job's manifest pasted into this one's: even with --overwrite (which redoes every
    output) the rows would reach manifest.parquet as this prefix's record."""
    args, runs = upscaled
    part = _parts(runs)[-1]
    row = json.loads(part.read_text().splitlines()[0])
    other = {**row, "key": "ghost.png", "model": "other.pt", "model_id": "0123456789abcdef", "scale": 4}
    part.write_text(part.read_text() + json.dumps(other) + "\n")
    line = one_error_line(capsys, upscale_main([*args, "--overwrite"]))
    assert line.startswith(f"error: the manifest under {runs.parent.parent} holds a row of another job: run "), line
    assert (
        "its row for 'ghost.png' says other.pt (sha256 0123456789abcdef) x4" in line and "choose a new --output" in line
    )


def test_upscale_refuses_a_damaged_run_record(upscaled, capsys):
    args, runs = upscaled
    (record,) = runs.glob("*.job.json")
    record.write_text(record.read_text()[:20])
    line = one_error_line(capsys, upscale_main(args))
    assert line.startswith(f"error: {record} is damaged ("), line


def test_upscale_several_rows_of_one_key_are_a_resume_and_the_latest_counts(tmp_path, capsys):
    """A failed input, fixed and re-run: its key has a failed row and a later done row."""
    write_images(tmp_path / "in", 2, size=(16, 16))
    (tmp_path / "in" / "late.png").write_bytes(b"not a png yet")
    args = ["--model", "bicubic", "--scale", "2", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    args += ["--executor", "local"]
    assert upscale_main(args) == 1
    shutil.copyfile(tmp_path / "in" / "img_000.png", tmp_path / "in" / "late.png")
    assert upscale_main(args) == 0
    rows = [json.loads(x) for p in _parts(tmp_path / "out" / "_manifest" / "runs") for x in p.read_text().splitlines()]
    assert [r["status"] for r in rows if r["key"] == "late.png"] == ["failed", "done"]
    table = pd.read_parquet(tmp_path / "out" / "_manifest" / "manifest.parquet").set_index("key")
    assert table.loc["late.png", "status"] == "done"


# prepare: the log under <output>/_prepared/


@pytest.fixture
def prepared(ray_session, tmp_path) -> tuple[list[str], Path]:
    write_images(tmp_path / "in", 3, size=(64, 64))
    args = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    assert prepare_main(args) == 0
    return args, tmp_path / "out" / "_prepared" / "runs"


def _manifest_images(out: Path) -> list[str]:
    lines = [json.loads(x) for x in (out / "_prepared" / "manifest.jsonl").read_text().splitlines()]
    return sorted(x["key"] for x in lines if x["kind"] == "image")


def test_prepare_drops_a_cut_short_last_line_with_a_warning_and_redoes_that_source(prepared, capsys, caplog):
    args, runs = prepared
    part = _parts(runs)[-1]  # a slow run writes a part every 10 s
    number = _cut_last_line(part)
    with caplog.at_level(logging.WARNING, logger="pipeline.io.ledger"):
        assert prepare_main(args) == 0
    assert any(r.getMessage().startswith(f"{part} line {number} is cut short") for r in caplog.records)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "1 done now, 2 done before" in err, err
    assert _manifest_images(runs.parent.parent) == ["img_000.png", "img_001.png", "img_002.png"]


def test_prepare_refuses_a_damaged_line_that_is_not_the_last(prepared, capsys):
    args, runs = prepared
    part = _parts(runs)[-1]  # a slow run writes a part every 10 s
    part.write_text(part.read_text()[:30] + "\n" + part.read_text())
    line = one_error_line(capsys, prepare_main(args), alone=False)
    assert line.startswith(f"error: {part} line 1 is not a row of this job's ledger"), line


def test_prepare_refuses_records_of_another_prepare(prepared, tmp_path, capsys):
    """A part of another folder's log copied into this one: its sources would count as done here."""
    args, runs = prepared
    write_images(tmp_path / "other", 1, size=(64, 64), seed=1)
    assert prepare_main(["--input", str(tmp_path / "other"), "--output", str(tmp_path / "out2")]) == 0
    foreign = _parts(tmp_path / "out2" / "_prepared" / "runs")[-1]
    shutil.copyfile(foreign, runs / foreign.name)
    capsys.readouterr()
    line = one_error_line(capsys, prepare_main(args), alone=False)
    assert line.startswith(f"error: the prepare ledger under {runs.parent} holds a record of another prepare"), line
    assert "for 'img_000.png'" in line and line.endswith("or choose a new --output"), line


def test_prepare_refuses_a_damaged_settings_file(prepared, capsys):
    args, runs = prepared
    settings = runs.parent / "settings.json"
    settings.write_text(settings.read_text()[:15])
    line = one_error_line(capsys, prepare_main(args), alone=False)
    assert line.startswith(f"error: {settings} is damaged ("), line


def test_prepare_several_records_of_one_source_the_latest_counts(prepared, capsys):
    """An earlier run that found a source bad, and a later one that made it: it is made."""
    args, runs = prepared
    part = _parts(runs)[-1]  # a slow run writes a part every 10 s
    record = json.loads(part.read_text().splitlines()[0])
    earlier = runs / "20200101T000000000000Z-aaaaaa-00000.jsonl"
    earlier.write_text(json.dumps({**record, "status": "bad", "reason": "was bad once", "images": "[]"}) + "\n")
    assert prepare_main(args) == 0
    assert "0 done now, 3 done before, 0 bad" in capsys.readouterr().err
    assert _manifest_images(runs.parent.parent) == ["img_000.png", "img_001.png", "img_002.png"]


def test_training_refuses_a_damaged_prepared_manifest_naming_file_and_line(prepared):
    _, runs = prepared
    manifest = runs.parent / "manifest.jsonl"
    manifest.write_text(manifest.read_text()[:-10])
    with pytest.raises(DataError, match="^" + re.escape(f"data.train: {manifest} line 4 does not read (")):
        open_prepared(str(runs.parent.parent))
