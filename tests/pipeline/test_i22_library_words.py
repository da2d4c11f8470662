"""Upscaling's library speaks of settings by name (`bands`, `value_range`, `executor`) in its
manifest rows and reasons; only the upscale command shows them as its flags."""

from __future__ import annotations

import numpy as np
import torch

from pipeline import formats
from pipeline.upscale import main as upscale_main
from pipeline.upscaling import executors
from pipeline.upscaling.manifest import read_manifest
from srgan.generator import SRResNet
from srgan.weights import save_generator
from tests.helpers import smooth_image


def test_rows_name_settings_and_the_command_prints_flags(tmp_path, capsys):
    torch.manual_seed(0)
    save_generator(tmp_path / "g.pt", SRResNet(scale=2, num_blocks=1, num_features=8).eval(), meta={})
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(0)
    (tmp_path / "in" / "four.tif").write_bytes(formats.encode(smooth_image(rng, 16, 16, 4, np.uint16), "x.tif"))
    wide = np.full((16, 16, 3), 1000, np.int32)
    (tmp_path / "in" / "wide.tif").write_bytes(formats.encode(wide, "x.tif"))
    args = ["--model", str(tmp_path / "g.pt"), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    assert upscale_main([*args, "--executor", "local"]) == 1
    err = capsys.readouterr().err
    rows = {r.key: r.error for r in read_manifest(str(tmp_path / "out"))}
    assert "give `bands` 3 band numbers" in rows["four.tif"] and "`value_range` to stats" in rows["wide.tif"]
    assert not any("--" in e for e in rows.values()), rows
    assert "give --bands 3 band numbers" in err and "--value-range to stats" in err and "`" not in err
    assert "executor local (--executor local)" in err
    assert "--" not in executors.choose("local", str(tmp_path / "in"), [])[1]
