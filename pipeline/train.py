"""Train an SRGAN on Ray: the command line over pipeline.train_driver.run_training.

    python -m pipeline.train --config configs/srgan_x4.yaml [--set train.batch_size=32] [--resume]
    ray job submit --working-dir . -- python -m pipeline.train --config configs/srgan_x4.yaml

With RAY_ADDRESS set (as `ray job submit` does) the job joins that cluster; otherwise it
starts a local Ray. It ends with one JSON line: the run name, MLflow run id and checkpoint.
"""

from __future__ import annotations

import json
import sys

from pipeline import cli
from pipeline.config import load_config
from pipeline.training.driver import run_training

EXAMPLES = [
    "python -m pipeline.train --config configs/quickstart.yaml",
    "python -m pipeline.train --config configs/srgan_x4.yaml --set train.batch_size=32 --set run.name=x4-a [--resume]",
]


def build_parser() -> cli.Parser:
    p = cli.Parser(
        "python -m pipeline.train", "Train an SRGAN on Ray (local Ray, or the cluster RAY_ADDRESS names).", EXAMPLES
    )
    p.add_argument("--config", required=True, help="YAML config (configs/srgan_x4.yaml lists every key)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. train.batch_size=32 (repeatable)",
    )
    p.add_argument("--resume", action="store_true", help="continue run.name from its last checkpoint")
    return p


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with cli.naming_flags(parser):
        outcome = run_training(load_config(args.config, args.overrides), resume=args.resume)
    print(
        json.dumps({"run": outcome.run_name, "mlflow_run_id": outcome.mlflow_run_id, "checkpoint": outcome.checkpoint}),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
