"""What the batch upscaler does with one file that could be silently mishandled: values outside
the range it reads them in, bands stored out of RGB order, a corrupt GeoTIFF, a header that
claims a huge image. Each ends as a manifest row that says so, never a wrong output."""

from __future__ import annotations

import json
import logging
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import tifffile

from pipeline import formats
from tests.helpers import dicom_bytes, geotiff_bytes, png_bytes, smooth_image
from tests.pipeline.test_upscale import SCALE, run_one, upscaler

rasterio = pytest.importorskip("rasterio")

FLOAT = np.random.default_rng(11).uniform(-1.88, 1.41, (19, 23, 3)).astype(np.float32)
FLOAT[0, 0, 0], FLOAT[0, 1, 0] = -1.88, 1.41


def expected(up, array: np.ndarray, low: float, high: float, order=(0, 1, 2)) -> np.ndarray:
    """The model's output for `array` read as [low, high] -> [0, 1], mapped back; bands fed in
    `order` and written back where they came from."""
    x = formats.to_unit(array[..., list(order)], high - low, -low)
    y = formats.from_unit(up(x[None])[0], array.dtype, high - low, -low)
    out = np.empty_like(y)
    out[..., list(order)] = y
    return out


@pytest.mark.parametrize("name, data", [("float.tif", formats.encode(FLOAT, "x.tif")), ("geo_float.tif", geotiff_bytes(FLOAT))])
def test_float_values_outside_unit_range_fail_the_file_instead_of_being_clipped(tmp_path, name, data):
    row, out = run_one(tmp_path, name, data, upscaler())
    assert row["status"] == "failed" and not out.exists()
    assert "values from -1.88 to 1.41, outside [0, 1]" in row["error"] and "--value-range stats" in row["error"]


def test_float_values_keep_their_range_with_stats_or_a_declared_range(tmp_path):
    up = upscaler()
    row, out = run_one(tmp_path / "stats", "float.tif", formats.encode(FLOAT, "x.tif"), up, value_range="stats")
    assert row["status"] == "done" and row["value_range"] == "-1.88,1.41", row
    result = formats.decode(out.read_bytes(), "x.tif")
    assert result.dtype == np.float32 and result.min() < -1.0  # not clipped to [0, 1]
    assert np.abs(result - expected(up, FLOAT, float(FLOAT.min()), float(FLOAT.max()))).max() < 1e-5
    with tifffile.TiffFile(out) as tif:  # the normalisation is in the file, as JSON
        assert json.loads(tif.pages[0].description)["srgan"]["value_range"] == "-1.88,1.41"

    row, out = run_one(tmp_path / "declared", "geo.tif", geotiff_bytes(FLOAT), up, value_range=(-2.0, 2.0))
    assert row["status"] == "done" and row["value_range"] == "-2,2"
    with rasterio.open(out) as dst:
        assert dst.tags()["SRGAN_VALUE_RANGE"] == "-2,2"
        assert np.abs(np.moveaxis(dst.read(), 0, -1) - expected(up, FLOAT, -2.0, 2.0)).max() < 1e-5

    row, out = run_one(tmp_path / "narrow", "float.tif", formats.encode(FLOAT, "x.tif"), up, value_range=(-1.0, 1.0))
    assert row["status"] == "failed" and "outside [-1, 1] (--value-range)" in row["error"] and not out.exists()


def test_nan_that_is_not_nodata_fails_the_file(tmp_path):
    image = np.random.default_rng(1).random((12, 12, 3), dtype=np.float32)
    image[3, 4, 1] = np.nan
    row, out = run_one(tmp_path, "nan.tif", formats.encode(image, "x.tif"), upscaler(), value_range="stats")
    assert row["status"] == "failed" and "NaN or infinite" in row["error"] and not out.exists()


@pytest.mark.parametrize("name", ["signed.tif", "geo_signed.tif"])
def test_signed_integers_keep_their_negative_values(tmp_path, name):
    image = np.random.default_rng(2).integers(-3000, 3000, (15, 17, 3)).astype(np.int16)
    data = geotiff_bytes(image) if name.startswith("geo") else formats.encode(image, name)
    up = upscaler()
    row, out = run_one(tmp_path, name, data, up)
    assert row["status"] == "done" and row["value_range"] == "-32768,32767", row
    result = formats.decode(out.read_bytes(), name) if not name.startswith("geo") else np.moveaxis(rasterio.open(out).read(), 0, -1)
    assert result.dtype == np.int16 and result.min() < 0
    assert np.array_equal(result, expected(up, image, -32768.0, 32767.0))


def test_a_model_trained_on_12_bit_data_refuses_values_above_its_range(tmp_path):
    image = np.full((10, 10, 3), 4000, np.uint16)
    image[2, 3] = 5000
    row, out = run_one(tmp_path, "a.png", png_bytes(image), upscaler(meta={"data_range": 4095}))
    assert row["status"] == "failed" and "values from 4000 to 5000, outside [0, 4095] (the model's data_range)" in row["error"]


