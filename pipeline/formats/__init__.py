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

__all__ = ["DecodeError", "IMAGE_EXTENSIONS", "decode", "encode", "to_unit", "from_unit", "data_range"]


def _ext(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def decode(data: bytes, name: str) -> np.ndarray:
    """Decode file bytes (format from `name`'s extension) to an (H, W, C) array."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    ext = _ext(name)
    if ext == ".png":
        array = png_tiff.decode_png(data)
    elif ext in (".tif", ".tiff"):
        array = png_tiff.decode_tiff(data)
    elif ext in (".jpg", ".jpeg", ".bmp"):
        array = png_tiff.decode_pillow(data)
    else:
        raise DecodeError(f"unsupported extension {ext!r}; supported: {', '.join(IMAGE_EXTENSIONS)}")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or min(array.shape[:2]) < 1:
        raise DecodeError(f"decoded to an array of shape {array.shape}, not an image")
    return array


def encode(array: np.ndarray, name: str) -> bytes:
    """Encode an (H, W, C) array in the format `name`'s extension names."""
    ext = _ext(name)
    if ext == ".png":
        return png_tiff.encode_png(array)
    if ext in (".tif", ".tiff"):
        return png_tiff.encode_tiff(array)
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


def to_unit(array: np.ndarray) -> torch.Tensor:
    """(H, W, C) array -> (C, H, W) float32 tensor in [0, 1]."""
    scaled = array.astype(np.float32) / data_range(array.dtype)
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))


def from_unit(tensor: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """(C, H, W) tensor in [0, 1] -> (H, W, C) array of `dtype` (rounded and clipped if integer)."""
    values = tensor.detach().float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0) * data_range(dtype)
    if np.issubdtype(np.dtype(dtype), np.integer):
        values = np.rint(values)
    return values.astype(dtype)
