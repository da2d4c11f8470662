"""Test data: small but real-looking images, and the bad files a bucket collects."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline import formats


def smooth_image(rng: np.random.Generator, height: int, width: int, channels: int = 3, dtype=np.uint8) -> np.ndarray:
    """Blocky low-frequency content plus mild texture, so SR has something to learn."""
    coarse = rng.random((height // 8 + 1, width // 8 + 1, channels))
    img = np.kron(coarse, np.ones((8, 8, 1)))[:height, :width]
    img = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    return (img * top).round().astype(dtype) if top != 1.0 else img.astype(dtype)


def png_bytes(array: np.ndarray) -> bytes:
    return formats.encode(array, "x.png")


def bad_files(rng: np.random.Generator) -> dict[str, bytes]:
    """Name -> bytes for one of each kind of bad input."""
    good = png_bytes(smooth_image(rng, 64, 64))
    buf = io.BytesIO()
    Image.fromarray(smooth_image(rng, 12, 12)).save(buf, "PNG")
    return {
        "bad/empty.png": b"",
        "bad/truncated.png": good[: len(good) // 3],
        "bad/not_an_image.jpg": b"%PDF-1.4 this is a document, not a picture",
        "bad/tiny.png": buf.getvalue(),
    }


def put_images(
    bucket: str, prefix: str, count: int, size: tuple[int, int] = (64, 64), seed: int = 0, with_bad: bool = False
) -> list[str]:
    """Upload `count` PNGs (and, with_bad, the bad files) to s3://bucket/prefix; returns keys."""
    import boto3

    s3 = boto3.client("s3")
    rng = np.random.default_rng(seed)
    files = {f"img_{i:03d}.png": png_bytes(smooth_image(rng, *size)) for i in range(count)}
    if with_bad:
        files.update(bad_files(rng))
    for name, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/{name}", Body=data)
    return sorted(files)


def write_images(folder: Path, count: int, size: tuple[int, int] = (64, 64), seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img_{i:03d}.png"
        path.write_bytes(png_bytes(smooth_image(rng, *size)))
        paths.append(path)
    return paths


def geotiff_bytes(
    array: np.ndarray,
    nodata=None,
    pixel_size: float = 10.0,
    alpha: bool = False,
    colours: tuple[str, ...] = (),
    georeferenced: bool = True,
    **creation,
) -> bytes:
    """An (H, W, C) array as a GeoTIFF in UTM 33N with `pixel_size` m pixels, band
    descriptions and a tag, written by rasterio; `colours` set each band's colour
    interpretation; not `georeferenced`: a plain TIFF with GDAL's metadata."""
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.transform import from_origin

    h, w, c = array.shape
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": c,
        "dtype": str(array.dtype),
        "crs": "EPSG:32633",
        "transform": from_origin(500000.0, 4600000.0, pixel_size, pixel_size),
        "nodata": nodata,
        **creation,
    }
    if not georeferenced:
        del profile["crs"], profile["transform"]
    with rasterio.MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(np.moveaxis(array, -1, 0))
            dst.descriptions = tuple(f"band-{i + 1}" for i in range(c))
            dst.update_tags(SENSOR="test-sat")
            if alpha:
                dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
            if colours:
                dst.colorinterp = [ColorInterp[name] for name in colours]
        return mem.read()


def dicom_bytes(
    array: np.ndarray, bits_stored: int = 12, signed: bool = False, spacing=(0.5, 0.5), compressed_garbage: bool = False
) -> bytes:
    """A single-frame MR slice holding the (H, W) `array` as stored values."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "TEST-001", "Test^Patient", "MR"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    ds.Rows, ds.Columns = array.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelSpacing = [str(s) for s in spacing]
    ds.RescaleSlope, ds.RescaleIntercept = "1.5", "-100"
    ds.SmallestImagePixelValue = int(array.min())
    data = array.astype(np.int16 if signed else np.uint16).tobytes()
    ds.PixelData = data[: len(data) // 3] if compressed_garbage else data
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()
