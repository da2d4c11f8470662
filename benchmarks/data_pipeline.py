"""LR/HR pairs per second delivered by the training data pipeline (Ray Data from S3), beside
the rate of the degradation alone on the same patches. Prints one JSON line.

    .venv/bin/python benchmarks/data_pipeline.py [--images ../shared/data/train] [--degradation realistic] [--epochs 3]

A moto S3 server is started on 127.0.0.1 and the images uploaded to it; the pipeline is the
one training uses (pipeline.data: read -> decode -> crop/augment -> degrade -> shuffle), on a
local Ray with --cpus CPUs, consumed with iter_torch_batches as a worker would. The
degradation-only rate runs the same degradation on in-memory patches in this process with
the same number of torch threads as CPUs. The same pipeline with data.degrade_on: device
(HR crops only; the worker's GPU would degrade them) shows what the CPUs deliver when the
degradation leaves them. Figures: median over epochs after the first; per-CPU figures divide
by --cpus, so CPUs needed to feed one GPU = the GPU's training patches/s / patches/s per CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_images = ROOT.parent / "shared" / "data" / "train"
    parser.add_argument("--images", default=str(default_images) if default_images.is_dir() else "samples://photos")
    parser.add_argument("--max-images", type=int, default=64)
    parser.add_argument("--degradation", default="realistic", choices=["bicubic", "realistic", "satellite"])
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--patches-per-image", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()

    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1"
    )
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{server._server.server_address[1]}"

    import boto3
    import numpy as np
    import ray
    import torch

    from pipeline.data.batches import ImageSpec, PatchBatches, scan, train_dataset
    from pipeline.io import storage
    from srgan.degrade import build_degradation

    files = storage.list_files(args.images, [".png", ".jpg", ".jpeg", ".bmp"])[: args.max_images]
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="bench")
    for f in files:
        s3.put_object(Bucket="bench", Key=f"hr/{f.key}", Body=storage.read_bytes(f.uri))
    remote = storage.list_files("s3://bench/hr/")

    from pipeline.cluster import ensure_ray

    ensure_ray(num_cpus=args.cpus, logging_level="ERROR", log_to_driver=False)
    spec = ImageSpec(channels=3, min_size=args.patch)
    good, _ = scan(remote, spec)
    degrade = build_degradation(args.degradation, 4)
    rates = {}
    for side in ("cpu", "device"):  # device: Ray Data ships HR crops, the worker degrades (here: not at all)
        batches = PatchBatches(spec, args.patch, args.patches_per_image, args.batch, degrade, seed=0, degrade_on=side)
        ds = train_dataset(good, batches, read_cpus=0.25, images_per_task=4, seed=0)
        rates[side] = []
        for _ in range(args.epochs):
            t0, n = time.perf_counter(), 0
            for batch in ds.iter_torch_batches(batch_size=1):
                n += batch["hr"].shape[1]
            rates[side].append(n / (time.perf_counter() - t0))
    pipeline_rate = statistics.median(rates["cpu"][1:] or rates["cpu"])
    hr_only_rate = statistics.median(rates["device"][1:] or rates["device"])

    # The degradation alone, on the same kind of patches, in this process.
    torch.set_num_threads(args.cpus)
    rng = np.random.default_rng(0)
    decoded = [spec.decode(storage.read_bytes(f.uri), f.key)[0] for f in good[:16]]
    hr = []
    for _ in range(4 * args.patches_per_image):
        img = decoded[rng.integers(len(decoded))]
        top, left = rng.integers(0, img.shape[1] - args.patch + 1), rng.integers(0, img.shape[2] - args.patch + 1)
        hr.append(img[:, top : top + args.patch, left : left + args.patch])
    hr = torch.stack(hr)
    times = []
    for seed in range(6):
        t0 = time.perf_counter()
        degrade(hr, seed)
        times.append(time.perf_counter() - t0)
    degrade_rate = len(hr) / statistics.median(times[1:])

    ray.shutdown()
    server.stop()
    print(
        json.dumps(
            {
                "benchmark": "data_pipeline",
                "source": "moto S3 on 127.0.0.1",
                "images": len(good),
                "degradation": args.degradation,
                "hr_patch": args.patch,
                "patches_per_image": args.patches_per_image,
                "cpus": args.cpus,
                "epochs": args.epochs,
                "pipeline_patches_per_s": round(pipeline_rate, 1),
                "pipeline_patches_per_s_per_cpu": round(pipeline_rate / args.cpus, 1),
                "pipeline_epochs_patches_per_s": [round(r, 1) for r in rates["cpu"]],
                "hr_crops_only_patches_per_s": round(hr_only_rate, 1),
                "hr_crops_only_patches_per_s_per_cpu": round(hr_only_rate / args.cpus, 1),
                "degradation_only_patches_per_s": round(degrade_rate, 1),
                "degradation_only_patches_per_s_per_cpu": round(degrade_rate / args.cpus, 1),
                "pipeline_to_degradation_ratio": round(pipeline_rate / degrade_rate, 3),
                "hr_crops_only_to_pipeline_ratio": round(hr_only_rate / pipeline_rate, 3),
                "loadavg_1min": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
