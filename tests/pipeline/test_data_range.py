"""True data ranges: 12-bit data stored in 16 bits is read against the 4095 its file declares
(PNG sBIT, TIFF MaxSampleValue or BitsPerSample), or data.data_range, never against 65535;
training, validation metrics, the run's params and upscaling all use the same range."""

from __future__ import annotations

import io
from pathlib import Path

import mlflow
import numpy as np
import pytest
import tifffile
import torch

from pipeline import formats
from pipeline.config import parse_config
from pipeline.data.batches import ImageSpec, scan
from pipeline.formats import png_tiff
from pipeline.io import storage
from pipeline.training.driver import run_training
from srgan.degrade import build_degradation
from srgan.metrics import psnr, quantize
from srgan.resize import imresize
from srgan.weights import load_generator
from tests.helpers import expected, png_with_sbit, run_one, tiny, twelve_bit, upscaler


def tiff_with_max(array: np.ndarray, max_value: int = 4095) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, photometric="rgb", extratags=[(281, "H", 1, max_value, True)])  # MaxSampleValue
    return buf.getvalue()


def tiff_12_bit_packed(array: np.ndarray) -> bytes:
    """A TIFF with BitsPerSample 12, as GDAL's NBITS=12 writes it."""
    from tests.helpers import geotiff_bytes

    pytest.importorskip("rasterio")
    return geotiff_bytes(array, georeferenced=False, NBITS=12)


def tiff_with_statistics(array: np.ndarray) -> bytes:
    """A TIFF that declares nothing but GDAL's band statistics (the last resort)."""
    items = "".join(
        f'<Item name="STATISTICS_MAXIMUM" sample="{i}">{array[..., i].max()}</Item>' for i in range(array.shape[-1])
    )
    buf = io.BytesIO()
    tifffile.imwrite(
        buf, array, photometric="rgb", extratags=[(42112, "s", 0, f"<GDALMetadata>{items}</GDALMetadata>", True)]
    )
    return buf.getvalue()


FILES = {
    "sbit.png": (png_with_sbit, "PNG sBIT 12 bits (4095)"),
    "max.tif": (tiff_with_max, "TIFF MaxSampleValue 4095"),
    "nbits.tif": (tiff_12_bit_packed, "TIFF BitsPerSample 12 (4095)"),
    "stats.tif": (
        tiff_with_statistics,
        "GDAL STATISTICS_MAXIMUM 4095 -> 12 bits (4095; statistics, not a declaration)",
    ),
}


@pytest.mark.parametrize("name", FILES)
def test_12_bit_data_in_16_bits_is_read_against_its_declared_4095(name):
    image = twelve_bit()
    write, source = FILES[name]
    tensor, levels = ImageSpec(channels=3).decode(write(image), name)
    assert levels == 4095 and tensor.max().item() == 1.0  # 4095 is the top, not 4095/65535 = 0.0625
    assert torch.equal(
        (tensor * 4095).round().to(torch.int64), torch.from_numpy(image.transpose(2, 0, 1).astype(np.int64))
    )
    assert ImageSpec(channels=3).decode_with_range(write(image), name)[2].source == source


def test_a_png_whose_sbit_samples_are_scaled_up_as_the_spec_says_keeps_65535():
    image = twelve_bit()
    shifted = (image << 4) | (image >> 8)  # left-bit replication, as libpng writers scale 12 -> 16 bits
    tensor, levels, used = ImageSpec(channels=3).decode_with_range(png_with_sbit(shifted), "x.png")
    assert levels == 65535 and used.high == 65535 and tensor.max().item() == 1.0
    dark = (image >> 4) << 4  # 12-bit values below 256, shifted up: every stored value is still below 4096
    assert ImageSpec(channels=3).decode_with_range(png_with_sbit(dark), "x.png")[1] == 65535


def test_data_range_overrides_what_the_file_declares():
    tensor, levels, used = ImageSpec(channels=3, data_range=8191).decode_with_range(
        png_with_sbit(twelve_bit()), "x.png"
    )
    assert levels == 8191 and used.source == "data.data_range 8191"
    assert abs(tensor.max().item() - 4095 / 8191) < 1e-6


