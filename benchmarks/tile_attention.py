"""Tiling an attention model (SwinIR, spandrel's definition, random weights): how far tiles
are from a whole-image pass, ours against Real-ESRGAN's tiler, in the same run.

    .venv/bin/python benchmarks/tile_attention.py [--size 200 184] [--tile 48] [--repeats 3]

Ours: srgan.tiling.upscale_tiled through the model's inference form, tiles starting on the
model's window grid (`align`) with srgan.archs.spandrel.OVERLAP input pixels of context.
Reference: `realesrgan.RealESRGANer.tile_process` (tile, tile_pad 10, the same module) when
realesrgan is installed (`make bench`); else the same overlap without alignment, the way
tilers that ignore the window grid cut (reported as `reference`). Both are compared with the
model's whole-image output: the largest absolute difference in [0, 1] and in 8-bit levels;
`accuracy_ratio` is the reference's largest difference over ours (higher: ours closer), and
`speed_ratio` the reference's median time over ours. Models: a lightweight SwinIR x2
(depths 6x4, embed 60, window 8; the published SwinIR-light config) and a one-stage one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def swinir(depths: list[int], dim: int, window: int) -> torch.nn.Module:
    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR

    torch.manual_seed(0)
    return SwinIR(upscale=2, in_chans=3, img_size=64, window_size=window, img_range=1.0, depths=depths, embed_dim=dim, num_heads=[6] * len(depths) if dim % 6 == 0 else [2] * len(depths), mlp_ratio=2, upsampler="pixelshuffledirect", resi_connection="1conv").eval()  # fmt: skip


def reference_tiler(model, tile: int):
    try:
        from realesrgan import RealESRGANer  # noqa: F401
    except ImportError:
        from srgan import tiling

        def unaligned(x):
            class Plain(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.inner = model

                def forward(self, y):
                    return self.inner(y)

            return tiling.upscale_tiled(Plain(), x, 2, tile=tile, pad=model.receptive_radius)

        return "the same overlap without alignment (realesrgan not installed)", unaligned
    from realesrgan import RealESRGANer

    runner = RealESRGANer(scale=2, model_path=None, model=model.net, tile=tile, tile_pad=10, pre_pad=0, half=False, device="cpu")  # fmt: skip

    def realesrgan(x):
        runner.img = x
        runner.tile_process()
        return runner.output

    return "realesrgan.RealESRGANer.tile_process (tile_pad 10)", realesrgan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[200, 184])
    parser.add_argument("--tile", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from srgan.archs.registry import import_state
    from srgan.tiling import upscale_tiled

    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 24, 24, generator=g), size=tuple(args.size), mode="bilinear")
    for name, depths, dim, window in (("swinir-light-x2", [6, 6, 6, 6], 60, 8), ("swinir-1stage-x2", [2, 2], 24, 8)):
        model, _ = import_state(swinir(depths, dim, window).state_dict())
        what, reference = reference_tiler(model, args.tile)
        with torch.inference_mode():
            whole = model(x).clamp(0, 1)
            times = {"ours": [], "reference": []}
            outs = {}
            for _ in range(args.repeats):
                for side in ("ours", "reference"):
                    start = time.perf_counter()
                    if side == "ours":
                        out = upscale_tiled(model, x, 2, tile=args.tile, pad=model.receptive_radius)
                    else:
                        out = reference(x)
                    times[side].append(time.perf_counter() - start)
                    outs[side] = out.clamp(0, 1)
        ours_err = (outs["ours"] - whole).abs().max().item()
        ref_err = (outs["reference"] - whole).abs().max().item()
        print(json.dumps({
            "case": name, "image": args.size, "tile": args.tile, "overlap": model.receptive_radius, "align": model.align,
            "reference": what, "ours_max_abs": ours_err, "ours_max_levels": round(ours_err * 255, 3),
            "reference_max_abs": ref_err, "reference_max_levels": round(ref_err * 255, 3),
            "accuracy_ratio": round(ref_err / max(ours_err, 1e-7), 2),
            "ours_s": round(statistics.median(times["ours"]), 3), "reference_s": round(statistics.median(times["reference"]), 3),
            "speed_ratio": round(statistics.median(times["reference"]) / statistics.median(times["ours"]), 3),
            "loadavg": [round(v, 2) for v in os.getloadavg()],
        }))  # fmt: skip


if __name__ == "__main__":
    main()
