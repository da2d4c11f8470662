"""Raster images without geo or medical metadata: PNG, JPEG, BMP, TIFF.

Decoding keeps what the file holds: bit depth (8/16-bit, float TIFF) and every band.
PNG goes through imagecodecs (libpng: 16-bit RGB/RGBA too, which Pillow would truncate to
8 bit), TIFF through tifffile, JPEG/BMP through Pillow. Arrays are (H, W, C). These formats
are decoded and encoded whole, so each file's size is read from its header first and an
image over the pixel limit is refused before any pixel is allocated.
"""

from __future__ import annotations

import io
import json
import re
import struct
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.errors import DecodeError
from pipeline.formats.base import MAX_PIXELS, Codec, Raster, RasterWriter, WholeFrames, Window, check_pixels, dtype_range

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _ext(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def decode(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, bool]:
    """File bytes (format from `name`'s extension) -> ((H, W, C) array, whether its last
    channel is alpha according to the file itself). Images over `max_pixels` are refused
    from their header."""
    return _decode(data, name, max_pixels)[:2]


def _decode(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, bool, tuple[str, ...]]:
    """(array, alpha, the colour of each band as the file declares it, or ())."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    ext = _ext(name)
    colours: tuple[str, ...] = ()
    if ext == ".png":
        check_pixels(*_png_size(data), 1, max_pixels)
        array, alpha = decode_png(data)
    elif ext in (".tif", ".tiff"):
        array, alpha, colours = decode_tiff(data, max_pixels)
    elif ext in (".jpg", ".jpeg", ".bmp"):
        array, alpha = decode_pillow(data, max_pixels)
    else:
        raise DecodeError(f"unsupported extension {ext!r}; supported: {', '.join(EXTENSIONS)}")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or min(array.shape[:2]) < 1:
        raise DecodeError(f"decoded to an array of shape {array.shape}, not an image")
    return array, alpha, colours


# Header readers: (width, height) from the first bytes, nothing decoded.
def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise DecodeError("not a readable PNG (no PNG signature and IHDR header)")
    return struct.unpack(">II", data[16:24])


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """The frame size of the first SOF segment (any of SOF0-SOF15 but DHT, JPG and DAC)."""
    if data[:2] != b"\xff\xd8":
        raise DecodeError("not a readable JPEG (no start-of-image marker)")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            i += 1 if marker == 0xFF else 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 <= len(data):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    raise DecodeError("not a readable JPEG (no frame header)")


def _bmp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 26 or data[:2] != b"BM":
        raise DecodeError("not a readable BMP (no BM header)")
    if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # negative height: rows stored top-down


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


def _sniffed_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a JPEG, PNG or BMP, whatever its extension says."""
    for magic, read in ((b"\xff\xd8", _jpeg_size), (b"\x89PNG", _png_size), (b"BM", _bmp_size)):
        if data.startswith(magic):
            return read(data)
    return None


def decode_pillow(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, bool]:
    from PIL import Image, UnidentifiedImageError

    size = _sniffed_size(data)
    if size:
        check_pixels(*size, 1, max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            check_pixels(*im.size, 1, max_pixels)
            im.load()
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("L" if im.mode == "1" else "RGB")
            return np.asarray(im), im.mode in ("RGBA", "LA")
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"refused as a decompression bomb by Pillow ({exc})") from exc
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


def decode_tiff(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, bool, tuple[str, ...]]:
    """(array, has alpha, band colours): alpha where the TIFF's ExtraSamples tag or GDAL's
    colour interpretation says so (a plain 4-band raster stays 4 bands); colours from the
    RGB photometric or GDAL's per-band COLORINTERP metadata."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series, page = tif.series[0], tif.pages[0]
            axes, shape = series.axes, dict(zip(series.axes, series.shape))
            pages = int(np.prod([n for ax, n in shape.items() if ax not in "YXSC"]))  # pages, slices, times
            check_pixels(shape.get("X", 1), shape.get("Y", 1), pages, max_pixels)
            array = series.asarray()
            colours = _tiff_colours(page)
            alpha = any(int(e) in (1, 2) for e in (page.extrasamples or ())) or colours[-1:] == ("alpha",)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"not a readable TIFF ({type(exc).__name__}: {exc})") from exc
    if axes == "YX":
        return array[..., None], False, colours[:1]
    if axes == "YXS":
        return array, alpha, colours
    if len(axes) == 3 and axes.endswith("YX"):  # planar bands: SYX, CYX, IYX, ...
        return np.moveaxis(array, 0, -1), alpha, colours
    raise DecodeError(f"unsupported TIFF layout (axes {axes!r}); expected one 2-D image with bands")


def _tiff_colours(page) -> tuple[str, ...]:
    """Per-band colours a TIFF declares: GDAL's COLORINTERP items (written for band orders
    the photometric tag cannot say, e.g. blue, green, red), else RGB photometric's order."""
    gdal = page.tags.get("GDAL_METADATA")
    if gdal is not None:
        items = re.findall(r'<Item name="COLORINTERP" sample="(\d+)" role="colorinterp">([^<]*)</Item>', str(gdal.value))
        if items:
            found = {int(sample): name.strip().lower() for sample, name in items}
            return tuple(found.get(i, "undefined") for i in range(max(found) + 1))
    if int(page.photometric) == 2:  # RGB; extra samples are alpha only where ExtraSamples says so
        extras = tuple(page.extrasamples or ())
        return ("red", "green", "blue") + tuple("alpha" if int(e) in (1, 2) else "undefined" for e in extras)
    return ()


def encode_tiff(array: np.ndarray, alpha: bool = False, notes: dict[str, str] | None = None) -> bytes:
    """Deflate-compressed TIFF; RGB photometric for 3 colour bands (+ alpha when `alpha`),
    otherwise every band a plain sample (a 4-band raster is not RGBA). `notes` go into the
    ImageDescription as JSON."""
    import tifffile

    buf = io.BytesIO()
    channels = array.shape[-1]
    colour = channels - int(alpha)
    photometric = "rgb" if colour == 3 and array.dtype in (np.uint8, np.uint16) else "minisblack"
    extrasamples = ("unassalpha",) if alpha else None
    data = array[..., 0] if channels == 1 else array
    description = json.dumps({"srgan": notes}) if notes else None
    tifffile.imwrite(buf, data, photometric=photometric, planarconfig="contig", compression="zlib", extrasamples=extrasamples, description=description, metadata=None)
    return buf.getvalue()


class ImageRaster(Raster):
    """A whole decoded image; integers span their dtype, floats are taken as [0, 1]."""

    def __init__(self, path: Path, max_pixels: int = MAX_PIXELS) -> None:
        self.name = path.name
        self.array, self.alpha, self.colours = _decode(path.read_bytes(), path.name, max_pixels)
        self.height, self.width, self.bands = self.array.shape
        self.dtype = self.array.dtype
        self.value_range = dtype_range(self.dtype)

    def read(self, window: Window) -> tuple[np.ndarray, None]:
        (top, bottom), (left, right) = window.rows, window.cols
        return self.array[top:bottom, left:right], None

    def create(self, path: Path, scale: int, notes: dict[str, str]) -> RasterWriter:
        if _ext(self.name) in (".tif", ".tiff"):
            return WholeFrames(path, self, scale, lambda frames: encode_tiff(frames[0], self.alpha, notes))
        return WholeFrames(path, self, scale, lambda frames: encode(frames[0], self.name, self.alpha))


CODEC = Codec("image", EXTENSIONS, ImageRaster)
