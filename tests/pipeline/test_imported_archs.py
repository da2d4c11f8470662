"""An imported RRDBNet (Real-ESRGAN's layout) and an imported SwinIR (spandrel's), random
weights, through every verb: upscale (tiled against untiled), evaluate, register, load from
the registry and upscale from models:/, export (or its refusal)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import formats
from pipeline.evaluate import main as evaluate_main
from pipeline.export import main as export_main
from pipeline.register import register_generator
from pipeline.upscale import main as upscale_main
from srgan.generator import GeneratorSpec
from srgan.rrdbnet import RRDBNet
from tests.helpers import png_bytes, smooth_image

# Tiles of an attention model start on its window grid and overlap by
# srgan.archs.spandrel.OVERLAP input pixels: on this small SwinIR no 8-bit level moves
# (benchmarks/tile_attention.py measures larger ones; docs/models.md).
SWINIR_TILE_LEVELS = 1


def rrdbnet_file(path: Path) -> Path:
    torch.manual_seed(0)
    model = RRDBNet(GeneratorSpec(scale=4, num_blocks=1, num_features=8, growth=8, batch_norm=False, arch="rrdbnet"))
    for p in model.parameters():
        p.data.normal_(0, 0.03)
    torch.save({"params_ema": model.state_dict()}, path)  # as Real-ESRGAN ships RealESRGAN_x4plus.pth
    return path


def swinir_file(path: Path) -> Path:
    from safetensors.torch import save_file
    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR

    torch.manual_seed(0)
    net = SwinIR(upscale=2, in_chans=3, img_size=16, window_size=4, img_range=1.0, depths=[2], embed_dim=12, num_heads=[2], mlp_ratio=2, upsampler="pixelshuffledirect", resi_connection="1conv")  # fmt: skip
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    return path


def read(path: Path) -> np.ndarray:
    return formats.decode(path.read_bytes(), path.name).astype(int)


@pytest.mark.parametrize("arch", ["rrdbnet", "swinir"])
def test_an_imported_architecture_runs_through_every_verb(tmp_path, mlflow_uri, capsys, arch):
    model = (
        rrdbnet_file(tmp_path / "RealESRGAN_x4plus.pth")
        if arch == "rrdbnet"
        else swinir_file(tmp_path / "SwinIR_x2.safetensors")
    )
    scale = 4 if arch == "rrdbnet" else 2
    rng = np.random.default_rng(5)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(png_bytes(smooth_image(rng, 37, 29)))
    common = ["--input", str(tmp_path / "in"), "--precision", "fp32", "--tracking-uri", mlflow_uri]

    # upscale, whole and tiled: exact for RRDBNet (finite radius), within the stated bound for SwinIR.
    assert upscale_main(["--model", str(model), "--output", str(tmp_path / "whole"), "--tile", "0", *common]) == 0
    assert upscale_main(["--model", str(model), "--output", str(tmp_path / "tiled"), "--tile", "12", *common]) == 0
    whole, tiled = read(tmp_path / "whole" / "a.png"), read(tmp_path / "tiled" / "a.png")
    assert whole.shape == (37 * scale, 29 * scale, 3)
    assert np.abs(whole - tiled).max() <= (1 if arch == "rrdbnet" else SWINIR_TILE_LEVELS)

    # evaluate, on HR images of its own.
    (tmp_path / "hr").mkdir()
    (tmp_path / "hr" / "b.png").write_bytes(png_bytes(smooth_image(rng, 48, 40)))
    capsys.readouterr()
    assert evaluate_main(["--model", str(model), "--data", str(tmp_path / "hr"), "--json", "--tile", "0"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.dumps(scores).count("psnr") >= 1

    # register; the registered model records the architecture and upscales as the file does.
    registered = register_generator(str(model), f"imported-{arch}", mlflow_uri)
    assert upscale_main(["--model", f"models:/imported-{arch}/{registered.version}", "--output", str(tmp_path / "reg"), "--tile", "0", *common]) == 0  # fmt: skip
    assert np.abs(read(tmp_path / "reg" / "a.png") - whole).max() <= 1

    # export: RRDBNet's ops export; an architecture that cannot is refused in one line.
    capsys.readouterr()
    code = export_main(["--model", str(model), "--output", str(tmp_path / "g.onnx"), "--json"])
    err = capsys.readouterr().err
    if arch == "rrdbnet":
        assert code == 0 and (tmp_path / "g.onnx").is_file()
    else:
        assert code in (0, 2)
        if code == 2:
            assert err.startswith("error: ") and err.count("\n") == 1 and "ONNX" in err
            assert not (tmp_path / "g.onnx").exists()
