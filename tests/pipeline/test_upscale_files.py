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
from pipeline.formats import png_tiff
from pipeline.models.reference import Upscaler
from tests.helpers import SCALE, dicom_bytes, expected, geotiff_bytes, png_bytes, run_one, smooth_image, upscaler

rasterio = pytest.importorskip("rasterio")

FLOAT = np.random.default_rng(11).uniform(-1.88, 1.41, (19, 23, 3)).astype(np.float32)
FLOAT[0, 0, 0], FLOAT[0, 1, 0] = -1.88, 1.41


@pytest.mark.parametrize(
    "name, data", [("float.tif", formats.encode(FLOAT, "x.tif")), ("geo_float.tif", geotiff_bytes(FLOAT))]
)
def test_float_values_outside_unit_range_fail_the_file_instead_of_being_clipped(tmp_path, name, data):
    row, out = run_one(tmp_path, name, data, upscaler())
    assert row.status == "failed" and not out.exists()
    assert "values from -1.88 to 1.41, outside [0, 1]" in row.error and "`value_range` to stats" in row.error


def test_float_values_keep_their_range_with_stats_or_a_declared_range(tmp_path):
    up = upscaler()
    row, out = run_one(tmp_path / "stats", "float.tif", formats.encode(FLOAT, "x.tif"), up, value_range="stats")
    assert row.status == "done" and row.value_range == "-1.88,1.41", row
    result = formats.decode(out.read_bytes(), "x.tif")
    assert result.dtype == np.float32 and result.min() < -1.0  # not clipped to [0, 1]
    assert np.abs(result - expected(up, FLOAT, float(FLOAT.min()), float(FLOAT.max()))).max() < 1e-5
    with tifffile.TiffFile(out) as tif:  # the normalisation is in the file, as JSON
        assert json.loads(tif.pages[0].description)["srgan"]["value_range"] == "-1.88,1.41"

    row, out = run_one(tmp_path / "declared", "geo.tif", geotiff_bytes(FLOAT), up, value_range=(-2.0, 2.0))
    assert row.status == "done" and row.value_range == "-2,2"
    with rasterio.open(out) as dst:
        assert dst.tags()["SRGAN_VALUE_RANGE"] == "-2,2"
        assert np.abs(np.moveaxis(dst.read(), 0, -1) - expected(up, FLOAT, -2.0, 2.0)).max() < 1e-5

    row, out = run_one(tmp_path / "narrow", "float.tif", formats.encode(FLOAT, "x.tif"), up, value_range=(-1.0, 1.0))
    assert row.status == "failed" and "outside [-1, 1] (`value_range`)" in row.error and not out.exists()


def test_nan_that_is_not_nodata_fails_the_file(tmp_path):
    image = np.random.default_rng(1).random((12, 12, 3), dtype=np.float32)
    image[3, 4, 1] = np.nan
    row, out = run_one(tmp_path, "nan.tif", formats.encode(image, "x.tif"), upscaler(), value_range="stats")
    assert row.status == "failed" and "NaN or infinite" in row.error and not out.exists()


@pytest.mark.parametrize("name", ["signed.tif", "geo_signed.tif"])
def test_signed_integers_keep_their_negative_values(tmp_path, name):
    image = np.random.default_rng(2).integers(-3000, 3000, (15, 17, 3)).astype(np.int16)
    data = geotiff_bytes(image) if name.startswith("geo") else formats.encode(image, name)
    up = upscaler()
    # Declaring nothing, the data would be a sliver of the int16 range: refused, nothing written.
    row, out = run_one(tmp_path / "auto", name, data, up)
    assert row.status == "failed" and "signed int16 and declares no value range" in row.error, row
    assert "`value_range` to stats" in row.error and not out.exists()
    row, out = run_one(tmp_path / "given", name, data, up, value_range=(-3000.0, 3000.0))
    assert row.status == "done" and row.value_range == "-3000,3000", row
    result = (
        formats.decode(out.read_bytes(), name)
        if not name.startswith("geo")
        else np.moveaxis(rasterio.open(out).read(), 0, -1)
    )
    assert result.dtype == np.int16 and result.min() < 0
    assert np.array_equal(result, expected(up, image, -3000.0, 3000.0))


def test_a_model_trained_on_12_bit_data_refuses_values_above_its_range(tmp_path):
    image = np.full((10, 10, 3), 4000, np.uint16)
    image[2, 3] = 5000
    row, out = run_one(tmp_path, "a.png", png_bytes(image), upscaler(meta={"data_range": 4095}))
    assert (
        row.status == "failed" and "values from 4000 to 5000, outside [0, 4095] (the model's data_range)" in row.error
    )


