"""Degradation throughput: our batched torch degradations against a per-image numpy/PIL
reference, same inputs, same process, one thread each. Prints one JSON line.

    .venv/bin/python benchmarks/degrade.py [--repeats 5] [--batch 64] [--threads 1]

The reference is what a per-image CPU data loader does (the BasicSR dataset path):
`bicubic` is Pillow's bicubic resize per image; `realistic` is, per image, a Gaussian
kernel convolved with scipy.ndimage, a Pillow resize, numpy noise and a real libjpeg
round trip through Pillow, with the same parameter ranges as `srgan.degrade.Realistic`.
Figures are medians of `--repeats` runs; compare the ratios, not the absolute rates.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import time

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from srgan.degrade import Bicubic, Realistic


def _gaussian_kernel(rng: np.random.Generator, size: int, sigma_range: tuple[float, float], aniso_prob: float) -> np.ndarray:
    sx = rng.uniform(*sigma_range)
    sy, theta = (rng.uniform(*sigma_range), rng.uniform(0, np.pi)) if rng.random() < aniso_prob else (sx, 0.0)
    r = (size - 1) / 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    u = np.cos(theta) * xx + np.sin(theta) * yy
    v = -np.sin(theta) * xx + np.cos(theta) * yy
    k = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return k / k.sum()


def _pil_resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = [np.asarray(Image.fromarray(img[..., c].astype(np.float32), "F").resize((size[1], size[0]), Image.Resampling.BICUBIC)) for c in range(img.shape[2])]
    return np.clip(np.stack(out, axis=-1), 0, 1)


def _pil_jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray((img * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf), dtype=np.float32) / 255


def reference_realistic(img: np.ndarray, rng: np.random.Generator, cfg: Realistic) -> np.ndarray:
    """One (H, W, 3) float image through the same published steps as `Realistic`, per image:
    two rounds (the second always, its blur with its probability), each sized from the target
    LR size as Real-ESRGAN's feed_data does, then the final resize and JPEG. Gaussian kernels
    of a random odd size stand in for the kernel mix (the costs are the same)."""
    h, w = img.shape[:2]
    lr = (h // cfg.scale, w // cfg.scale)

    def one_round(x, blur, sigma, aniso, resize, size, noise, gauss_prob, poisson):
        if blur:
            k = _gaussian_kernel(rng, int(rng.choice(np.arange(cfg.kernel_size_range[0], cfg.kernel_size_range[1] + 1, 2))), sigma, aniso)
            x = np.stack([ndimage.convolve(x[..., c], k, mode="reflect") for c in range(3)], axis=-1)
        f = rng.uniform(*resize)
        x = _pil_resize(x, (max(8, round(size[0] * f)), max(8, round(size[1] * f))))
        if rng.random() < gauss_prob:
            x = np.clip(x + rng.normal(0, rng.uniform(*noise) / 255, x.shape), 0, 1)
        else:
            x = np.clip(x + (rng.poisson(x * 255) / 255 - x) * rng.uniform(*poisson), 0, 1)
        return _pil_jpeg(x, int(rng.uniform(*cfg.jpeg_range)))

    x = one_round(img, True, cfg.blur_sigma, cfg.kernel_prob[1], cfg.resize_range, (h, w), cfg.noise_range, cfg.gaussian_noise_prob, cfg.poisson_scale_range)
    x = one_round(x, rng.random() < cfg.second_blur_prob, cfg.blur_sigma2, cfg.kernel_prob2[1], cfg.resize_range2, lr, cfg.noise_range2, cfg.gaussian_noise_prob2, cfg.poisson_scale_range2)
    x = _pil_resize(x, lr)
    return _pil_jpeg(x, int(rng.uniform(*cfg.jpeg_range2)))


def reference_bicubic(img_u8: np.ndarray, scale: int) -> np.ndarray:
    h, w = img_u8.shape[:2]
    return np.asarray(Image.fromarray(img_u8).resize((w // scale, h // scale), Image.Resampling.BICUBIC))


def _rate(fn, n_patches: int, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n_patches / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    hr_u8 = rng.integers(0, 256, (args.batch, args.patch, args.patch, 3), dtype=np.uint8)
    # Real photo statistics matter little for throughput; smooth the noise a bit anyway.
    hr_u8 = np.stack([ndimage.uniform_filter(im, size=(3, 3, 1)) for im in hr_u8])
    hr_t = torch.from_numpy(hr_u8).permute(0, 3, 1, 2).float() / 255
    hr_f = hr_u8.astype(np.float32) / 255

    bicubic, realistic = Bicubic(args.scale), Realistic(args.scale)
    seed = iter(range(10**6))
    results = {}
    ours = _rate(lambda: bicubic(hr_t, 0), args.batch, args.repeats)
    ref = _rate(lambda: [reference_bicubic(im, args.scale) for im in hr_u8], args.batch, args.repeats)
    results["bicubic"] = {"ours_patches_per_s": round(ours, 1), "reference_patches_per_s": round(ref, 1), "ratio": round(ours / ref, 3)}
    ours = _rate(lambda: realistic(hr_t, next(seed)), args.batch, args.repeats)
    ref_rng = np.random.default_rng(1)
    ref = _rate(lambda: [reference_realistic(im, ref_rng, realistic) for im in hr_f], args.batch, args.repeats)
    results["realistic"] = {"ours_patches_per_s": round(ours, 1), "reference_patches_per_s": round(ref, 1), "ratio": round(ours / ref, 3)}

    print(json.dumps({
        "benchmark": "degrade",
        "hr_patch": args.patch, "scale": args.scale, "batch": args.batch, "threads": args.threads, "repeats": args.repeats,
        "reference": {"bicubic": "Pillow BICUBIC per image", "realistic": "scipy.ndimage + Pillow resize/JPEG + numpy noise per image"},
        **results,
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
