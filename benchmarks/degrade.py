"""Degradation throughput: ours against BasicSR / Real-ESRGAN's own code, same inputs, same
process, interleaved (A B C A B C ...), one thread each. Prints one JSON line.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/degrade.py [--repeats 41] [--warmup 5] [--batch 64] [--threads 1]

References (installed only for benchmarks: `pip install --no-deps basicsr realesrgan
opencv-python-headless`; basicsr 1.4.2 imports `torchvision.transforms.functional_tensor`,
which current torchvision removed, so a stand-in module is registered first):
  * bicubic: `basicsr.utils.matlab_functions.imresize` one image at a time (MATLAB-exact), and
    `F.interpolate(bicubic, antialias=True)` on the batch as an inexact speed ceiling.
  * realistic, per image: RealESRGANDataset's kernel draws (`random_mixed_kernels`,
    `circular_lowpass_kernel`), then feed_data's steps with BasicSR's per-image functions:
    `cv2.filter2D`, `cv2.resize`, `random_add_gaussian_noise` / `random_add_poisson_noise`,
    `add_jpg_compression` (libjpeg through cv2).
  * realistic, batched: the same per-sample kernel draws, then feed_data on CPU tensors:
    `filter2D`, `F.interpolate`, `random_add_*_noise_pt`, `DiffJPEG(differentiable=False)`.
    USM sharpening of the target is left out of every side (it is not part of the LR).
Ours: `Bicubic(scale)(hr, 0)` and `Realistic(scale)(hr, seed)` (plan then apply, a new seed each
run) on the batch (N, 3, H, W). Each side runs --warmup untimed rounds, then --repeats timed
ones; the figures are medians in patches/s. Compare the `*_ratio` keys (ours over reference),
not the rates: the machine is shared (`loadavg` is os.getloadavg() at the end).
`realistic_ratio` is the smaller of the two realistic ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import time
import types

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from srgan.degrade import KERNEL_TYPES, RESIZE_DIRECTIONS, RESIZE_MODES, Bicubic, Realistic, RoundSettings

CV2_MODES = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def basicsr():
    """The BasicSR modules the references use, imported behind the torchvision shim."""
    import torchvision.transforms.functional as TF

    shim = types.ModuleType("torchvision.transforms.functional_tensor")
    shim.rgb_to_grayscale = TF.rgb_to_grayscale
    sys.modules.setdefault("torchvision.transforms.functional_tensor", shim)
    from basicsr.data import degradations
    from basicsr.utils import DiffJPEG
    from basicsr.utils.img_process_util import filter2D
    from basicsr.utils.matlab_functions import imresize

    return types.SimpleNamespace(deg=degradations, DiffJPEG=DiffJPEG, filter2D=filter2D, imresize=imresize)


def dataset_kernels(cfg: Realistic, deg) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One sample's kernels as RealESRGANDataset.__getitem__ draws them, each at its own size
    (the dataset then zero-pads them to 21 px to batch them; None: no final sinc)."""
    sizes = list(range(cfg.kernel_size_range[0], cfg.kernel_size_range[1] + 1, 2))

    def blur(s: RoundSettings):
        size = random.choice(sizes)
        if np.random.uniform() < s.sinc_prob:
            omega = np.random.uniform(np.pi / 3, np.pi) if size < 13 else np.random.uniform(np.pi / 5, np.pi)
            return deg.circular_lowpass_kernel(omega, size, pad_to=False)
        return deg.random_mixed_kernels(
            list(KERNEL_TYPES[:6]),
            list(s.kernel_prob),
            size,
            s.blur_sigma,
            s.blur_sigma,
            [-math.pi, math.pi],
            s.betag_range,
            s.betap_range,
            noise_range=None,
        )

    k1, k2 = blur(cfg.first), blur(cfg.second)
    sinc = None
    if np.random.uniform() < cfg.final_sinc_prob:
        sinc = deg.circular_lowpass_kernel(np.random.uniform(np.pi / 3, np.pi), random.choice(sizes), pad_to=False)
    return k1, k2, sinc


