"""What `make e2e` must have left behind: checkpoints, upscaled images and their manifest in
the bucket, a `champion` in the MLflow registry on the tracking server, the grid picture.
Exits non-zero naming the first thing missing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.io import storage  # noqa: E402
from pipeline.upscaling.manifest import read_manifest  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import mlflow

    problems = []
    checkpoints = [f.key for f in storage.list_files(storage.join(args.root, "runs")) if f.key.endswith("generator.pt")]
    if not checkpoints:
        problems.append(f"no generator checkpoints under {args.root}/runs")
    rows = read_manifest(storage.join(args.root, "upscaled"))
    done = [r for r in rows if r.status == "done"]
    failed = [r for r in rows if r.status == "failed"]
    if not done or failed:
        problems.append(f"upscale manifest: {len(done)} done, {len(failed)} failed ({[r.error for r in failed][:3]})")
    champion = mlflow.MlflowClient().get_registered_model("srgan").aliases.get("champion")
    if not champion:
        problems.append("no srgan@champion in the registry")
    grid = Path(args.out) / "holdout_grid.png"
    if not grid.is_file():
        problems.append(f"no grid at {grid}")
    if problems:
        print("e2e FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(
        f"e2e ok: {len(checkpoints)} checkpoint generator(s), {len(done)} images upscaled in {args.root}/upscaled, srgan@champion = v{champion}, grid {grid}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
