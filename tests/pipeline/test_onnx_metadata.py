"""An ONNX export's srgan metadata is checked against its graph at load (issue 24.3): a file
whose metadata is not JSON, holds an unknown key or lies about scale, channels or receptive
radius is refused with one line (rc 2) before any image is read."""

import json

import pytest
import torch
from PIL import Image

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

from pipeline.models import onnx_model  # noqa: E402
from pipeline.models.onnx_model import META_KEY, export_onnx  # noqa: E402
from pipeline.upscale import main  # noqa: E402
from srgan.generator import GeneratorSpec, build_generator  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(path of a tiny x2 RGB export, its srgan metadata as a dict)."""
    torch.manual_seed(0)
    model = build_generator(GeneratorSpec(scale=2, num_blocks=1, num_features=4, batch_norm=False)).eval()
    path = tmp_path_factory.mktemp("onnx") / "generator.onnx"
    export_onnx(model, {"data_range": 255.0}, path)
    info = next(p.value for p in onnx.load(str(path)).metadata_props if p.key == META_KEY)
    return path, json.loads(info)


def tampered(exported, tmp_path, value: str):
    """A copy of the export whose srgan metadata is `value`."""
    model = onnx.load(str(exported[0]))
    next(p for p in model.metadata_props if p.key == META_KEY).value = value
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    return path


def upscale(model, tmp_path, capsys) -> tuple[int, list[str]]:
    (tmp_path / "in").mkdir(exist_ok=True)
    Image.new("RGB", (12, 10), (40, 90, 200)).save(tmp_path / "in" / "a.png")
    rc = main(["--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    return rc, capsys.readouterr().err.strip().splitlines()


def refused(model, tmp_path, capsys, match: str) -> None:
    rc, err = upscale(model, tmp_path, capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert "bad.onnx" in err[0] and match in err[0], err[0]
    assert not list((tmp_path / "out").rglob("*.png")) if (tmp_path / "out").exists() else True


def test_an_honest_export_upscales(exported, tmp_path, capsys):
    rc, err = upscale(exported[0], tmp_path, capsys)
    assert rc == 0, err
    assert Image.open(next((tmp_path / "out").rglob("a*.png"))).size == (24, 20)


def with_spec(info: dict, **fields) -> str:
    return json.dumps({**info, "spec": {**info["spec"], **fields}})


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda info: "{not json", "srgan metadata that is not JSON"),
        (lambda info: "[1, 2]", "srgan metadata that is a list, not an object"),
        (lambda info: json.dumps({**info, "extra": 1}), "unknown keys extra"),
        (
            lambda info: json.dumps({k: v for k, v in info.items() if k != "receptive_radius"}),
            "missing receptive_radius",
        ),
        (lambda info: with_spec(info, bogus=1), "unknown fields bogus"),
        (lambda info: with_spec(info, num_blocks=10**9), "num_blocks = 1000000000 is outside"),
        (lambda info: json.dumps({**info, "spec": "srresnet"}), "spec is not an object"),
        (lambda info: with_spec(info, scale=4), "but its srgan metadata says (1, 3, 68, 76) (scale 4"),
        (lambda info: with_spec(info, out_channels=1), "but its srgan metadata says (1, 1, 34, 38)"),
        (lambda info: with_spec(info, in_channels=1), "does not run on a (1, 1, 17, 19) input"),
        (lambda info: json.dumps({**info, "receptive_radius": -3}), "receptive_radius -3 is not an integer in 0..512"),
        (lambda info: json.dumps({**info, "receptive_radius": 10**9}), "is not an integer in 0..512"),
        (lambda info: json.dumps({**info, "receptive_radius": "8"}), 'receptive_radius "8" is not an integer'),
        (lambda info: json.dumps({**info, "receptive_radius": 2.5}), "is not an integer in 0..512"),
        (lambda info: json.dumps({**info, "meta": [1]}), "meta is a list, not an object"),
    ],
    ids=[
        "not-json",
        "not-object",
        "unknown-key",
        "no-radius",
        "unknown-spec-field",
        "huge-spec",
        "spec-string",
        "lying-scale",
        "lying-out-channels",
        "lying-in-channels",
        "negative-radius",
        "huge-radius",
        "string-radius",
        "float-radius",
        "meta-list",
    ],
)
def test_metadata_that_lies_is_refused_in_one_line_before_any_image(exported, tmp_path, capsys, edit, match):
    refused(tampered(exported, tmp_path, edit(exported[1])), tmp_path, capsys, match)


def test_an_onnx_file_over_the_size_limit_is_refused_before_it_is_read(exported, tmp_path, capsys, monkeypatch):
    path = tmp_path / "bad.onnx"
    path.write_bytes(exported[0].read_bytes())
    monkeypatch.setattr(onnx_model, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(type(path), "read_bytes", lambda self: pytest.fail(f"{self} was read whole"))
    refused(path, tmp_path, capsys, "over the 0.0 GiB limit for a model file")
