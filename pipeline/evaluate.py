"""Score a model against bicubic on a folder of HR images with the standard SR protocol
(pipeline.scoring): PSNR/SSIM on Y, NIQE and (with its weights) LPIPS, per image and as
means, for the model and bicubic side by side: a table, JSON or a grid picture. Several
models and sets (or --paper) give one paper-style table (pipeline.scoring.quality_table). With
--no-reference, score images as they are (NIQE only), e.g. the batch upscaler's outputs.

    python -m pipeline.evaluate --model bicubic|<model reference> --data <folder> --scale 4 [--json] [--grid out.png]
    python -m pipeline.evaluate --model bicubic --model <ref> ... --data <set> <set> ... --scale 4 [--paper] [--json]
    python -m pipeline.evaluate --no-reference --data <folder> [--json]
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path, PurePosixPath

from pipeline import cli
from pipeline.errors import UsageError
from pipeline.io import storage
from pipeline.models.reference import BICUBIC, Upscaler, load_upscaler, pick_device
from pipeline.scoring.protocol import (
    AsIsScore,
    EvalReport,
    ImageScore,
    evaluate_images,
    iter_images,
    list_images,
    lpips_model,
    model_figures,
    say_lpips_skipped,
    score_as_is,
)
from pipeline.scoring.quality_table import PAPER_SCALE, QualityTable, paper_set
from srgan.generator import SCALES

EXAMPLES = [
    "python -m pipeline.evaluate --model bicubic --data ../shared/data/Set5 --scale 4",
    "python -m pipeline.evaluate --model models:/srgan@champion --data s3://bucket/holdout/ --grid holdout.png --lpips-weights alexnet-owt-7be5be79.pth",
    "python -m pipeline.evaluate --model bicubic --model RealESRGAN_x4plus.pth --data Set5 Set14 BSD100 --scale 4 --paper",
    "python -m pipeline.evaluate --no-reference --data s3://bucket/scenes-x4/ --json",
]


def evaluate(
    model: str,
    data: str,
    *,
    scale: int | None = None,
    tile: int = 256,
    device: str | None = None,
    tracking_uri: str | None = None,
    grid: str | Path | None = None,
    table: bool = False,
    lpips_weights: str | None = "torchvision",
) -> EvalReport:
    """Score `model` (any model reference, or 'bicubic') on the HR images under `data`;
    `grid` writes the LR | bicubic | SR | HR picture; `table` prints a row per image as it
    is scored, then the means. LPIPS is measured when `lpips_weights` (see
    pipeline.scoring.lpips_model) are found; otherwise a note on stderr says why not."""
    files = list_images(data)  # before the model is fetched: a bad folder fails fast
    if grid is not None:
        storage.check_writable(str(grid), "`grid`")
    upscaler = load_upscaler(model, device=pick_device(device), scale=scale, tile=tile, tracking_uri=tracking_uri)
    lpips, skipped = lpips_model(lpips_weights)
    printer = Table(upscaler, data, lpips is not None) if table else None
    with storage.reporting_write(grid, "`grid`") if grid is not None else contextlib.nullcontext():
        report = evaluate_images(
            upscaler,
            iter_images(files, upscaler),
            Path(data.rstrip("/")).name,
            grid,
            printer.row if printer else None,
            lpips,
        )
    if printer:
        printer.means(report)
    say_lpips_skipped(skipped)
    return report


def quality_table(
    models: list[str],
    datasets: list[str],
    *,
    scale: int | None = None,
    tile: int = 256,
    device: str | None = None,
    tracking_uri: str | None = None,
    lpips_weights: str | None = "torchvision",
    paper: bool = False,
) -> QualityTable:
    """Score every model (model references, or 'bicubic') on every set of HR images under
    `datasets`, at one scale: the means of PSNR/SSIM on Y, NIQE and LPIPS (where its weights
    are found) per set and model; `paper` adds the SRGAN paper's published x4 columns. Every
    set is listed and every model loaded before anything is scored, so a bad one fails fast."""
    sets = {}
    for data in datasets:
        name = PurePosixPath(data.rstrip("/")).name or data
        if name in sets:
            raise UsageError(f"`data`: two sets are named {name!r}; a table names each set by its folder")
        sets[name] = list_images(data)
    upscalers = load_upscalers(models, scale, tile=tile, device=pick_device(device), tracking_uri=tracking_uri)
    scale = next(iter(upscalers.values())).scale
    if paper and scale != PAPER_SCALE:
        raise UsageError(f"`paper`: the SRGAN paper's Table 2 is x{PAPER_SCALE}, this table x{scale}; drop `paper`")
    lpips, skipped = lpips_model(lpips_weights)
    table = QualityTable(scale, {label: u.name for label, u in upscalers.items()})
    for name, files in sets.items():
        for label, upscaler in upscalers.items():
            print(f"scoring {label} on {name} ({len(files)} images)", file=sys.stderr, flush=True)
            figures = [model_figures(upscaler, key, image, lpips) for key, image in iter_images(files, upscaler)]
            table.add(name, label, figures)
    say_lpips_skipped(skipped)
    if paper:
        table.add_paper()
        if not any(paper_set(name) for name in sets):
            print("note: the paper has figures for Set5, Set14 and BSD100 only", file=sys.stderr, flush=True)
    return table


def load_upscalers(models: list[str], scale: int | None, **options) -> dict[str, Upscaler]:
    """{column label: upscaler} for `models`, in their order, all at one scale: `scale`, else
    the models' own (bicubic takes theirs). A model that does not load is an error naming it."""
    loaded: dict[str, Upscaler] = {}
    for ref in models:  # the models first: bicubic can then take their scale
        if ref != BICUBIC:
            loaded[ref] = load_upscaler(ref, scale=scale, **options)
    scales = {u.scale for u in loaded.values()}
    if len(scales) > 1:
        shown = ", ".join(f"{ref} x{u.scale}" for ref, u in loaded.items())
        raise UsageError(
            f"`model`: a table compares one scale, but the models upscale {shown}; give models of one scale"
        )
    if scale is None and scales:
        scale = scales.pop()
    upscalers: dict[str, Upscaler] = {}
    for ref in models:
        label, n = column_label(ref), 2
        while label in upscalers:  # the same name twice: number the later ones
            label, n = f"{column_label(ref)} ({n})", n + 1
        upscalers[label] = loaded.get(ref) or load_upscaler(BICUBIC, scale=scale, **options)
    return upscalers


