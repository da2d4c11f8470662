"""The one image reader: a stored file's bytes -> (C, H, W) float32 in [0, 1], the same way in
every verb (train, prepare, evaluate, promote, rate, upscale, the MLflow model).

The range rule, in order: an explicit range (a setting or option), else the model's
data_range (refused for a dtype that cannot hold it, with a warning where the file declares
another range), else the range the file declares (PNG sBIT, TIFF MaxSampleValue or BitsPerSample,
GeoTIFF NBITS, DICOM BitsStored), else the dtype's: an unsigned integer's maximum, [0, 1] for
floats. Signed integers that declare nothing are refused: their whole dtype range would
squeeze the data into a sliver of [0, 1]. A value outside the range is refused, never clipped.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
import torch

from pipeline import formats
from pipeline.errors import DecodeError, RangeError

log = logging.getLogger(__name__)

# How a user gives an explicit range, for the refusals' hints (the caller's words: a CLI flag,
# a config key).
RANGE_HINT = "give the data's value range explicitly"
MAX_LEVELS = 2**24  # float32 (the model's input) tells no more levels apart


def range_pair(explicit: float | tuple[float, float] | list | None) -> tuple[float, float] | None:
    """An explicit range as (low, high): a number is a maximum, read from 0."""
    if explicit is None:
        return None
    if np.isscalar(explicit):
        return 0.0, float(explicit)
    low, high = map(float, explicit)
    return low, high


def range_text(explicit: float | tuple[float, float] | list | None) -> str:
    """An explicit range as a setting writes it: 4095, or [-1024, 3071] (none: "none")."""
    pair = range_pair(explicit)
    if pair is None:
        return "none"
    return f"{pair[1]:g}" if pair[0] == 0 else f"[{pair[0]:g}, {pair[1]:g}]"


@dataclass(frozen=True)
class Range:
    """Stored values low..high map to 0..1; `source` says where the pair comes from."""

    low: float
    high: float
    source: str
    declared: bool = True  # by the user, the model or the file; False: only the dtype's

    @property
    def span(self) -> float:
        return self.high - self.low


def dtype_range(dtype: np.dtype) -> Range:
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        top = np.iinfo(dtype).max
        return Range(0.0, float(top), f"dtype {dtype} ({top})", False)
    return Range(0.0, 1.0, f"{dtype} data is read as [0, 1] unless a range is given", False)


def range_rule(
    dtype: np.dtype,
    declared: Range | None = None,
    explicit: float | tuple[float, float] | None = None,
    model_range: float | None = None,
    hint: str = RANGE_HINT,
    explicit_name: str = "the given range",
) -> Range:
    """The range stored values of `dtype` are read with (see the module docstring). `explicit`
    is a maximum (low 0) or a (low, high) pair, named `explicit_name` in messages; `declared`
    is the file's own, if it has one."""
    dtype = np.dtype(dtype)
    if explicit is not None:
        low, high = range_pair(explicit)
        if not high > low:
            raise DecodeError(f"value range {low:g}..{high:g} is empty; {hint}")
        return Range(low, high, explicit_name)
    if model_range:
        return _model_range(dtype, declared, float(model_range))
    if dtype == np.bool_:
        raise DecodeError("is a 1-bit (boolean) image; an SR model needs grey levels: convert it to 8-bit first")
    if declared is not None and declared.declared:
        return declared
    if np.issubdtype(dtype, np.signedinteger):
        raise DecodeError(
            f"is signed {dtype} and declares no value range (its whole dtype range would be a sliver of it); {hint}"
        )
    whole = dtype_range(dtype)
    if np.issubdtype(dtype, np.integer) and whole.span > MAX_LEVELS:
        raise DecodeError(f"is {dtype}, whose whole range is too wide to read as the model's 0..1; {hint}")
    return whole


def _model_range(dtype: np.dtype, declared: Range | None, model_range: float) -> Range:
    """The model's data_range as the range of a file of `dtype` that declares `declared`:
    refused when the dtype cannot hold it (a 16-bit model given 8-bit files), with a warning
    when the file declares another range (its values are read as the model's training read them)."""
    if np.issubdtype(dtype, np.integer) and model_range > np.iinfo(dtype).max:
        raise RangeError(
            f"is {dtype} (at most {np.iinfo(dtype).max}) but the model reads 0..{model_range:g} (its data_range, from wider training data); give it files of the bit depth it was trained on"
        )
    if declared is not None and declared.declared and (declared.low, declared.high) != (0.0, model_range):
        _warn_once(
            f"warning: files declaring {declared.low:g}..{declared.high:g} ({declared.source}) are read under the model's data_range 0..{model_range:g}"
        )
    return Range(0.0, model_range, "the model's data_range")


@functools.lru_cache(maxsize=64)
def _warn_once(text: str) -> None:
    log.warning(text)


def check_values(array: np.ndarray, mask: np.ndarray | None, used: Range, hint: str = RANGE_HINT) -> None:
    """Refuse stored values outside `used` (or NaN, infinite), no-data (`mask`) excluded."""
    values = array if mask is None else array[~mask]
    if not values.size:
        return
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        raise DecodeError(
            "holds NaN or infinite values that are not its no-data value; mark them as no-data or fix the file"
        )
    lo, hi = float(values.min()), float(values.max())
    if lo < used.low or hi > used.high:
        raise DecodeError(
            f"has values from {lo:g} to {hi:g}, outside [{used.low:g}, {used.high:g}] ({used.source}); {hint}"
        )


