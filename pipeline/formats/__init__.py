"""Image files <-> arrays <-> model tensors, chosen by file extension.

Arrays are (H, W, C) in the file's own dtype. Models see (C, H, W) float32 in [0, 1]:
integer data is divided by its dtype's maximum (255, 65535), float data is taken as
already in [0, 1]. `from_unit` inverts that, rounding and clipping for integer dtypes.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np
import torch

from pipeline.formats import png_tiff
from pipeline.formats.errors import DecodeError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_EXTENSIONS = (".dcm", ".dicom")

__all__ = ["DecodeError", "IMAGE_EXTENSIONS", "decode", "decode_with_alpha", "encode", "to_unit", "from_unit", "data_range", "conform_bands"]


def _ext(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def decode_with_alpha(data: bytes, name: str) -> tuple[np.ndarray, bool]:
    """Decode file bytes (format from `name`'s extension) to an (H, W, C) array, and whether
    its last channel is alpha according to the file itself."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    ext = _ext(name)
    if ext == ".png":
        array, alpha = png_tiff.decode_png(data)
    elif ext in (".tif", ".tiff"):
        array, alpha = png_tiff.decode_tiff(data)
    elif ext in (".jpg", ".jpeg", ".bmp"):
        array, alpha = png_tiff.decode_pillow(data)
    else:
        raise DecodeError(f"unsupported extension {ext!r}; supported: {', '.join(IMAGE_EXTENSIONS)}")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or min(array.shape[:2]) < 1:
        raise DecodeError(f"decoded to an array of shape {array.shape}, not an image")
    return array, alpha


def decode(data: bytes, name: str) -> np.ndarray:
    """Decode file bytes (format from `name`'s extension) to an (H, W, C) array."""
    return decode_with_alpha(data, name)[0]


def encode(array: np.ndarray, name: str, alpha: bool = False) -> bytes:
    """Encode an (H, W, C) array in the format `name`'s extension names; `alpha` marks the
    last channel as transparency (PNG: implied by 2 or 4 channels)."""
    ext = _ext(name)
    if ext == ".png":
        return png_tiff.encode_png(array)
    if ext in (".tif", ".tiff"):
        return png_tiff.encode_tiff(array, alpha)
    if ext in (".jpg", ".jpeg"):
        return png_tiff.encode_pillow(array, "JPEG")
    if ext == ".bmp":
        return png_tiff.encode_pillow(array, "BMP")
    raise DecodeError(f"cannot write extension {ext!r}; supported: {', '.join(IMAGE_EXTENSIONS)}")


def data_range(dtype: np.dtype) -> float:
    """The value that maps to 1.0: the integer dtype's maximum, 1.0 for floats."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0


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


def to_unit(array: np.ndarray, value_range: float | None = None, offset: float = 0.0) -> torch.Tensor:
    """(H, W, C) array -> (C, H, W) float32 tensor in [0, 1]: (values + `offset`) /
    `value_range` (default the dtype's maximum; clipped when a range is given)."""
    scaled = array.astype(np.float32)
    if offset:
        scaled += np.float32(offset)
    scaled /= np.float32(value_range or data_range(array.dtype))
    if value_range:
        scaled = np.clip(scaled, 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))


def from_unit(tensor: torch.Tensor, dtype: np.dtype, value_range: float | None = None, offset: float = 0.0) -> np.ndarray:
    """(C, H, W) tensor in [0, 1] -> (H, W, C) array of `dtype`: value * range - offset,
    rounded and clipped to the dtype if integer (inverse of `to_unit`). Works in place on one
    float copy, so a large image costs one float and one output array."""
    values = tensor.detach().float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0)  # clamp copies
    np.multiply(values, np.float32(value_range or data_range(dtype)), out=values)
    if offset:
        np.subtract(values, np.float32(offset), out=values)
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        np.rint(values, out=values)
        np.clip(values, info.min, info.max, out=values)
    return values.astype(dtype)
