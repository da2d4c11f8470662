"""Promote a trained generator in the MLflow model registry, behind a quality gate.

    python -m pipeline.promote --run-id <id> | --from-sweep <parent run id | sweep name>
        --name srgan --holdout <folder | s3://prefix> [--metric psnr_y] [--min-delta 0.05]

Registers the run's generator as a version of `--name` (once: promoting the same run again
finds its version), points alias `candidate` at it, scores candidate and current `champion`
on the holdout images (pipeline.scoring), and moves `champion` only when the candidate is
better by `--min-delta`. With no champion yet, the candidate must beat bicubic by the same
margin. The decision and both figures are printed and kept as tags on the version. Exit
code 0: promoted (or already champion); 3: not promoted; 2: an error. Afterwards
`models:/<name>@champion` works wherever the project takes a model reference.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from mlflow.exceptions import MlflowException

from pipeline import cli, tracking
from pipeline.errors import UserError
from pipeline.models import load_upscaler
from pipeline.scoring import evaluate_images, iter_images, list_images

METRICS = ("psnr_y", "ssim_y", "psnr", "ssim")  # higher is better for all of them
CANDIDATE, CHAMPION = "candidate", "champion"
EXIT_NOT_PROMOTED = 3
EXAMPLES = [
    "python -m pipeline.promote --from-sweep srgan-loss-weights --name srgan --holdout s3://bucket/holdout/",
    "python -m pipeline.promote --run-id <training run id> --name srgan --holdout data/holdout --metric psnr_y --min-delta 0.05",
]


class PromotionError(UserError):
    """Nothing promotable: a run without a model, a sweep without a finished trial, ..."""


@dataclass
class Decision:
    promoted: bool
    version: str
    candidate_value: float
    baseline_value: float
    baseline: str  # "v3" or "bicubic"
    message: str


def sweep_best_run(tracking_uri: str, ref: str) -> str:
    """The best finished trial of a sweep, named by its parent run id or its sweep name."""
    tracking.check_reachable(tracking_uri, must_exist=True)
    client = tracking.client(tracking_uri)
    try:
        parent = client.get_run(ref)
    except Exception:
        experiments = [e.experiment_id for e in client.search_experiments()]
        found = client.search_runs(experiments, filter_string=f"tags.`{tracking.SWEEP_TAG}` = '{ref}' and tags.`{tracking.BEST_RUN_TAG}` != ''", order_by=["attributes.start_time DESC"], max_results=50)
        parents = [r for r in found if tracking.PARENT_TAG not in r.data.tags]
        if not parents:
            raise PromotionError(f"--from-sweep {ref!r}: no sweep parent run with that id or sweep name (or it has no finished trial)")
        parent = parents[0]
    best = parent.data.tags.get(tracking.BEST_RUN_TAG)
    if not best:
        raise PromotionError(f"sweep run {parent.info.run_id} records no best trial (no trial finished); nothing to promote")
    return best


def registered_version(client, name: str, run_id: str) -> str | None:
    """The registry version of `run_id`'s generator under `name`, if promotion registered it."""
    existing = client.search_model_versions(f"name = '{name}' and tags.`{tracking.SOURCE_TAG}` = '{run_id}'")
    return str(existing[0].version) if existing else None


def run_model(client, run_id: str) -> str:
    """The URI of the generator model a training run logged."""
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise PromotionError(f"run {run_id} not found in the tracking store") from exc
    model_uri = run.data.tags.get(tracking.MODEL_TAG)
    if not model_uri:
        raise PromotionError(f"run {run_id} logged no generator model (it did not finish, or mlflow.log_model was off)")
    return model_uri


def _alias_version(client, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):  # no such model or alias
            return None
        raise


def score(ref: str, holdout: list, metric: str, tracking_uri: str) -> tuple[float, float, int]:
    """(model's metric, bicubic's metric, images) on the holdout files."""
    upscaler = load_upscaler(ref, tracking_uri=tracking_uri)
    report = evaluate_images(upscaler, iter_images(holdout), dataset="holdout").to_dict()
    if report[metric] is None:
        raise PromotionError(f"--metric {metric} is undefined on the holdout (no 1- or 3-band images); use psnr or ssim")
    return report[metric], report["bicubic"][metric], len(report["images"])


