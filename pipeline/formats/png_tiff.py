"""Raster images without geo or medical metadata: PNG, JPEG, BMP, TIFF.

Decoding keeps what the file holds: bit depth (8/16-bit, float TIFF) and every band.
PNG goes through imagecodecs (libpng: 16-bit RGB/RGBA too, which Pillow would truncate to
8 bit), TIFF through tifffile, JPEG/BMP through Pillow. Arrays are (H, W, C). These formats
are decoded and encoded whole, so each file's size is read from its header first and an
image over the pixel limit is refused before any pixel is allocated. Each file also states
the stored value that is its maximum (`ValueRange`): see `png_range` and `tiff_range`.
"""

from __future__ import annotations

import io
import json
import re
import struct
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.formats.base import (
    MAX_PIXELS,
    Codec,
    Raster,
    RasterWriter,
    WholeFrames,
    Window,
    check_pixels,
    dtype_range,
)
from pipeline.formats.errors import DecodeError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class ValueRange:
    """The stored value that maps to 1.0 (`low`, default 0, maps to 0), and where it comes from."""

    high: float
    source: str  # e.g. "PNG sBIT 12 bits (4095)", "TIFF MaxSampleValue 4095", "dtype uint16 (65535)"
    from_dtype: bool = False  # the range is just the dtype's (the file declares nothing narrower; [0, 1] for floats)
    low: float = 0.0  # a signed TIFF's SMinSampleValue


def dtype_value_range(dtype: np.dtype) -> ValueRange:
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return ValueRange(float(np.iinfo(dtype).max), f"dtype {dtype} ({np.iinfo(dtype).max})", True)
    return ValueRange(1.0, f"dtype {dtype} (read as [0, 1])", True)