def column_label(ref: str) -> str:
    """A short column name for a model reference: a file's or folder's name without its
    suffix; runs:/ and models:/ references as they are."""
    if ref == BICUBIC or ref.startswith(("runs:/", "models:/")):
        return ref
    return PurePosixPath(ref.rstrip("/")).stem or ref


def evaluate_as_is(data: str, table: bool = False) -> dict:
    """NIQE of the images under `data` as they are (no reference): per image and the mean
    over those it is defined for (1- and 3-band images of at least 96 x 96)."""
    files = list_images(data)
    if table:
        print(f"NIQE of the images under {data} as they are (no reference; lower is more natural)")
        print(f"{'image':<40} {'size':>11}  {'NIQE':>7}", flush=True)
    show = (
        (lambda s: print(f"{s.name[-40:]:<40} {f'{s.width}x{s.height}':>11}  {_fmt(s.niqe, 2):>7}", flush=True))
        if table
        else None
    )
    scores: list[AsIsScore] = score_as_is(iter_images(files), show)
    values = [s.niqe for s in scores if s.niqe is not None]
    mean = sum(values) / len(values) if values else None
    if table:
        print(f"{f'mean of {len(values)}':<40} {'':>11}  {_fmt(mean, 2):>7}", flush=True)
    return {"dataset": Path(data.rstrip("/")).name, "niqe": mean, "images": [s.__dict__ for s in scores]}


def _fmt(value: float | None, digits: int) -> str:
    return "   -   " if value is None or value != value else f"{value:.{digits}f}"


class Table:
    """The evaluation as text: a header, a row per image, the means. For bicubic and the
    model side by side: PSNR / SSIM, NIQE, and LPIPS when it is measured."""

    def __init__(self, upscaler: Upscaler, data: str, with_lpips: bool = False) -> None:
        self.baseline, self.with_lpips = upscaler.generator is not None, with_lpips
        print(
            f"{upscaler.name} x{upscaler.scale} on {data}  (Y channel BT.601, border {upscaler.scale}; N-band images: all bands;"
        )
        print(
            "  NIQE: no-reference naturalness, lower is better; LPIPS: distance to HR, lower is better; HF ratio: high-frequency energy relative to HR)"
        )
        width = len(self._cell(None, None, None, None))
        heads = [
            f"{n}PSNR / SSIM NIQE" + (" LPIPS" if with_lpips else "")
            for n in (["bicubic ", "SR "] if self.baseline else [""])
        ]
        print(
            f"{'image':<32} {'size':>11}  " + "  ".join(f"{h:>{width}}" for h in heads) + f"  {'HF ratio':>12}",
            flush=True,
        )

    def _cell(self, psnr_value, ssim_value, niqe_value, lpips_value) -> str:
        cell = f"{_fmt(psnr_value, 2):>6} / {_fmt(ssim_value, 4):>6} {_fmt(niqe_value, 2):>7}"
        return cell + (f" {_fmt(lpips_value, 3):>7}" if self.with_lpips else "")

    def _line(self, name: str, size: str, cells: list[str], hf: list[float | None]) -> None:
        hf_cells = " -> ".join(_fmt(h, 2) for h in hf)
        name = name if len(name) <= 32 else "..." + name[-29:]
        print(f"{name:<32} {size:>11}  " + "  ".join(cells) + f"  {hf_cells:>12}", flush=True)

    def _sides(self, get, y: str, s: str) -> tuple[list[str], list]:
        prefixes = ["bicubic_", ""] if self.baseline else [""]
        cells = [self._cell(get(p + y), get(p + s), get(p + "niqe"), get(p + "lpips")) for p in prefixes]
        return cells, [get(p + "hf_ratio") for p in prefixes]

    def row(self, score: ImageScore) -> None:
        y, s = ("psnr_y", "ssim_y") if score.psnr_y is not None else ("psnr", "ssim")
        cells, hf = self._sides(lambda k: getattr(score, k), y, s)
        self._line(score.name, f"{score.width}x{score.height}", cells, hf)

    def means(self, report: EvalReport) -> None:
        with_y = sum(s.psnr_y is not None for s in report.images)
        rows = []
        if with_y:
            rows.append((f"mean Y of {with_y}", "psnr_y", "ssim_y"))
        if with_y < len(report.images):
            rows.append((f"mean all-band of {len(report.images)}", "psnr", "ssim"))
        for label, p, s in rows:
            cells, hf = self._sides(report.mean, p, s)
            self._line(label, "", cells, hf)