def promote(name: str, run_id: str, holdout: str, metric: str, min_delta: float, tracking_uri: str) -> Decision:
    """Register `run_id`'s generator and move `champion` to it if it passes the gate. The
    candidate is scored before anything is written, so a holdout that cannot be scored
    (unreadable, too small, wrong bands) changes nothing in the registry."""
    if metric not in METRICS:
        raise PromotionError(f"--metric {metric}: use one of {', '.join(METRICS)}")
    files = list_images(holdout)
    tracking.check_reachable(tracking_uri, must_exist=True)
    client = tracking.client(tracking_uri)
    version = registered_version(client, name, run_id)
    champion = _alias_version(client, name, CHAMPION)
    if version is not None and version == champion:
        client.set_registered_model_alias(name, CANDIDATE, version)
        print(f"already registered: {name} v{version} from run {run_id}; alias {CANDIDATE} -> v{version}", flush=True)
        return Decision(True, version, float("nan"), float("nan"), f"v{version}", f"{name} v{version} is already the {CHAMPION}; nothing to do")

    candidate = f"models:/{name}/{version}" if version else run_model(client, run_id)
    cand_value, bicubic_value, images = score(candidate, files, metric, tracking_uri)
    created = version is None
    if created:
        version = tracking.register_version(tracking_uri, name, candidate, run_id, {tracking.SOURCE_TAG: run_id})
    client.set_registered_model_alias(name, CANDIDATE, version)
    print(f"{'registered' if created else 'already registered'}: {name} v{version} from run {run_id}; alias {CANDIDATE} -> v{version}", flush=True)

    if champion is None:
        baseline, base_value = "bicubic", bicubic_value
    else:
        baseline, base_value = f"v{champion}", score(f"models:/{name}/{champion}", files, metric, tracking_uri)[0]
    margin = cand_value - base_value
    promoted = margin >= min_delta
    figures = f"{metric} on {holdout} ({images} images): candidate v{version} {cand_value:.4f}, {baseline} {base_value:.4f}"
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
        message = f"promoted: {figures}; better by {margin:.4f} >= {min_delta}; alias {CHAMPION} -> v{version}"
    elif champion is None:
        message = f"refused: {figures}; no {CHAMPION} yet and the candidate does not beat bicubic by {min_delta} (margin {margin:.4f})"
    else:
        message = f"not promoted: {figures}; margin {margin:.4f} < {min_delta}; {CHAMPION} stays {baseline}"
    for key, value in {
        "decision": "promoted" if promoted else ("refused" if champion is None else "kept_champion"),
        "metric": metric,
        "holdout": holdout,
        "candidate_value": f"{cand_value:.6f}",
        "compared_with": baseline,
        "compared_value": f"{base_value:.6f}",
        "min_delta": str(min_delta),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }.items():
        client.set_model_version_tag(name, version, tracking.PROMOTE_PREFIX + key, value)
    return Decision(promoted, version, cand_value, base_value, baseline, message)


def build_parser() -> cli.Parser:
    p = cli.Parser("python -m pipeline.promote", "Register a trained generator and make it the champion if it passes the holdout gate.", EXAMPLES)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-id", help="the training run whose generator to promote (this or --from-sweep)")
    source.add_argument("--from-sweep", help="a sweep's parent run id or sweep name: promote its best finished trial (this or --run-id)")
    p.add_argument("--name", default="srgan", help="registered model name")
    p.add_argument("--holdout", required=True, help="HR images to judge with: a local folder or s3:// prefix")
    p.add_argument("--metric", default="psnr_y", choices=METRICS, help="what 'better' means")
    p.add_argument("--min-delta", type=float, default=0.05, help="required improvement (dB for PSNR)")
    p.add_argument("--tracking-uri", help="MLflow tracking and registry URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    return p


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tracking_uri = tracking.resolve_tracking_uri(args.tracking_uri)
    run_id = args.run_id or sweep_best_run(tracking_uri, args.from_sweep)
    decision = promote(args.name, run_id, args.holdout, args.metric, args.min_delta, tracking_uri)
    print(decision.message, flush=True)
    return 0 if decision.promoted else EXIT_NOT_PROMOTED


if __name__ == "__main__":
    sys.exit(main())
