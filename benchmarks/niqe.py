"""NIQE: our batched `srgan.niqe.niqe` against BasicSR's `calculate_niqe` (the reference that
documents agreement with the official MATLAB release), same images, same process, one thread
each, interleaved. Prints one JSON line.

    .venv/bin/python benchmarks/niqe.py [--repeats 5] [--set5 /work/shared/data/Set5]

Images: the bundled sample photos (pipeline.samples.PHOTOS) and Set5's HR images where present.
`max_abs_diff` is the largest |ours - BasicSR| over the images; times are seconds per megapixel
over all images, medians of `--repeats` rounds; `speed_ratio` is BasicSR's time over ours.
`batched_s_per_mpx` times one call on a validation-like batch (16 crops of 192x192).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

from srgan.niqe import niqe


def basicsr_calculate_niqe():
    import torchvision.transforms.functional as F

    # basicsr 1.4.2 imports a torchvision module that current torchvision removed.
    shim = types.ModuleType("torchvision.transforms.functional_tensor")
    shim.rgb_to_grayscale = F.rgb_to_grayscale
    sys.modules.setdefault("torchvision.transforms.functional_tensor", shim)
    from basicsr.metrics.niqe import calculate_niqe

    return calculate_niqe


def load_images(set5: Path) -> dict[str, np.ndarray]:
    """Name -> (H, W, 3) uint8 RGB."""
    import skimage.data
    from PIL import Image

    from pipeline.io.samples import PHOTOS

    images = {name: getattr(skimage.data, name)() for name in PHOTOS}
    images.update({p.name: np.asarray(Image.open(p).convert("RGB")) for p in sorted(set5.glob("*.bmp"))})
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set5", type=Path, default=Path("/work/shared/data/Set5"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    import cv2  # basicsr's dependency

    cv2.setNumThreads(1)
    calculate_niqe = basicsr_calculate_niqe()

    images = load_images(args.set5)
    ours_in = {k: torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float() / 255 for k, a in images.items()}
    ref_in = {k: a[..., ::-1].astype(np.float64) for k, a in images.items()}  # BasicSR wants BGR, 0-255
    mpx = sum(a.shape[0] * a.shape[1] for a in images.values()) / 1e6

    def run_ours() -> dict[str, float]:
        return {k: niqe(x).item() for k, x in ours_in.items()}

    def run_ref() -> dict[str, float]:
        return {k: calculate_niqe(x, crop_border=0, input_order="HWC", convert_to="y") for k, x in ref_in.items()}

    ours, ref = run_ours(), run_ref()  # warm-up, and the values compared
    diffs = {k: abs(ours[k] - ref[k]) for k in images}
    t_ours, t_ref = [], []
    for _ in range(args.repeats):
        for fn, times in ((run_ours, t_ours), (run_ref, t_ref)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)

    crops = torch.cat([x[..., :192, :192] for x in ours_in.values()]).repeat(2, 1, 1, 1)[:16]
    niqe(crops)
    t_batch = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        niqe(crops)
        t_batch.append(time.perf_counter() - start)

    ours_s, ref_s = statistics.median(t_ours) / mpx, statistics.median(t_ref) / mpx
    print(
        json.dumps(
            {
                "benchmark": "niqe",
                "images": len(images),
                "megapixels": round(mpx, 3),
                "threads": 1,
                "repeats": args.repeats,
                "reference": "basicsr.metrics.niqe.calculate_niqe (1.4.2), convert_to='y'",
                "max_abs_diff": float(f"{max(diffs.values()):.3g}"),
                "abs_diff": {k: float(f"{d:.2g}") for k, d in diffs.items()},
                "ours_s_per_mpx": round(ours_s, 4),
                "ref_s_per_mpx": round(ref_s, 4),
                "speed_ratio": round(ref_s / ours_s, 2),
                "batched_s_per_mpx": round(statistics.median(t_batch) / (crops.shape[0] * 192 * 192 / 1e6), 4),
                "loadavg_1m": round(os.getloadavg()[0], 2),
                "torch": torch.__version__,
                "cpu": platform.processor() or platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
