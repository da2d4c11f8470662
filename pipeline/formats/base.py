"""The codec interface: what the batch upscaler asks of a file format.

A `Codec` claims file extensions and probes a file's bytes; its opener gives a `Raster`, an open
input with its layout (size, bands, frames, dtype, alpha, the colour of each band), its value
range (low, high: stored value v maps to the model's [0, 1] as (v - low) / (high - low)), and
its pixels window by window. Formats decoded whole refuse, from the header and before any
pixel is allocated, images over a pixel limit (`check_pixels`). `Raster.create` gives the `RasterWriter` of an output `scale` times larger in the
same format, which takes each window's upscaled pixels. Arrays are (H, W, C) in the file's
dtype.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.formats.errors import DecodeError
from srgan.tiling import aligned_spans

MAX_PIXELS = 50_000_000  # whole-decoded images: ~150 MB in, 2.4 GB out at x4 (8-bit RGB)


@dataclass(frozen=True)
class Window:
    """A part of one frame: `rows`/`cols` are read (context included), `keep_rows`/`keep_cols`
    are the part it produces; all in input pixels of the whole frame, [start, stop)."""

    frame: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    keep_rows: tuple[int, int]
    keep_cols: tuple[int, int]

    @classmethod
    def whole(cls, frame: int, height: int, width: int) -> Window:
        return cls(frame, (0, height), (0, width), (0, height), (0, width))

    @property
    def region(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of the kept part inside the part read."""
        return (
            self.keep_rows[0] - self.rows[0],
            self.keep_rows[1] - self.rows[0],
            self.keep_cols[0] - self.cols[0],
            self.keep_cols[1] - self.cols[0],
        )


def dtype_range(dtype: np.dtype) -> tuple[float, float]:
    """(low, high) of data that declares no range: an integer dtype's whole range (unsigned
    from 0, signed from its minimum, so negative values are kept), [0, 1] for floats."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return 0.0, 1.0


def check_pixels(width: int, height: int, frames: int, max_pixels: int) -> None:
    """Refuse, from its header, an image to be decoded whole that holds more than `max_pixels`
    pixels (all frames together)."""
    pixels = int(width) * int(height) * max(1, int(frames))
    if pixels > max_pixels:
        of = f" in {frames} frames" if frames > 1 else ""
        raise DecodeError(
            f"is {width}x{height} px{of} ({pixels / 1e6:.1f} Mpx), over the {max_pixels:,}-pixel limit for images decoded whole; raise `max_pixels` if the workers have the memory (8-bit RGB at x4 needs about 50 bytes per input pixel)"
        )


class RasterWriter(ABC):
    """An output file being written window by window; complete once closed."""

    @abstractmethod
    def write(self, window: Window, array: np.ndarray, mask: np.ndarray | None) -> None:
        """Store the upscaled kept part of `window`; `mask` (the read part's no-data values,
        (H, W, C) as `Raster.read` gave it) marks output values to set to no-data."""

    def close(self) -> None:
        """Finish the file."""

    def abort(self) -> None:
        """Give up on the file (an error happened): release what is held, finish nothing."""

    def __enter__(self) -> RasterWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class Raster(ABC):
    """An open input file (see the module docstring)."""

    height: int
    width: int
    bands: int
    dtype: np.dtype
    frames: int = 1
    alpha: bool = False  # the last band is transparency, as the file itself declares
    colours: tuple[
        str, ...
    ] = ()  # per band, as the file declares: 'red', 'alpha', 'undefined', ... or () when it says nothing
    value_range: tuple[float, float] = (0.0, 1.0)  # (low, high): see dtype_range
    range_source: str = ""  # where value_range comes from, e.g. "PNG sBIT 12 bits (4095)"
    range_declared: bool = False  # the file states value_range (not just its dtype's)

    def windows(self, block: int, pad: int) -> Iterator[Window]:
        """Windows of at most `block` x `block` kept pixels with `pad` pixels of context, frame
        by frame (memory of the upscaled window is bounded by `block`, whatever the format)."""
        for frame in range(self.frames):
            for rows in aligned_spans(self.height, block, pad):
                for cols in aligned_spans(self.width, block, pad):
                    yield Window(
                        frame,
                        (rows.win_start, rows.win_stop),
                        (cols.win_start, cols.win_stop),
                        (rows.keep_start, rows.keep_stop),
                        (cols.keep_start, cols.keep_stop),
                    )

    @abstractmethod
    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray | None]:
        """(stored values of the window's read part, its (H, W, C) no-data mask or None);
        no-data values hold 0."""

    @abstractmethod
    def create(self, path: Path, scale: int, notes: dict[str, str]) -> RasterWriter:
        """The writer of the upscaled file at `path`; `notes` (model, scale, bicubic_bands)
        go into the format's metadata where it has a place for them."""

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> Raster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _any_file(path: Path) -> bool:
    return True


@dataclass(frozen=True)
class Codec:
    """A file format family: the extensions it claims, a probe of the bytes (whether a file
    with one of them is this codec's), and the opener (`open(path, max_pixels)` -> Raster;
    DecodeError names what is wrong with the file)."""

    name: str
    extensions: tuple[str, ...]
    open: Callable[[Path, int], Raster]  # (path, max_pixels)
    probe: Callable[[Path], bool] = _any_file


class WholeFrames(RasterWriter):
    """A writer for formats encoded in one piece: windows are gathered into whole upscaled
    frames, and `encode(frames)` ((F, H, W, C) array) makes the file at close."""

    def __init__(self, path: Path, source: Raster, scale: int, encode) -> None:
        self.path, self.scale, self.encode = path, scale, encode
        self.shape = (source.height * scale, source.width * scale, source.bands)
        self.dtype = source.dtype
        self._frames: list[np.ndarray | None] = [None] * source.frames

    def write(self, window: Window, array: np.ndarray, mask: np.ndarray | None) -> None:
        if array.shape == self.shape:
            self._frames[window.frame] = array  # the whole frame at once: no copy
            return
        if self._frames[window.frame] is None:
            self._frames[window.frame] = np.zeros(self.shape, self.dtype)
        s = self.scale
        (top, bottom), (left, right) = window.keep_rows, window.keep_cols
        self._frames[window.frame][top * s : bottom * s, left * s : right * s] = array

    def close(self) -> None:
        missing = [i for i, f in enumerate(self._frames) if f is None]
        if missing:
            raise RuntimeError(f"frame(s) {missing} of {self.path.name} were never written")
        frames = self._frames[0][None] if len(self._frames) == 1 else np.stack(self._frames)
        self.path.write_bytes(self.encode(frames))
