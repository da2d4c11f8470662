"""SRGAN training throughput of the pure-PyTorch core (srgan/ only: no Ray, no MLflow), on
whatever device is here: samples/s of the paper's GAN step (SRResNet-16 G, VGG-style D,
VGG19 phi_5,4 content loss) in fp32, bf16, and bf16 + channels_last, and of the realistic
degradation on the CPU (one thread, as one Ray Data task has) against the same seeded
degradation on the device. Prints one JSON line.

    .venv/bin/python benchmarks/train_step.py [--batch 16] [--patch 96] [--steps 20] [--repeats 3]

VGG19 has random weights here (hub weights are not downloadable on every machine): the
FLOPs are the same as with ImageNet weights. Cases are interleaved (A B C A B C ...); each
figure is the median over repeats of `--steps` timed steps after warm-up. On a CPU the bf16
figures say little (most CPUs emulate it); the figures that matter are from a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srgan.degrade import build_degradation  # noqa: E402
from srgan.discriminator import Discriminator  # noqa: E402
from srgan.generator import GeneratorSpec, build_generator  # noqa: E402
from srgan.losses import ContentLoss, GeneratorLoss, LossWeights, PixelLoss, VGGFeatures  # noqa: E402
from srgan.train_step import gan_step, make_scaler  # noqa: E402
from srgan.weights import vgg19_features  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Case:
    """One precision/memory-format setting: its own models and optimisers, timed per step."""

    def __init__(
        self, name: str, device: torch.device, precision: str, channels_last: bool, batch: int, patch: int
    ) -> None:
        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.name, self.device, self.precision = name, device, precision
        self.g = build_generator(GeneratorSpec(scale=4)).to(device, memory_format=fmt)
        self.d = Discriminator().to(device, memory_format=fmt)
        vgg = VGGFeatures(vgg19_features(), "relu5_4").to(device, memory_format=fmt)
        self.loss = GeneratorLoss(ContentLoss(vgg), LossWeights(), PixelLoss("mse"), "vanilla")
        self.opt_g = torch.optim.Adam(self.g.parameters(), 1e-4)
        self.opt_d = torch.optim.Adam(self.d.parameters(), 1e-4)
        self.scalers = (make_scaler(device, precision), make_scaler(device, precision))
        gen = torch.Generator().manual_seed(1)
        self.hr = torch.rand(batch, 3, patch, patch, generator=gen).to(device, memory_format=fmt)
        self.lr = torch.rand(batch, 3, patch // 4, patch // 4, generator=gen).to(device, memory_format=fmt)

    def run(self, steps: int) -> float:
        _sync(self.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            gan_step(self.g, self.d, self.opt_g, self.opt_d, self.lr, self.hr, self.loss, self.precision, *self.scalers)
        _sync(self.device)
        return steps * self.hr.shape[0] / (time.perf_counter() - t0)


def degradation_rates(device: torch.device, batch: int, patch: int, repeats: int) -> dict[str, float]:
    """Patches/s of the realistic degradation: CPU with one thread, and on `device`."""
    degrade = build_degradation("realistic", 4)
    hr = torch.rand(batch, 3, patch, patch, generator=torch.Generator().manual_seed(2))
    rates: dict[str, list[float]] = {"cpu_one_thread": [], "device": []}
    threads = torch.get_num_threads()
    hr_dev = hr.to(device)
    for seed in range(repeats + 1):
        torch.set_num_threads(1)
        t0 = time.perf_counter()
        degrade(hr, seed)
        rates["cpu_one_thread"].append(batch / (time.perf_counter() - t0))
        torch.set_num_threads(threads)
        _sync(device)
        t0 = time.perf_counter()
        degrade(hr_dev, seed)
        _sync(device)
        rates["device"].append(batch / (time.perf_counter() - t0))
    return {k: statistics.median(v[1:]) for k, v in rates.items()}  # the first is warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    cases = [
        Case("fp32", device, "fp32", False, args.batch, args.patch),
        Case("bf16", device, "bf16", False, args.batch, args.patch),
        Case("bf16_channels_last", device, "bf16", True, args.batch, args.patch),
    ]
    for case in cases:
        case.run(2)  # warm-up (cudnn autotuning, allocator)
    rates: dict[str, list[float]] = {c.name: [] for c in cases}
    for _ in range(args.repeats):
        for case in cases:
            rates[case.name].append(case.run(args.steps))
    med = {k: statistics.median(v) for k, v in rates.items()}
    degrade = degradation_rates(device, args.batch, args.patch, args.repeats)
    print(
        json.dumps(
            {
                "benchmark": "train_step",
                "device": torch.cuda.get_device_name(device)
                if device.type == "cuda"
                else f"cpu ({torch.get_num_threads()} threads)",
                "batch": args.batch,
                "hr_patch": args.patch,
                "steps": args.steps,
                "repeats": args.repeats,
                "torch": torch.__version__,
                **{f"{k}_samples_per_s": round(v, 2) for k, v in med.items()},
                "bf16_ratio": round(med["bf16"] / med["fp32"], 3),
                "bf16_channels_last_ratio": round(med["bf16_channels_last"] / med["fp32"], 3),
                "degrade_cpu_one_thread_patches_per_s": round(degrade["cpu_one_thread"], 1),
                "degrade_device_patches_per_s": round(degrade["device"], 1),
                "degrade_device_over_cpu_thread_ratio": round(degrade["device"] / degrade["cpu_one_thread"], 3),
                # CPU threads (one per Ray Data task) that the degradation alone needs to keep up with
                # the fastest training case here.
                "cpu_threads_to_feed_fastest_case": round(max(med.values()) / degrade["cpu_one_thread"], 3),
                "loadavg_1min": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
