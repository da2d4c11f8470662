"""Raster images without geo or medical metadata: PNG, JPEG, BMP, TIFF.

Decoding keeps what the file holds: bit depth (8/16-bit, float TIFF) and every band.
PNG goes through imagecodecs (libpng: 16-bit RGB/RGBA too, which Pillow would truncate to
8 bit), TIFF through tifffile, JPEG/BMP through Pillow. Arrays are (H, W, C).
"""

from __future__ import annotations

import io

import numpy as np

from pipeline.formats.errors import DecodeError


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
