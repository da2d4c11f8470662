"""One image reader for every verb: a 12-bit PNG (sBIT), a 12-bit TIFF (MaxSampleValue), a
12-bit GeoTIFF (NBITS), a DICOM with BitsStored 12 and a 10-bit TIFF (BitsPerSample) become the
same tensor in training, prepare, evaluate and promote, rate, upscale and the MLflow model; a
set stored 12-bit-in-16 scores as the same set stored 8-bit.

The tests that go through the command lines and `pipeline.data.ImageSpec` use only what the
project offered before the one reader (they fail there: evaluate and rate divided by 65535)."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from pipeline import formats
from pipeline.data import ImageSpec
from pipeline.evaluate import main as evaluate_main
from pipeline.upscale import main as upscale_main
from srgan.generator import SRResNet
from srgan.weights import save_generator
from tests.helpers import dicom_bytes, geotiff_bytes, png_with_sbit, smooth_image

pytest.importorskip("rasterio")
pytest.importorskip("pydicom")

SIZE = (40, 44)


def _grey(bits: int, seed: int = 0) -> np.ndarray:
    """A (H, W, 1) uint16 image of `bits`-bit values reaching 2^bits - 1."""
    top = 2**bits - 1
    image = (smooth_image(np.random.default_rng(seed), *SIZE, 1, np.float64) * top).round().astype(np.uint16)
    image[0, 0] = top
    return image


def _tiff_with_max(array: np.ndarray, max_value: int) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array[..., 0], photometric="minisblack", extratags=[(281, "H", 1, max_value, True)])
    return buf.getvalue()


TWELVE, TEN = _grey(12), _grey(10, seed=1)
FILES = {  # name -> (bytes, stored values, the declared maximum)
    "sbit.png": (png_with_sbit(TWELVE), TWELVE, 4095),
    "max.tif": (_tiff_with_max(TWELVE, 4095), TWELVE, 4095),
    "geo.tif": (geotiff_bytes(TWELVE, georeferenced=True, NBITS=12), TWELVE, 4095),
    "slice.dcm": (dicom_bytes(TWELVE[..., 0], bits_stored=12), TWELVE, 4095),
    "ten.tif": (geotiff_bytes(TEN, georeferenced=False, NBITS=10), TEN, 1023),
}


def _expected(name: str) -> torch.Tensor:
    _, values, top = FILES[name]
    return torch.from_numpy(values.transpose(2, 0, 1).astype(np.float32) / top)


def _write(folder, names=FILES) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(FILES[name][0])


def _generator(tmp_path, channels: int = 1, meta: dict | None = None):
    torch.manual_seed(3)
    model = SRResNet(scale=2, in_channels=channels, out_channels=channels, num_blocks=1, num_features=8).eval()
    path = tmp_path / "generator.pt"
    save_generator(path, model, meta=meta or {})
    return model, path


@pytest.mark.parametrize("name", FILES)
def test_training_reads_every_declaration_as_its_maximum(name):
    tensor, levels = ImageSpec(channels=1).decode(FILES[name][0], name)
    assert levels == FILES[name][2]
    assert torch.equal(tensor, _expected(name))


@pytest.mark.parametrize("name", FILES)
def test_evaluate_promote_and_rate_read_what_training_reads(name, tmp_path):
    from pipeline.models import load_upscaler
    from pipeline.scoring import iter_images, list_images

    _write(tmp_path / "hr", [name])
    _, path = _generator(tmp_path)
    for upscaler in (load_upscaler("bicubic", scale=2), load_upscaler(str(path))):
        [(key, image)] = list(iter_images(list_images(tmp_path / "hr"), upscaler))
        assert key == name and image.levels == FILES[name][2]
        assert torch.equal(image.tensor(), _expected(name))


@pytest.mark.parametrize("name", FILES)
def test_upscale_reads_what_training_reads(name, tmp_path):
    from pipeline.data.reader import unit_of
    from pipeline.upscaling.one_file import value_range

    path = tmp_path / name
    path.write_bytes(FILES[name][0])
    with formats.open_raster(path) as raster:
        used = value_range(raster, "auto", None, 256)
        pixels, _ = raster.read(formats.Window.whole(0, raster.height, raster.width))
    assert (used.low, used.high) == (0, FILES[name][2])
    assert torch.equal(unit_of(pixels, used), _expected(name))


def test_upscale_jobs_record_the_declared_range_of_every_file(tmp_path, capsys):
    _write(tmp_path / "in")
    _, path = _generator(tmp_path)
    code = upscale_main(["--model", str(path), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    capsys.readouterr()
    assert code == 0
    import pandas as pd

    rows = pd.concat(pd.read_parquet(p) for p in (tmp_path / "out" / "_manifest").rglob("*.parquet"))
    ranges = dict(zip(rows["key"], rows["value_range"]))
    assert ranges == {name: f"0,{top}" for name, (_, _, top) in FILES.items()}


def test_the_mlflow_model_maps_stored_values_by_the_models_data_range(tmp_path):
    from pipeline.models.pyfunc import GeneratorModel

    generator, _ = _generator(tmp_path)
    model = GeneratorModel(generator, {"data_range": 4095})
    stored = TWELVE.transpose(2, 0, 1)[None]
    assert np.array_equal(model.predict(stored), model.predict(stored.astype(np.float32) / 4095))
    signed = GeneratorModel(generator, {})
    with pytest.raises(Exception, match="holds negative values"):
        signed.predict(stored.astype(np.int16) - 1)


def test_prepare_cuts_sub_images_that_read_back_as_the_source(tmp_path):
    from pipeline.prepare import PrepareJob, _validate_and_cut

    job = PrepareJob(input=str(tmp_path / "in"), output=str(tmp_path / "out"), sub_images=24, step=20, channels=1)
    for name in FILES:
        rows = _validate_and_cut(FILES[name][0], name, job, str(tmp_path / "out"), "test")
        first = rows[0]
        tensor, levels = ImageSpec(channels=1).decode((tmp_path / "out" / first["key"]).read_bytes(), first["key"])
        assert levels == FILES[name][2] and first["high"] == FILES[name][2]
        assert torch.equal(tensor, _expected(name)[:, :24, :24])


def test_evaluate_scores_a_12_bit_set_as_the_same_set_stored_8_bit(tmp_path, capsys):
    """The same photographs stored 8-bit and 12-bit-in-16 (sBIT 12): the same PSNR within 0.1 dB
    (read against 65535, the 12-bit set would score about 24 dB higher)."""
    rng = np.random.default_rng(5)
    (tmp_path / "8").mkdir()
    (tmp_path / "12").mkdir()
    for i in range(3):
        eight = (smooth_image(rng, 64, 72, 3, np.float64) * 255).round().astype(np.uint8)
        twelve = np.round(eight.astype(np.float64) * 4095 / 255).astype(np.uint16)
        (tmp_path / f"8/{i}.png").write_bytes(formats.encode(eight, "x.png"))
        (tmp_path / f"12/{i}.png").write_bytes(png_with_sbit(twelve))
    _, path = _generator(tmp_path, channels=3)
    figures = {}
    for bits in ("8", "12"):
        code = evaluate_main(["--model", str(path), "--data", str(tmp_path / bits), "--scale", "2", "--json"])
        out = capsys.readouterr().out
        assert code == 0
        figures[bits] = json.loads(out)
    assert figures["12"]["psnr_y"] == pytest.approx(figures["8"]["psnr_y"], abs=0.1)
    assert figures["12"]["bicubic"]["psnr_y"] == pytest.approx(figures["8"]["bicubic"]["psnr_y"], abs=0.1)


def test_rate_shows_a_12_bit_image_as_bright_as_its_8_bit_copy(tmp_path):
    from pipeline.rate import make_page

    eight = (smooth_image(np.random.default_rng(6), 64, 64, 3, np.float64) * 255).round().astype(np.uint8)
    for bits, data in (
        ("8", formats.encode(eight, "x.png")),
        ("12", png_with_sbit(np.round(eight * (4095 / 255)).astype(np.uint16))),
    ):
        (tmp_path / bits).mkdir()
        (tmp_path / bits / "a.png").write_bytes(data)
    means = {}
    for bits in ("8", "12"):
        page = make_page(
            "bicubic", "bicubic", str(tmp_path / bits), tmp_path / f"{bits}.html", scale=2, crop=32, pairs_per_image=1
        )
        html = page.page.read_text()
        lr = re.search(r'"lr": "data:image/png;base64,([^"]+)"', html).group(1)
        means[bits] = np.asarray(Image.open(io.BytesIO(base64.b64decode(lr)))).mean()
    assert means["12"] == pytest.approx(means["8"], abs=1.0)


def _signed_tiff(values: np.ndarray, declared: bool) -> bytes:
    buf = io.BytesIO()
    tags = [(340, "h", 1, -2000, True), (341, "h", 1, 2000, True)] if declared else []
    tifffile.imwrite(buf, values[..., 0], photometric="minisblack", extratags=tags)
    return buf.getvalue()


def test_signed_data_is_read_by_its_own_range_tags_or_refused_in_every_verb(tmp_path):
    """An int16 MR slice declaring nothing was once read over the whole int16 range (the model
    saw 0.502-0.533); now its own SMin/SMaxSampleValue are used, or it is refused with a hint."""
    from pipeline.data.reader import read_image
    from pipeline.errors import DecodeError
    from pipeline.upscaling.one_file import value_range

    values = np.random.default_rng(7).integers(-2000, 2001, (*SIZE, 1)).astype(np.int16)
    declared, bare = _signed_tiff(values, True), _signed_tiff(values, False)
    expected = torch.from_numpy((values.transpose(2, 0, 1).astype(np.float32) + 2000) / 4000)
    assert torch.allclose(ImageSpec(channels=1).decode(declared, "mr.tif")[0], expected, atol=1e-6)
    assert torch.allclose(read_image(declared, "mr.tif").tensor(), expected, atol=1e-6)
    (tmp_path / "mr.tif").write_bytes(declared)
    with formats.open_raster(tmp_path / "mr.tif") as raster:
        assert (value_range(raster, "auto", None, 256).low, value_range(raster, "auto", None, 256).high) == (
            -2000,
            2000,
        )
    for read in (lambda: ImageSpec(channels=1).decode(bare, "mr.tif"), lambda: read_image(bare, "mr.tif")):
        with pytest.raises(DecodeError, match="signed int16 and declares no value range"):
            read()
    with pytest.raises(DecodeError, match="set data.data_range"):
        ImageSpec(channels=1).decode(bare, "mr.tif")


def test_a_signed_range_never_becomes_a_models_data_range():
    """Training reads signed data over (low, high); a data_range is a maximum read from 0, so a
    run over signed files records none (else every later verb would read v / high)."""
    from pipeline.data.batches import describe_ranges

    values = np.random.default_rng(8).integers(-2000, 2001, (*SIZE, 1)).astype(np.int16)
    _, _, used = ImageSpec(channels=1).decode_with_range(_signed_tiff(values, True), "mr.tif")
    assert (used.low, used.high) == (-2000, 2000)
    from collections import Counter

    assert describe_ranges(Counter({used: 3}))[1] is None
    _, _, twelve = ImageSpec(channels=1).decode_with_range(FILES["max.tif"][0], "max.tif")
    assert describe_ranges(Counter({twelve: 3}))[1] == 4095
