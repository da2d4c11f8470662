"""Largest |difference| of BatchNorm running buffers between 2 DDP ranks (gloo, CPU) after
N pretrain + N GAN steps of the paper's networks (x4, 16 blocks, 64 features; D 64) on
2 images (96 px crops of the bundled photos) per worker, train.sync_batch_norm false vs auto.
Prints one JSON line.

    .venv/bin/python benchmarks/sync_bn.py [steps per phase, default 10]
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 10


def worker(loop):
    import ray.train
    import skimage.data

    from pipeline.config import TrainConfig
    from pipeline.training.recipe import build_generator_loss, phase_at
    from pipeline.training.state import TrainState
    from srgan.losses import PixelLoss
    from srgan.resize import imresize
    from srgan.train_step import unwrap

    torch.set_num_threads(1)
    cfg = TrainConfig.model_validate(loop["config"])
    rank = ray.train.get_context().get_world_rank()
    photos = [
        torch.from_numpy(getattr(skimage.data, n)()).permute(2, 0, 1).float() / 255
        for n in ("astronaut", "coffee", "rocket", "immunohistochemistry")
    ]
    rng = np.random.default_rng(rank)
    torch.manual_seed(0)  # the networks' initial weights (DDP gives every rank rank 0's)
    device = torch.device("cpu")
    state = TrainState(cfg, device, "fp32")
    g_loss, pixel = build_generator_loss(cfg, state.d, device), PixelLoss("mse")
    t0 = time.perf_counter()
    while state.step < cfg.total_steps:
        if phase_at(cfg, state.step) != state.phase:
            state.start_phase(phase_at(cfg, state.step))
        crops = []
        for _ in range(cfg.worker_batch_size):
            p = photos[rng.integers(len(photos))]
            y, x = rng.integers(p.shape[1] - 96), rng.integers(p.shape[2] - 96)
            crops.append(p[:, y : y + 96, x : x + 96])
        hr = torch.stack(crops)
        state.train_step(imresize(hr, 0.25).clamp(0, 1), hr, g_loss, pixel)
    seconds = (time.perf_counter() - t0) / cfg.total_steps
    bufs = {
        n: {k: v.clone() for k, v in unwrap(m).named_buffers() if "running" in k}
        for n, m in (("g", state.g), ("d", state.d))
    }
    torch.save({"bufs": bufs, "s_per_step": seconds}, Path(loop["out"]) / f"rank{rank}.pt")


def main() -> None:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipeline.cluster import ensure_ray
    from pipeline.config import parse_config

    ensure_ray(num_cpus=2)
    result = {"steps_per_phase": STEPS, "images_per_worker": 2}
    for sync in (False, "auto"):
        tree = {
            "data": {"train": "unused", "val": None, "patch_size": 96},
            "loss": {"content_backbone": "discriminator"},
            "train": {"batch_size": 4, "sync_batch_norm": sync, "pretrain": {"steps": STEPS}, "gan": {"steps": STEPS}},
            "scaling": {"num_workers": 2, "cpus_per_worker": 1},
        }
        cfg = parse_config(tree)
        out = Path(tempfile.mkdtemp(prefix="srgan-sync-bn-"))
        TorchTrainer(
            worker,
            train_loop_config={"config": cfg.model_dump(mode="json"), "out": str(out)},
            scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(name=out.name, storage_path=str(out / "ray")),
        ).fit()
        r = [torch.load(out / f"rank{i}.pt", weights_only=True) for i in range(2)]
        entry = {}
        for net in ("g", "d"):
            a, b = r[0]["bufs"][net], r[1]["bufs"][net]
            entry[f"max_abs_gap_{net}"] = max((a[k] - b[k]).abs().max().item() for k in a)
            # gap relative to the buffer's own scale (running_var of G's layers reaches ~1e2)
            entry[f"max_rel_gap_{net}"] = max(
                ((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-12)).item() for k in a
            )
        entry["s_per_step"] = r[0]["s_per_step"]
        result.update({f"sync_{str(sync).lower()}_{k}": v for k, v in entry.items()})
    result["loadavg_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
