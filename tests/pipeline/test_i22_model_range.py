"""evaluate, promote and rate score a model under its own data_range: a file declaring another
range is scored with a one-line warning naming both, and a file whose dtype cannot hold the
model's range (a 16-bit model given 8-bit files) is refused."""

from __future__ import annotations

import json
import logging

import numpy as np
import torch

from pipeline import formats
from pipeline.evaluate import main as evaluate_main
from srgan.generator import SRResNet
from srgan.weights import save_generator
from tests.helpers import png_with_sbit, smooth_image


def _model(tmp_path, data_range: float) -> str:
    torch.manual_seed(3)
    model = SRResNet(scale=2, in_channels=3, out_channels=3, num_blocks=1, num_features=8).eval()
    path = tmp_path / "generator.pt"
    save_generator(path, model, meta={"data_range": data_range})
    return str(path)


def _images(folder, bits: int) -> None:
    folder.mkdir()
    eight = (smooth_image(np.random.default_rng(2), 48, 48, 3, np.float64) * 255).round().astype(np.uint8)
    if bits == 8:
        (folder / "a.png").write_bytes(formats.encode(eight, "a.png"))
    else:
        (folder / "a.png").write_bytes(png_with_sbit(np.round(eight * (4095 / 255)).astype(np.uint16)))


def test_a_16_bit_model_given_8_bit_files_is_refused_in_one_line(tmp_path, capsys):
    _images(tmp_path / "eight", 8)
    code = evaluate_main(["--model", _model(tmp_path, 65535), "--data", str(tmp_path / "eight"), "--scale", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert "is uint8 (at most 255) but the model reads 0..65535 (its data_range" in err[-1]
    assert err[-1].startswith("error: ") and "remove or replace" not in err[-1]


def test_a_file_declaring_another_range_than_the_model_is_scored_with_a_warning(tmp_path, capsys, caplog):
    _images(tmp_path / "twelve", 12)  # declares 0..4095 (sBIT 12)
    with caplog.at_level(logging.WARNING):
        code = evaluate_main(
            ["--model", _model(tmp_path, 65000), "--data", str(tmp_path / "twelve"), "--scale", "2", "--json"]
        )
    assert code == 0 and json.loads(capsys.readouterr().out)["psnr_y"] is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("0..4095" in w and "data_range 0..65000" in w and "\n" not in w for w in warnings)