@pytest.mark.parametrize("georeferenced", [True, False])
def test_bands_stored_blue_green_red_reach_the_model_as_red_green_blue(tmp_path, georeferenced):
    image = smooth_image(np.random.default_rng(3), 14, 18, 4, np.uint16)
    data = geotiff_bytes(image, colours=("blue", "green", "red", "alpha"), georeferenced=georeferenced)
    up = upscaler()
    row, out = run_one(tmp_path, "RGBA.uint16.tif", data, up)
    assert row.status == "done" and row.model_bands == "3,2,1", row
    result = np.moveaxis(rasterio.open(out).read(), 0, -1)
    assert result.shape == (28, 36, 4) and result.dtype == np.uint16
    assert np.array_equal(result[..., :3], expected(up, image[..., :3], 0, 65535, order=(2, 1, 0)))
    # Stored in RGB order it goes through unchanged, and says nothing about band order.
    row, _ = run_one(
        tmp_path / "rgb",
        "RGBA.uint16.tif",
        geotiff_bytes(image, colours=("red", "green", "blue", "alpha"), georeferenced=georeferenced),
        up,
    )
    assert row.status == "done" and row.model_bands == ""


def test_an_unreadable_geotiff_names_gdals_cause(tmp_path):
    image = smooth_image(np.random.default_rng(4), 300, 300, 3, np.uint16)
    path = tmp_path / "corrupt.tif"
    path.write_bytes(geotiff_bytes(image, compress="deflate", tiled=True, blockxsize=128, blockysize=128))
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[3], tif.pages[0].databytecounts[3]
    data = bytearray(path.read_bytes())
    data[offset + 2 : offset + count] = bytes((b * 7 + 13) % 256 for b in data[offset + 2 : offset + count])
    row, out = run_one(tmp_path, "corrupt.tif", bytes(data), upscaler())
    assert row.status == "failed" and not out.exists()
    assert "Decoding error" in row.error and "See previous exception" not in row.error, row.error


# -- pixel limits, checked from the header ------------------------------------------------


def _png_claiming(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 58_000  # 58 KB, like the reported file


def _jpeg_claiming(width: int, height: int) -> bytes:
    sof = struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return (
        b"\xff\xd8"
        + b"\xff\xe0"
        + struct.pack(">H", 16)
        + b"JFIF\x00"
        + b"\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        + b"\xff\xc0"
        + sof
        + b"\x00" * 1000
    )


def _bmp_claiming(width: int, height: int) -> bytes:
    header = struct.pack("<2sIHHI", b"BM", 54 + 1000, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, -height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return header + info + b"\x00" * 1000


def _tiff_claiming(width: int, height: int) -> bytes:
    small = bytearray(formats.encode(np.zeros((4, 4, 3), np.uint8), "x.tif"))
    with tifffile.TiffFile(__import__("io").BytesIO(bytes(small))) as tif:
        tags = tif.pages[0].tags
        places = [
            (tags["ImageWidth"].valueoffset, tags["ImageWidth"].dtype, width),
            (tags["ImageLength"].valueoffset, tags["ImageLength"].dtype, height),
        ]
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
    assert row.status == "failed" and not out.exists()
    assert f"is {size} px" in row.error and "`max_pixels`" in row.error, row.error
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MiB allocated"
    assert not [r for r in caplog.records if r.name.startswith("pipeline")]  # a manifest row, not a traceback


def test_one_limit_for_images_decoded_whole_and_none_for_windowed_geotiffs(tmp_path):
    image = smooth_image(np.random.default_rng(5), 100, 100, 3)
    row, _ = run_one(tmp_path / "png", "a.png", png_bytes(image), upscaler(), max_pixels=1000)
    assert row.status == "failed" and "is 100x100 px (0.0 Mpx), over the 1,000-pixel limit" in row.error
    row, _ = run_one(tmp_path / "jpg", "a.jpg", formats.encode(image, "a.jpg"), upscaler(), max_pixels=1000)
    assert row.status == "failed" and "over the 1,000-pixel limit" in row.error
    row, _ = run_one(tmp_path / "geo", "a.tif", geotiff_bytes(image), upscaler(), max_pixels=1000, window_pixels=400)
    assert row.status == "done" and row.windows > 1 and row.out_width == 100 * SCALE
    row, _ = run_one(tmp_path / "ok", "a.png", png_bytes(image), upscaler(), max_pixels=100 * 100, window_pixels=400)
    assert row.status == "done" and row.windows > 1  # whole-decoded images are upscaled by windows too


# -- found by a red-team pass --------------------------------------------------------------


def test_wide_integers_need_a_stated_range_and_keep_their_values_with_one(tmp_path):
    image = np.full((20, 20, 3), 1000, np.int32)
    image[5:15, 5:15] = 1003
    up = upscaler()
    row, out = run_one(tmp_path / "auto", "i32.tif", formats.encode(image, "x.tif"), up)
    assert (
        row.status == "failed" and "int32" in row.error and "`value_range` to stats" in row.error and not out.exists()
    )
    row, out = run_one(tmp_path / "stats", "i32.tif", formats.encode(image, "x.tif"), up, value_range="stats")
    assert row.status == "done" and np.array_equal(
        formats.decode(out.read_bytes(), "x.tif"), expected(up, image, 1000.0, 1003.0)
    )
    bicubic = Upscaler(name="bicubic", scale=SCALE, tile=0)  # passes values through: none may be lost
    row, out = run_one(tmp_path / "bicubic", "i32.tif", formats.encode(image, "x.tif"), bicubic, value_range="stats")
    result = formats.decode(out.read_bytes(), "x.tif")
    assert row.status == "done" and result.dtype == np.int32 and result.min() == 1000 and result.max() == 1003


def test_a_boolean_image_is_refused(tmp_path):
    data = formats.encode(np.random.default_rng(0).random((16, 16, 3)) > 0.5, "x.tif")
    row, out = run_one(tmp_path, "mask.tif", data, upscaler())
    assert row.status == "failed" and "1-bit" in row.error and not out.exists()


def test_tiff_pages_count_toward_the_pixel_limit(tmp_path):
    import io

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((40, 50, 50), np.uint8))  # 40 pages of 50 x 50
    row, _ = run_one(tmp_path, "pages.tif", buf.getvalue(), upscaler(), max_pixels=50 * 50 * 10)
    assert row.status == "failed" and "in 40 frames" in row.error and "over the 25,000-pixel limit" in row.error


def test_an_rgb_tiff_with_an_unspecified_extra_band_is_not_alpha():
    import io

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((8, 8, 4), np.uint8), photometric="rgb", extrasamples=("unspecified",))
    array, alpha = png_tiff.decode(buf.getvalue(), "rgbn.tif")
    assert array.shape == (8, 8, 4) and not alpha