def build_parser() -> cli.Parser:
    p = cli.Parser(
        "python -m pipeline.evaluate",
        "Score a model against bicubic on HR images (PSNR/SSIM on Y, the published protocol).",
        EXAMPLES,
    )
    p.add_argument(
        "--model",
        action="append",
        help="'bicubic', a model file (.pt, .pth, .ckpt, .safetensors, .onnx: recognised by its keys), a checkpoint folder (local or s3://), runs:/<id> or models:/<name>@<alias>; repeat it for a table of several models (required unless --no-reference)",
    )
    p.add_argument(
        "--data",
        required=True,
        nargs="+",
        help="HR images: a local folder or an s3:// prefix (searched recursively); several sets give one table with a group of rows per set",
    )
    p.add_argument(
        "--paper",
        action="store_true",
        help="add the SRGAN paper's published x4 PSNR/SSIM (Table 2: Set5, Set14, BSD100) as columns labelled 'paper'; gives the table even for one model and set",
    )
    p.add_argument(
        "--no-reference",
        action="store_true",
        help="score the images under --data as they are, with NIQE only (no model, no HR)",
    )
    p.add_argument(
        "--lpips-weights",
        default="torchvision",
        help="LPIPS AlexNet backbone: 'torchvision' (its cache; never downloaded), a local file or s3:// URI, or 'none' (LPIPS left out when not found)",
    )
    p.add_argument(
        "--scale", type=int, choices=SCALES, help="upscaling factor; required with bicubic (default: the model's)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--grid", help="write an LR | bicubic | SR | HR comparison PNG here (default: none)")
    p.add_argument("--tile", type=cli.non_negative_int, default=256, help="LR tile size for the model, 0 = whole image")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI for runs:/ and models:/ (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
    )
    return p


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with cli.naming_flags(parser):
        if args.no_reference:
            if args.model or args.grid or args.paper:
                raise UsageError("--no-reference scores the images as they are: drop --model, --grid and --paper")
            if len(args.data) > 1:
                raise UsageError("--no-reference scores one folder: give one --data")
            result = evaluate_as_is(args.data[0], table=not args.json)
            if args.json:
                print(json.dumps(result))
            return 0
        if not args.model:
            raise UsageError("--model is required (or --no-reference to score the images as they are)")
        lpips_weights = None if args.lpips_weights == "none" else args.lpips_weights
        if len(args.model) > 1 or len(args.data) > 1 or args.paper:
            if args.grid:
                raise UsageError("--grid draws one model on one set: drop --grid, or give one --model and one --data")
            table = quality_table(
                args.model,
                args.data,
                scale=args.scale,
                tile=args.tile,
                device=args.device,
                tracking_uri=args.tracking_uri,
                lpips_weights=lpips_weights,
                paper=args.paper,
            )
            print(json.dumps(table.to_dict()) if args.json else "\n".join(table.lines()), flush=True)
            return 0
        report = evaluate(
            args.model[0],
            args.data[0],
            scale=args.scale,
            tile=args.tile,
            device=args.device,
            tracking_uri=args.tracking_uri,
            grid=args.grid,
            table=not args.json,
            lpips_weights=lpips_weights,
        )
        if args.json:
            print(json.dumps(report.to_dict()))
        elif args.grid:
            print(f"comparison grid: {args.grid}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
