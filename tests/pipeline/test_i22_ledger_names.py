"""The ledger reads only files named as its parts (<run id>[-NNNNN].jsonl, the run id as
new_run_id makes it); a stray .jsonl in its folder is skipped with a warning, not parsed."""

from __future__ import annotations

import json
import logging

from pipeline.io import ledger
from pipeline.upscaling.manifest import ManifestRow, read_manifest, recorded_runs

RUN = "20261207T000000000000Z-abcdef"


def test_run_of_knows_only_run_ids():
    assert ledger.run_of(f"runs/{RUN}-00003.jsonl") == RUN
    assert ledger.run_of("runs/20261101T000000Z-aaaaaa.jsonl") == "20261101T000000Z-aaaaaa"  # before microseconds
    assert ledger.run_of(ledger.new_run_id() + "-00000.jsonl") is not None
    for stray in ("notes.jsonl", "export-00001.jsonl", f"{RUN}-1.jsonl", f"{RUN}.jsonl.bak", f"x{RUN}.jsonl"):
        assert ledger.run_of(stray) is None, stray


def test_a_stray_jsonl_in_the_ledger_folder_is_skipped_with_a_warning(tmp_path, caplog):
    book = ledger.Ledger[ManifestRow](str(tmp_path / "_manifest"), RUN)
    book.add(ManifestRow("a.png", "in/a.png", "out/a.png", status="done"))
    book.flush()
    (tmp_path / "_manifest" / "runs" / "notes.jsonl").write_text(json.dumps({"note": "not a row"}) + "\nnot json\n")
    with caplog.at_level(logging.WARNING):
        rows = read_manifest(str(tmp_path))
    assert [(r.key, r.run) for r in rows] == [("a.png", RUN)]
    assert any("notes.jsonl" in r.getMessage() and "not a ledger file" in r.getMessage() for r in caplog.records)
    assert set(recorded_runs(str(tmp_path))) == {RUN}
