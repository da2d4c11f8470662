"""Raster images without geo or medical metadata: PNG, JPEG, BMP, TIFF.

Decoding keeps what the file holds: bit depth (8/16-bit, float TIFF) and every band.
PNG goes through imagecodecs (libpng: 16-bit RGB/RGBA too, which Pillow would truncate to
8 bit), TIFF through tifffile, JPEG/BMP through Pillow. Arrays are (H, W, C). These formats
are decoded and encoded whole: the codec's raster is one window per image.
"""

from __future__ import annotations

import io
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.errors import DecodeError
from pipeline.formats.base import Codec, Raster, RasterWriter, WholeFrames, Window, dtype_span

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _ext(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def decode(data: bytes, name: str) -> tuple[np.ndarray, bool]:
    """File bytes (format from `name`'s extension) -> ((H, W, C) array, whether its last
    channel is alpha according to the file itself)."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    ext = _ext(name)
    if ext == ".png":
        array, alpha = decode_png(data)
    elif ext in (".tif", ".tiff"):
        array, alpha = decode_tiff(data)
    elif ext in (".jpg", ".jpeg", ".bmp"):
        array, alpha = decode_pillow(data)
    else:
        raise DecodeError(f"unsupported extension {ext!r}; supported: {', '.join(EXTENSIONS)}")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or min(array.shape[:2]) < 1:
        raise DecodeError(f"decoded to an array of shape {array.shape}, not an image")
    return array, alpha


def encode(array: np.ndarray, name: str, alpha: bool = False) -> bytes:
    """An (H, W, C) array in the format `name`'s extension names; `alpha` marks the last
    channel as transparency (PNG: implied by 2 or 4 channels)."""
    ext = _ext(name)
    if ext == ".png":
        return encode_png(array)
    if ext in (".tif", ".tiff"):
        return encode_tiff(array, alpha)
    if ext in (".jpg", ".jpeg"):
        return encode_pillow(array, "JPEG")
    if ext == ".bmp":
        return encode_pillow(array, "BMP")
    raise DecodeError(f"cannot write extension {ext!r}; supported: {', '.join(EXTENSIONS)}")


def decode_png(data: bytes) -> tuple[np.ndarray, bool]:
    """(array, has alpha): PNG's gray+alpha and RGBA colour types are the 2- and 4-channel ones."""
    import imagecodecs

    try:
        array = imagecodecs.png_decode(data)
    except Exception as exc:
        raise DecodeError(f"not a readable PNG ({exc})") from exc
    return array, array.ndim == 3 and array.shape[2] in (2, 4)


def encode_png(array: np.ndarray, level: int = 6) -> bytes:
    import imagecodecs

    return imagecodecs.png_encode(np.ascontiguousarray(array), level=level)


def decode_pillow(data: bytes) -> tuple[np.ndarray, bool]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("L" if im.mode == "1" else "RGB")
            return np.asarray(im), im.mode in ("RGBA", "LA")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(f"not a readable image ({exc})") from exc


def encode_pillow(array: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    from PIL import Image

    if array.dtype != np.uint8:
        raise DecodeError(f"{fmt} stores 8-bit data only, got {array.dtype}; write PNG or TIFF to keep the bit depth")
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.save(buf, fmt, quality=quality)
    else:
        image.save(buf, fmt)
    return buf.getvalue()


def decode_tiff(data: bytes) -> tuple[np.ndarray, bool]:
    """(array, has alpha): alpha only where the TIFF's ExtraSamples tag says so; a plain
    4-band raster stays 4 bands."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series = tif.series[0]
            array = series.asarray()
            axes = series.axes
            alpha = any(int(e) in (1, 2) for e in (tif.pages[0].extrasamples or ()))
    except Exception as exc:
        raise DecodeError(f"not a readable TIFF ({type(exc).__name__}: {exc})") from exc
    if axes == "YX":
        return array[..., None], False
    if axes == "YXS":
        return array, alpha
    if len(axes) == 3 and axes.endswith("YX"):  # planar bands: SYX, CYX, IYX, ...
        return np.moveaxis(array, 0, -1), alpha
    raise DecodeError(f"unsupported TIFF layout (axes {axes!r}); expected one 2-D image with bands")


def encode_tiff(array: np.ndarray, alpha: bool = False) -> bytes:
    """Deflate-compressed TIFF; RGB photometric for 3 colour bands (+ alpha when `alpha`),
    otherwise every band a plain sample (a 4-band raster is not RGBA)."""
    import tifffile

    buf = io.BytesIO()
    channels = array.shape[-1]
    colour = channels - int(alpha)
    photometric = "rgb" if colour == 3 and array.dtype in (np.uint8, np.uint16) else "minisblack"
    extrasamples = ("unassalpha",) if alpha else None
    data = array[..., 0] if channels == 1 else array
    tifffile.imwrite(buf, data, photometric=photometric, planarconfig="contig", compression="zlib", extrasamples=extrasamples)
    return buf.getvalue()


class ImageRaster(Raster):
    """A whole decoded image; integers span their dtype, floats are taken as [0, 1]."""

    def __init__(self, path: Path) -> None:
        self.name = path.name
        self.array, self.alpha = decode(path.read_bytes(), path.name)
        self.height, self.width, self.bands = self.array.shape
        self.dtype = self.array.dtype
        self.value_span = dtype_span(self.dtype)

    def read(self, window: Window) -> tuple[np.ndarray, None]:
        (top, bottom), (left, right) = window.rows, window.cols
        return self.array[top:bottom, left:right], None

    def create(self, path: Path, scale: int, notes: dict[str, str]) -> RasterWriter:
        return WholeFrames(path, self, scale, lambda frames: encode(frames[0], self.name, self.alpha))


CODEC = Codec("image", EXTENSIONS, ImageRaster)
