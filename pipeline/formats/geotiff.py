"""GeoTIFF rasters (rasterio, extra ``geo``), read and written window by window.

A TIFF is this codec's when it carries a CRS, a geotransform or ground control points; other
TIFFs go to the plain image codec. Windows of a raster are read with the model's context
around them, so memory is bounded by the window, not the raster. No-data values are read as 0
and written back as no-data, band by band (a band's no-data never erases another band).

An upscaled raster keeps: every band, in order, with its dtype, nodata value, description,
colour interpretation, scale/offset and tags; the dataset tags; the CRS. Its geotransform is
the source's with the pixel size divided by the scale exactly (``transform @ Affine.scale(1 /
scale)``: same origin, same rotation), so it covers the same ground. Output is tiled
(256 x 256 blocks) and deflate-compressed with a predictor, BigTIFF when needed: a layout
cloud-optimised readers can window into (``gdal_translate -of COG`` adds overviews); n-bit data
(GDAL's NBITS) is written n-bit again, so it declares the same range. The
job's notes become tags SRGAN_MODEL, SRGAN_SCALE and SRGAN_BICUBIC_BANDS. GDAL's block cache
is capped (GDAL_CACHEMAX, 64 MB unless set), so memory does not grow with the raster.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from pipeline.formats import png_tiff
from pipeline.formats.base import Codec, Raster, RasterWriter, Window, dtype_range
from pipeline.formats.errors import DecodeError
from pipeline.formats.png_tiff import ValueRange

EXTENSIONS = (".tif", ".tiff")
# GDAL's block cache defaults to 5% of RAM, and a window-by-window writer fills it with the
# output's blocks: memory then grows with the raster up to that size. 64 MB holds a window's
# blocks several times over. (Read when GDAL first caches a block; set it to override.)
os.environ.setdefault("GDAL_CACHEMAX", "64")
_MISSING = "is a GeoTIFF and rasterio is not installed: pip install 'srgan-pipeline[geo]'"


def available() -> bool:
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return False
    return True


def _looks_geotiff(path: Path) -> bool:
    """Whether tifffile sees GeoTIFF keys (used only when rasterio is missing)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return bool(tif.pages[0].is_geotiff)
    except Exception:
        return False  # not a readable TIFF: the plain decoder says what is wrong


def is_georeferenced(path: Path) -> bool:
    """Whether the TIFF at `path` carries a CRS, a geotransform or ground control points."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                gcps, _ = src.gcps
                return src.crs is not None or not src.transform.is_identity or bool(gcps)
    except Exception:
        return False  # not for rasterio; the plain TIFF decoder reports what is wrong


def gdal_reason(exc: BaseException) -> str:
    """The causes GDAL reported, innermost last: rasterio's own message is often only 'See
    previous exception for details'; the chain of CPLE errors under it says what is wrong."""
    messages, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc).strip()
        if text and "See previous exception" not in text and not any(text in m for m in messages):
            messages.append(text)
        exc = exc.__cause__ or exc.__context__
    return " / ".join(messages) or "unknown GDAL error"


def open_failure(path: Path) -> str:
    """Why GDAL cannot open the file at `path` ("" when it can, or without rasterio)."""
    if not available():
        return ""
    import rasterio

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rasterio.open(path).close()
    except Exception as exc:
        return gdal_reason(exc)
    return ""


def _nbits(ds, dtype: np.dtype) -> int | None:
    """GDAL's NBITS: n-bit unsigned data stored in a wider integer type (None when not so)."""
    bits = ds.tags(1, ns="IMAGE_STRUCTURE").get("NBITS") if ds.count else None
    if bits and bits.isdigit() and np.issubdtype(dtype, np.unsignedinteger) and 0 < int(bits) < 8 * dtype.itemsize:
        return int(bits)
    return None


