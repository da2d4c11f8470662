import json

import numpy as np
import pytest
from PIL import Image

from pipeline.evaluate import main
from srgan.generator import SRResNet
from srgan.weights import save_generator


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _set(folder, count: int, seed: int):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):  # large enough for NIQE after the border
        smooth = np.kron(rng.random((15, 17, 3)), np.ones((8, 8, 1)))
        Image.fromarray((smooth * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return str(folder)


@pytest.fixture
def sets(tmp_path):
    return _set(tmp_path / "Set5", 2, 0), _set(tmp_path / "Mine", 1, 1)


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "tiny_x2.pt"
    save_generator(path, SRResNet(scale=2, num_blocks=1, num_features=8, bicubic_skip=True))
    return str(path)


def test_several_models_on_several_sets_give_one_table_and_json(sets, model, capsys):
    args = ["--model", "bicubic", "--model", model, "--data", *sets, "--lpips-weights", "none"]
    code, out, err = _run(capsys, *args, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["scale"] == 2  # bicubic takes the model's scale
    assert [m["label"] for m in result["models"]] == ["bicubic", "tiny_x2"] and result["models"][1]["model"] == model
    assert list(result["sets"]) == ["Set5", "Mine"]
    for name, images in (("Set5", 2), ("Mine", 1)):
        for label in ("bicubic", "tiny_x2"):
            figures = result["sets"][name][label]
            assert figures["images"] == images and figures["psnr_y"] > 15 and 0 < figures["ssim_y"] <= 1
            assert figures["niqe"] > 0 and figures["lpips"] is None
    assert "paper" not in result
    # One progress line per set and model, on stderr; stdout holds only the JSON.
    assert err.count("scoring ") == 4 and "scoring tiny_x2 on Mine (1 images)" in err

    # The bicubic column is the single-set, single-model evaluation's figure.
    code, single, _ = _run(capsys, "--model", "bicubic", "--data", sets[0], "--scale", "2", "--json")
    assert json.loads(single)["psnr_y"] == pytest.approx(result["sets"]["Set5"]["bicubic"]["psnr_y"])

    code, out, _ = _run(capsys, *args)
    lines = out.splitlines()
    assert code == 0 and lines[1].split() == ["bicubic", "tiny_x2"]
    assert lines[2] == "Set5 (2 images)" and [line.split()[0] for line in lines[3:6]] == ["PSNR", "SSIM", "NIQE"]
    assert lines[6] == "Mine (1 images)" and "LPIPS" not in "".join(lines[1:])


def test_paper_columns_are_labelled_and_x4_only(tmp_path, sets, capsys):
    code, out, _ = _run(capsys, "--model", "bicubic", "--data", *sets, "--scale", "4", "--paper", "--json")
    paper = json.loads(out)["paper"]
    assert code == 0 and "Table 2" in paper["source"]
    assert paper["sets"]["Set5"]["SRGAN"] == {"psnr_y": 29.40, "ssim_y": 0.8472}
    assert paper["sets"]["Mine"]["SRResNet"] is None  # the paper has no figures for it

    code, out, _ = _run(capsys, "--model", "bicubic", "--data", sets[0], "--scale", "4", "--paper")
    header, psnr = out.splitlines()[2], out.splitlines()[4]
    assert code == 0 and "paper bicubic" in header and "paper SRResNet" in header and "paper SRGAN" in header
    assert psnr.split()[-4:] == ["|", "28.43", "32.05", "29.40"]

    code, _, err = _run(capsys, "--model", "bicubic", "--data", sets[0], "--scale", "2", "--paper")
    assert code == 2 and "--paper" in err and "x4" in err and err.count("\n") == 1


def test_a_model_that_does_not_load_fails_before_any_scoring(tmp_path, sets, model, capsys):
    other = tmp_path / "tiny_x4.pt"
    save_generator(other, SRResNet(scale=4, num_blocks=1, num_features=8))
    cases = [
        (["--model", "bicubic", "--model", str(tmp_path / "missing.pth")], "missing.pth does not exist"),
        (["--model", model, "--model", str(other)], "one scale"),
        (["--model", "bicubic", "--model", model, "--grid", str(tmp_path / "g.png")], "drop --grid"),
    ]
    for args, message in cases:
        code, out, err = _run(capsys, *args, "--data", *sets)
        assert code == 2 and message in err and err.count("\n") == 1 and "scoring" not in err and out == ""
    code, _, err = _run(capsys, "--model", "bicubic", "--model", model, "--data", sets[0], sets[0])
    assert code == 2 and "two sets are named 'Set5'" in err
