import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import formats
from pipeline.evaluate import main
from srgan.generator import SRResNet
from srgan.weights import save_generator

SET5 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "Set5"


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.skipif(not SET5.is_dir(), reason=f"Set5 not present at {SET5} (shared data beside the checkout)")
def test_bicubic_on_set5_x4_reproduces_the_published_figures(capsys):
    code, out, _ = _run(capsys, "--model", "bicubic", "--data", str(SET5), "--scale", "4", "--json")
    assert code == 0
    report = json.loads(out)
    # Published bicubic x4 on Set5 (EDSR/RCAN/ESRGAN tables): 28.42 dB / 0.8104.
    assert report["psnr_y"] == pytest.approx(28.42, abs=0.02)
    assert report["ssim_y"] == pytest.approx(0.8104, abs=0.002)
    assert report["dataset"] == "Set5" and report["scale"] == 4 and len(report["images"]) == 5


@pytest.fixture
def hr_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "hr"
    (folder / "sub").mkdir(parents=True)
    smooth = np.kron(rng.random((6, 8, 3)), np.ones((8, 8, 1)))
    Image.fromarray((smooth * 255).astype(np.uint8)).save(folder / "a.png")
    Image.fromarray((smooth[:45, :61] * 255).astype(np.uint8)).save(folder / "sub" / "odd.png")  # modcrop
    Image.fromarray((smooth[:40, :40, 0] * 255).astype(np.uint8)).save(folder / "sub" / "gray.png")  # -> RGB
    (folder / "bands.tif").write_bytes(
        formats.encode((smooth[..., :2].repeat(2, axis=2) * 65535).astype(np.uint16), "bands.tif")
    )
    return folder


def test_checkpoint_model_table_grid_and_json(tmp_path, hr_folder, capsys):
    ckpt = tmp_path / "g.pt"
    save_generator(ckpt, SRResNet(scale=4, num_blocks=1, num_features=8))
    grid = tmp_path / "grid.png"
    code, out, err = _run(capsys, "--model", str(ckpt), "--data", str(hr_folder), "--grid", str(grid))
    # The 4-band TIFF cannot go through a 3-channel model: a clear error, exit 2.
    assert code == 2 and "bands.tif: has 4 band(s), the model takes 3" in err

    (hr_folder / "bands.tif").unlink()
    code, out, _ = _run(capsys, "--model", str(ckpt), "--data", str(hr_folder), "--grid", str(grid))
    assert code == 0
    assert "a.png" in out and "sub/odd.png" in out and "sub/gray.png" in out and "mean Y of 3" in out
    picture = Image.open(grid)
    assert picture.width > 4 * 40 and picture.height > 2 * 40

    code, out, _ = _run(capsys, "--model", str(ckpt), "--data", str(hr_folder), "--json")
    report = json.loads(out)
    assert {"dataset", "scale", "psnr_y", "ssim_y", "images", "bicubic"} <= set(report)
    odd = next(i for i in report["images"] if i["name"] == "sub/odd.png")
    assert (odd["height"], odd["width"]) == (44, 60)
    assert report["psnr_y"] < report["bicubic"]["psnr_y"]  # an untrained model loses to bicubic


def test_n_band_images_are_scored_on_all_bands(hr_folder, capsys):
    code, out, _ = _run(capsys, "--model", "bicubic", "--data", str(hr_folder), "--scale", "2", "--json")
    assert code == 0
    bands = next(i for i in json.loads(out)["images"] if i["name"] == "bands.tif")
    assert bands["channels"] == 4 and bands["psnr_y"] is None and bands["psnr"] > 20