def _padded(k: np.ndarray | None, big: int) -> torch.Tensor:
    """A kernel zero-padded to big x big as RealESRGANDataset batches it (None: its 21 px pulse)."""
    if k is None:
        k = np.zeros((1, 1))
        k[0, 0] = 1
    pad = (big - k.shape[0]) // 2
    return torch.FloatTensor(np.pad(k, ((pad, pad), (pad, pad))))


def _factor(s: RoundSettings) -> float:
    direction = random.choices(RESIZE_DIRECTIONS, s.resize_prob)[0]
    return {
        "up": lambda: np.random.uniform(1, s.resize_range[1]),
        "down": lambda: np.random.uniform(s.resize_range[0], 1),
        "keep": lambda: 1.0,
    }[direction]()


def reference_per_image(img: np.ndarray, cfg: Realistic, ref) -> np.ndarray:
    """One (H, W, 3) float32 image in [0, 1] through feed_data's steps with BasicSR's per-image
    (numpy / cv2) functions; every random choice per image."""
    deg = ref.deg
    h, w = img.shape[:2]
    k1, k2, sinc = dataset_kernels(cfg, deg)

    def noise(x, s: RoundSettings):
        kw = dict(gray_prob=s.gray_noise_prob, clip=True, rounds=False)
        if np.random.uniform() < s.gaussian_noise_prob:
            return deg.random_add_gaussian_noise(x, sigma_range=s.noise_range, **kw)
        return deg.random_add_poisson_noise(x, scale_range=s.poisson_scale_range, **kw)

    def resize(x, size):
        return cv2.resize(x, (size[1], size[0]), interpolation=CV2_MODES[random.choice(RESIZE_MODES)])

    x = cv2.filter2D(img, -1, k1)
    f = _factor(cfg.first)
    x = resize(x, (int(h * f), int(w * f)))
    x = noise(x, cfg.first)
    x = deg.add_jpg_compression(x, int(np.random.uniform(*cfg.first.jpeg_range)))
    if np.random.uniform() < cfg.second.blur_prob:
        x = cv2.filter2D(x, -1, k2)
    f = _factor(cfg.second)
    x = resize(x, (int(h / cfg.scale * f), int(w / cfg.scale * f)))
    x = noise(x, cfg.second)
    lr = (h // cfg.scale, w // cfg.scale)
    if np.random.uniform() < 0.5:
        x = resize(x, lr)
        x = x if sinc is None else cv2.filter2D(x, -1, sinc)
        x = deg.add_jpg_compression(x, int(np.random.uniform(*cfg.second.jpeg_range)))
    else:
        x = deg.add_jpg_compression(x, int(np.random.uniform(*cfg.second.jpeg_range)))
        x = resize(x, lr)
        x = x if sinc is None else cv2.filter2D(x, -1, sinc)
    return np.clip((x * 255).round(), 0, 255) / 255


def reference_batched(gt: torch.Tensor, cfg: Realistic, ref, jpeger) -> torch.Tensor:
    """RealESRGANDataset's per-sample kernels, then RealESRGANModel.feed_data's degradation on
    (N, 3, H, W) CPU tensors (no USM, crop or training-pair queue)."""
    deg, filter2D, big = ref.deg, ref.filter2D, cfg.kernel_size_range[1]
    drawn = [dataset_kernels(cfg, deg) for _ in range(gt.shape[0])]
    kernel1, kernel2, sinc = (torch.stack([_padded(k, big) for k in ks]) for ks in zip(*drawn))
    ori_h, ori_w = gt.shape[2:4]

    def noise(out, s: RoundSettings):
        kw = dict(gray_prob=s.gray_noise_prob, clip=True, rounds=False)
        if np.random.uniform() < s.gaussian_noise_prob:
            return deg.random_add_gaussian_noise_pt(out, sigma_range=s.noise_range, **kw)
        return deg.random_add_poisson_noise_pt(out, scale_range=s.poisson_scale_range, **kw)

    def compress(out, jpeg_range):
        quality = out.new_zeros(out.size(0)).uniform_(*jpeg_range)
        # DiffJPEG returns a channels-last view, which F.pad / F.interpolate keep on CPU and filter2D's .view rejects.
        return jpeger(torch.clamp(out, 0, 1), quality=quality).contiguous()

    def back(out):
        out = F.interpolate(out, size=(ori_h // cfg.scale, ori_w // cfg.scale), mode=random.choice(RESIZE_MODES))
        return filter2D(out, sinc)

    out = filter2D(gt, kernel1)
    out = F.interpolate(out, scale_factor=_factor(cfg.first), mode=random.choice(RESIZE_MODES))
    out = noise(out, cfg.first)
    out = compress(out, cfg.first.jpeg_range)
    if np.random.uniform() < cfg.second.blur_prob:
        out = filter2D(out, kernel2)
    f = _factor(cfg.second)
    out = F.interpolate(
        out, size=(int(ori_h / cfg.scale * f), int(ori_w / cfg.scale * f)), mode=random.choice(RESIZE_MODES)
    )
    out = noise(out, cfg.second)
    jpeg_range = cfg.second.jpeg_range
    out = compress(back(out), jpeg_range) if np.random.uniform() < 0.5 else back(compress(out, jpeg_range))
    return torch.clamp((out * 255.0).round(), 0, 255) / 255.0


def interleaved_rates(sides: dict, n_patches: int, repeats: int, warmup: int) -> dict[str, float]:
    """Median patches/s of each side, run A B C A B C ... after `warmup` untimed rounds."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(warmup + repeats):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: n_patches / statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # add_jpg_compression's CV_32F -> CV_8U notice
    ref = basicsr()
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)

    rng = np.random.default_rng(0)
    hr_u8 = rng.integers(0, 256, (args.batch, args.patch, args.patch, 3), dtype=np.uint8)
    # Smoothed noise: throughput hardly depends on content, but the Poisson path counts levels.
    hr_u8 = np.stack([cv2.blur(im, (3, 3)) for im in hr_u8])
    hr_t = torch.from_numpy(hr_u8).permute(0, 3, 1, 2).contiguous().float() / 255
    hr_f = [im.astype(np.float32) / 255 for im in hr_u8]
    lr_size = (args.patch // args.scale, args.patch // args.scale)

    bicubic, realistic = Bicubic(args.scale), Realistic(args.scale)
    jpeger = ref.DiffJPEG(differentiable=False)
    seeds = iter(range(10**9))
    with torch.inference_mode():
        b = interleaved_rates({
            "ours": lambda: bicubic(hr_t, 0),
            "basicsr_imresize": lambda: [ref.imresize(im, 1 / args.scale) for im in hr_f],
            "torch_interpolate": lambda: F.interpolate(hr_t, size=lr_size, mode="bicubic", antialias=True).clamp(0, 1),
        }, args.batch, args.repeats, args.warmup)  # fmt: skip
        r = interleaved_rates({
            "ours": lambda: realistic(hr_t, next(seeds)),
            "basicsr": lambda: [reference_per_image(im, realistic, ref) for im in hr_f],
            "realesrgan_batched": lambda: reference_batched(hr_t, realistic, ref, jpeger),
        }, args.batch, args.repeats, args.warmup)  # fmt: skip
    ratios = {
        "realistic_vs_basicsr_ratio": r["ours"] / r["basicsr"],
        "realistic_vs_realesrgan_batched_ratio": r["ours"] / r["realesrgan_batched"],
        "bicubic_ratio": b["ours"] / b["basicsr_imresize"],
        "bicubic_vs_torch_interpolate_ratio": b["ours"] / b["torch_interpolate"],
    }
    ratios = {
        "realistic_ratio": min(ratios["realistic_vs_basicsr_ratio"], ratios["realistic_vs_realesrgan_batched_ratio"]),
        **ratios,
    }
    print(json.dumps({
        "benchmark": "degrade",
        **{k: round(v, 3) for k, v in ratios.items()},
        **{f"realistic_{k}_patches_per_s": round(v, 1) for k, v in r.items()},
        **{f"bicubic_{k}_patches_per_s": round(v, 1) for k, v in b.items()},
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "repeats": args.repeats, "warmup": args.warmup, "threads": args.threads, "batch": args.batch, "hr_patch": args.patch, "scale": args.scale,
        "torch": torch.__version__, "cv2": cv2.__version__, "cpu": platform.processor() or platform.machine(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
