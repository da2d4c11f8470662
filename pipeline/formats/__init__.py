"""Image files <-> arrays (model tensors: pipeline.data.reader); this package imports nothing of pipeline but itself. Each format family is a codec (formats.base):
plain images (png_tiff: PNG, JPEG, BMP, TIFF), GeoTIFF (geotiff) and DICOM (dicom).

Arrays are (H, W, C) in the file's own dtype. Models see (C, H, W) float32 in [0, 1]:
stored values v become (v + offset) / range, the range being the dtype's maximum for
integers and 1.0 for floats unless a codec or model states another. `from_unit` inverts
that, rounding and clipping for integer dtypes.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.formats import dicom, geotiff, png_tiff
from pipeline.formats.base import MAX_PIXELS, Codec, Raster, RasterWriter, Window, check_pixels
from pipeline.formats.errors import DecodeError
from pipeline.formats.png_tiff import ValueRange

# Probe order: a codec listed first gets a file its extension shares with a later one when
# its probe accepts the bytes (a georeferenced .tif is a GeoTIFF, any other .tif a plain TIFF).
CODECS: tuple[Codec, ...] = (geotiff.CODEC, png_tiff.CODEC, dicom.CODEC)
EXTENSIONS = tuple(dict.fromkeys(ext for codec in CODECS for ext in codec.extensions))  # what every verb reads

__all__ = [
    "CODECS",
    "EXTENSIONS",
    "MAX_PIXELS",
    "Codec",
    "DecodeError",
    "Raster",
    "RasterWriter",
    "Window",
    "ValueRange",
    "check_pixels",
    "open_bytes",
    "open_raster",
    "decode",
    "encode",
    "conform_bands",
]


def open_raster(path: Path, name: str | None = None, max_pixels: int = MAX_PIXELS) -> Raster:
    """The local file at `path` opened by its codec, chosen by `name`'s extension (default the
    path's) and the codecs' probes of the bytes; formats decoded whole refuse images over
    `max_pixels` from their header."""
    ext = PurePosixPath(name or path.name).suffix.lower()
    candidates = [codec for codec in CODECS if ext in codec.extensions]
    if not candidates:
        raise DecodeError(f"unsupported extension {ext!r}; supported: {', '.join(EXTENSIONS)}")
    if path.stat().st_size == 0:
        raise DecodeError("empty file (0 bytes)")
    chosen = next((codec for codec in candidates[:-1] if codec.probe(path)), candidates[-1])
    try:
        return chosen.open(path, max_pixels)
    except DecodeError as exc:
        # A TIFF neither reader opens (truncated, corrupt): GDAL usually says best why.
        cause = geotiff.open_failure(path) if chosen is png_tiff.CODEC and ext in geotiff.EXTENSIONS else ""
        if cause:
            raise DecodeError(f"{exc}; GDAL: {cause}") from exc
        raise


@contextlib.contextmanager
def open_bytes(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> Iterator[Raster]:
    """`open_raster` for a file's bytes (as storage or Ray Data hand them over), by `name`'s
    extension: the bytes go to a private temporary file that is removed on exit."""
    suffix = PurePosixPath(name).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="srgan-read-") as tmp:
        path = Path(tmp) / f"image{suffix}"
        path.write_bytes(data)
        with open_raster(path, name, max_pixels) as raster:
            yield raster


def decode(data: bytes, name: str) -> np.ndarray:
    """A plain image's stored values, (H, W, C), as its codec decodes them (no range applied):
    for checking what was written. Models read files through pipeline.data.reader."""
    return png_tiff.decode(data, name)[0]


def encode(array: np.ndarray, name: str, alpha: bool = False) -> bytes:
    """Encode an (H, W, C) array in the plain image format `name`'s extension names."""
    return png_tiff.encode(array, name, alpha)


def conform_bands(array: np.ndarray, channels: int, alpha: bool = False) -> np.ndarray:
    """Give an (H, W, C) image the band count a model takes, where that is unambiguous:
    alpha (as the file declares it) dropped, then grayscale to RGB by replication.
    Raises DecodeError otherwise (a 4-band raster is not RGBA unless its file says so)."""
    if alpha:
        array = array[..., :-1]
    have = array.shape[2]
    if have == channels:
        return array
    if have == 1 and channels == 3:
        return np.repeat(array, 3, axis=2)
    raise DecodeError(f"has {have} band(s), the model takes {channels}")
