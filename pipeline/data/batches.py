"""Ray Data pipelines that turn HR images in storage into training and validation data.

One HR image's way to a loss value:

  list files (driver) -> scan: read and decode every file once; files that are empty,
  truncated, not images, smaller than a patch or of the wrong band count are reported by
  key and counted, the rest go on ->
  per epoch: read bytes -> decode (16-bit and extra bands kept; divided by the range the
  file declares, see ImageSpec) -> `patches_per_image`
  random HR crops with flips/rotations per image, of srgan.degrade.crop_size (the patch, or a
  realistic degradation's `degrade_size`, images under it reflected) -> interleaved into
  worker-sized batches of crops of distinct images -> each batch degraded by the configured
  srgan degradation with a seed of its own and cut to aligned patch pairs
  (srgan.degrade.training_pair; on the CPU here, or on the worker's device: data.degrade_on)
  -> block order shuffled -> equal shards to the Ray Train workers, where each worker's local
  shuffle buffer mixes batches of different tasks.

Randomness: each file row carries a draw from Ray Data's seeded `random()` expression, which
Ray reseeds at every pass over the dataset (every epoch); crops, augmentations and
degradations are seeded by (run seed, file, draw), so every epoch sees new patches and the
same run on the same cluster layout sees the same ones. Validation images are decoded,
cropped and degraded once, kept in the object store, and scored by every worker on its
share (see pipeline.train_loop).
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from pipeline import formats
from pipeline.data.reader import range_text, read_image
from pipeline.errors import DecodeError
from pipeline.io import storage
from srgan.degrade import Degradation, crop_size, pad_to, training_pair
from srgan.tiling import centre_crop

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
    data_range: float | tuple[float, float] | None = None  # data.data_range: a maximum or (low, high)
    min_size: int = 1

    def decode(self, data: bytes, name: str) -> tuple[torch.Tensor, int]:
        """(tensor, quantisation levels of the source: the maximum of its range, e.g. 255,
        4095 or 65535, or 0 for float data)."""
        tensor, levels, _ = self.decode_with_range(data, name)
        return tensor, levels

    def decode_with_range(self, data: bytes, name: str) -> tuple[torch.Tensor, int, formats.ValueRange]:
        """`decode`, plus the range the values are read with and where it comes from
        (pipeline.data.reader's rule: data.data_range when set, else the file's declaration,
        else the dtype's). A value outside that range makes the file bad input: it is never
        clipped."""
        image = read_image(
            data,
            name,
            self.channels,
            explicit=self.data_range,
            min_size=self.min_size,
            hint="fix the file or set data.data_range to the data's true maximum"
            if not self.data_range
            else "raise data.data_range to the data's true maximum",
            explicit_name=f"data.data_range {range_text(self.data_range)}" if self.data_range else "",
        )
        used = formats.ValueRange(image.range.high, image.range.source, not image.range.declared, image.range.low)
        return image.tensor(), image.levels, used


def _scan_batch(batch: dict, spec: ImageSpec) -> dict:
    ok, reasons, highs, sources, from_dtype = [], [], [], [], []
    for data, path in zip(batch["bytes"], batch["path"]):
        try:
            used = spec.decode_with_range(data, str(path))[2]
            ok.append(True)
            reasons.append("")
        except DecodeError as exc:
            used = formats.ValueRange(0.0, "", True)
            ok.append(False)
            reasons.append(str(exc))
        highs.append(used.high)
        sources.append(used.source)
        from_dtype.append(used.from_dtype)
    return {
        "path": batch["path"],
        "ok": np.array(ok),
        "reason": np.array(reasons, dtype=object),
        "high": np.array(highs, float),
        "source": np.array(sources, dtype=object),
        "from_dtype": np.array(from_dtype),
    }


@dataclass
class Scan:
    """What a scan found: usable files, bad inputs, and the value ranges the usable ones are read with."""

    good: list[storage.StoredFile]
    bad: list[BadInput]
    ranges: Counter  # formats.ValueRange -> how many usable files were read with it


def scan(
    files: list[storage.StoredFile], spec: ImageSpec, read_cpus: float = 0.25
) -> tuple[list[storage.StoredFile], list[BadInput]]:
    """Decode every file once; return (usable files, bad inputs with their reasons)."""
    found = scan_files(files, spec, read_cpus)
    return found.good, found.bad


def scan_files(files: list[storage.StoredFile], spec: ImageSpec, read_cpus: float = 0.25) -> Scan:
    """`scan`, plus the value ranges the usable files are read with (see ImageSpec)."""
    import ray

    if not files:
        return Scan([], [], Counter())
    fs, _ = storage.filesystem(files[0].uri)
    ds = ray.data.read_binary_files([f.path for f in files], filesystem=fs, include_paths=True, num_cpus=read_cpus)
    ds = ds.map_batches(_scan_batch, fn_kwargs={"spec": spec}, batch_size=8, num_cpus=read_cpus, batch_format="numpy")
    ds.context.enable_progress_bars = False  # the caller prints what it scans and what it skipped
    rows = ds.take_all()
    found = Scan([], [], Counter())
    verdict = {r["path"]: r for r in rows}
    for f in files:
        row = verdict.get(f.path, {"ok": False, "reason": "could not be read"})
        if row["ok"]:
            found.good.append(f)
            found.ranges[formats.ValueRange(float(row["high"]), str(row["source"]), bool(row["from_dtype"]))] += 1
        else:
            found.bad.append(BadInput(f.key, row["reason"]))
    return found


def describe_ranges(ranges: Counter) -> tuple[str, float | None]:
    """(the value ranges a run read its files with, for its params, e.g. "PNG sBIT 12 bits
    (4095) on 40 files"; the one range all files were read with when it was declared by them
    or by data.data_range, for the model's metadata, else None: a range that is only a dtype's
    stays the dtype's of each file the model later upscales)."""
    text = "; ".join(
        f"{r.source} on {n} file{'s' * (n != 1)}" for r, n in sorted(ranges.items(), key=lambda item: -item[1])
    )
    highs = {r.high for r in ranges}
    # A range that does not start at 0 (signed data) is no data_range: the model would read 0..high.
    uniform = len(highs) == 1 and not any(r.from_dtype or r.low != 0 for r in ranges)
    return text or "no files", (highs.pop() if uniform else None)


class PatchBatches:
    """map_batches callable: file bytes -> training batches (see module docstring).

    Each output row is one worker batch of `batch` HR crops with its seed: with `degrade_on="cpu"`
    its (LR, plain HR) patch pair, else the crops of `crop_size` for the worker to degrade and cut
    the same way. The losses sharpen the plain HR themselves where `usm_target` is on. Crops are
    interleaved (crop j of every image in the task before crop j+1 of any), so a batch's crops
    come from distinct images whenever the task holds at least `batch` images, as the paper's 16
    crops come from 16 images.
    """

    def __init__(
        self,
        spec: ImageSpec,
        patch_size: int,
        patches_per_image: int,
        batch: int,
        degrade: Degradation,
        seed: int,
        degrade_on: str = "cpu",
    ) -> None:
        self.spec = spec
        self.patch = patch_size
        self.per_image = patches_per_image
        self.batch = batch
        self.degrade = degrade
        self.seed = seed
        self.on_cpu = degrade_on == "cpu"
        self.crop = crop_size(degrade, patch_size)  # the patch, or the large crop a realistic degradation takes
        self.keys: dict[str, str] = {}  # read path -> key under the data root (seeds follow keys)
        self._missed = False  # a path not in `keys` was warned about (once per copy)

    def for_files(self, files: list[storage.StoredFile]) -> PatchBatches:
        """This batcher over `files`: crops are seeded by each file's key under its data root, so
        the same images under another folder or bucket give the same patches."""
        keyed = copy.copy(self)
        keyed.keys = {f.path: f.key for f in files}
        return keyed

    def _key(self, path: str) -> str:
        """The file's key under its data root; for a path `for_files` was not given, the path
        itself, with a warning the first time (its crops then change with the folder it is in)."""
        key = self.keys.get(path)
        if key is not None:
            return key
        if not self._missed:
            self._missed = True
            log.warning(
                "no data-root key for %s (of %d known): its crops are seeded by the read path, so they change if the data moves",
                path,
                len(self.keys),
            )
        return path

    @staticmethod
    def _augment(x: torch.Tensor, code: int) -> torch.Tensor:
        """One of the 8 dihedral transforms: code & 3 quarter turns, code & 4 a flip."""
        if code & 4:
            x = x.flip(-1)
        return torch.rot90(x, code & 3, dims=(-2, -1))

    def _crops(self, data: bytes, path: str, draw: float) -> list[torch.Tensor]:
        image = pad_to(self.spec.decode(data, path)[0], self.crop)
        rng = np.random.default_rng(stable_seed(self.seed, self._key(path), draw))
        _, h, w = image.shape
        size, crops = self.crop, []
        for _ in range(self.per_image):
            top = int(rng.integers(0, h - size + 1))
            left = int(rng.integers(0, w - size + 1))
            crops.append(self._augment(image[:, top : top + size, left : left + size], int(rng.integers(0, 8))))
        return crops  # views: the decoded image goes once they are stacked

    def __call__(self, batch: dict) -> dict:
        """{bytes, path, draw} rows -> rows {hr (B, C, H, W), [lr (B, C, h, w)], seed, image (B,)}: hr is the
        patch (cpu) or the crop (device), float32 in [0, 1]."""
        crops, images = [], []
        for data, path, draw in zip(batch["bytes"], batch["path"], batch["draw"]):
            try:
                crops.append(self._crops(data, str(path), float(draw)))
            except DecodeError as exc:  # the scan passed it: a transient read problem
                log.warning("skipping %s this epoch: %s", path, exc)
                continue
            images.append(stable_seed(self._key(str(path))))
        order = [(i, j) for j in range(self.per_image) for i in range(len(crops))]
        keys = [self._key(str(p)) for p in batch["path"]]
        task_seed = stable_seed(self.seed, *keys, *np.asarray(batch["draw"], float).tolist())
        rows: dict[str, list] = {"hr": [], "lr": [], "seed": [], "image": []}
        for start in range(0, len(order) - self.batch + 1, self.batch):
            chosen = order[start : start + self.batch]
            hr, seed = torch.stack([crops[i][j] for i, j in chosen]), stable_seed(task_seed, start)
            if self.on_cpu:
                lr, hr = training_pair(hr, seed, self.degrade, self.patch)
                rows["lr"].append(lr.numpy().astype(np.float32))
            rows["hr"].append(hr.numpy().astype(np.float32))
            rows["seed"].append(seed)
            rows["image"].append([images[i] for i, _ in chosen])
        c, s = self.spec.channels, self.patch // self.degrade.scale
        size = self.patch if self.on_cpu else self.crop
        out = {
            "hr": np.stack(rows["hr"]) if rows["hr"] else np.zeros((0, self.batch, c, size, size), np.float32),
            "seed": np.array(rows["seed"], dtype=np.int64),
            "image": np.array(rows["image"], dtype=np.int64).reshape(-1, self.batch),
        }
        if self.on_cpu:
            out["lr"] = np.stack(rows["lr"]) if rows["lr"] else np.zeros((0, self.batch, c, s, s), np.float32)
        return out


def train_dataset(
    files: list[storage.StoredFile], batches: PatchBatches, read_cpus: float, images_per_task: int, seed: int
):
    """The per-epoch pipeline of training batches over already-scanned files. Each read task
    (one block) holds at least `images_per_task` and a batch's worth of images, and is cut
    into batches whole, so that its batches hold crops of distinct images (Ray fuses read and
    map into one task, so a map batch never spans two read tasks)."""
    import ray
    from ray.data.expressions import random

    fs, _ = storage.filesystem(files[0].uri)
    ds = ray.data.read_binary_files(
        [f.path for f in files],
        filesystem=fs,
        include_paths=True,
        shuffle=ray.data.FileShuffleConfig(seed=seed, reseed_after_execution=True),
        num_cpus=read_cpus,
        override_num_blocks=max(1, len(files) // max(images_per_task, batches.batch)),
    )
    # A new draw per file at every pass over the data (public API: Ray reseeds it per execution).
    # (As every stage here, on a fraction of a CPU: a whole one may be more than Ray Train leaves free.)
    ds = ds.with_column(
        "draw", random(seed=stable_seed(seed, "draws") % 2**32, reseed_after_execution=True), num_cpus=read_cpus
    )
    ds = ds.map_batches(batches.for_files(files), batch_size=None, num_cpus=read_cpus, batch_format="numpy")
    return ds.randomize_block_order(seed=ray.data.RandomSeedConfig(seed=seed, reseed_after_execution=True))


def val_dataset(
    files: list[storage.StoredFile],
    spec: ImageSpec,
    crop: int | None,
    degrade: Degradation,
    read_cpus: float,
    seed: int,
):
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
        hr = centre_crop(hr, crop, degrade.scale)
        lr = degrade(hr[None].contiguous(), stable_seed(seed, "val", key))[0]
        return {"idx": idx, "key": key, "levels": levels, "hr": hr.numpy(), "lr": lr.numpy()}

    ds = ray.data.read_binary_files([f.path for f in files], filesystem=fs, include_paths=True, num_cpus=read_cpus)
    return ds.map(decode, num_cpus=read_cpus).materialize()
