"""Ray Data pipelines that turn HR images in storage into training and validation data.

One HR image's way to a loss value:

  list files (driver) -> scan: read and decode every file once; files that are empty,
  truncated, not images, smaller than a patch or of the wrong band count are reported by
  key and counted, the rest go on ->
  per epoch: read bytes -> decode (16-bit and extra bands kept) -> `patches_per_image`
  random HR crops with flips/rotations -> the configured srgan degradation makes their LR
  -> block order shuffled -> equal shards to the Ray Train workers, where each worker's
  local shuffle buffer mixes patches of different images.

Randomness: each file row carries a draw from Ray Data's seeded `random()` expression, which
Ray reseeds at every pass over the dataset (every epoch); crops, augmentations and
degradations are seeded by (run seed, file, draw), so every epoch sees new patches and the
same run on the same cluster layout sees the same ones. Validation images are decoded,
cropped and degraded once, kept in the object store, and scored by every worker on its
share (see pipeline.train_loop).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import torch

from pipeline import formats, storage
from pipeline.errors import DecodeError
from srgan.degrade import Degradation, usm_sharp

log = logging.getLogger(__name__)


def stable_seed(*parts) -> int:
    """A 63-bit seed from any printable parts, the same in every process (unlike hash())."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass(frozen=True)
class BadInput:
    key: str
    reason: str


@dataclass(frozen=True)
class ImageSpec:
    """How to turn file bytes into a model-ready (C, H, W) float tensor in [0, 1]."""

    channels: int
    data_range: float | None = None
    min_size: int = 1

    def decode(self, data: bytes, name: str) -> tuple[torch.Tensor, int]:
        """(tensor, quantisation levels of the source: 255, 65535, or 0 for float data)."""
        array, alpha = formats.decode_with_alpha(data, name)
        h, w = array.shape[:2]
        if min(h, w) < self.min_size:
            raise DecodeError(f"is {w}x{h}, smaller than the {self.min_size}x{self.min_size} patch")
        array = formats.conform_bands(array, self.channels, alpha)
        levels = int(formats.data_range(array.dtype)) if np.issubdtype(array.dtype, np.integer) else 0
        if self.data_range:
            levels = int(self.data_range) if levels else 0
        return formats.to_unit(array, self.data_range), levels


def _scan_batch(batch: dict, spec: ImageSpec) -> dict:
    ok, reasons = [], []
    for data, path in zip(batch["bytes"], batch["path"]):
        try:
            spec.decode(data, str(path))
            ok.append(True)
            reasons.append("")
        except DecodeError as exc:
            ok.append(False)
            reasons.append(str(exc))
    return {"path": batch["path"], "ok": np.array(ok), "reason": np.array(reasons, dtype=object)}


def scan(files: list[storage.StoredFile], spec: ImageSpec, read_cpus: float = 0.25) -> tuple[list[storage.StoredFile], list[BadInput]]:
    """Decode every file once; return (usable files, bad inputs with their reasons)."""
    import ray

    if not files:
        return [], []
    fs, _ = storage.filesystem(files[0].uri)
    ds = ray.data.read_binary_files([f.path for f in files], filesystem=fs, include_paths=True, num_cpus=read_cpus)
    ds = ds.map_batches(_scan_batch, fn_kwargs={"spec": spec}, batch_size=8, num_cpus=read_cpus, batch_format="numpy")
    ds.context.enable_progress_bars = False  # the caller prints what it scans and what it skipped
    rows = ds.take_all()
    good, bad = [], []
    verdict = {r["path"]: (bool(r["ok"]), r["reason"]) for r in rows}
    for f in files:
        ok, reason = verdict.get(f.path, (False, "could not be read"))
        if ok:
            good.append(f)
        else:
            bad.append(BadInput(f.key, reason))
    return good, bad