def _ext(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def decode(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, bool]:
    """File bytes (format from `name`'s extension) -> ((H, W, C) array, whether its last
    channel is alpha according to the file itself). Images over `max_pixels` are refused
    from their header."""
    return _decode(data, name, max_pixels)[:2]


def decode_with_range(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, bool, ValueRange]:
    """`decode`, plus the value range the file declares (else its dtype's)."""
    array, alpha, _, declared = _decode(data, name, max_pixels)
    return array, alpha, declared


def _decode(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, bool, tuple[str, ...], ValueRange]:
    """(array, alpha, the colour of each band as the file declares it, or (), value range)."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    ext = _ext(name)
    colours: tuple[str, ...] = ()
    declared = None
    if ext == ".png":
        check_pixels(*_png_size(data), 1, max_pixels)
        array, alpha = decode_png(data)
        declared = png_range(data, array)
    elif ext in (".tif", ".tiff"):
        array, alpha, colours, declared = decode_tiff(data, max_pixels)
    elif ext in (".jpg", ".jpeg", ".bmp"):
        array, alpha = decode_pillow(data, max_pixels)
    else:
        raise DecodeError(f"unsupported extension {ext!r}; supported: {', '.join(EXTENSIONS)}")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or min(array.shape[:2]) < 1:
        raise DecodeError(f"decoded to an array of shape {array.shape}, not an image")
    plain = dtype_value_range(array.dtype)
    if declared is not None and (declared.low, declared.high) == dtype_range(array.dtype):
        declared = replace(declared, from_dtype=True)
    return array, alpha, colours, declared or plain


def _png_chunk(data: bytes, kind: bytes) -> bytes | None:
    """The whole chunk (length, type, data, CRC) of the first `kind` chunk before the image data."""
    pos = 8
    while pos + 8 <= len(data):
        length, found = struct.unpack(">I4s", data[pos : pos + 8])
        if found == kind:
            return data[pos : pos + 12 + length]
        if found == b"IDAT":
            return None
        pos += 12 + length
    return None


def png_range(data: bytes, array: np.ndarray) -> ValueRange | None:
    """The range a PNG's sBIT chunk (significant bits per channel) declares. The PNG spec has
    writers scale n-bit samples up to the full bit depth (sBIT then only tells the original
    depth, and the dtype's range is right), but many scientific writers store the raw n-bit
    values: those are recognised by no value above 2^n - 1 while not every value is a
    multiple of 2^(depth - n), as shifted-up samples would be."""
    chunk = _png_chunk(data, b"sBIT")
    if chunk is None or data[25] == 3:  # palette images: sBIT is about the palette entries
        return None
    bits, depth = max(chunk[8:-4], default=0), 8 * array.dtype.itemsize
    if not 0 < bits < depth:
        return None
    raw_max = 2**bits - 1
    if int(array.max()) <= raw_max and bool((array % (2 ** (depth - bits))).any()):
        return ValueRange(float(raw_max), f"PNG sBIT {bits} bits ({raw_max})")
    return ValueRange(float(2**depth - 1), f"PNG sBIT {bits} bits, samples scaled to {depth} bits ({2**depth - 1})")


def _with_chunk(png: bytes, chunk: bytes | None) -> bytes:
    """`png` with `chunk` (whole, with its CRC) right after the IHDR chunk (33 bytes in)."""
    return png if chunk is None else png[:33] + chunk + png[33:]


def tiff_range(page, dtype: np.dtype) -> ValueRange | None:
    """The range a TIFF (plain or GeoTIFF: the one rule for both) declares for unsigned integer
    data of `dtype`, first found of: MaxSampleValue, SMaxSampleValue, a BitsPerSample below the
    dtype's (as GDAL's NBITS writes it), and as a last resort GDAL's STATISTICS_MAXIMUM, rounded
    up to a whole number of bits (statistics describe the data, not the range: a dark file gives
    a smaller one). Signed data: SMinSampleValue and SMaxSampleValue."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.signedinteger):
        return _signed_tiff_range(page)
    if not np.issubdtype(dtype, np.unsignedinteger):
        return None
    top = np.iinfo(dtype).max
    for code, name in ((281, "MaxSampleValue"), (341, "SMaxSampleValue")):
        tag = page.tags.get(code)
        if tag is not None:
            value = int(np.max(tag.value))
            if 0 < value <= top:
                return ValueRange(float(value), f"TIFF {name} {value}")
    bits = int(page.bitspersample)
    if bits < 8 * dtype.itemsize:
        return ValueRange(float(2**bits - 1), f"TIFF BitsPerSample {bits} ({2**bits - 1})")
    gdal = page.tags.get("GDAL_METADATA")
    found = (
        re.findall(r'<Item name="STATISTICS_MAXIMUM"[^>]*>\s*([0-9.eE+]+)\s*</Item>', str(gdal.value))
        if gdal is not None
        else []
    )
    if found:
        stat = max(float(v) for v in found)
        bits = min(int(np.ceil(np.log2(max(stat, 1.0) + 1))), 8 * dtype.itemsize)
        return ValueRange(
            float(2**bits - 1),
            f"GDAL STATISTICS_MAXIMUM {stat:g} -> {bits} bits ({2**bits - 1}; statistics, not a declaration)",
        )
    return None


# Header readers: (width, height) from the first bytes, nothing decoded.
def _signed_tiff_range(page) -> ValueRange | None:
    """A signed TIFF's own range: SMinSampleValue and SMaxSampleValue (tags 340, 341), both."""
    low, high = page.tags.get(340), page.tags.get(341)
    if low is None or high is None:
        return None
    low, high = float(np.min(low.value)), float(np.max(high.value))
    if not high > low:
        return None
    return ValueRange(high, f"TIFF SMinSampleValue {low:g}, SMaxSampleValue {high:g}", low=low)


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


def decode_tiff(
    data: bytes, max_pixels: int = MAX_PIXELS
) -> tuple[np.ndarray, bool, tuple[str, ...], ValueRange | None]:
    """(array, has alpha, band colours, declared range): alpha where the TIFF's ExtraSamples
    tag or GDAL's colour interpretation says so (a plain 4-band raster stays 4 bands); colours
    from the RGB photometric or GDAL's per-band COLORINTERP metadata; range: `tiff_range`."""
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
            declared = tiff_range(page, array.dtype)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"not a readable TIFF ({type(exc).__name__}: {exc})") from exc
    if axes == "YX":
        return array[..., None], False, colours[:1], declared
    if axes == "YXS":
        return array, alpha, colours, declared
    if len(axes) == 3 and axes.endswith("YX"):  # planar bands: SYX, CYX, IYX, ...
        return np.moveaxis(array, 0, -1), alpha, colours, declared
    raise DecodeError(f"unsupported TIFF layout (axes {axes!r}); expected one 2-D image with bands")


