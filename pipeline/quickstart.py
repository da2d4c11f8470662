"""The whole flow on this machine with nothing else running: `make quickstart`.

    python -m pipeline.quickstart [--out quickstart] [--root s3://bucket/quickstart] [--quick]

samples -> train (PSNR phase, then a short GAN phase) -> tune (2 trials over the loss
weights, from the trained generator) -> promote the sweep's best to `champion` behind the
bicubic gate -> upscale every sample with models:/srgan@champion -> evaluate the champion on
held-out photographs, with comparison grids.

By default everything is local: Ray started in-process, MLflow on sqlite:///mlflow.db,
checkpoints and outputs under --out. `--root s3://...` puts the samples, checkpoints, sweep
state and upscaled images in a bucket instead (the local stack's `make e2e` does this, with
MLFLOW_TRACKING_URI naming its tracking server); pictures always go to --out.
`--quick` (the end-to-end test uses it) shortens every training phase, validates less
often, and upscales only the held-out, medical and satellite samples (every format kind,
a quarter of the pixels).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipeline import evaluate, storage, tracking
from pipeline.config import load_config, load_sweep
from pipeline.promote import EXIT_NOT_PROMOTED
from pipeline.promote import main as promote_main
from pipeline.samples import write_samples
from pipeline.train import run_training
from pipeline.tune import run_sweep
from pipeline.upscale import main as upscale_main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUICK_TRAIN = ["train.pretrain.steps=100", "train.gan.steps=20", "train.gan.lr_drop_step=null", "train.val_every=60", "train.checkpoint_every=60", "train.log_every=20"]
QUICK_SWEEP = ["train.gan.steps=10", "train.val_every=5", "train.checkpoint_every=5", "train.log_every=5"]
QUICK_UPSCALE = ["--include", "holdout/*", "--include", "medical/*", "--include", "satellite/*"]
MODEL_NAME = "srgan"


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def upload_folder(folder: Path, uri: str) -> int:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    for p in files:
        storage.upload_file(p, storage.join(uri, p.relative_to(folder).as_posix()))
    return len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.quickstart", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="quickstart", help="local folder for samples, pictures and (without --root) runs")
    parser.add_argument("--root", default=None, help="where data, checkpoints, sweeps and upscaled images go: a local folder (default --out) or s3://bucket/prefix")
    parser.add_argument("--config", default=str(CONFIGS / "quickstart.yaml"))
    parser.add_argument("--sweep", default=str(CONFIGS / "quickstart_tune.yaml"))
    parser.add_argument("--quick", action="store_true", help="much shorter training, fewer images upscaled (for the end-to-end test)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    root = storage.local_or_uri(args.root or str(out))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    started = time.perf_counter()

    banner("1/6 sample images")
    written = write_samples(out / "samples")
    data = storage.join(root, "samples")
    if storage.is_s3(root):
        upload_folder(out / "samples", data)
    print(f"{len(written)} images under {data} (photos/ to train on, holdout/ to judge with, medical/, satellite/)")

    banner("2/6 train: PSNR phase, then GAN phase (local Ray or RAY_ADDRESS, MLflow)")
    cfg = load_config(
        args.config,
        [f"data.train={storage.join(data, 'photos')}", f"data.val={storage.join(data, 'holdout')}", f"run.storage_path={storage.join(root, 'runs')}", f"run.name=quickstart-{stamp}", *(QUICK_TRAIN if args.quick else [])],
    )
    print(f"content loss backbone: {cfg.loss.content_backbone} (the discriminator's own features; no VGG19 download needed)")
    trained = run_training(cfg)

    banner("3/6 tune: 2 trials over the loss weights, GAN phase from the trained generator")
    sweep, base = load_sweep(
        args.sweep,
        [f"name=quickstart-sweep-{stamp}", f"storage_path={storage.join(root, 'sweeps')}", *(["scheduler.grace_period=5"] if args.quick else [])],
        [f"data.train={storage.join(data, 'photos')}", f"data.val={storage.join(data, 'holdout')}", f"train.gan.init_from=runs:/{trained.mlflow_run_id}", *(QUICK_SWEEP if args.quick else [])],
    )
    swept = run_sweep(sweep, base)
    if swept.get("interrupted"):
        return 130

    banner(f"4/6 promote the sweep's best to {MODEL_NAME}@champion (must beat bicubic on the holdout)")
    holdout = storage.join(data, "holdout")
    code = promote_main(["--from-sweep", swept["parent_run_id"], "--name", MODEL_NAME, "--holdout", holdout, "--tracking-uri", trained.tracking_uri])
    if code == EXIT_NOT_PROMOTED:
        print(f"(the gate kept the current champion; the flow goes on with it)")
    elif code:
        return code
    if not tracking.client(trained.tracking_uri).get_registered_model(MODEL_NAME).aliases.get("champion"):
        print(f"no {MODEL_NAME}@champion: nothing passed the gate, so nothing to upscale with", file=sys.stderr)
        return EXIT_NOT_PROMOTED
    champion = f"models:/{MODEL_NAME}@champion"

    banner(f"5/6 upscale {'the held-out, medical and satellite samples' if args.quick else 'every sample'} with {champion} (Ray Data)")
    upscaled = storage.join(root, "upscaled")
    code = upscale_main(["--model", champion, "--input", data, "--output", upscaled, "--bands", "1,2,3", "--tracking-uri", trained.tracking_uri, *(QUICK_UPSCALE if args.quick else [])])
    if code:
        return code

    banner(f"6/6 evaluate {champion} against bicubic on the held-out photographs")
    grid = out / "holdout_grid.png"
    code = evaluate.main(["--model", champion, "--data", holdout, "--grid", str(grid), "--tracking-uri", trained.tracking_uri])
    if code:
        return code

    banner(f"done in {(time.perf_counter() - started) / 60:.1f} min")
    print(f"upscaled samples:   {upscaled}  (manifest: {storage.join(upscaled, '_manifest', 'manifest.parquet')})")
    print(f"comparison grid:    {grid}  (LR | bicubic | SR | HR)")
    print(f"champion:           {champion}  (training run {trained.mlflow_run_id}, sweep run {swept['parent_run_id']})")
    print(f"validation grids:   each MLflow run's artifacts/grids/; the sweep's perception_distortion.png")
    if trained.tracking_uri.startswith("sqlite:"):
        print(f"browse the runs:    .venv/bin/mlflow ui --backend-store-uri {trained.tracking_uri}")
    else:
        print(f"browse the runs:    {trained.tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
