"""Promote a trained generator in the MLflow model registry, behind a quality gate.

    python -m pipeline.promote --run-id <id> | --from-sweep <parent run id | sweep name>
        --name srgan --holdout <folder | s3://prefix> [--criterion auto|distortion|perceptual]

Registers the run's generator as a version of `--name` (once: promoting the same run again
finds its version), points alias `candidate` at it, scores candidate and current `champion`
(bicubic when there is none) on the holdout images (pipeline.scoring), and moves `champion`
only when the candidate passes the gate's criterion:
  distortion   better `--metric` (PSNR/SSIM) by `--min-delta`: for PSNR-oriented generators;
  perceptual   NIQE lower by `--niqe-margin` (and LPIPS lower by `--lpips-margin` when its
               weights are found) while PSNR stays within `--psnr-floor` dB of the
               baseline's: for GAN generators, which trade a little PSNR for realism;
  auto         (default) perceptual for runs that trained a GAN phase, distortion otherwise.
The decision and every figure that made it are printed and kept as tags on the version. Exit
code 0: promoted (or already champion); 3: not promoted; 2: an error. Afterwards
`models:/<name>@champion` works wherever the project takes a model reference.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from mlflow.exceptions import MlflowException

from pipeline import cli, tracking
from pipeline.errors import PipelineError
from pipeline.models.reference import load_upscaler
from pipeline.scoring.protocol import evaluate_images, iter_images, list_images, lpips_model, say_lpips_skipped

METRICS = ("psnr_y", "ssim_y", "psnr", "ssim")  # higher is better for all of them
CRITERIA = ("auto", "distortion", "perceptual")
CANDIDATE, CHAMPION = "candidate", "champion"
EXIT_NOT_PROMOTED = 3
EXAMPLES = [
    "python -m pipeline.promote --from-sweep srgan-loss-weights --name srgan --holdout s3://bucket/holdout/",
    "python -m pipeline.promote --run-id <training run id> --name srgan --holdout data/holdout --metric psnr_y --min-delta 0.05",
]


class PromotionError(PipelineError):
    """Nothing promotable: a run without a model, a sweep without a finished trial, ..."""


@dataclass(frozen=True)
class Gate:
    """What 'better' means (see the module docstring); the defaults are the documented ones."""

    criterion: str = "auto"
    metric: str = "psnr_y"  # distortion: the metric and its margin
    min_delta: float = 0.05
    niqe_margin: float = 0.1  # perceptual: NIQE at least this much lower ...
    lpips_margin: float = 0.0  # ... LPIPS at least this much lower (where measured) ...
    psnr_floor: float = 2.0  # ... and PSNR at most this many dB below the baseline's
    lpips_weights: str | None = "torchvision"

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise PromotionError(
                f"`criterion` {self.criterion!r} is not one of {', '.join(CRITERIA)}", param="criterion"
            )
        if self.metric not in METRICS:
            raise PromotionError(f"`metric` {self.metric!r} is not one of {', '.join(METRICS)}", param="metric")

    def resolved(self, phases: str) -> str:
        """The criterion for a run whose PHASES_TAG is `phases` ('pretrain,gan', ...)."""
        if self.criterion != "auto":
            return self.criterion
        return "perceptual" if "gan" in phases.split(",") else "distortion"


@dataclass
class Decision:
    promoted: bool
    version: str
    candidate_value: float
    baseline_value: float
    baseline: str  # "v3" or "bicubic"
    message: str
    criterion: str = "distortion"
    figures: dict | None = None


def judge(criterion: str, gate: Gate, cand: dict, base: dict) -> tuple[bool, str, dict]:
    """(passes, why, figures) for candidate and baseline means (EvalReport.to_dict() shapes)."""
    psnr_key = "psnr_y" if cand.get("psnr_y") is not None else "psnr"
    figures = {
        f"{who}_{k}": r.get(k)
        for who, r in (("candidate", cand), ("baseline", base))
        for k in (gate.metric, psnr_key, "niqe", "lpips")
    }
    if criterion == "distortion":
        if cand[gate.metric] is None:
            raise PromotionError(
                f"`metric` {gate.metric} is undefined on the holdout (no 1- or 3-band images); use psnr or ssim",
                param="metric",
            )
        margin = cand[gate.metric] - base[gate.metric]
        ok = margin >= gate.min_delta
        return (
            ok,
            f"{gate.metric} {cand[gate.metric]:.4f} vs {base[gate.metric]:.4f}: {'better' if ok else 'not better'} by {margin:.4f} ({'>=' if ok else '<'} {gate.min_delta})",
            figures,
        )
    if cand.get("niqe") is None or base.get("niqe") is None:
        raise PromotionError(
            "the perceptual criterion needs NIQE, which is undefined on this holdout (1- or 3-band images of at least 96 x 96 px); use `criterion` distortion or larger holdout images",
            param="criterion",
        )
    checks = [
        (
            cand["niqe"] <= base["niqe"] - gate.niqe_margin,
            f"NIQE {cand['niqe']:.3f} vs {base['niqe']:.3f} (must be lower by {gate.niqe_margin})",
        )
    ]
    if cand.get("lpips") is not None and base.get("lpips") is not None:
        checks.append(
            (
                cand["lpips"] <= base["lpips"] - gate.lpips_margin,
                f"LPIPS {cand['lpips']:.4f} vs {base['lpips']:.4f} (must be lower by {gate.lpips_margin})",
            )
        )
    checks.append(
        (
            cand[psnr_key] >= base[psnr_key] - gate.psnr_floor,
            f"{psnr_key} {cand[psnr_key]:.2f} vs {base[psnr_key]:.2f} dB (may be at most {gate.psnr_floor} dB lower)",
        )
    )
    failed = [text for ok, text in checks if not ok]
    if failed:
        return False, "fails " + "; ".join(failed), figures
    return True, "; ".join(text for _, text in checks), figures


def sweep_best_run(tracking_uri: str, sweep: str) -> str:
    """The best finished trial of a sweep, named by its parent run id or its sweep name."""
    tracking.check_reachable(tracking_uri, must_exist=True)
    client = tracking.client(tracking_uri)
    try:
        parent = client.get_run(sweep)
    except Exception:
        experiments = [e.experiment_id for e in client.search_experiments()]
        found = client.search_runs(
            experiments,
            filter_string=f"tags.`{tracking.SWEEP_TAG}` = '{sweep}' and tags.`{tracking.BEST_RUN_TAG}` != ''",
            order_by=["attributes.start_time DESC"],
            max_results=50,
        )
        parents = [r for r in found if tracking.PARENT_TAG not in r.data.tags]
        if not parents:
            raise PromotionError(
                f"`sweep` {sweep!r}: no sweep parent run with that id or sweep name (or it has no finished trial)",
                param="sweep",
            ) from None
        parent = parents[0]
    best = parent.data.tags.get(tracking.BEST_RUN_TAG)
    if not best:
        raise PromotionError(
            f"sweep run {parent.info.run_id} records no best trial (no trial finished); nothing to promote"
        )
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


def score(ref: str, holdout: list, tracking_uri: str, lpips=None) -> dict:
    """The model's holdout means, with bicubic's under "bicubic" (EvalReport.to_dict())."""
    upscaler = load_upscaler(ref, tracking_uri=tracking_uri)
    return evaluate_images(upscaler, iter_images(holdout, upscaler), dataset="holdout", lpips=lpips).to_dict()


def promote(name: str, run_id: str, holdout: str, gate: Gate, tracking_uri: str) -> Decision:
    """Register `run_id`'s generator and move `champion` to it if it passes the gate. The
    candidate is scored before anything is written, so a holdout that cannot be scored
    (unreadable, too small, wrong bands, no NIQE for a perceptual gate) changes nothing in
    the registry."""
    files = list_images(holdout)
    tracking.check_reachable(tracking_uri, must_exist=True)
    client = tracking.client(tracking_uri)
    version = registered_version(client, name, run_id)
    champion = _alias_version(client, name, CHAMPION)
    if version is not None and version == champion:
        client.set_registered_model_alias(name, CANDIDATE, version)
        print(f"already registered: {name} v{version} from run {run_id}; alias {CANDIDATE} -> v{version}", flush=True)
        return Decision(
            True,
            version,
            float("nan"),
            float("nan"),
            f"v{version}",
            f"{name} v{version} is already the {CHAMPION}; nothing to do",
        )

    candidate = f"models:/{name}/{version}" if version else run_model(client, run_id)
    criterion = gate.resolved(client.get_run(run_id).data.tags.get(tracking.PHASES_TAG, ""))
    lpips, skipped = lpips_model(gate.lpips_weights) if criterion == "perceptual" else (None, "")
    cand = score(candidate, files, tracking_uri, lpips)
    say_lpips_skipped(skipped)
    # Before anything is written: refuses a holdout the criterion cannot use (no NIQE, no Y);
    # the champion is scored on the same images, so it could not use them either.
    against_bicubic = judge(criterion, gate, cand, cand["bicubic"])
    created = version is None
    if created:
        version = tracking.register_version(tracking_uri, name, candidate, run_id, {tracking.SOURCE_TAG: run_id})
    client.set_registered_model_alias(name, CANDIDATE, version)
    print(
        f"{'registered' if created else 'already registered'}: {name} v{version} from run {run_id}; alias {CANDIDATE} -> v{version}",
        flush=True,
    )

    if champion is None:
        (baseline, base), (promoted, why, figures) = ("bicubic", cand["bicubic"]), against_bicubic
    else:
        baseline, base = f"v{champion}", score(f"models:/{name}/{champion}", files, tracking_uri, lpips)
        promoted, why, figures = judge(criterion, gate, cand, base)
    head = f"{criterion} criterion on {holdout} ({len(cand['images'])} images), candidate v{version} vs {baseline}"
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
        message = f"promoted: {head}: {why}; alias {CHAMPION} -> v{version}"
    elif champion is None:
        message = f"refused: {head}: no {CHAMPION} yet and the candidate does not beat bicubic: {why}"
    else:
        message = f"not promoted: {head}: {why}; {CHAMPION} stays {baseline}"
    main_key = gate.metric if criterion == "distortion" else "niqe"
    tags = {
        "decision": "promoted" if promoted else ("refused" if champion is None else "kept_champion"),
        "criterion": criterion,
        "metric": main_key,
        "holdout": holdout,
        "candidate_value": f"{cand[main_key]:.6f}",
        "compared_with": baseline,
        "compared_value": f"{base[main_key]:.6f}",
        "reason": why[:4000],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(
            {"min_delta": str(gate.min_delta)}
            if criterion == "distortion"
            else {
                "niqe_margin": str(gate.niqe_margin),
                "lpips_margin": str(gate.lpips_margin),
                "psnr_floor": str(gate.psnr_floor),
            }
        ),
        **{k: f"{v:.6f}" for k, v in figures.items() if v is not None},
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, tracking.PROMOTE_PREFIX + key, value)
    return Decision(promoted, version, cand[main_key], base[main_key], baseline, message, criterion, figures)


def build_parser() -> cli.Parser:
    p = cli.Parser(
        "python -m pipeline.promote",
        "Register a trained generator and make it the champion if it passes the holdout gate.",
        EXAMPLES,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-id", help="the training run whose generator to promote (this or --from-sweep)")
    source.add_argument(
        "--from-sweep", help="a sweep's parent run id or sweep name: promote its best finished trial (this or --run-id)"
    )
    p.add_argument("--name", default="srgan", help="registered model name")
    p.add_argument("--holdout", required=True, help="HR images to judge with: a local folder or s3:// prefix")
    p.add_argument(
        "--criterion",
        default="auto",
        choices=CRITERIA,
        help="auto: perceptual for runs with a GAN phase, distortion otherwise",
    )
    p.add_argument("--metric", default="psnr_y", choices=METRICS, help="distortion criterion: what 'better' means")
    p.add_argument(
        "--min-delta", type=float, default=0.05, help="distortion criterion: required improvement (dB for PSNR)"
    )
    p.add_argument(
        "--niqe-margin",
        type=float,
        default=Gate.niqe_margin,
        help="perceptual criterion: NIQE must be lower by this much",
    )
    p.add_argument(
        "--lpips-margin",
        type=float,
        default=Gate.lpips_margin,
        help="perceptual criterion: LPIPS (where its weights are found) must be lower by this much",
    )
    p.add_argument(
        "--psnr-floor",
        type=float,
        default=Gate.psnr_floor,
        help="perceptual criterion: PSNR may be at most this many dB below the baseline's (the paper's SRGAN is 1.55 dB below bicubic on BSD100)",
    )
    p.add_argument(
        "--lpips-weights",
        default="torchvision",
        help="LPIPS AlexNet backbone: 'torchvision' (its cache; never downloaded), a local file or s3:// URI, or 'none'",
    )
    p.add_argument(
        "--tracking-uri", help="MLflow tracking and registry URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)"
    )
    return p


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with cli.naming_flags(parser, sweep="--from-sweep"):
        tracking_uri = tracking.resolve_tracking_uri(args.tracking_uri)
        gate = Gate(
            args.criterion,
            args.metric,
            args.min_delta,
            args.niqe_margin,
            args.lpips_margin,
            args.psnr_floor,
            None if args.lpips_weights == "none" else args.lpips_weights,
        )
        run_id = args.run_id or sweep_best_run(tracking_uri, args.from_sweep)
        decision = promote(args.name, run_id, args.holdout, gate, tracking_uri)
    print(decision.message, flush=True)
    return 0 if decision.promoted else EXIT_NOT_PROMOTED


if __name__ == "__main__":
    sys.exit(main())
