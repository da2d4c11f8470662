import io

import numpy as np
import pytest
import tifffile
from PIL import Image

from pipeline import formats
from pipeline.data import reader
from pipeline.formats import DecodeError, png_tiff

rng = np.random.default_rng(0)


@pytest.mark.parametrize(
    "name,array",
    [
        ("rgb8.png", rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)),
        ("rgb16.png", rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)),
        ("gray16.png", rng.integers(0, 65536, (9, 11, 1), dtype=np.uint16)),
        ("rgba8.png", rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)),
        ("rgba16.png", rng.integers(0, 65536, (9, 11, 4), dtype=np.uint16)),
        ("bands16.tif", rng.integers(0, 65536, (9, 11, 5), dtype=np.uint16)),
        ("rgb16.tiff", rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)),
        ("float.tif", rng.random((9, 11, 2), dtype=np.float32)),
        ("gray8.bmp", rng.integers(0, 256, (9, 11, 1), dtype=np.uint8)),
    ],
)
def test_lossless_round_trip_keeps_dtype_and_bands(name, array):
    decoded = formats.decode(formats.encode(array, name), name)
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    assert np.array_equal(decoded, array)


def test_jpeg_is_8_bit_and_refuses_16_bit():
    array = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    decoded = formats.decode(formats.encode(array, "x.jpg"), "x.jpg")
    assert decoded.dtype == np.uint8 and decoded.shape == array.shape
    with pytest.raises(DecodeError, match="8-bit"):
        formats.encode(array.astype(np.uint16), "x.jpg")


def test_planar_tiff_is_read_as_bands_last():
    bands = rng.integers(0, 65536, (4, 6, 7), dtype=np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, bands, photometric="minisblack", planarconfig="separate")
    assert np.array_equal(formats.decode(buf.getvalue(), "p.tif"), np.moveaxis(bands, 0, -1))


def test_palette_png_from_pillow_decodes_to_rgb():
    im = Image.new("P", (5, 4))
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.putpixel((1, 1), 1)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    decoded = formats.decode(buf.getvalue(), "p.png")
    assert decoded.shape[:2] == (4, 5) and decoded.shape[2] in (3, 4)
    assert tuple(decoded[1, 1, :3]) == (255, 0, 0)


@pytest.mark.parametrize(
    "name,data,reason",
    [
        ("empty.png", b"", "empty file"),
        ("trunc.png", None, "PNG"),
        ("text.jpg", b"this is not an image at all", "not a readable image"),
        ("text.tif", b"II*\x00garbage", "TIFF"),
        ("notes.txt", b"hello", "unsupported extension"),
    ],
)
def test_bad_files_raise_decode_error(name, data, reason):
    if data is None:
        data = formats.encode(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), name)[:60]
    with pytest.raises(DecodeError, match=reason):
        formats.decode(data, name)


def test_unit_conversion_uses_the_dtype_range():
    a16 = np.array([[[0, 65535, 32768]]], dtype=np.uint16)
    t = reader.to_unit(a16)
    assert t.shape == (3, 1, 1) and t.max().item() == 1.0
    assert np.array_equal(reader.from_unit(t, np.uint16), a16)
    assert reader.data_range(np.uint8) == 255 and reader.data_range(np.float32) == 1.0


def test_alpha_comes_from_the_file_not_the_band_count():
    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    array, alpha = png_tiff.decode(formats.encode(rgba, "a.png"), "a.png")
    assert alpha and np.array_equal(formats.conform_bands(array, 3, alpha), rgba[..., :3])
    bands = rng.integers(0, 65536, (6, 5, 4), dtype=np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, bands, photometric="minisblack", planarconfig="contig")
    array, alpha = png_tiff.decode(buf.getvalue(), "s.tif")
    assert not alpha
    with pytest.raises(DecodeError, match="has 4 band"):
        formats.conform_bands(array, 3, alpha)
    array, alpha = png_tiff.decode(formats.encode(rgba, "a.tif", alpha=True), "a.tif")  # RGB + ExtraSamples alpha
    assert alpha and np.array_equal(array, rgba)
    assert not png_tiff.decode(formats.encode(rgba, "b.tif"), "b.tif")[1]  # 4 plain bands
    gray = rng.integers(0, 256, (6, 5, 1), dtype=np.uint8)
    assert formats.conform_bands(gray, 3).shape == (6, 5, 3)


def _geotiff(path):
    from tests.helpers import geotiff_bytes

    path.write_bytes(geotiff_bytes(rng.integers(0, 65536, (8, 9, 4), dtype=np.uint16)))
    return path


def test_the_codec_is_chosen_by_extension_and_the_bytes(tmp_path):
    pytest.importorskip("rasterio")
    plain = tmp_path / "plain.tif"
    plain.write_bytes(formats.encode(rng.integers(0, 65536, (8, 9, 4), dtype=np.uint16), plain.name))
    with formats.open_raster(_geotiff(tmp_path / "scene.tif")) as raster:
        assert type(raster).__name__ == "GeoRaster" and (raster.height, raster.width, raster.bands) == (8, 9, 4)
    with formats.open_raster(plain) as raster:
        assert type(raster).__name__ == "ImageRaster" and raster.value_range == (0, 65535)  # the dtype's range
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DecodeError, match="empty file"):
        formats.open_raster(tmp_path / "empty.png")
    with pytest.raises(DecodeError, match="unsupported extension '.txt'"):
        formats.open_raster(tmp_path / "notes.txt")


def test_a_geotiff_without_rasterio_is_refused_naming_the_extra(tmp_path, monkeypatch):
    pytest.importorskip("rasterio")
    from pipeline.formats import geotiff

    monkeypatch.setattr(geotiff, "available", lambda: False)
    with pytest.raises(
        DecodeError, match=r"is a GeoTIFF and rasterio is not installed: pip install 'srgan-pipeline\[geo\]'"
    ):
        formats.open_raster(_geotiff(tmp_path / "scene.tif"))


def test_the_extension_lists_exist_once():
    from pipeline.config import DataSection
    from pipeline.formats import dicom, geotiff

    assert DataSection(train="x").extensions == list(formats.EXTENSIONS)  # training reads every codec
    assert set(formats.EXTENSIONS) == set(png_tiff.EXTENSIONS) | set(geotiff.EXTENSIONS) | set(dicom.EXTENSIONS)
