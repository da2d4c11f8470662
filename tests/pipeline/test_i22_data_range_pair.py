"""data.data_range takes a maximum (4095) or a [low, high] pair, so signed data that declares
nothing can be read from its true low; an empty pair fails at load in one line."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from pipeline.config import load_config
from pipeline.data import ImageSpec
from pipeline.errors import ConfigError

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"


def test_a_low_high_pair_reads_signed_data_from_its_low():
    cfg = load_config(QUICKSTART, ["data.data_range=[-1024, 3071]"])
    assert cfg.data.data_range == (-1024.0, 3071.0)
    values = np.random.default_rng(1).integers(-1024, 3072, (20, 24)).astype(np.int16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, values, photometric="minisblack")  # declares no range
    tensor, levels, used = ImageSpec(channels=1, data_range=cfg.data.data_range).decode_with_range(
        buf.getvalue(), "ct.tif"
    )
    assert (used.low, used.high, levels) == (-1024, 3071, 4095)
    assert torch.allclose(tensor, torch.from_numpy((values[None].astype(np.float32) + 1024) / 4095), atol=1e-6)
    assert load_config(QUICKSTART, ["data.data_range=4095"]).data.data_range == 4095


@pytest.mark.parametrize(
    "value, message",
    [("[3071, -1024]", "low below high"), ("[1, 2, 3]", "or \\[low, high\\]"), ("-5", "or \\[low, high\\]")],
)
def test_a_bad_data_range_fails_at_load_naming_the_key(value, message):
    with pytest.raises(ConfigError, match=f"data.data_range: .*{message}") as exc:
        load_config(QUICKSTART, [f"data.data_range={value}"])
    assert "\n" not in str(exc.value)
