"""A training epoch's start-up and the training data pipeline's patches/s on a folder of raw HR
images, against the same folder prepared by `pipeline.prepare` into sub-images. Prints one JSON line.

    .venv/bin/python benchmarks/prepare.py [--images 1000] [--repeats 3] [--keep DIR]

The folder is synthetic: --images PNGs of DIV2K's geometry at half its side (1020 x 678, a
quarter of a 2040 x 1356 DIV2K image's pixels), cut as BasicSR cuts DIV2K, also at half
scale (--sub-images 240 --step 120 for 480/240) and cropped to half the paper's patch (48
for 96). Every ratio of sizes that sets the work per patch (image to sub-image to patch)
is DIV2K's, at a quarter of the pixels and disk (full scale would be about 5 GB of PNGs
plus 4x that in sub-images). Content is blocky low-frequency colour plus noise, which PNG
compresses about as well as photographs.

Measured, interleaved raw / prepared, median of --repeats:
- start-up: what `run_training` does before it builds the datasets: list + scan (decode every
  file once) for raw; read the manifest for prepared. `first_batch_s` adds building the
  training dataset and waiting for its first batch.
- patches/s: one epoch of `pipeline.data.train_dataset` consumed with
  iter_torch_batches(batch_size=1) as a worker does, timed whole; the prepared epoch takes a
  seeded sample of as many sub-images as there are raw images, so both epochs hold the same
  number of patches (--patches-per-image each) and differ in the size of what is decoded.
`*_ratio` keys are prepared over raw as speeds (higher is better for prepared): for times,
raw seconds over prepared seconds. prepare's own time is a one-off cost, reported beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_png(args: tuple[Path, int, int, int]) -> int:
    """Write one image: 8 px blocks of random colour plus noise of 2% (as tests/helpers.py)."""
    from pipeline import formats

    path, seed, height, width = args
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 8 + 1, width // 8 + 1, 3))
    image = np.kron(coarse, np.ones((8, 8, 1)))[:height, :width] + rng.normal(0, 0.02, (height, width, 3))
    data = formats.encode((np.clip(image, 0, 1) * 255).round().astype(np.uint8), path.name)
    path.write_bytes(data)
    return len(data)


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def time_startup(raw: str, prepared: str, spec, read_cpus: float) -> dict:
    """Seconds from nothing to the usable file list, as run_training gets it."""
    from pipeline.data.batches import scan_files
    from pipeline.data.prepared import open_prepared
    from pipeline.io import storage

    t0 = time.perf_counter()
    files = storage.list_files(raw, [".png"])
    raw_good = scan_files(files, spec, read_cpus).good
    t1 = time.perf_counter()
    found = open_prepared(prepared)
    prepared_good = found.scan(found.files, spec, "data.train").good
    t2 = time.perf_counter()
    return {"raw": (t1 - t0, raw_good), "prepared": (t2 - t1, prepared_good)}


def time_pipeline(files: list, batches, seed: int) -> tuple[float, float]:
    """(seconds to the first batch, patches/s over the whole pass) of one epoch of the training
    pipeline. The epoch is timed whole: its last stage (randomize_block_order) waits for every
    block, so the first batch comes once nearly all are made, and a rate measured after it
    would time the object store, not the pipeline."""
    from pipeline.data.batches import train_dataset

    t0 = time.perf_counter()
    ds = train_dataset(files, batches, read_cpus=0.25, images_per_task=4, seed=seed)
    ds.context.enable_progress_bars = False
    first, n = None, 0
    for batch in ds.iter_torch_batches(batch_size=1):
        first = first or time.perf_counter()
        n += batch["hr"].shape[1]
    return first - t0, n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--height", type=int, default=678)
    parser.add_argument("--width", type=int, default=1020)
    parser.add_argument("--sub-images", type=int, default=240)
    parser.add_argument("--step", type=int, default=120)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--patches-per-image", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--degradation", default="bicubic", choices=["bicubic", "realistic"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument(
        "--keep", help="make (or reuse) the folders here and keep them (default: a temporary folder, removed)"
    )
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    load_before = os.getloadavg()[0]

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="srgan-bench-prepare-"))
    raw, prepared = work / "raw", work / "prepared"
    try:
        t0 = time.perf_counter()
        raw.mkdir(parents=True, exist_ok=True)
        todo = [
            (raw / f"{i:04d}.png", i, args.height, args.width)
            for i in range(args.images)
            if not (raw / f"{i:04d}.png").exists()
        ]
        with Pool(args.cpus) as pool:
            pool.map(synthetic_png, todo, chunksize=8)
        generate_s = time.perf_counter() - t0

        import ray

        from pipeline.cluster import ensure_ray
        from pipeline.data.batches import ImageSpec, PatchBatches
        from pipeline.prepare import PrepareJob, prepare
        from srgan.degrade import build_degradation

        ensure_ray(num_cpus=args.cpus, logging_level="ERROR", log_to_driver=False)
        t0 = time.perf_counter()
        summary = prepare(
            PrepareJob(str(raw), str(prepared), sub_images=args.sub_images, step=args.step, min_size=args.patch)
        )
        prepare_s = time.perf_counter() - t0

        spec = ImageSpec(channels=3, min_size=args.patch)
        batches = PatchBatches(
            spec,
            args.patch,
            args.patches_per_image,
            args.batch,
            build_degradation(args.degradation, 4),
            seed=0,
            degrade_on="cpu",
        )
        startup = {"raw": [], "prepared": []}
        first_batch = {"raw": [], "prepared": []}
        rates = {"raw": [], "prepared": []}
        for repeat in range(args.repeats):
            found = time_startup(str(raw), str(prepared), spec, 0.25)
            # The same epoch on both sides: as many sub-images (a seeded sample) as raw images, so
            # both make images x patches-per-image patches; what differs is the size decoded.
            found["prepared"] = (
                found["prepared"][0],
                sorted(random.Random(repeat).sample(found["prepared"][1], len(found["raw"][1])), key=lambda f: f.key),
            )
            for side in ("raw", "prepared"):
                seconds, good = found[side]
                to_first, rate = time_pipeline(good, batches, seed=repeat)
                startup[side].append(seconds)
                first_batch[side].append(seconds + to_first)
                rates[side].append(rate)
        ray.shutdown()
    finally:
        sizes = (
            {"raw_mb": round(folder_mb(raw), 1), "prepared_mb": round(folder_mb(prepared), 1)} if raw.exists() else {}
        )
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    med = {
        name: {side: statistics.median(v) for side, v in d.items()}
        for name, d in (("startup", startup), ("first_batch", first_batch), ("rate", rates))
    }
    print(
        json.dumps(
            {
                "benchmark": "prepare",
                "images": args.images,
                "image_size": f"{args.width}x{args.height}",
                "sub_images": args.sub_images,
                "step": args.step,
                "sub_image_count": summary.images,
                "patch": args.patch,
                "patches_per_image": args.patches_per_image,
                "degradation": args.degradation,
                "cpus": args.cpus,
                "repeats": args.repeats,
                "epoch_patches": args.images * args.patches_per_image,
                **sizes,
                "generate_s": round(generate_s, 1),
                "prepare_s": round(prepare_s, 1),
                "prepare_sources_per_s": round(args.images / prepare_s, 1),
                "raw_startup_s": round(med["startup"]["raw"], 2),
                "prepared_startup_s": round(med["startup"]["prepared"], 3),
                "raw_first_batch_s": round(med["first_batch"]["raw"], 2),
                "prepared_first_batch_s": round(med["first_batch"]["prepared"], 2),
                "raw_patches_per_s": round(med["rate"]["raw"], 1),
                "prepared_patches_per_s": round(med["rate"]["prepared"], 1),
                "startup_ratio": round(med["startup"]["raw"] / med["startup"]["prepared"], 1),
                "first_batch_ratio": round(med["first_batch"]["raw"] / med["first_batch"]["prepared"], 2),
                "patches_per_s_ratio": round(med["rate"]["prepared"] / med["rate"]["raw"], 2),
                **{
                    f"{side}_{name}_runs": [round(x, 3) for x in d[side]]
                    for name, d in (("startup_s", startup), ("first_batch_s", first_batch), ("patches_per_s", rates))
                    for side in d
                },
                "loadavg_1min_before": round(load_before, 2),
                "loadavg_1min_after": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
