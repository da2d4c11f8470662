"""DICOM slices (pydicom, extra ``medical``): stored pixel values in, upscaled slice out.

Reading keeps the stored values (before RescaleSlope/Intercept) and the dataset. The value
range a model sees is the one BitsStored allows: [0, 2^bits - 1] unsigned, or
[-2^(bits-1), 2^(bits-1) - 1] shifted to start at 0 when PixelRepresentation is 1.

Writing an upscaled slice keeps every tag of the source except those that describe the new
pixels: Rows/Columns times the scale, PixelSpacing (and ImagerPixelSpacing) divided by it, a
new SOP Instance UID (also in the file meta), ImageType's first value DERIVED, a
DerivationDescription naming the model, and no stale SmallestImagePixelValue /
LargestImagePixelValue. BitsAllocated/BitsStored/HighBit, PixelRepresentation,
PhotometricInterpretation and RescaleSlope/Intercept are kept. Compressed sources are
written uncompressed (explicit VR little endian): re-encoding JPEG 2000 or JPEG-LS would need
codecs this package does not require.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from pipeline.formats.base import MAX_PIXELS, Codec, Raster, RasterWriter, WholeFrames, Window, check_pixels
from pipeline.formats.errors import DecodeError

EXTENSIONS = (".dcm", ".dicom")
PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB")
_MISSING = "DICOM needs pydicom: pip install 'srgan-pipeline[medical]'"


def _pydicom():
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise DecodeError(_MISSING) from exc
    return pydicom


def decode(data: bytes, max_pixels: int = MAX_PIXELS):
    """(dataset, stored values as (frames, H, W, C) array, value offset, value range). A
    dataset whose Rows x Columns x NumberOfFrames exceed `max_pixels` is refused before its
    pixels are decoded."""
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:
        raise DecodeError(f"not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    if "PixelData" not in ds:
        raise DecodeError("DICOM file holds no pixel data")
    try:
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        columns, rows, samples = (
            int(getattr(ds, "Columns", 0) or 0),
            int(getattr(ds, "Rows", 0) or 0),
            int(getattr(ds, "SamplesPerPixel", 1) or 1),
        )
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"DICOM NumberOfFrames, Rows, Columns or SamplesPerPixel is not a number ({exc})") from exc
    check_pixels(columns, rows, frames, max_pixels)
    stored_dtype(ds)  # before decoding: a layout this codec cannot write back is refused
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DecodeError(f"undecodable DICOM pixel data ({first})") from exc
    if samples == 1:
        pixels = pixels[..., None]
    if frames == 1:
        pixels = pixels[None]
    if pixels.ndim != 4:
        raise DecodeError(f"DICOM pixel data of shape {pixels.shape} is not {frames} frame(s) of {samples} sample(s)")
    return ds, pixels, value_offset(ds), value_range(ds)


def stored_dtype(ds) -> np.dtype:
    """The dtype PixelData holds: BitsAllocated 8, 16 or 32, signed when PixelRepresentation is 1."""
    bits, signed = int(getattr(ds, "BitsAllocated", 16)), int(getattr(ds, "PixelRepresentation", 0)) == 1
    if bits not in (8, 16, 32):
        raise DecodeError(f"DICOM BitsAllocated {bits} is not supported; 8, 16 and 32 are")
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")


def value_offset(ds) -> int:
    """What to add to stored values so that the lowest one BitsStored allows is 0."""
    bits = int(getattr(ds, "BitsStored", 16))
    return 2 ** (bits - 1) if int(getattr(ds, "PixelRepresentation", 0)) == 1 else 0


def value_range(ds) -> float:
    """The span of stored values BitsStored allows (the value that maps to 1.0 after the offset)."""
    return float(2 ** int(getattr(ds, "BitsStored", 16)) - 1)


def encode(ds, frames: np.ndarray, scale: int, model_name: str) -> bytes:
    """The source dataset `ds` with upscaled `frames` ((F, H, W, C) stored values) as its pixels."""
    pydicom = _pydicom()
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    out = ds.copy()
    f, h, w, c = frames.shape
    pixels = frames[..., 0] if c == 1 else frames
    pixels = pixels[0] if f == 1 else pixels
    out.Rows, out.Columns = h, w
    for key in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        if key in out and out[key].value:
            out[key].value = [_ds(float(v) / scale) for v in out[key].value]
    for key in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if key in out:
            del out[key]
    image_type = list(out.ImageType) if "ImageType" in out else ["DERIVED", "SECONDARY"]
    out.ImageType = ["DERIVED", *image_type[1:]] if image_type else ["DERIVED", "SECONDARY"]
    out.DerivationDescription = f"super-resolved x{scale} by {model_name}"[:1024]
    uid = generate_uid()
    out.SOPInstanceUID = uid
    if not hasattr(out, "file_meta") or out.file_meta is None:
        out.file_meta = pydicom.dataset.FileMetaDataset()
    out.file_meta.MediaStorageSOPInstanceUID = uid
    if out.file_meta.get("TransferSyntaxUID") is None or out.file_meta.TransferSyntaxUID.is_compressed:
        out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if "NumberOfFrames" in out:
        out.NumberOfFrames = f
    dtype = stored_dtype(ds)
    out.PixelData = np.ascontiguousarray(pixels.astype(dtype)).tobytes()
    out["PixelData"].VR = "OW" if dtype.itemsize == 2 else "OB"
    buf = io.BytesIO()
    ts = out.file_meta.TransferSyntaxUID
    out.save_as(buf, enforce_file_format=True, little_endian=ts.is_little_endian, implicit_vr=ts.is_implicit_VR)
    return buf.getvalue()


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters) for `value`."""
    for digits in range(12, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.1e}"


class DicomRaster(Raster):
    """A DICOM file's frames (stored values) and dataset; each frame is one window."""

    def __init__(self, path: Path, max_pixels: int = MAX_PIXELS) -> None:
        self.dataset, self.pixels, offset, span = decode(path.read_bytes(), max_pixels)
        self.value_range = (float(-offset), float(span - offset))
        signed = int(getattr(self.dataset, "PixelRepresentation", 0)) == 1
        self.range_source = f"DICOM BitsStored {int(getattr(self.dataset, 'BitsStored', 16))}" + (
            " signed" if signed else ""
        )
        self.range_declared = "BitsStored" in self.dataset
        photometric = str(getattr(self.dataset, "PhotometricInterpretation", "MONOCHROME2"))
        if photometric not in PHOTOMETRIC:
            raise DecodeError(
                f"DICOM PhotometricInterpretation {photometric} is not supported; {', '.join(PHOTOMETRIC)} are"
            )
        self.frames, self.height, self.width, self.bands = self.pixels.shape
        self.dtype = self.pixels.dtype

    def read(self, window: Window) -> tuple[np.ndarray, None]:
        (top, bottom), (left, right) = window.rows, window.cols
        return self.pixels[window.frame, top:bottom, left:right], None

    def create(self, path: Path, scale: int, notes: dict[str, str]) -> RasterWriter:
        return WholeFrames(
            path, self, scale, lambda frames: encode(self.dataset, frames, scale, notes.get("model", "srgan"))
        )


CODEC = Codec("dicom", EXTENSIONS, DicomRaster)
