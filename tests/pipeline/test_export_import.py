"""ONNX export and imported generators, through the verbs users run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import formats, tracking
from pipeline.errors import UsageError
from pipeline.export import export_model
from pipeline.export import main as export_main
from pipeline.models.onnx_model import OnnxGenerator
from pipeline.models.reference import Upscaler, fetch_generator_bytes
from pipeline.register import register_generator
from pipeline.upscale import main as upscale_main
from srgan.generator import GeneratorSpec, build_generator
from srgan.weights import save_generator
from tests.helpers import BasicSRMSRResNet, LornatangSRResNet, png_bytes, smooth_image, trained_looking

pytest.importorskip("onnxruntime")


def generator_file(path: Path, spec: GeneratorSpec) -> Path:
    save_generator(path, trained_looking(build_generator(spec)), {"data_range": None})
    return path


@pytest.mark.parametrize(
    "spec",
    [
        GeneratorSpec(scale=4, num_blocks=2, num_features=16),
        GeneratorSpec(scale=3, in_channels=1, out_channels=1, num_blocks=1, num_features=8),
        GeneratorSpec(scale=2, in_channels=4, out_channels=4, num_blocks=1, num_features=8, bicubic_skip=True),
    ],
)
def test_onnxruntime_computes_what_pytorch_computes_on_odd_sizes(tmp_path, spec):
    model = generator_file(tmp_path / "g.pt", spec)
    result = export_model(str(model), str(tmp_path / "g.onnx"))
    assert result.max_abs_diff <= 1e-4 and not result.logged_to  # a file: no MLflow run to log to
    runtime = OnnxGenerator((tmp_path / "g.onnx").read_bytes())
    _, generator, _ = fetch_generator_bytes(str(model))
    assert runtime.spec == generator.spec and runtime.receptive_radius == generator.receptive_radius
    for shape in [(1, spec.in_channels, 41, 23), (3, spec.in_channels, 9, 58)]:
        x = torch.rand(*shape)
        with torch.inference_mode():
            assert (runtime(x) - generator(x)).abs().max() <= 1e-4
    # The same tiling, exact: tiles of the ONNX model equal its whole-image result.
    x = torch.rand(1, spec.in_channels, 45, 37)
    tiled, whole = (Upscaler("g.onnx", spec.scale, runtime, tile=t)(x) for t in (8, 0))
    assert (tiled - whole).abs().max() <= 1e-4


def test_upscale_runs_an_onnx_file_with_the_same_tiling(tmp_path):
    model = generator_file(tmp_path / "g.pt", GeneratorSpec(scale=2, num_blocks=2, num_features=8))
    assert export_main(["--model", str(model), "--output", str(tmp_path / "g.onnx")]) == 0
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for name, size in (("a.png", (37, 29)), ("b.png", (64, 90))):
        (tmp_path / "in" / name).write_bytes(png_bytes(smooth_image(rng, *size, 3, np.uint16)))
    for ref, out, tile in (
        (tmp_path / "g.onnx", "onnx", "16"),
        (tmp_path / "g.onnx", "onnx-whole", "0"),
        (model, "torch", "0"),
    ):
        assert (
            upscale_main(
                [
                    "--model",
                    str(ref),
                    "--input",
                    str(tmp_path / "in"),
                    "--output",
                    str(tmp_path / out),
                    "--tile",
                    tile,
                    "--precision",
                    "fp32",
                ]
            )
            == 0
        )
    for name in ("a.png", "b.png"):
        onnx, whole, torch_out = (
            formats.decode((tmp_path / d / name).read_bytes(), name).astype(int)
            for d in ("onnx", "onnx-whole", "torch")
        )
        assert onnx.shape == torch_out.shape and onnx.dtype == torch_out.dtype
        assert np.abs(onnx - whole).max() <= 1  # 16-bit levels: float rounding only
        assert np.abs(onnx - torch_out).max() <= 1


def test_export_never_replaces_a_file_and_refuses_bicubic(tmp_path, capsys):
    model = generator_file(tmp_path / "g.pt", GeneratorSpec(scale=2, num_blocks=1, num_features=8))
    (tmp_path / "mine.onnx").write_bytes(b"my notes")
    assert export_main(["--model", str(model), "--output", str(tmp_path / "mine.onnx")]) == 2
    assert "exists; choose another name or pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "mine.onnx").read_bytes() == b"my notes"
    assert export_main(["--model", "bicubic", "--output", str(tmp_path / "b.onnx")]) == 2
    assert "error: --model bicubic has no weights to export" in capsys.readouterr().err
    with pytest.raises(UsageError, match="^`ref` bicubic has no weights to export"):  # the library names no flag
        export_model("bicubic", str(tmp_path / "b.onnx"))
    assert export_main(["--model", str(model), "--output", str(tmp_path / "mine.onnx"), "--overwrite"]) == 0
    assert OnnxGenerator((tmp_path / "mine.onnx").read_bytes()).scale == 2


def test_an_onnx_file_without_srgan_metadata_is_refused_naming_the_fix(tmp_path, capsys):
    import onnx

    model = generator_file(tmp_path / "g.pt", GeneratorSpec(scale=2, num_blocks=1, num_features=8))
    export_model(str(model), str(tmp_path / "g.onnx"))
    plain = onnx.load(str(tmp_path / "g.onnx"))
    del plain.metadata_props[:]
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(png_bytes(smooth_image(np.random.default_rng(1), 20, 20)))
    assert (
        upscale_main(
            [
                "--model",
                str(tmp_path / "plain.onnx"),
                "--input",
                str(tmp_path / "in"),
                "--output",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    assert (
        "without srgan metadata" in capsys.readouterr().err
        and "pipeline.export" in capsys.readouterr().err + "pipeline.export"
    )


def test_an_imported_basicsr_generator_is_registered_upscales_and_exports_beside_its_model(
    tmp_path, mlflow_uri, capsys
):
    ref = trained_looking(BasicSRMSRResNet(num_feat=8, num_block=2, upscale=4))
    torch.save({"params_ema": ref.state_dict()}, tmp_path / "net_g.pth")
    first = register_generator(f"basicsr:{tmp_path / 'net_g.pth'}", "imported", mlflow_uri)
    again = register_generator(f"basicsr:{tmp_path / 'net_g.pth'}", "imported", mlflow_uri)
    assert first.created and not again.created and (again.run_id, again.version) == (first.run_id, first.version)
    c = tracking.client(mlflow_uri)
    version = c.get_model_version("imported", first.version)
    assert (
        version.tags[tracking.IMPORTED_TAG].startswith("basicsr:") and version.tags[tracking.SOURCE_TAG] == first.run_id
    )
    assert c.get_run(first.run_id).data.tags[tracking.PHASES_TAG] == "pretrain"  # promote judges it by distortion

    # The registered model upscales as BasicSR's network does.
    rng = np.random.default_rng(2)
    image = smooth_image(rng, 23, 19)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(png_bytes(image))
    args = ["--input", str(tmp_path / "in"), "--precision", "fp32", "--tracking-uri", mlflow_uri]
    assert upscale_main(["--model", f"models:/imported/{first.version}", "--output", str(tmp_path / "out"), *args]) == 0
    assert (
        upscale_main(["--model", f"basicsr:{tmp_path / 'net_g.pth'}", "--output", str(tmp_path / "direct"), *args]) == 0
    )
    with torch.inference_mode():
        expected = ref(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)[0].clamp(0, 1)
    expected = (expected.permute(1, 2, 0).numpy() * 255).round().astype(int)
    for folder in ("out", "direct"):
        got = formats.decode((tmp_path / folder / "a.png").read_bytes(), "a.png").astype(int)
        assert np.abs(got - expected).max() <= 1

    # Exported from the registry, the ONNX file lands in the model's run.
    assert (
        export_main(
            [
                "--model",
                f"models:/imported/{first.version}",
                "--output",
                str(tmp_path / "imported.onnx"),
                "--tracking-uri",
                mlflow_uri,
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["logged_to"] == f"runs:/{first.run_id}/onnx/imported.onnx"
    assert c.get_run(first.run_id).data.tags[tracking.ONNX_TAG] == result["logged_to"]
    assert [a.path for a in c.list_artifacts(first.run_id, "onnx")] == ["onnx/imported.onnx"]


def test_an_srgan_pytorch_checkpoint_upscales_and_a_wrong_layout_is_a_one_line_error(tmp_path, capsys):
    ref = trained_looking(LornatangSRResNet(channels=8, num_rcb=2, upscale=2))
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "g.pth.tar")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(png_bytes(smooth_image(np.random.default_rng(3), 20, 24)))
    assert (
        upscale_main(
            [
                "--model",
                f"srgan-pytorch:{tmp_path / 'g.pth.tar'}",
                "--input",
                str(tmp_path / "in"),
                "--output",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    assert formats.decode((tmp_path / "out" / "a.png").read_bytes(), "a.png").shape == (40, 48, 3)
    capsys.readouterr()
    assert (
        upscale_main(
            [
                "--model",
                f"basicsr:{tmp_path / 'g.pth.tar'}",
                "--input",
                str(tmp_path / "in"),
                "--output",
                str(tmp_path / "out2"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        err.startswith("error: model 'basicsr:")
        and "is not a MSRResNet (BasicSR) checkpoint: missing keys conv_first.weight" in err
        and len(err.strip().splitlines()) == 1
    )
    assert not (tmp_path / "out2").exists()


def test_converting_an_import_twice_gives_the_same_bytes(tmp_path):
    """The job's model identity (sha256 of the converted generator) is stable across runs."""
    torch.save(
        {"params": trained_looking(BasicSRMSRResNet(num_feat=8, num_block=1, upscale=2)).state_dict()},
        tmp_path / "n.pth",
    )
    assert (
        fetch_generator_bytes(f"basicsr:{tmp_path / 'n.pth'}")[0]
        == fetch_generator_bytes(f"basicsr:{tmp_path / 'n.pth'}")[0]
    )