def data_range(dtype: np.dtype) -> float:
    """The value that maps to 1.0: the integer dtype's maximum, 1.0 for floats."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0


def _arithmetic_dtype(dtype: np.dtype):
    """The float type that maps `dtype`'s values without losing them: float64 for 32/64-bit
    integers and float64 data, float32 otherwise."""
    dtype = np.dtype(dtype)
    wide_integer = np.issubdtype(dtype, np.integer) and dtype.itemsize > 2
    return np.float64 if wide_integer or dtype == np.float64 else np.float32


def to_unit(array: np.ndarray, value_range: float | None = None, offset: float = 0.0) -> torch.Tensor:
    """(H, W, C) array -> (C, H, W) float32 tensor in [0, 1]: (values + `offset`) /
    `value_range` (default the dtype's maximum; clipped when a range is given)."""
    work = _arithmetic_dtype(array.dtype)
    scaled = array.astype(work)
    if offset:
        scaled += work(offset)
    scaled /= work(value_range or data_range(array.dtype))
    if value_range:
        scaled = np.clip(scaled, 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1), dtype=np.float32))


def from_unit(
    tensor: torch.Tensor, dtype: np.dtype, value_range: float | None = None, offset: float = 0.0
) -> np.ndarray:
    """(C, H, W) tensor in [0, 1] -> (H, W, C) array of `dtype`: value * range - offset,
    rounded and clipped to the dtype if integer (inverse of `to_unit`). Works in place on one
    float copy, so a large image costs one float and one output array."""
    dtype = np.dtype(dtype)
    work = _arithmetic_dtype(dtype)
    values = tensor.detach().float().cpu().numpy().transpose(1, 2, 0).astype(work)  # the one float copy
    np.clip(values, 0, 1, out=values)
    np.multiply(values, work(value_range or data_range(dtype)), out=values)
    if offset:
        np.subtract(values, work(offset), out=values)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        np.rint(values, out=values)
        np.clip(values, info.min, info.max, out=values)
    return values.astype(dtype)


def unit_of(array: np.ndarray, used: Range) -> torch.Tensor:
    """(H, W, C) stored values -> (C, H, W) float32 tensor in [0, 1] under `used`."""
    return to_unit(array, used.span, -used.low)


def stored_of(tensor: torch.Tensor, dtype: np.dtype, used: Range) -> np.ndarray:
    """(C, H, W) tensor in [0, 1] -> (H, W, C) stored values of `dtype` (inverse of unit_of)."""
    return from_unit(tensor, dtype, used.span, -used.low)


@dataclass(frozen=True)
class StoredImage:
    """A stored image as read: its values, the range they are read with, and what it held."""

    pixels: np.ndarray  # (H, W, C) stored values; alpha dropped, bands as the reader was asked
    range: Range
    had_alpha: bool = False

    def tensor(self) -> torch.Tensor:
        """(C, H, W) float32 in [0, 1]."""
        return unit_of(self.pixels, self.range)

    @property
    def levels(self) -> int:
        """Quantisation levels of the source: the range's span for integers (255, 4095, ...),
        rounded (a span of 4094.9999 from float arithmetic is 4095 levels, not 4094), 0 for floats."""
        if not np.issubdtype(self.pixels.dtype, np.integer):
            return 0
        return max(1, round(self.range.span))


def declared_range(raster: formats.Raster) -> Range:
    low, high = raster.value_range
    return Range(float(low), float(high), raster.range_source or f"dtype {raster.dtype}", raster.range_declared)


def read_image(
    data: bytes,
    name: str,
    channels: int | None = None,
    explicit: float | tuple[float, float] | None = None,
    model_range: float | None = None,
    min_size: int = 1,
    max_pixels: int = formats.MAX_PIXELS,
    hint: str = RANGE_HINT,
    explicit_name: str = "the given range",
) -> StoredImage:
    """Read a stored file whole, in any format `formats` opens (by `name`'s extension and its
    bytes); with `channels`, give it the band count a model takes (alpha dropped, grey to RGB).
    DecodeError names what is wrong; the caller prefixes the file's name."""
    with formats.open_bytes(data, name, max_pixels) as raster:
        formats.check_pixels(raster.width, raster.height, raster.frames, max_pixels)
        if raster.frames != 1:
            raise DecodeError(f"holds {raster.frames} frames; one image a file is read here: split the frames first")
        pixels, mask = raster.read(formats.Window.whole(0, raster.height, raster.width))
        declared, alpha = declared_range(raster), raster.alpha
    h, w = pixels.shape[:2]
    if min(h, w) < min_size:
        raise DecodeError(f"is {w}x{h}, smaller than the {min_size}x{min_size} patch")
    if alpha:
        pixels, mask = pixels[..., :-1], None if mask is None else mask[..., :-1]
    if channels is not None:
        pixels = formats.conform_bands(pixels, channels)
        mask = None if mask is None else formats.conform_bands(mask, channels)
    used = range_rule(pixels.dtype, declared, explicit, model_range, hint, explicit_name)
    check_values(pixels, mask, used, hint)
    return StoredImage(np.ascontiguousarray(pixels), used, alpha)
