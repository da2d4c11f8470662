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


def put_images(bucket: str, prefix: str, count: int, size: tuple[int, int] = (64, 64), seed: int = 0, with_bad: bool = False) -> list[str]:
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