@pytest.mark.parametrize("georeferenced", [True, False])
def test_bands_stored_blue_green_red_reach_the_model_as_red_green_blue(tmp_path, georeferenced):
    image = smooth_image(np.random.default_rng(3), 14, 18, 4, np.uint16)
    data = geotiff_bytes(image, colours=("blue", "green", "red", "alpha"), georeferenced=georeferenced)
    up = upscaler()
    row, out = run_one(tmp_path, "RGBA.uint16.tif", data, up)
    assert row["status"] == "done" and row["model_bands"] == "3,2,1", row
    result = np.moveaxis(rasterio.open(out).read(), 0, -1)
    assert result.shape == (28, 36, 4) and result.dtype == np.uint16
    assert np.array_equal(result[..., :3], expected(up, image[..., :3], 0, 65535, order=(2, 1, 0)))
    # Stored in RGB order it goes through unchanged, and says nothing about band order.
    row, _ = run_one(tmp_path / "rgb", "RGBA.uint16.tif", geotiff_bytes(image, colours=("red", "green", "blue", "alpha"), georeferenced=georeferenced), up)
    assert row["status"] == "done" and row["model_bands"] == ""


def test_an_unreadable_geotiff_names_gdals_cause(tmp_path):
    image = smooth_image(np.random.default_rng(4), 300, 300, 3, np.uint16)
    path = tmp_path / "corrupt.tif"
    path.write_bytes(geotiff_bytes(image, compress="deflate", tiled=True, blockxsize=128, blockysize=128))
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[3], tif.pages[0].databytecounts[3]
    data = bytearray(path.read_bytes())
    data[offset + 2 : offset + count] = bytes((b * 7 + 13) % 256 for b in data[offset + 2 : offset + count])
    row, out = run_one(tmp_path, "corrupt.tif", bytes(data), upscaler())
    assert row["status"] == "failed" and not out.exists()
    assert "Decoding error" in row["error"] and "See previous exception" not in row["error"], row["error"]


# -- pixel limits, checked from the header ------------------------------------------------


def _png_claiming(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 58_000  # 58 KB, like the reported file


def _jpeg_claiming(width: int, height: int) -> bytes:
    sof = struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\xff\xc0" + sof + b"\x00" * 1000


def _bmp_claiming(width: int, height: int) -> bytes:
    header = struct.pack("<2sIHHI", b"BM", 54 + 1000, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, -height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return header + info + b"\x00" * 1000


def _tiff_claiming(width: int, height: int) -> bytes:
    small = bytearray(formats.encode(np.zeros((4, 4, 3), np.uint8), "x.tif"))
    with tifffile.TiffFile(__import__("io").BytesIO(bytes(small))) as tif:
        tags = tif.pages[0].tags
        places = [(tags["ImageWidth"].valueoffset, tags["ImageWidth"].dtype, width), (tags["ImageLength"].valueoffset, tags["ImageLength"].dtype, height)]
    for offset, dtype, value in places:
        fmt = "<I" if int(dtype) == 4 else "<H"
        small[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, min(value, 65535) if fmt == "<H" else value)
    return bytes(small)


def _dicom_claiming(side: int) -> bytes:
    import pydicom

    data = dicom_bytes(np.zeros((8, 8), np.uint16))
    ds = pydicom.dcmread(__import__("io").BytesIO(data))
    ds.Rows = ds.Columns = side
    buf = __import__("io").BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, data, size",
    [
        ("bomb.png", _png_claiming(100_000, 100_000), "100000x100000"),
        ("bomb.jpg", _jpeg_claiming(60_000, 60_000), "60000x60000"),
        ("bomb.bmp", _bmp_claiming(60_000, 60_000), "60000x60000"),
        ("bomb.tif", _tiff_claiming(60_000, 60_000), "60000x60000"),
        ("bomb.dcm", _dicom_claiming(60_000), "60000x60000"),
    ],
)
def test_a_header_claiming_a_huge_image_is_refused_before_any_pixel_is_allocated(tmp_path, caplog, name, data, size):
    caplog.set_level(logging.ERROR)
    tracemalloc.start()
    try:
        row, out = run_one(tmp_path, name, data, upscaler(channels=1 if name.endswith(".dcm") else 3))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert row["status"] == "failed" and not out.exists()
    assert f"is {size} px" in row["error"] and "--max-pixels" in row["error"], row["error"]
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MiB allocated"
    assert not [r for r in caplog.records if r.name.startswith("pipeline")]  # a manifest row, not a traceback


def test_one_limit_for_images_decoded_whole_and_none_for_windowed_geotiffs(tmp_path):
    image = smooth_image(np.random.default_rng(5), 100, 100, 3)
    row, _ = run_one(tmp_path / "png", "a.png", png_bytes(image), upscaler(), max_pixels=1000)
    assert row["status"] == "failed" and "is 100x100 px (0.0 Mpx), over the 1,000-pixel limit" in row["error"]
    row, _ = run_one(tmp_path / "jpg", "a.jpg", formats.encode(image, "a.jpg"), upscaler(), max_pixels=1000)
    assert row["status"] == "failed" and "over the 1,000-pixel limit" in row["error"]
    row, _ = run_one(tmp_path / "geo", "a.tif", geotiff_bytes(image), upscaler(), max_pixels=1000, window_pixels=400)
    assert row["status"] == "done" and row["windows"] > 1 and row["out_width"] == 100 * SCALE
    row, _ = run_one(tmp_path / "ok", "a.png", png_bytes(image), upscaler(), max_pixels=100 * 100, window_pixels=400)
    assert row["status"] == "done" and row["windows"] > 1  # whole-decoded images are upscaled by windows too