def test_errors_are_one_line_and_exit_2(tmp_path, hr_folder, capsys):
    ckpt = tmp_path / "g.pt"
    save_generator(ckpt, SRResNet(scale=4, num_blocks=1, num_features=8))
    cases = [
        (["--model", "bicubic", "--data", str(tmp_path / "nowhere"), "--scale", "4"], "does not exist"),
        (
            ["--model", str(tmp_path / "missing.pt"), "--data", str(hr_folder)],
            "missing.pt does not exist; give 'bicubic', a model file (.pt, .pth",
        ),
        (["--model", str(ckpt), "--data", str(hr_folder), "--scale", "2"], "upscales x4, but --scale 2"),
        (["--model", "bicubic", "--data", str(hr_folder)], "needs a scale (--scale)"),
        (["--model", str(ckpt), "--data", str(hr_folder), "--device", "bogus"], "--device 'bogus' is not a device"),
    ]
    for args, message in cases:
        code, _, err = _run(capsys, *args)
        assert code == 2 and message in err and err.count("\n") == 1


def test_perceptual_figures_beside_distortion_for_model_and_bicubic(tmp_path, capsys):
    import torch
    from torchvision.models import alexnet

    from pipeline.scoring.protocol import caption

    data = tmp_path / "hr"
    data.mkdir()
    rng = np.random.default_rng(7)
    for i in range(2):  # large enough for NIQE: 96 x 96 blocks after the 2 px border
        Image.fromarray(rng.integers(0, 256, (120, 136, 3), dtype=np.uint8)).save(data / f"p{i}.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(data / "small.png")  # too small for NIQE
    model = tmp_path / "g.pt"
    save_generator(model, SRResNet(scale=2, num_blocks=1, num_features=8, bicubic_skip=True))
    backbone = tmp_path / "alexnet.pth"
    torch.save(alexnet(weights=None).features.state_dict(), backbone)  # a weight file the test makes

    code, out, err = _run(
        capsys, "--model", str(model), "--data", str(data), "--json", "--lpips-weights", str(backbone)
    )
    result = json.loads(out)
    assert code == 0 and "LPIPS is skipped" not in err
    for side in (result, result["bicubic"]):
        assert side["niqe"] > 0 and side["lpips"] >= 0
    by_name = {i["name"]: i for i in result["images"]}
    assert (
        by_name["small.png"]["niqe"] is None and by_name["p0.png"]["niqe"] > 0 and by_name["p0.png"]["bicubic_niqe"] > 0
    )
    assert by_name["p0.png"]["lpips"] is not None

    code, out, err = _run(
        capsys, "--model", str(model), "--data", str(data), "--lpips-weights", str(tmp_path / "none.pth")
    )
    assert (
        code == 0 and "NIQE" in out and err.count("note: LPIPS is skipped") == 1 and "LPIPS" not in out.splitlines()[2]
    )
    figures = {"psnr_y": 30.0, "ssim_y": 0.9, "niqe": 4.25, "lpips": 0.123}
    assert (
        caption("a.png", figures, {**figures, "niqe": 7.5})
        == "a.png  bicubic 30.00 dB NIQE 7.50 LPIPS 0.123  SR 30.00 dB NIQE 4.25 LPIPS 0.123"
    )


def test_no_reference_scores_images_as_they_are(tmp_path, capsys):
    data = tmp_path / "out"
    data.mkdir()
    rng = np.random.default_rng(8)
    Image.fromarray(rng.integers(0, 256, (200, 100, 3), dtype=np.uint8)).save(data / "a.png")
    Image.fromarray(rng.integers(0, 256, (50, 50), dtype=np.uint8)).save(data / "tiny.png")
    code, out, _ = _run(capsys, "--no-reference", "--data", str(data), "--json")
    result = json.loads(out)
    by_name = {i["name"]: i for i in result["images"]}
    assert code == 0 and by_name["a.png"]["niqe"] > 0 and by_name["tiny.png"]["niqe"] is None
    assert result["niqe"] == by_name["a.png"]["niqe"]
    code, out, _ = _run(capsys, "--no-reference", "--data", str(data))
    assert code == 0 and "NIQE" in out and "mean of 1" in out
    code, _, err = _run(capsys, "--no-reference", "--model", "bicubic", "--data", str(data))
    assert code == 2 and "drop --model" in err
    code, _, err = _run(capsys, "--data", str(data))
    assert code == 2 and "--model is required (or --no-reference" in err