def test_values_above_the_declared_maximum_make_the_file_bad_input_not_clipped(ray_session, tmp_path):
    over = twelve_bit()
    over[5, 5, 1] = 5000
    (tmp_path / "over.tif").write_bytes(tiff_with_max(over))
    (tmp_path / "fine.tif").write_bytes(tiff_with_max(twelve_bit(1)))
    (tmp_path / "plain.png").write_bytes(formats.encode(over, "x.png"))  # declares nothing: 65535
    good, bad = scan(storage.list_files(str(tmp_path)), ImageSpec(channels=3, min_size=16))
    assert sorted(f.key for f in good) == ["fine.tif", "plain.png"]
    assert [(b.key, b.reason) for b in bad] == [
        (
            "over.tif",
            "has values from 0 to 5000, outside [0, 4095] (TIFF MaxSampleValue 4095); fix the file or set data.data_range to the data's true maximum",
        )
    ]

    good, bad = scan(storage.list_files(str(tmp_path)), ImageSpec(channels=3, min_size=16, data_range=4095))
    assert (
        sorted(b.key for b in bad) == ["over.tif", "plain.png"]
        and "(data.data_range 4095); raise data.data_range" in bad[0].reason
    )


def test_validation_psnr_of_12_bit_data_is_against_its_true_maximum():
    """The bicubic baseline as validation scores it (decode, degrade, upscale, quantise to the
    source's levels, PSNR on [0, 1]) equals PSNR computed on the 12-bit values with peak 4095."""
    image, scale = twelve_bit(size=(64, 64)), 4
    hr, levels = ImageSpec(channels=3).decode(png_with_sbit(image), "x.png")
    lr = build_degradation("bicubic", scale)(hr[None], 0)
    scored = psnr(quantize(imresize(lr, float(scale)).clamp(0, 1), levels), hr[None], 1.0, scale).item()

    values = (
        imresize(lr.double() * 4095, float(scale)).clamp(0, 4095).round()[0]
        - torch.from_numpy(image.transpose(2, 0, 1)).double()
    )[:, scale:-scale, scale:-scale]
    reference = 10 * np.log10(4095**2 / values.pow(2).mean().item())
    assert abs(scored - reference) < 0.01, (scored, reference)


def test_upscale_auto_reads_a_12_bit_file_as_training_does_and_keeps_the_declaration(tmp_path):
    image, up = twelve_bit(size=(12, 14)), upscaler()
    for name, data in (("a.png", png_with_sbit(image)), ("a.tif", tiff_with_max(image))):
        row, out = run_one(tmp_path / name, name, data, up)
        assert row.status == "done" and row.value_range == "0,4095", row
        result, _, declared = png_tiff.decode_with_range(out.read_bytes(), name)
        assert np.array_equal(result, expected(up, image, 0, 4095))
        assert declared.high == 4095 and result.max() <= 4095  # the output declares the same range


@pytest.mark.slow
def test_a_run_names_the_range_it_used_and_its_model_maps_the_same_way(ray_session, tmp_path, mlflow_uri, capsys):
    for split, count in (("train", 6), ("val", 2)):
        (tmp_path / split).mkdir()
        for i in range(count):
            (tmp_path / split / f"{i}.png").write_bytes(png_with_sbit(twelve_bit(seed=10 * count + i, size=(40, 40))))
    tree = tiny(
        str(tmp_path / "train"),
        str(tmp_path / "val"),
        str(tmp_path / "runs"),
        mlflow_uri,
        train={"phases": ["pretrain"], "pretrain": {"steps": 2, "lr": 1e-3}, "val_every": 2, "checkpoint_every": 2},
    )
    outcome = run_training(parse_config(tree))
    params = mlflow.MlflowClient(mlflow_uri).get_run(outcome.mlflow_run_id).data.params
    assert params["data.range_used"] == "PNG sBIT 12 bits (4095) on 8 files"
    assert "value range: PNG sBIT 12 bits (4095) on 8 files" in capsys.readouterr().out
    assert (
        load_generator(Path(outcome.checkpoint) / "generator.pt")[1]["data_range"] == 4095.0
    )  # upscale --value-range auto uses it