def declared_range(path: Path, dtype: np.dtype, nbits: int | None) -> ValueRange | None:
    """The range a GeoTIFF declares, by the plain TIFF's rule (png_tiff.tiff_range:
    MaxSampleValue, SMin/SMaxSampleValue, BitsPerSample as NBITS writes it, GDAL's
    STATISTICS_MAXIMUM); GDAL's NBITS alone where tifffile cannot read the file's tags."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return png_tiff.tiff_range(tif.pages[0], dtype)
    except Exception:  # a layout GDAL reads and tifffile does not
        if nbits is None:
            return None
        return ValueRange(float(2**nbits - 1), f"GeoTIFF NBITS {nbits} ({2**nbits - 1})")


class GeoRaster(Raster):
    """A local GeoTIFF opened with rasterio; (H, W, C) windows. Any size: it is never decoded
    whole, so no pixel limit applies."""

    def __init__(self, path: Path, max_pixels: int = 0) -> None:
        import rasterio
        from rasterio.enums import ColorInterp

        try:
            self._ds = rasterio.open(path)
        except Exception as exc:
            raise DecodeError(f"not a readable GeoTIFF ({gdal_reason(exc)})") from exc
        ds = self._ds
        self.height, self.width, self.bands = ds.height, ds.width, ds.count
        self.dtype = np.dtype(ds.dtypes[0])
        self.nodata = ds.nodata
        self.value_range = dtype_range(self.dtype)
        self.nbits = _nbits(ds, self.dtype)
        declared = declared_range(path, self.dtype, self.nbits)
        if declared is not None and (declared.low, declared.high) != self.value_range:
            self.value_range = (declared.low, declared.high)
            source = declared.source  # "TIFF MaxSampleValue 4095": say GeoTIFF
            self.range_source = "Geo" + source if source.startswith("TIFF ") else source
            self.range_declared = True
        self.colours = tuple(c.name for c in ds.colorinterp)
        # An RGBA GeoTIFF declares its alpha band; a 4-band multispectral raster does not.
        self.alpha = self.bands > 1 and ds.colorinterp[-1] == ColorInterp.alpha

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray | None]:
        from rasterio.windows import Window as RioWindow

        (top, bottom), (left, right) = window.rows, window.cols
        try:
            array = np.moveaxis(self._ds.read(window=RioWindow(left, top, right - left, bottom - top)), 0, -1)
        except Exception as exc:
            raise DecodeError(
                f"cannot read GeoTIFF window rows {window.rows} cols {window.cols} ({gdal_reason(exc)})"
            ) from exc
        if self.nodata is None:
            return array, None
        mask = np.isnan(array) if np.isnan(self.nodata) else (array == self.nodata)  # per band, as GDAL's nodata is
        if mask.any():
            array = np.where(mask, np.zeros((), array.dtype), array)
        return array, mask

    def create(self, path: Path, scale: int, notes: dict[str, str]) -> RasterWriter:
        tags = {f"SRGAN_{k.upper()}": v for k, v in notes.items()}
        return GeoWriter(path, self._upscaled_profile(scale), self, scale, tags)

    def close(self) -> None:
        self._ds.close()

    def _upscaled_profile(self, scale: int) -> dict:
        from affine import Affine

        src = self._ds
        profile = dict(src.profile)
        for key in ("blockxsize", "blockysize", "tiled", "compress", "interleave", "photometric", "predictor"):
            profile.pop(key, None)
        profile.update(
            driver="GTiff",
            width=src.width * scale,
            height=src.height * scale,
            transform=src.transform @ Affine.scale(1 / scale),
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="deflate",
            predictor=2 if np.issubdtype(self.dtype, np.integer) else 3,
            interleave="pixel",
            BIGTIFF="IF_SAFER",
        )
        if self.nbits:  # n-bit data stays n-bit (libtiff's predictor takes whole bytes only)
            profile.update(nbits=self.nbits)
            profile.pop("predictor")
        return profile

    def copy_metadata(self, dst) -> None:
        src = self._ds
        dst.update_tags(**src.tags())
        for band in range(1, src.count + 1):
            dst.update_tags(band, **src.tags(band))
        dst.descriptions = src.descriptions
        dst.colorinterp = src.colorinterp
        if any(s != 1.0 for s in src.scales) or any(o != 0.0 for o in src.offsets):
            dst.scales, dst.offsets = src.scales, src.offsets
        if any(src.units):
            dst.units = src.units


class GeoWriter(RasterWriter):
    """Window writes into a new GeoTIFF laid out by `profile`, with the source's metadata."""

    def __init__(self, path: Path, profile: dict, source: GeoRaster, scale: int, tags: dict[str, str]) -> None:
        import rasterio

        self._ds = rasterio.open(path, "w", **profile)
        source.copy_metadata(self._ds)
        self._ds.update_tags(**tags)
        self.scale, self.nodata = scale, source.nodata

    def write(self, window: Window, array: np.ndarray, mask: np.ndarray | None) -> None:
        from rasterio.windows import Window as RioWindow

        s = self.scale
        if mask is not None:
            top, bottom, left, right = window.region
            kept = mask[top:bottom, left:right]  # (h, w, bands)
            if kept.any():
                array[np.repeat(np.repeat(kept, s, axis=0), s, axis=1)] = self.nodata
        (top, bottom), (left, right) = window.keep_rows, window.keep_cols
        self._ds.write(
            np.moveaxis(array, -1, 0), window=RioWindow(left * s, top * s, (right - left) * s, (bottom - top) * s)
        )

    def close(self) -> None:
        self._ds.close()

    def abort(self) -> None:
        self._ds.close()


def probe(path: Path) -> bool:
    """Whether the TIFF at `path` is this codec's: georeferenced (refused naming the extra
    when it is a GeoTIFF and rasterio is missing)."""
    if not available():
        if _looks_geotiff(path):
            raise DecodeError(_MISSING)
        return False
    return is_georeferenced(path)


CODEC = Codec("geotiff", EXTENSIONS, GeoRaster, probe)
