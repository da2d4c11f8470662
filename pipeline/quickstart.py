"""The whole flow on this machine with nothing else running: `make quickstart`.

    python -m pipeline.quickstart [--out quickstart] [--root s3://bucket/quickstart] [--quick]

samples -> train (the PSNR phase) -> tune (2 short GAN-phase trials over the loss weights,
from the trained generator) -> promote the PSNR generator (distortion criterion, against
bicubic) and then the sweep's best GAN (perceptual criterion, against that champion) ->
upscale every sample with models:/srgan@champion -> evaluate the champion on held-out
photographs, with comparison grids. Each step is the library function of its verb.

By default everything is local: Ray started in-process, MLflow on sqlite:///mlflow.db,
checkpoints and outputs under --out. `--root s3://...` puts the samples, checkpoints, sweep
state and upscaled images in a bucket instead (the local stack's `make e2e` does this, with
MLFLOW_TRACKING_URI naming its tracking server); pictures always go to --out.
`--quick` (the end-to-end test uses it) shortens every training phase, validates less
often, and upscales only the held-out, medical and satellite samples (every format kind,
a quarter of the pixels).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pipeline import cli, evaluate, promote, tracking, tune
from pipeline.config import apply_overrides, load_config
from pipeline.io import storage
from pipeline.io.samples import write_samples
from pipeline.training.driver import run_training
from pipeline.training.sweep import load_sweep
from pipeline.upscale import UpscaleJob, print_summary, run_upscale

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUICK_TRAIN = [
    "train.pretrain.steps=100",
    "train.gan.steps=20",
    "train.gan.lr_drop_step=null",
    "train.val_every=60",
    "train.checkpoint_every=60",
    "train.log_every=20",
]
QUICK_SWEEP = ["train.gan.steps=10", "train.val_every=5", "train.checkpoint_every=5", "train.log_every=5"]
QUICK_UPSCALE = ("holdout/*", "medical/*", "satellite/*")
MODEL_NAME = "srgan"
EXAMPLES = [
    "python -m pipeline.quickstart",
    "python -m pipeline.quickstart --out /tmp/qs --root s3://bucket/quickstart --quick",
]


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def upload_folder(folder: Path, uri: str) -> int:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    for p in files:
        storage.upload_file(p, storage.join(uri, p.relative_to(folder).as_posix()))
    return len(files)


def build_parser() -> cli.Parser:
    p = cli.Parser(
        "python -m pipeline.quickstart",
        "Run the whole flow on bundled samples: train, tune, promote, upscale, evaluate.",
        EXAMPLES,
    )
    p.add_argument("--out", default="quickstart", help="local folder for samples, pictures and (without --root) runs")
    p.add_argument(
        "--root",
        help="where data, checkpoints, sweeps and upscaled images go: a local folder or s3://bucket/prefix (default: --out)",
    )
    p.add_argument("--config", default=str(CONFIGS / "quickstart.yaml"), help="training config")
    p.add_argument("--sweep", default=str(CONFIGS / "quickstart_tune.yaml"), help="sweep config")
    p.add_argument(
        "--quick", action="store_true", help="much shorter training, fewer images upscaled (for the end-to-end test)"
    )
    return p


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out).resolve()
    root = storage.local_or_uri(args.root or str(out))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data = storage.join(root, "samples")
    # Everything that can be checked is checked before the first sample is written.
    storage.check_destination(str(out), "--out")
    storage.check_destination(root, "--root")
    photos, holdout = storage.join(data, "photos"), storage.join(data, "holdout")
    cfg = load_config(
        args.config,
        [
            f"data.train={photos}",
            f"data.val={holdout}",
            f"run.storage_path={storage.join(root, 'runs')}",
            f"run.name=quickstart-{stamp}",
            "train.phases=[pretrain]",
            *(QUICK_TRAIN if args.quick else []),
        ],
    )
    sweep, base = load_sweep(
        args.sweep,
        [
            f"name=quickstart-sweep-{stamp}",
            f"storage_path={storage.join(root, 'sweeps')}",
            *(["scheduler.grace_period=5"] if args.quick else []),
        ],
        [f"data.train={photos}", f"data.val={holdout}", *(QUICK_SWEEP if args.quick else [])],
    )
    tracking_uri = tracking.resolve_tracking_uri(cfg.mlflow.tracking_uri)
    tracking.check_reachable(tracking_uri)
    started = time.perf_counter()

    banner("1/6 sample images")
    written = write_samples(out / "samples")
    if storage.is_s3(root):
        upload_folder(out / "samples", data)
    print(f"{len(written)} images under {data} (photos/ to train on, holdout/ to judge with, medical/, satellite/)")

    banner("2/6 train: the PSNR phase (local Ray or RAY_ADDRESS, MLflow)")
    print(
        f"content loss backbone: {cfg.loss.content_backbone} (the discriminator's own features; no VGG19 download needed)"
    )
    trained = run_training(cfg)

    banner("3/6 tune: 2 trials over the loss weights, GAN phase from the trained generator")
    swept = tune.run_sweep(sweep, apply_overrides(base, [f"train.gan.init_from=runs:/{trained.mlflow_run_id}"]))
    if swept.get("interrupted"):
        return cli.EXIT_INTERRUPTED

    banner(
        f"4/6 promote to {MODEL_NAME}@champion: the PSNR generator (distortion criterion, against bicubic), then the sweep's best GAN (perceptual criterion, against that champion)"
    )
    best = promote.sweep_best_run(trained.tracking_uri, swept["parent_run_id"])
    for run_id in (trained.mlflow_run_id, best):  # each judged by the criterion that fits its run (Gate's auto)
        decision = promote.promote(MODEL_NAME, run_id, holdout, promote.Gate(), trained.tracking_uri)
        print(decision.message, flush=True)
        if not decision.promoted:
            print("(the gate kept the current champion; the flow goes on with it)")
    if not tracking.client(trained.tracking_uri).get_registered_model(MODEL_NAME).aliases.get("champion"):
        print(f"no {MODEL_NAME}@champion: nothing passed the gate, so nothing to upscale with", file=sys.stderr)
        return promote.EXIT_NOT_PROMOTED
    champion = f"models:/{MODEL_NAME}@champion"

    banner(
        f"5/6 upscale {'the held-out, medical and satellite samples' if args.quick else 'every sample'} with {champion} (the batch job)"
    )
    upscaled = storage.join(root, "upscaled")
    job = UpscaleJob(
        model=champion,
        input=data,
        output=upscaled,
        bands=(1, 2, 3),
        tracking_uri=trained.tracking_uri,
        include=QUICK_UPSCALE if args.quick else (),
    )
    summary = run_upscale(job)
    print_summary(summary)
    if summary.failed:
        return 1

    banner(f"6/6 evaluate {champion} against bicubic on the held-out photographs")
    grid = out / "holdout_grid.png"
    evaluate.evaluate(champion, holdout, grid=grid, tracking_uri=trained.tracking_uri, table=True)

    banner(f"done in {(time.perf_counter() - started) / 60:.1f} min")
    print(f"upscaled samples:   {upscaled}  (manifest: {summary.manifest})")
    print(f"comparison grid:    {grid}  (LR | bicubic | SR | HR)")
    print(f"champion:           {champion}  (training run {trained.mlflow_run_id}, sweep run {swept['parent_run_id']})")
    print("validation grids:   each MLflow run's artifacts/grids/; the sweep's perception_distortion.png")
    if trained.tracking_uri.startswith("sqlite:"):
        print(f"browse the runs:    .venv/bin/mlflow ui --backend-store-uri {trained.tracking_uri}")
    else:
        print(f"browse the runs:    {tracking.display_uri(trained.tracking_uri)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
