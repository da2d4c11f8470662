"""Score an upscaler on a folder of HR images with the standard SR protocol.

    python -m pipeline.evaluate --model bicubic|<checkpoint> --data <folder> --scale 4 [--json] [--grid out.png]

Protocol (as the published SR tables): crop HR to a multiple of the scale, make LR with
MATLAB bicubic in the image's own dtype (uint8 stays uint8), upscale, quantise the result
to the image's bit depth, then PSNR/SSIM on the BT.601 Y channel with a border of `scale`
pixels removed. All-band PSNR/SSIM (data range 1 after scaling to [0, 1]) are reported
beside them; they are the figures for N-band images, which have no Y channel.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from pipeline import formats, storage
from pipeline.grids import GridRow, save_grid
from pipeline.models import ModelRefError, Upscaler, load_upscaler
from srgan.metrics import high_frequency_ratio, psnr, psnr_y, quantize, ssim, ssim_y
from srgan.resize import imresize


@dataclass
class ImageScore:
    name: str
    height: int
    width: int
    channels: int
    psnr_y: float | None
    ssim_y: float | None
    psnr: float
    ssim: float
    bicubic_psnr_y: float | None
    bicubic_ssim_y: float | None
    bicubic_psnr: float
    bicubic_ssim: float
    hf_ratio: float
    bicubic_hf_ratio: float


@dataclass
class EvalReport:
    dataset: str
    model: str
    scale: int
    images: list[ImageScore]

    def mean(self, key: str) -> float | None:
        """Mean over images; geometric for the high-frequency ratios (they are ratios)."""
        values = [getattr(s, key) for s in self.images if getattr(s, key) is not None]
        if not values:
            return None
        if key.endswith("hf_ratio"):
            return float(np.exp(np.mean(np.log(np.maximum(values, 1e-12)))))
        return float(np.mean(values))

    def to_dict(self) -> dict:
        keys = ("psnr_y", "ssim_y", "psnr", "ssim", "hf_ratio")
        out = {"dataset": self.dataset, "model": self.model, "scale": self.scale}
        out.update({k: self.mean(k) for k in keys})
        out["bicubic"] = {k: self.mean(f"bicubic_{k}") for k in keys}
        out["images"] = [asdict(s) for s in self.images]
        return out


def iter_images(source: str | Path) -> Iterator[tuple[str, np.ndarray, bool]]:
    """(relative key, HR array, has alpha) for every image under a local folder or an s3://
    prefix, sorted, recursively."""
    files = storage.list_files(str(source), formats.IMAGE_EXTENSIONS)
    if not files:
        raise storage.StorageError(f"no images ({', '.join(formats.IMAGE_EXTENSIONS)}) under {source}")
    for f in files:
        yield (f.key, *formats.decode_with_alpha(storage.read_bytes(f.uri), f.key))


def sr_figures(x: torch.Tensor, hr: torch.Tensor, scale: int) -> dict[str, float | None]:
    """Every figure we report for an upscaled image `x` against `hr` ((1, C, H, W), [0, 1]):
    PSNR/SSIM on Y (None without a Y channel) and on all bands, border `scale` removed, and
    the high-frequency ratio. Training validation, evaluate and promote all use this."""
    has_y = hr.shape[1] in (1, 3)
    return {
        "psnr_y": psnr_y(x, hr, scale).item() if has_y else None,
        "ssim_y": ssim_y(x, hr, scale).item() if has_y else None,
        "psnr": psnr(x, hr, 1.0, scale).item(),
        "ssim": ssim(x, hr, 1.0, scale).item(),
        "hf_ratio": high_frequency_ratio(x, hr, scale).item(),
    }


def primary(figures: dict) -> tuple[float, float]:
    """(PSNR, SSIM) as headline figures: Y where there is a Y channel, all bands otherwise."""
    if figures["psnr_y"] is not None:
        return figures["psnr_y"], figures["ssim_y"]
    return figures["psnr"], figures["ssim"]


def _levels(dtype: np.dtype) -> int | None:
    return int(formats.data_range(dtype)) if np.issubdtype(dtype, np.integer) else None


def score_image(upscaler: Upscaler, name: str, hr_array: np.ndarray, scale: int, alpha: bool = False) -> tuple[ImageScore, GridRow]:
    """Protocol scores for one HR image, and the pictures for its comparison row."""
    if alpha:  # transparency is not part of the picture being scored
        hr_array = hr_array[..., :-1]
    if upscaler.in_channels is not None:
        try:  # as in training: gray -> RGB for a 3-channel model
            hr_array = formats.conform_bands(hr_array, upscaler.in_channels)
        except formats.DecodeError as exc:
            raise ModelRefError(f"{name} {exc}") from None
    h, w = (hr_array.shape[0] // scale) * scale, (hr_array.shape[1] // scale) * scale
    if h < 2 * scale + 11 or w < 2 * scale + 11:
        raise ValueError(f"{name}: {hr_array.shape[1]}x{hr_array.shape[0]} is too small to score at x{scale}")
    hr_native = torch.from_numpy(np.ascontiguousarray(hr_array[:h, :w].transpose(2, 0, 1)))[None]
    div = formats.data_range(hr_array.dtype)
    # LR and the bicubic baseline in the image's own dtype, exactly as MATLAB rounds them.
    lr_native = imresize(hr_native, 1.0 / scale)
    bicubic = imresize(lr_native, float(scale)).float() / div
    lr = (lr_native.float() / div).clamp(0, 1)
    hr = hr_native.float() / div
    if upscaler.generator is None:
        sr = bicubic
    else:
        sr = upscaler(lr)
        levels = _levels(hr_array.dtype)
        sr = quantize(sr, levels) if levels else sr
    base = sr_figures(bicubic, hr, scale)
    ours = base if sr is bicubic else sr_figures(sr, hr, scale)
    score = ImageScore(name=name, height=h, width=w, channels=hr.shape[1], **ours, **{f"bicubic_{k}": v for k, v in base.items()})
    caption = f"{name}  bicubic {primary(base)[0]:.2f} dB  SR {primary(ours)[0]:.2f} dB"
    return score, GridRow(lr=lr[0], bicubic=bicubic[0], sr=sr[0], hr=hr[0], caption=caption)


def evaluate_images(
    upscaler: Upscaler,
    images: Iterable[tuple[str, np.ndarray, bool]],
    dataset: str,
    grid_path: str | Path | None = None,
    progress=None,
) -> EvalReport:
    """Score every image; optionally write the comparison grid. `progress(score)` is
    called after each image."""
    scores, rows = [], []
    for name, array, alpha in images:
        score, row = score_image(upscaler, name, array, upscaler.scale, alpha)
        scores.append(score)
        if grid_path is not None:
            rows.append(row)
        if progress:
            progress(score)
    if grid_path is not None:
        save_grid(rows, upscaler.scale, grid_path)
    return EvalReport(dataset=dataset, model=upscaler.name, scale=upscaler.scale, images=scores)


def _fmt(value: float | None, digits: int) -> str:
    return "   -   " if value is None else f"{value:.{digits}f}"


def _row(name: str, size: str, pairs: list[tuple[float | None, float | None]], hf: list[float | None]) -> str:
    cells = "  ".join(f"{_fmt(p, 2):>6} / {_fmt(s, 4):>6}" for p, s in pairs)
    hf_cells = " -> ".join(_fmt(h, 2) for h in hf)
    name = name if len(name) <= 32 else "..." + name[-29:]
    return f"{name:<32} {size:>11}  {cells}  {hf_cells:>12}"


def _pairs(score, baseline: bool) -> tuple[list[tuple], list]:
    y = "psnr_y" if score.psnr_y is not None else "psnr"
    s = "ssim_y" if score.ssim_y is not None else "ssim"
    sr = (getattr(score, y), getattr(score, s))
    if baseline:
        return [(getattr(score, "bicubic_" + y), getattr(score, "bicubic_" + s)), sr], [score.bicubic_hf_ratio, score.hf_ratio]
    return [sr], [score.hf_ratio]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="'bicubic', a generator .pt, a checkpoint folder, runs:/<id> or models:/<name>@<alias>")
    parser.add_argument("--data", required=True, help="HR images: a local folder or an s3:// prefix (searched recursively)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI for runs:/ and models:/ (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--scale", type=int, default=None, help="upscaling factor (default: the model's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--grid", default=None, help="write an LR | bicubic | SR | HR comparison PNG here")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--tile", type=int, default=256, help="LR tile size for the model (0: whole image)")
    args = parser.parse_args(argv)

    try:
        device = torch.device(args.device) if args.device else None
        upscaler = load_upscaler(args.model, device=device, scale=args.scale, tile=args.tile, tracking_uri=args.tracking_uri)
        baseline = upscaler.generator is not None
        header = ["bicubic PSNR / SSIM", "SR PSNR / SSIM"] if baseline else ["PSNR / SSIM"]

        def show(score: ImageScore) -> None:
            print(_row(score.name, f"{score.width}x{score.height}", *_pairs(score, baseline)), flush=True)

        if not args.json:
            print(f"{upscaler.name} x{upscaler.scale} on {args.data}  (Y channel BT.601, border {upscaler.scale}; N-band images: all bands;")
            print("  HF ratio: high-frequency energy relative to HR, 1 = HR's detail)")
            print(f"{'image':<32} {'size':>11}  " + "  ".join(f"{h:>17}" for h in header) + f"  {'HF ratio':>12}")
        report = evaluate_images(upscaler, iter_images(args.data), Path(args.data.rstrip("/")).name, args.grid, None if args.json else show)
    except (ModelRefError, storage.StorageError, formats.DecodeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        summary = report.to_dict()
        with_y = sum(s.psnr_y is not None for s in report.images)
        rows = []
        if with_y:
            rows.append((f"mean Y of {with_y}", "psnr_y", "ssim_y"))
        if with_y < len(report.images):
            rows.append((f"mean all-band of {len(report.images)}", "psnr", "ssim"))
        for label, p, s in rows:
            means = [(summary["bicubic"][p], summary["bicubic"][s])] if baseline else []
            means.append((summary[p], summary[s]))
            hf = [summary["bicubic"]["hf_ratio"], summary["hf_ratio"]] if baseline else [summary["hf_ratio"]]
            print(_row(label, "", means, hf))
        if args.grid:
            print(f"comparison grid: {args.grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
