"""Crops are seeded by a file's key under its data root; a file whose read path has no key
(it would be seeded by the path, and change if the data moves) is warned about once."""

from __future__ import annotations

import logging

import numpy as np

from pipeline import formats
from pipeline.data.batches import ImageSpec, PatchBatches
from pipeline.io import storage
from srgan.degrade import build_degradation
from tests.helpers import smooth_image


def test_a_path_without_a_key_is_warned_about_once_naming_it(tmp_path, caplog):
    rng = np.random.default_rng(4)
    data = formats.encode(smooth_image(rng, 40, 40), "x.png")
    (tmp_path / "known.png").write_bytes(data)
    files = storage.list_files(str(tmp_path), [".png"])
    batches = PatchBatches(ImageSpec(channels=3, min_size=24), 24, 2, 2, build_degradation("bicubic", 2), seed=3)
    keyed = batches.for_files(files)
    rows = {"bytes": [data] * 3, "path": [files[0].path, "moved/a.png", "moved/b.png"], "draw": [0.5] * 3}
    with caplog.at_level(logging.WARNING, logger="pipeline.data.batches"):
        keyed(rows)
        keyed(rows)
    warned = [r.getMessage() for r in caplog.records if "no data-root key" in r.getMessage()]
    assert len(warned) == 1 and "moved/a.png" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.data.batches"):
        batches.for_files(files)({"bytes": [data], "path": [files[0].path], "draw": [0.5]})
    assert not [r for r in caplog.records if "no data-root key" in r.getMessage()]
