"""GeoTIFF rasters (rasterio, extra ``geo``), read and written window by window.

An upscaled raster keeps: every band, in order, with its dtype, nodata value, description,
colour interpretation, scale/offset and tags; the dataset tags; the CRS. Its geotransform is
the source's with the pixel size divided by the scale exactly (``transform @ Affine.scale(1 /
scale)``: same origin, same rotation), so it covers the same ground. Output is tiled
(256 x 256 blocks) and deflate-compressed with a predictor, BigTIFF when needed: a layout
cloud-optimised readers can window into (``gdal_translate -of COG`` adds overviews).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.formats.errors import DecodeError

_MISSING = "GeoTIFF needs rasterio: pip install 'srgan-pipeline[geo]'"


def available() -> bool:
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return False
    return True


def _rasterio():
    try:
        import rasterio
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise DecodeError(_MISSING) from exc
    return rasterio


def is_georeferenced(path: Path) -> bool:
    """Whether the TIFF at `path` carries a CRS, a geotransform or ground control points."""
    rasterio = _rasterio()
    from rasterio.errors import NotGeoreferencedWarning
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                gcps, _ = src.gcps
                return src.crs is not None or not src.transform.is_identity or bool(gcps)
    except Exception:
        return False  # not for rasterio; the plain TIFF decoder reports what is wrong


class _Open:
    """A rasterio dataset (`_ds`) closed on leaving a `with` block."""

    _ds = None

    def close(self) -> None:
        self._ds.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Reader(_Open):
    """Windowed reads of a local GeoTIFF as (H, W, C) arrays."""

    def __init__(self, path: Path):
        rasterio = _rasterio()
        try:
            self._ds = rasterio.open(path)
        except Exception as exc:
            raise DecodeError(f"not a readable GeoTIFF ({exc})") from exc
        self.height, self.width, self.count = self._ds.height, self._ds.width, self._ds.count
        self.dtype = np.dtype(self._ds.dtypes[0])
        self.nodata = self._ds.nodata
        self.crs = self._ds.crs
        self.transform = self._ds.transform
        # An RGBA GeoTIFF declares its alpha band; a 4-band multispectral raster does not.
        from rasterio.enums import ColorInterp

        self.alpha = self.count > 1 and self._ds.colorinterp[-1] == ColorInterp.alpha

    def read(self, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        from rasterio.windows import Window

        window = Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0])
        try:
            return np.moveaxis(self._ds.read(window=window), 0, -1)
        except Exception as exc:
            raise DecodeError(f"cannot read GeoTIFF window rows {rows} cols {cols} ({exc})") from exc

    def upscaled_profile(self, scale: int) -> dict:
        from affine import Affine

        src = self._ds
        profile = dict(src.profile)
        for key in ("blockxsize", "blockysize", "tiled", "compress", "interleave", "photometric", "predictor"):
            profile.pop(key, None)
        integer = np.issubdtype(self.dtype, np.integer)
        profile.update(
            driver="GTiff",
            width=src.width * scale,
            height=src.height * scale,
            transform=src.transform @ Affine.scale(1 / scale),
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="deflate",
            predictor=2 if integer else 3,
            interleave="pixel",
            BIGTIFF="IF_SAFER",
        )
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



class Writer(_Open):
    """Window writes of (H, W, C) arrays into a new GeoTIFF laid out by `profile`."""

    def __init__(self, path: Path, profile: dict, source: Reader, tags: dict | None = None):
        rasterio = _rasterio()
        self._ds = rasterio.open(path, "w", **profile)
        source.copy_metadata(self._ds)
        if tags:
            self._ds.update_tags(**tags)

    def write(self, rows: tuple[int, int], cols: tuple[int, int], array: np.ndarray) -> None:
        from rasterio.windows import Window

        window = Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0])
        self._ds.write(np.moveaxis(array, -1, 0), window=window)

