"""Export a generator to ONNX, checked against PyTorch, and log it beside its MLflow model.

    python -m pipeline.export --model models:/srgan@champion --format onnx [--output srgan.onnx]

Any model reference but bicubic (pipeline.models) is exported: its inference form in fp32,
opset 17, dynamic batch, height and width, the srgan spec and receptive radius in the file's
metadata (pipeline.onnx_model). Before anything is kept, onnxruntime runs the file on two
images of odd sizes and its output must equal PyTorch's within --tolerance (1e-4); a file
that does not is not written. An existing --output is never replaced unless --overwrite. A
models:/ or runs:/ model's run gets the file as the artifact onnx/<name> and the tag
srgan.onnx_uri, so the registry version points at both forms. `upscale --model file.onnx`
runs it with the same tiling.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pipeline import cli, tracking
from pipeline.errors import ModelRefError, UsageError
from pipeline.io import storage
from pipeline.io.redact import redact_uri
from pipeline.models.onnx_model import OnnxGenerator, export_onnx
from pipeline.models.reference import BICUBIC, fetch_generator

FORMATS = ("onnx",)
CHECK_SIZES = ((37, 29), (20, 51))  # odd and uneven: every border case of the convolutions
EXAMPLES = [
    "python -m pipeline.export --model models:/srgan@champion --format onnx",
    "python -m pipeline.export --model basicsr:MSRResNet_x4.pth --output msrresnet_x4.onnx",
    "python -m pipeline.upscale --model srgan.onnx --input data/in --output data/out",
]


class ExportError(ModelRefError):
    """The exported file does not compute what the model computes."""


@dataclass
class Exported:
    path: str
    max_abs_diff: float
    checked_sizes: list
    logged_to: str = ""  # the run's artifact URI, when the model came from MLflow


def _model_run(ref: str, tracking_uri: str | None) -> str | None:
    if ref.startswith("runs:/"):
        return ref[len("runs:/") :].strip("/").split("/")[0]
    if ref.startswith("models:/"):
        return tracking.model_run(tracking.resolve_tracking_uri(tracking_uri), ref)
    return None


def check_parity(generator: torch.nn.Module, path: Path, tolerance: float) -> float:
    """Largest |onnxruntime - PyTorch| over CHECK_SIZES; ExportError above `tolerance`."""
    runtime = OnnxGenerator(path.read_bytes(), name=str(path))
    worst = 0.0
    with torch.inference_mode():
        for h, w in CHECK_SIZES:
            x = torch.rand(2, generator.spec.in_channels, h, w, generator=torch.Generator().manual_seed(h * w))
            try:
                got = runtime(x)
            except Exception as exc:  # onnxruntime's Fail: the traced graph only runs at its example's size
                first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
                raise ExportError(
                    f"architecture {generator.spec.arch} does not export to ONNX with dynamic sizes: the exported "
                    f"graph fails on a {h}x{w} image ({first}); upscale with the PyTorch model instead; nothing was written"
                ) from None
            worst = max(worst, (got - generator(x)).abs().max().item())
    if not worst <= tolerance:
        raise ExportError(
            f"the ONNX export differs from the PyTorch model by {worst:.3g} (more than `tolerance` {tolerance:g}) on {CHECK_SIZES}; nothing was written"
        )
    return worst


def export_model(
    ref: str,
    output: str | None = None,
    fmt: str = "onnx",
    tracking_uri: str | None = None,
    overwrite: bool = False,
    tolerance: float = 1e-4,
    log: bool = True,
) -> Exported:
    """Export `ref` (see the module docstring); returns where it went and how close it is."""
    if fmt not in FORMATS:
        raise UsageError(f"`fmt` {fmt!r} is not one of {', '.join(FORMATS)}")
    if ref == BICUBIC:
        raise UsageError("`ref` bicubic has no weights to export; give a generator")
    target = Path(output or "generator.onnx")
    if target.is_dir() or (target.exists() and not overwrite):
        raise UsageError(f"`output` {target} exists; choose another name or pass `overwrite`")
    storage.check_writable(str(target), "`output`")
    generator, meta = fetch_generator(ref, tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        made = Path(tmp) / target.name
        export_onnx(generator, meta, made)
        diff = check_parity(generator, made, tolerance)
        partial = target.with_name(f".{target.name}.partial")
        with storage.reporting_write(target, "`output`"):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(made, partial)
                os.replace(partial, target)  # appears whole
            finally:
                partial.unlink(missing_ok=True)
    result = Exported(str(target), diff, [list(s) for s in CHECK_SIZES])
    run_id = _model_run(ref, tracking_uri) if log else None
    if run_id:
        uri = tracking.resolve_tracking_uri(tracking_uri)
        c = tracking.client(uri)
        c.log_artifact(run_id, str(target), "onnx")
        result.logged_to = f"runs:/{run_id}/onnx/{target.name}"
        c.set_tag(run_id, tracking.ONNX_TAG, result.logged_to)
    return result


def build_parser() -> cli.Parser:
    p = cli.Parser(
        "python -m pipeline.export",
        "Export a generator to ONNX (dynamic height and width), checked against PyTorch.",
        EXAMPLES,
    )
    p.add_argument(
        "--model",
        required=True,
        help="models:/<name>@<alias>, runs:/<run id>, a model file (.pt, .pth, .ckpt, .safetensors: recognised by its keys) or checkpoint folder (local or s3://)",
    )
    p.add_argument("--format", default="onnx", choices=FORMATS, help="export format")
    p.add_argument("--output", help="file to write (default: generator.onnx here); never replaced unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument(
        "--tolerance",
        type=cli.positive_float,
        default=1e-4,
        help="largest |onnxruntime - PyTorch| accepted on the check images",
    )
    p.add_argument("--no-log", action="store_true", help="do not log the file to the model's MLflow run")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI for models:/ and runs:/ (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON line on stdout")
    return p


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with cli.naming_flags(parser, ref="--model", fmt="--format"):
        result = export_model(
            args.model, args.output, args.format, args.tracking_uri, args.overwrite, args.tolerance, not args.no_log
        )
    print(
        f"exported {redact_uri(args.model)} to {result.path}: onnxruntime equals PyTorch within {result.max_abs_diff:.2g} on {len(CHECK_SIZES)} odd-sized images",
        file=sys.stderr,
    )
    if result.logged_to:
        print(f"logged to MLflow beside the model: {result.logged_to} (tag {tracking.ONNX_TAG})", file=sys.stderr)
    if args.json:
        print(json.dumps(asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