def test_a_bands_nodata_does_not_erase_the_other_bands(tmp_path):
    image = np.full((24, 24, 3), 1000, np.uint16)
    image[:, :12, 0] = 0  # band 1 has no data on the left half; bands 2 and 3 have data there
    row, out = run_one(tmp_path, "s.tif", geotiff_bytes(image, nodata=0), Upscaler(name="bicubic", scale=SCALE, tile=0))
    assert row.status == "done", row
    with rasterio.open(out) as dst:
        result = np.moveaxis(dst.read(), 0, -1)
    assert (result[:, : 12 * SCALE, 0] == 0).all()  # no-data stays no-data in its own band
    assert (result[..., 1:] == 1000).all()  # the other bands keep every value


def test_32_bit_dicom_is_written_back_readable(tmp_path):
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(np.zeros((16, 16), np.uint16))))
    pixels = np.arange(256, dtype=np.uint32).reshape(16, 16) * 1000
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 20, 19
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    row, out = run_one(tmp_path, "dose.dcm", buf.getvalue(), upscaler(channels=1))
    assert row.status == "done", row
    back = pydicom.dcmread(out)
    assert back.BitsAllocated == 32 and back.pixel_array.dtype == np.uint32 and back.pixel_array.shape == (32, 32)


def test_a_dicom_with_a_frame_count_that_is_not_a_number_is_a_row_not_a_traceback(tmp_path, caplog):
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(np.zeros((16, 16), np.uint16))))
    ds.NumberOfFrames = "7"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    at = data.index(b"\x28\x00\x08\x00IS")  # (0028,0008) IS, value "7 " -> "x "
    buf = io.BytesIO(data[: at + 8] + b"x " + data[at + 10 :])
    caplog.set_level(logging.ERROR)
    row, _ = run_one(tmp_path, "frames.dcm", buf.getvalue(), upscaler(channels=1))
    assert row.status == "failed" and "not a number" in row.error
    assert not [r for r in caplog.records if r.name.startswith("pipeline")]


def test_a_truncated_tiff_names_gdals_cause(tmp_path):
    data = geotiff_bytes(smooth_image(np.random.default_rng(6), 64, 64, 3, np.uint16))
    row, out = run_one(tmp_path, "truncated.tif", data[: len(data) // 2], upscaler())
    assert row.status == "failed" and "GDAL: " in row.error and not out.exists(), row.error
