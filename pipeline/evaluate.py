"""Score a model against bicubic on a folder of HR images with the standard SR protocol
(pipeline.scoring): PSNR/SSIM on Y per image and as means, a table, JSON or a grid picture.

    python -m pipeline.evaluate --model bicubic|<model reference> --data <folder> --scale 4 [--json] [--grid out.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from pipeline import cli, storage
from pipeline.errors import UsageError
from pipeline.models import Upscaler, load_upscaler
from pipeline.scoring import EvalReport, ImageScore, evaluate_images, iter_images, list_images
from srgan.generator import SCALES

EXAMPLES = [
    "python -m pipeline.evaluate --model bicubic --data ../shared/data/Set5 --scale 4",
    "python -m pipeline.evaluate --model models:/srgan@champion --data s3://bucket/holdout/ --grid holdout.png",
]


def evaluate(model: str, data: str, *, scale: int | None = None, tile: int = 256, device: str | None = None, tracking_uri: str | None = None, grid: str | Path | None = None, table: bool = False) -> EvalReport:
    """Score `model` (any model reference, or 'bicubic') on the HR images under `data`;
    `grid` writes the LR | bicubic | SR | HR picture; `table` prints a row per image as it
    is scored, then the means."""
    files = list_images(data)  # before the model is fetched: a bad folder fails fast
    if grid is not None:
        storage.check_destination(str(Path(grid).resolve().parent), "--grid")
    upscaler = load_upscaler(model, device=_device(device), scale=scale, tile=tile, tracking_uri=tracking_uri)
    printer = Table(upscaler, data) if table else None
    report = evaluate_images(upscaler, iter_images(files), Path(data.rstrip("/")).name, grid, printer.row if printer else None)
    if printer:
        printer.means(report)
    return report


def _device(name: str | None) -> torch.device | None:
    if name is None:
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device here; use cpu")
    return device


def _fmt(value: float | None, digits: int) -> str:
    return "   -   " if value is None else f"{value:.{digits}f}"


class Table:
    """The evaluation as text: a header, a row per image, the means."""

    def __init__(self, upscaler: Upscaler, data: str) -> None:
        self.baseline = upscaler.generator is not None
        header = ["bicubic PSNR / SSIM", "SR PSNR / SSIM"] if self.baseline else ["PSNR / SSIM"]
        print(f"{upscaler.name} x{upscaler.scale} on {data}  (Y channel BT.601, border {upscaler.scale}; N-band images: all bands;")
        print("  HF ratio: high-frequency energy relative to HR, 1 = HR's detail)")
        print(f"{'image':<32} {'size':>11}  " + "  ".join(f"{h:>17}" for h in header) + f"  {'HF ratio':>12}", flush=True)

    def _line(self, name: str, size: str, pairs: list[tuple[float | None, float | None]], hf: list[float | None]) -> None:
        cells = "  ".join(f"{_fmt(p, 2):>6} / {_fmt(s, 4):>6}" for p, s in pairs)
        hf_cells = " -> ".join(_fmt(h, 2) for h in hf)
        name = name if len(name) <= 32 else "..." + name[-29:]
        print(f"{name:<32} {size:>11}  {cells}  {hf_cells:>12}", flush=True)

    def row(self, score: ImageScore) -> None:
        y = "psnr_y" if score.psnr_y is not None else "psnr"
        s = "ssim_y" if score.ssim_y is not None else "ssim"
        pairs, hf = [(getattr(score, y), getattr(score, s))], [score.hf_ratio]
        if self.baseline:
            pairs.insert(0, (getattr(score, "bicubic_" + y), getattr(score, "bicubic_" + s)))
            hf.insert(0, score.bicubic_hf_ratio)
        self._line(score.name, f"{score.width}x{score.height}", pairs, hf)

    def means(self, report: EvalReport) -> None:
        summary = report.to_dict()
        with_y = sum(s.psnr_y is not None for s in report.images)
        rows = []
        if with_y:
            rows.append((f"mean Y of {with_y}", "psnr_y", "ssim_y"))
        if with_y < len(report.images):
            rows.append((f"mean all-band of {len(report.images)}", "psnr", "ssim"))
        for label, p, s in rows:
            means = [(summary["bicubic"][p], summary["bicubic"][s])] if self.baseline else []
            means.append((summary[p], summary[s]))
            hf = [summary["bicubic"]["hf_ratio"], summary["hf_ratio"]] if self.baseline else [summary["hf_ratio"]]
            self._line(label, "", means, hf)


def build_parser() -> cli.Parser:
    p = cli.Parser("python -m pipeline.evaluate", "Score a model against bicubic on HR images (PSNR/SSIM on Y, the published protocol).", EXAMPLES)
    p.add_argument("--model", required=True, help="'bicubic', a generator .pt, a checkpoint folder (local or s3://), runs:/<id> or models:/<name>@<alias>")
    p.add_argument("--data", required=True, help="HR images: a local folder or an s3:// prefix (searched recursively)")
    p.add_argument("--scale", type=int, choices=SCALES, help="upscaling factor; required with bicubic (default: the model's)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--grid", help="write an LR | bicubic | SR | HR comparison PNG here (default: none)")
    p.add_argument("--tile", type=cli.non_negative_int, default=256, help="LR tile size for the model, 0 = whole image")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI for runs:/ and models:/ (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    return p


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = evaluate(args.model, args.data, scale=args.scale, tile=args.tile, device=args.device, tracking_uri=args.tracking_uri, grid=args.grid, table=not args.json)
    if args.json:
        print(json.dumps(report.to_dict()))
    elif args.grid:
        print(f"comparison grid: {args.grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