class PatchPairs:
    """map_batches callable: file bytes -> LR/HR patch pairs (see module docstring)."""

    def __init__(self, spec: ImageSpec, patch_size: int, patches_per_image: int, degrade: Degradation, seed: int) -> None:
        self.spec = spec
        self.patch = patch_size
        self.per_image = patches_per_image
        self.degrade = degrade
        self.seed = seed

    @staticmethod
    def _augment(x: torch.Tensor, code: int) -> torch.Tensor:
        """One of the 8 dihedral transforms: code & 3 quarter turns, code & 4 a flip."""
        if code & 4:
            x = x.flip(-1)
        return torch.rot90(x, code & 3, dims=(-2, -1))

    def __call__(self, batch: dict) -> dict:
        """{bytes, path, draw} rows -> {lr, hr} patch pairs ((N, C, h, w) float32 in [0, 1])."""
        patches = []
        for data, path, draw in zip(batch["bytes"], batch["path"], batch["draw"]):
            try:
                image, _ = self.spec.decode(data, str(path))
            except DecodeError as exc:  # the scan passed it: a transient read problem
                log.warning("skipping %s this epoch: %s", path, exc)
                continue
            rng = np.random.default_rng(stable_seed(self.seed, path, float(draw)))
            _, h, w = image.shape
            for _ in range(self.per_image):
                top = int(rng.integers(0, h - self.patch + 1))
                left = int(rng.integers(0, w - self.patch + 1))
                crop = image[:, top : top + self.patch, left : left + self.patch]
                patches.append(self._augment(crop, int(rng.integers(0, 8))))
        if not patches:
            c = self.spec.channels
            s = self.patch // self.degrade.scale
            return {"lr": np.zeros((0, c, s, s), np.float32), "hr": np.zeros((0, c, self.patch, self.patch), np.float32)}
        hr = torch.stack(patches)
        lr = self.degrade(hr, stable_seed(self.seed, *batch["path"], *np.asarray(batch["draw"], float).tolist()))
        if getattr(self.degrade, "usm_target", False):  # Real-ESRGAN's sharpened targets; the LR comes from the plain HR
            hr = usm_sharp(hr)
        return {"lr": lr.numpy().astype(np.float32), "hr": hr.numpy().astype(np.float32)}


def train_dataset(files: list[storage.StoredFile], pairs: PatchPairs, read_cpus: float, images_per_task: int, seed: int):
    """The per-epoch LR/HR pair pipeline over already-scanned files."""
    import ray
    from ray.data.expressions import random

    fs, _ = storage.filesystem(files[0].uri)
    ds = ray.data.read_binary_files(
        [f.path for f in files],
        filesystem=fs,
        include_paths=True,
        shuffle=ray.data.FileShuffleConfig(seed=seed, reseed_after_execution=True),
        num_cpus=read_cpus,
    )
    # A new draw per file at every pass over the data (public API: Ray reseeds it per execution).
    # (As every stage here, on a fraction of a CPU: a whole one may be more than Ray Train leaves free.)
    ds = ds.with_column("draw", random(seed=stable_seed(seed, "draws") % 2**32, reseed_after_execution=True), num_cpus=read_cpus)
    ds = ds.map_batches(pairs, batch_size=images_per_task, num_cpus=read_cpus, batch_format="numpy")
    return ds.randomize_block_order(seed=ray.data.RandomSeedConfig(seed=seed, reseed_after_execution=True))


def _centre_crop(x: torch.Tensor, size: int | None, scale: int) -> torch.Tensor:
    _, h, w = x.shape
    if size is None:  # whole image, cropped to a multiple of the scale
        return x[:, : h - h % scale, : w - w % scale]
    ch, cw = min(size, h - h % scale), min(size, w - w % scale)
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[:, top : top + ch, left : left + cw]


def val_dataset(files: list[storage.StoredFile], spec: ImageSpec, crop: int | None, degrade: Degradation, read_cpus: float, seed: int):
    """Validation pairs, made once: rows {idx, key, levels, hr (C, H, W), lr (C, H/s, W/s)},
    float32 in [0, 1], HR centre-cropped (`crop`, or whole images cropped to a multiple of
    the scale), LR degraded with a seed of its own per image; materialised so that every
    validation reads them from the object store."""
    import ray

    fs, _ = storage.filesystem(files[0].uri)
    index = {f.path: (i, f.key) for i, f in enumerate(files)}

    def decode(row: dict) -> dict:
        path = str(row["path"])
        hr, levels = spec.decode(row["bytes"], path)
        idx, key = index[path]
        hr = _centre_crop(hr, crop, degrade.scale)
        lr = degrade(hr[None].contiguous(), stable_seed(seed, "val", key))[0]
        return {"idx": idx, "key": key, "levels": levels, "hr": hr.numpy(), "lr": lr.numpy()}

    ds = ray.data.read_binary_files([f.path for f in files], filesystem=fs, include_paths=True, num_cpus=read_cpus)
    return ds.map(decode, num_cpus=read_cpus).materialize()
