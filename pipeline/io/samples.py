"""Write the bundled sample HR images to a folder, so the quickstart needs no download.

  python -m pipeline.samples --out quickstart/samples   (the command: pipeline/samples.py)

photos/     real photographs shipped with scikit-image (8-bit RGB PNG), for training
holdout/    other scikit-image photographs (chelsea; camera and coins, grayscale), for
            validation and promotion: never trained on
medical/    a real 16-bit MR head slice shipped with matplotlib (s1045.ima), 1-band PNG
satellite/  a 4-band 16-bit raster derived from the real Jacksboro fault DEM shipped
            with matplotlib: elevation plus hillshade under three sun azimuths (TIFF)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import formats
from pipeline.errors import StorageError
from srgan.weights import cache_root

PHOTOS = ("astronaut", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
HOLDOUT = ("chelsea", "camera", "coins")


def _skimage(names: tuple[str, ...]) -> dict[str, np.ndarray]:
    import skimage.data

    return {name: getattr(skimage.data, name)() for name in names}


def mri_slice() -> np.ndarray:
    """(256, 256, 1) uint16 MR slice."""
    from matplotlib import cbook

    with cbook.get_sample_data("s1045.ima.gz") as fh:
        raw = fh.read()
    return np.frombuffer(raw, dtype="<u2").reshape(256, 256, 1).copy()


def _hillshade(elevation: np.ndarray, azimuth_deg: float, altitude_deg: float = 45.0) -> np.ndarray:
    gy, gx = np.gradient(elevation.astype(np.float64))
    slope = np.pi / 2 - np.arctan(np.hypot(gx, gy))
    aspect = np.arctan2(-gx, gy)
    az, alt = np.radians(azimuth_deg), np.radians(altitude_deg)
    shade = np.sin(alt) * np.sin(slope) + np.cos(alt) * np.cos(slope) * np.cos(az - aspect)
    return np.clip(shade, 0, 1)


def terrain_bands() -> np.ndarray:
    """(H, W, 4) uint16: elevation stretched to 16 bit, and three hillshades."""
    from matplotlib import cbook

    elevation = cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"].astype(np.float64)
    stretched = (elevation - elevation.min()) / (elevation.max() - elevation.min())
    bands = [stretched] + [_hillshade(elevation, az) for az in (315.0, 45.0, 135.0)]
    return np.rint(np.stack(bands, axis=-1) * 65535).astype(np.uint16)


def write_samples(out: str | Path) -> list[Path]:
    """Write every sample under `out`; returns the files written."""
    out = Path(out)
    written = []
    items = [(f"photos/{name}.png", array) for name, array in _skimage(PHOTOS).items()]
    items += [(f"holdout/{name}.png", array) for name, array in _skimage(HOLDOUT).items()]
    items += [("medical/mri_s1045.png", mri_slice()), ("satellite/jacksboro_4band.tif", terrain_bands())]
    for rel, array in items:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(formats.encode(array, path.name))
        written.append(path)
    return written


def samples_root() -> Path:
    return cache_root() / "samples"


def resolve(uri: str) -> str:
    """The local folder a samples:// name stands for (written to the cache on first use)."""
    root = samples_root()
    marker = root / ".complete"
    if not marker.exists():
        write_samples(root)
        marker.touch()
    sub = uri[len("samples://") :].strip("/")
    folder = root / sub
    if not folder.is_dir():
        raise StorageError(
            f"{uri} names no bundled samples; use samples://photos, samples://holdout, samples://medical, samples://satellite or samples://"
        )
    return str(folder)
