"""Promote a trained generator in the MLflow model registry, behind a quality gate.

    python -m pipeline.promote --run-id <id> | --from-sweep <parent run id | sweep name>
        --name srgan --holdout <folder | s3://prefix> [--metric psnr_y] [--min-delta 0.05]

Registers the run's generator as a version of `--name` (once: promoting the same run again
finds its version), points alias `candidate` at it, scores candidate and current `champion`
on the holdout images with the evaluation code of `pipeline.evaluate`, and moves `champion`
only when the candidate is better by `--min-delta`. With no champion yet, the candidate must
beat bicubic by the same margin. The decision and both figures are printed and kept as tags
on the version. Exit code 0: promoted (or already champion); 3: not promoted; 2: an error.
Afterwards `models:/<name>@champion` works wherever the project takes a model reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from pipeline import storage, tracking
from pipeline.evaluate import evaluate_images, iter_images
from pipeline.models import ModelRefError, load_upscaler

METRICS = ("psnr_y", "ssim_y", "psnr", "ssim")  # higher is better for all of them
SOURCE_TAG = "srgan.source_run_id"
CANDIDATE, CHAMPION = "candidate", "champion"
EXIT_NOT_PROMOTED = 3


class PromotionError(ValueError):
    """Nothing promotable: a run without a model, a sweep without a finished trial, ..."""


@dataclass
class Decision:
    promoted: bool
    version: str
    candidate_value: float
    baseline_value: float
    baseline: str  # "v3" or "bicubic"
    message: str


def sweep_best_run(client, ref: str) -> str:
    """The best finished trial of a sweep, named by its parent run id or its sweep name."""
    from pipeline.tune import SWEEP_TAG

    try:
        parent = client.get_run(ref)
    except Exception:
        experiments = [e.experiment_id for e in client.search_experiments()]
        found = client.search_runs(experiments, filter_string=f"tags.`{SWEEP_TAG}` = '{ref}' and tags.`srgan.best_run_id` != ''", order_by=["attributes.start_time DESC"], max_results=50)
        parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
        if not parents:
            raise PromotionError(f"--from-sweep {ref!r}: no sweep parent run with that id or sweep name (or it has no finished trial)")
        parent = parents[0]
    best = parent.data.tags.get("srgan.best_run_id")
    if not best:
        raise PromotionError(f"sweep run {parent.info.run_id} records no best trial (no trial finished); nothing to promote")
    return best


def register(client, name: str, run_id: str) -> tuple[str, bool]:
    """(version, created): the registry version of `run_id`'s generator, registering it once."""
    import mlflow

    existing = client.search_model_versions(f"name = '{name}' and tags.`{SOURCE_TAG}` = '{run_id}'")
    if existing:
        return str(existing[0].version), False
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        raise PromotionError(f"run {run_id} not found in the tracking store") from exc
    model_uri = run.data.tags.get(tracking.MODEL_TAG)
    if not model_uri:
        raise PromotionError(f"run {run_id} logged no generator model (it did not finish, or mlflow.log_model was off)")
    version = mlflow.register_model(model_uri, name, tags={SOURCE_TAG: run_id}, await_registration_for=60)
    return str(version.version), True


def _alias_version(client, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception:
        return None


def score(ref: str, holdout: str, metric: str, tracking_uri: str) -> tuple[float, float, int]:
    """(model's metric, bicubic's metric, images) on the holdout set."""
    upscaler = load_upscaler(ref, tracking_uri=tracking_uri)
    report = evaluate_images(upscaler, iter_images(holdout), dataset=holdout).to_dict()
    if report[metric] is None:
        raise PromotionError(f"--metric {metric} is undefined on {holdout} (no 1- or 3-band images); use psnr or ssim")
    return report[metric], report["bicubic"][metric], len(report["images"])


def promote(name: str, run_id: str, holdout: str, metric: str, min_delta: float, tracking_uri: str) -> Decision:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = tracking.client(tracking_uri)
    version, created = register(client, name, run_id)
    client.set_registered_model_alias(name, CANDIDATE, version)
    print(f"{'registered' if created else 'already registered'}: {name} v{version} from run {run_id}; alias {CANDIDATE} -> v{version}", flush=True)

    champion = _alias_version(client, name, CHAMPION)
    if champion == version:
        return Decision(True, version, float("nan"), float("nan"), f"v{version}", f"{name} v{version} is already the {CHAMPION}; nothing to do")

    cand_value, bicubic_value, images = score(f"models:/{name}/{version}", holdout, metric, tracking_uri)
    if champion is None:
        baseline, base_value = "bicubic", bicubic_value
    else:
        baseline, base_value = f"v{champion}", score(f"models:/{name}/{champion}", holdout, metric, tracking_uri)[0]
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
        "promote.decision": "promoted" if promoted else ("refused" if champion is None else "kept_champion"),
        "promote.metric": metric,
        "promote.holdout": holdout,
        "promote.candidate_value": f"{cand_value:.6f}",
        "promote.compared_with": baseline,
        "promote.compared_value": f"{base_value:.6f}",
        "promote.min_delta": str(min_delta),
        "promote.time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }.items():
        client.set_model_version_tag(name, version, key, value)
    return Decision(promoted, version, cand_value, base_value, baseline, message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.promote", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-id", help="the training run whose generator to promote")
    source.add_argument("--from-sweep", help="a sweep's parent run id or sweep name: promote its best finished trial")
    parser.add_argument("--name", default="srgan", help="registered model name")
    parser.add_argument("--holdout", required=True, help="HR images to judge with: a local folder or s3:// prefix")
    parser.add_argument("--metric", default="psnr_y", choices=METRICS)
    parser.add_argument("--min-delta", type=float, default=0.05, help="required improvement (dB for PSNR)")
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    args = parser.parse_args(argv)
    tracking_uri = tracking.resolve_tracking_uri(args.tracking_uri)
    try:
        run_id = args.run_id or sweep_best_run(tracking.client(tracking_uri), args.from_sweep)
        decision = promote(args.name, run_id, args.holdout, args.metric, args.min_delta, tracking_uri)
    except (PromotionError, ModelRefError, storage.StorageError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(decision.message, flush=True)
    return 0 if decision.promoted else EXIT_NOT_PROMOTED


if __name__ == "__main__":
    sys.exit(main())
