"""The one job ledger of prepare and upscale: typed rows in whole parts, the latest row per key,
and ledgers written before the parts (one file a run) read the same."""

import json
from dataclasses import dataclass

from pipeline.io import ledger
from pipeline.upscaling.manifest import ManifestRow, latest_rows, read_manifest, recorded_runs


@dataclass
class Row:
    key: str
    status: str

    @classmethod
    def make(cls, values: dict, run: str) -> "Row":
        return cls(values["key"], f"{values['status']}@{run}")


def test_parts_are_whole_and_never_rewritten(tmp_path):
    book = ledger.Ledger[Row](str(tmp_path), "20261207T000000000000Z-abcdef", every_s=3600)
    book.flush(force=True)  # the run is on record before its first row
    book.add(Row("a", "done"))
    book.flush()
    first = (tmp_path / "runs" / "20261207T000000000000Z-abcdef-00001.jsonl").read_text()
    book.add(Row("b", "failed"))
    book.flush()
    assert (tmp_path / "runs" / "20261207T000000000000Z-abcdef-00001.jsonl").read_text() == first
    assert sorted(p.name for p in (tmp_path / "runs").iterdir())[-1].endswith("-00002.jsonl")
    rows = ledger.read_rows(str(tmp_path), Row.make)
    assert rows == [Row("a", "done@20261207T000000000000Z-abcdef"), Row("b", "failed@20261207T000000000000Z-abcdef")]
    assert ledger.recorded_runs(str(tmp_path)) == {"20261207T000000000000Z-abcdef"}


def test_a_manifest_written_before_the_parts_reads_the_same(tmp_path):
    """Upscale runs used to write runs/<run>.jsonl whole; those rows still count on resume."""
    runs = tmp_path / "_manifest" / "runs"
    runs.mkdir(parents=True)
    old = {"key": "a.png", "input": "in/a.png", "output": "out/a.png", "status": "done", "windows": 1}
    (runs / "20261101T000000Z-aaaaaa.jsonl").write_text(json.dumps(old) + "\n")
    book = ledger.Ledger[ManifestRow](str(tmp_path / "_manifest"), "20261207T000000000000Z-bbbbbb")
    book.add(ManifestRow("a.png", "in/a.png", "out/a.png", status="skipped"))
    book.add(ManifestRow("b.png", "in/b.png", "out/b.png", status="done"))
    book.flush()
    rows = read_manifest(str(tmp_path))
    assert [(r.key, r.status, r.run) for r in rows] == [
        ("a.png", "done", "20261101T000000Z-aaaaaa"),
        ("a.png", "skipped", "20261207T000000000000Z-bbbbbb"),
        ("b.png", "done", "20261207T000000000000Z-bbbbbb"),
    ]
    assert latest_rows(rows)["a.png"].run == "20261101T000000Z-aaaaaa"  # a later skip never hides the done row
    assert set(recorded_runs(str(tmp_path))) == {"20261101T000000Z-aaaaaa", "20261207T000000000000Z-bbbbbb"}
