"""Register a generator trained elsewhere (or any generator file) in the MLflow model registry.

    python -m pipeline.register --model basicsr:MSRResNet_x4.pth --name srgan [--trained-for psnr|gan]

The checkpoint is converted to an srgan generator.pt (pipeline.models: basicsr:<file>,
srgan-pytorch:<file>, or a generator .pt / runs:/ / models:/ reference), logged as the
weights-only MLflow model of a run of its own in experiment `--experiment`, and registered
as a new version of `--name` with the tags srgan.source_run_id and srgan.imported_from. No
alias moves: `python -m pipeline.promote --run-id <the run> --name <name> --holdout ...`
then judges it like a trained generator (`--trained-for gan` makes its auto criterion the
perceptual one). Registering the same weights again finds their run and version.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline import cli, tracking
from pipeline.errors import UsageError
from pipeline.io.redact import redact_uri
from pipeline.models import pyfunc
from pipeline.models.reference import BICUBIC, fetch_generator_bytes

TRAINED_FOR = {"psnr": "pretrain", "gan": "pretrain,gan"}  # what promote's auto criterion reads (srgan.phases)
EXAMPLES = [
    "python -m pipeline.register --model basicsr:s3://bucket/models/MSRResNet_x4.pth --name srgan",
    "python -m pipeline.register --model srgan-pytorch:SRGAN_x4-ImageNet.pth.tar --name srgan --trained-for gan",
    "python -m pipeline.promote --run-id <run id printed above> --name srgan --holdout data/holdout",
]


@dataclass
class Registered:
    run_id: str
    version: str
    model_uri: str
    sha256: str
    created: bool


def register_generator(
    ref: str,
    name: str,
    tracking_uri: str | None = None,
    experiment: str = "imported-generators",
    trained_for: str = "psnr",
) -> Registered:
    """Log `ref`'s generator as a model of its own run and register it under `name`."""
    if ref == BICUBIC:
        raise UsageError("`ref` bicubic has no weights to register; give a generator")
    if trained_for not in TRAINED_FOR:
        raise UsageError(f"`trained_for` {trained_for!r} is not one of {', '.join(TRAINED_FOR)}")
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_reachable(uri)
    data, generator, meta = fetch_generator_bytes(ref, tracking_uri)
    if not hasattr(generator, "state_dict"):
        raise UsageError(f"`ref` {ref} is an ONNX export; register the srgan generator it was exported from")
    digest = hashlib.sha256(data).hexdigest()
    source = redact_uri(ref)
    experiment_id = tracking.ensure_experiment(uri, experiment)
    params = {
        "source": source,
        "sha256": digest,
        **{f"generator.{k}": str(v) for k, v in generator.spec.to_dict().items()},
    }
    tags = {tracking.IMPORTED_TAG: source, tracking.PHASES_TAG: TRAINED_FOR[trained_for]}
    run_id = tracking.start_run(uri, experiment_id, f"import-{digest[:12]}", f"import:{digest}", params, tags)
    c = tracking.client(uri)
    model_uri = c.get_run(run_id).data.tags.get(tracking.MODEL_TAG)
    if not model_uri:  # a new run, or one a crash left before its model was logged
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "generator.pt"
            path.write_bytes(data)
            model_uri = pyfunc.log_generator(uri, run_id, path)
    found = c.search_model_versions(f"name = '{name}' and tags.`{tracking.SOURCE_TAG}` = '{run_id}'")
    created = not found
    version = (
        tracking.register_version(
            uri, name, model_uri, run_id, {tracking.SOURCE_TAG: run_id, tracking.IMPORTED_TAG: source}
        )
        if created
        else str(found[0].version)
    )
    c.set_terminated(run_id, "FINISHED")
    return Registered(run_id, version, model_uri, digest, created)


def build_parser() -> cli.Parser:
    p = cli.Parser(
        "python -m pipeline.register",
        "Register a generator trained elsewhere (BasicSR, SRGAN-PyTorch) or any generator file in the MLflow model registry.",
        EXAMPLES,
    )
    p.add_argument(
        "--model",
        required=True,
        help="a model file (.pt, .pth, .ckpt, .safetensors, local or s3://: recognised by its keys; esrgan:/basicsr:/srgan-pytorch:/srgan-blocks:/spandrel: force a layout), runs:/<run id> or models:/<name>@<alias>",
    )
    p.add_argument("--name", default="srgan", help="registered model name")
    p.add_argument(
        "--trained-for",
        default="psnr",
        choices=sorted(TRAINED_FOR),
        help="psnr: judged by distortion on promotion (auto criterion); gan: by perception",
    )
    p.add_argument("--experiment", default="imported-generators", help="MLflow experiment of the import's run")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line on stdout")
    return p


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with cli.naming_flags(parser, ref="--model"):
        result = register_generator(args.model, args.name, args.tracking_uri, args.experiment, args.trained_for)
    verb = "registered" if result.created else "already registered"
    print(
        f"{verb}: {args.name} v{result.version} from {redact_uri(args.model)} (run {result.run_id}, sha256 {result.sha256[:16]}); promote it with python -m pipeline.promote --run-id {result.run_id} --name {args.name} --holdout <images>",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps(asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