def _tiff_colours(page) -> tuple[str, ...]:
    """Per-band colours a TIFF declares: GDAL's COLORINTERP items (written for band orders
    the photometric tag cannot say, e.g. blue, green, red), else RGB photometric's order."""
    gdal = page.tags.get("GDAL_METADATA")
    if gdal is not None:
        items = re.findall(
            r'<Item name="COLORINTERP" sample="(\d+)" role="colorinterp">([^<]*)</Item>', str(gdal.value)
        )
        if items:
            found = {int(sample): name.strip().lower() for sample, name in items}
            return tuple(found.get(i, "undefined") for i in range(max(found) + 1))
    if int(page.photometric) == 2:  # RGB; extra samples are alpha only where ExtraSamples says so
        extras = tuple(page.extrasamples or ())
        return ("red", "green", "blue") + tuple("alpha" if int(e) in (1, 2) else "undefined" for e in extras)
    return ()


def encode_tiff(
    array: np.ndarray, alpha: bool = False, notes: dict[str, str] | None = None, max_value: int | None = None
) -> bytes:
    """Deflate-compressed TIFF; RGB photometric for 3 colour bands (+ alpha when `alpha`),
    otherwise every band a plain sample (a 4-band raster is not RGBA). `notes` go into the
    ImageDescription as JSON; `max_value` into MaxSampleValue."""
    import tifffile

    buf = io.BytesIO()
    channels = array.shape[-1]
    colour = channels - int(alpha)
    photometric = "rgb" if colour == 3 and array.dtype in (np.uint8, np.uint16) else "minisblack"
    extrasamples = ("unassalpha",) if alpha else None
    data = array[..., 0] if channels == 1 else array
    description = json.dumps({"srgan": notes}) if notes else None
    extratags = [(281, "H", 1, int(max_value), True)] if max_value is not None and max_value <= 65535 else []
    tifffile.imwrite(
        buf,
        data,
        photometric=photometric,
        planarconfig="contig",
        compression="zlib",
        extrasamples=extrasamples,
        description=description,
        metadata=None,
        extratags=extratags,
    )
    return buf.getvalue()


class ImageRaster(Raster):
    """A whole decoded image; integers span the range the file declares (else their dtype's),
    floats are taken as [0, 1]. The output keeps the input's declaration."""

    def __init__(self, path: Path, max_pixels: int = MAX_PIXELS) -> None:
        self.name = path.name
        data = path.read_bytes()
        self.array, self.alpha, self.colours, self.declared = _decode(data, path.name, max_pixels)
        self.height, self.width, self.bands = self.array.shape
        self.dtype = self.array.dtype
        self.value_range = (
            (self.declared.low, self.declared.high) if not self.declared.from_dtype else dtype_range(self.dtype)
        )
        self.range_source, self.range_declared = self.declared.source, not self.declared.from_dtype
        self._sbit = _png_chunk(data, b"sBIT") if _ext(self.name) == ".png" else None

    def read(self, window: Window) -> tuple[np.ndarray, None]:
        (top, bottom), (left, right) = window.rows, window.cols
        return self.array[top:bottom, left:right], None

    def create(self, path: Path, scale: int, notes: dict[str, str]) -> RasterWriter:
        if _ext(self.name) in (".tif", ".tiff"):
            max_value = None if self.declared.from_dtype else int(self.declared.high)
            return WholeFrames(path, self, scale, lambda frames: encode_tiff(frames[0], self.alpha, notes, max_value))
        return WholeFrames(
            path, self, scale, lambda frames: _with_chunk(encode(frames[0], self.name, self.alpha), self._sbit)
        )


CODEC = Codec("image", EXTENSIONS, ImageRaster)
