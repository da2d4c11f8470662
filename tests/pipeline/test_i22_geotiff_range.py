"""A georeferenced TIFF declares its range by the plain TIFF's rule (MaxSampleValue, GDAL's
STATISTICS_MAXIMUM, NBITS), and an upscaled n-bit GeoTIFF is n-bit again."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import formats
from pipeline.data.reader import read_image
from pipeline.upscale import main as upscale_main

rasterio = pytest.importorskip("rasterio")

TWELVE = (np.arange(24 * 20).reshape(24, 20, 1) * 8 % 4096).astype(np.uint16)


def _geotiff(path, array, tags=None, band_tags=None, **creation):
    from rasterio.transform import from_origin

    h, w, c = array.shape
    profile = dict(driver="GTiff", width=w, height=h, count=c, dtype=str(array.dtype), crs="EPSG:32633")
    with rasterio.open(path, "w", transform=from_origin(5e5, 4.6e6, 10, 10), **profile, **creation) as dst:
        dst.write(np.moveaxis(array, -1, 0))
        dst.update_tags(**(tags or {}))
        dst.update_tags(1, **(band_tags or {}))
    return path


@pytest.mark.parametrize(
    "tags, band_tags, source",
    [
        ({"TIFFTAG_MAXSAMPLEVALUE": "4095"}, {}, "GeoTIFF MaxSampleValue 4095"),
        ({}, {"STATISTICS_MAXIMUM": "4000"}, "GDAL STATISTICS_MAXIMUM 4000 -> 12 bits"),
    ],
)
def test_a_geotiff_declares_its_range_as_a_plain_tiff_does(tmp_path, tags, band_tags, source):
    path = _geotiff(tmp_path / "scene.tif", TWELVE, tags, band_tags)
    with formats.open_raster(path) as raster:
        assert type(raster).__name__ == "GeoRaster"
        assert raster.value_range == (0.0, 4095.0) and raster.range_declared
        assert raster.range_source.startswith(source)
    image = read_image(path.read_bytes(), "scene.tif")
    assert image.range.high == 4095 and image.tensor().max().item() == pytest.approx(TWELVE.max() / 4095)


def test_an_upscaled_12_bit_geotiff_still_declares_12_bits(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    _geotiff(tmp_path / "in" / "scene.tif", TWELVE, NBITS=12)
    code = upscale_main(
        ["--model", "bicubic", "--scale", "2", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    )
    capsys.readouterr()
    assert code == 0
    out = tmp_path / "out" / "scene.tif"
    with rasterio.open(out) as ds:
        assert ds.tags(1, ns="IMAGE_STRUCTURE").get("NBITS") == "12" and ds.crs is not None
    with formats.open_raster(out) as raster:
        assert raster.value_range == (0.0, 4095.0) and raster.range_declared
        pixels, _ = raster.read(formats.Window.whole(0, raster.height, raster.width))
    assert pixels.shape == (48, 40, 1) and pixels.max() <= 4095
