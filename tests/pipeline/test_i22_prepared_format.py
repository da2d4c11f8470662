"""Prepared sets are written as format 2 (the reader rule that reads GeoTIFF declarations);
a set of format 1 is refused in one line that says to re-run prepare."""

from __future__ import annotations

import json

import pytest

from pipeline.data.prepared import FORMAT, MANIFEST, PREPARED_DIR, open_prepared, write_manifest
from pipeline.errors import DataError

HEADER = {"input": "data/raw", "files": "output", "settings": {"input": "data/raw", "sub_images": 0, "step": 0}}


def test_a_format_1_prepared_set_is_refused_with_the_command_that_redoes_it(tmp_path):
    folder = tmp_path / "old" / PREPARED_DIR
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text(json.dumps({"kind": "header", "format": 1, **HEADER}) + "\n")
    with pytest.raises(
        DataError, match=r"manifest format 1.*re-run python -m pipeline.prepare --input data/raw"
    ) as exc:
        open_prepared(str(tmp_path / "old"))
    assert "\n" not in str(exc.value)


def test_a_prepared_set_is_written_as_format_2_and_read_back(tmp_path):
    write_manifest(str(tmp_path / "new"), HEADER, [], [], "test")
    assert FORMAT == 2
    assert open_prepared(str(tmp_path / "new")).header["format"] == 2
