"""The whole flow on this machine with nothing else running: `make quickstart`.

    python -m pipeline.quickstart [--out quickstart]

Writes the bundled sample images to <out>/samples, trains the small SRGAN of
configs/quickstart.yaml on local Ray (MLflow on sqlite:///mlflow.db), then scores the
trained generator against bicubic on photographs it never saw and draws the comparison.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline import evaluate
from pipeline.config import load_config
from pipeline.samples import write_samples
from pipeline.train import run_training

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.quickstart", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="quickstart", help="folder for samples, runs and pictures")
    parser.add_argument("--config", default=str(CONFIG))
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()

    banner("1/3 sample images")
    written = write_samples(out / "samples")
    print(f"{len(written)} images under {out / 'samples'} (photos/ to train on, holdout/ to judge with)")

    banner("2/3 train (local Ray, MLflow on sqlite)")
    cfg = load_config(
        args.config,
        [f"data.train={out / 'samples' / 'photos'}", f"data.val={out / 'samples' / 'holdout'}", f"run.storage_path={out / 'runs'}"],
    )
    outcome = run_training(cfg)

    banner("3/3 evaluate on the held-out photographs")
    generator = Path(outcome.checkpoint) / "generator.pt"
    grid = out / "holdout_grid.png"
    code = evaluate.main(["--model", str(generator), "--data", str(out / "samples" / "holdout"), "--grid", str(grid)])
    if code:
        return code

    banner("done")
    print(f"trained generator:  {generator}")
    print(f"comparison grid:    {grid}  (LR | bicubic | SR | HR)")
    print(f"validation grids:   MLflow run {outcome.mlflow_run_id}, artifacts/grids/")
    print(f"browse the runs:    .venv/bin/mlflow ui --backend-store-uri {outcome.tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
