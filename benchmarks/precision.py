"""What bf16 costs an upscaled file against fp32, per output type: how many output values
move and by how much, and the bf16/fp32 speed on this machine. Prints one JSON line.

    .venv/bin/python benchmarks/precision.py [--size 96] [--repeats 5]

The model is an SRResNet-16 x4 with random weights and random BatchNorm statistics (a
trained model's outputs span the range the same way); the image is smooth noise. bf16 is
autocast, as `upscale --precision bf16` and `train.precision: bf16` run it; on this CPU it
is the same arithmetic a GPU's bf16 autocast does, only the speed differs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.data import reader  # noqa: E402
from pipeline.models.reference import Upscaler  # noqa: E402
from srgan.generator import GeneratorSpec, build_generator  # noqa: E402


def smooth(rng: np.random.Generator, size: int, dtype) -> np.ndarray:
    coarse = rng.random((size // 8 + 1, size // 8 + 1, 3))
    img = np.clip(np.kron(coarse, np.ones((8, 8, 1)))[:size, :size] + rng.normal(0, 0.02, (size, size, 3)), 0, 1)
    return (img * np.iinfo(dtype).max).round().astype(dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    g = build_generator(GeneratorSpec(scale=4, num_blocks=16, num_features=64))
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    g.eval()
    ups = {p: Upscaler(name="m", scale=4, generator=g, tile=0, precision=p) for p in ("fp32", "bf16")}
    rng = np.random.default_rng(0)
    result = {"benchmark": "precision", "model": "SRResNet-16 x4", "input_px": args.size, "torch": torch.__version__}
    times = {p: [] for p in ups}
    for dtype in (np.uint8, np.uint16):
        image = smooth(rng, args.size, dtype)
        x = reader.to_unit(image)[None]
        outs = {}
        for _ in range(args.repeats):  # interleaved
            for p, up in ups.items():
                t0 = time.perf_counter()
                outs[p] = reader.from_unit(up(x)[0], image.dtype).astype(np.int64)
                times[p].append(time.perf_counter() - t0)
        moved = np.abs(outs["fp32"] - outs["bf16"])
        name = np.dtype(dtype).name
        result[f"{name}_moved_fraction"] = round(float((moved > 0).mean()), 4)
        result[f"{name}_max_moved_levels"] = int(moved.max())
    result["bf16_over_fp32_speed_ratio"] = round(statistics.median(times["fp32"]) / statistics.median(times["bf16"]), 3)
    result["loadavg_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
