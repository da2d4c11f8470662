"""Promote a trained generator in the MLflow model registry, behind a quality gate.

    python -m pipeline.promote --run-id <id> | --from-sweep <parent run id | sweep name>
        --name srgan --holdout <folder | s3://prefix> [--criterion auto|distortion|perceptual]

Registers the run's generator as a version of `--name` (once: promoting the same run again
finds its version), points alias `candidate` at it, scores candidate and current `champion`
(bicubic when there is none) on the holdout images (pipeline.scoring), and moves `champion`
only when the candidate passes the gate's criterion:
  distortion   better `--metric` (PSNR/SSIM) by `--min-delta`: for PSNR-oriented generators;
  perceptual   for GAN generators, against the champion (or bicubic) and against the
               strongest no-learning baseline (bicubic + unsharp mask or faint noise, the
               best on this holdout by NIQE): NIQE (averaged over shifted block grids) lower
               and LPIPS lower where its weights are found, each by a paired bootstrap over
               images at `--confidence`; GMSD not significantly higher; PSNR at most
               `--psnr-floor` dB below the champion's (or bicubic's). The holdout must hold
               `--min-niqe-blocks` NIQE blocks;
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
from pipeline.models.reference import Upscaler, load_upscaler
from pipeline.scoring.perceptual import Contender, check_blocks, paired, score_contenders, score_model, strongest
from pipeline.scoring.protocol import evaluate_images, iter_images, list_images, lpips_model, say_lpips_skipped
from srgan.niqe import GRID_OFFSETS

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
    confidence: float = 0.95  # perceptual: of the paired comparisons over images ...
    min_blocks: int = 36  # ... on a holdout of at least this many NIQE blocks (NIQE fits 36 features) ...
    psnr_floor: float = 2.0  # ... and PSNR at most this many dB below the baseline's
    lpips_weights: str | None = "torchvision"

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise PromotionError(
                f"`criterion` {self.criterion!r} is not one of {', '.join(CRITERIA)}", param="criterion"
            )
        if self.metric not in METRICS:
            raise PromotionError(f"`metric` {self.metric!r} is not one of {', '.join(METRICS)}", param="metric")
        if not 0.5 <= self.confidence < 1:
            raise PromotionError(f"`confidence` {self.confidence} must be in [0.5, 1)", param="confidence")
        if self.min_blocks < 1:
            raise PromotionError(f"`min_niqe_blocks` {self.min_blocks} must be at least 1", param="min_niqe_blocks")

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
    """(passes, why, figures) under the distortion criterion, for candidate and baseline means
    (EvalReport.to_dict() shapes). The perceptual criterion is `judge_perceptual`."""
    if criterion != "distortion":
        raise ValueError(f"judge() decides the distortion criterion; use judge_perceptual for {criterion!r}")
    psnr_key = "psnr_y" if cand.get("psnr_y") is not None else "psnr"
    figures = {
        f"{who}_{k}": r.get(k)
        for who, r in (("candidate", cand), ("baseline", base))
        for k in (gate.metric, psnr_key, "niqe", "lpips")
    }
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


def _against(gate: Gate, cand: Contender, other: Contender, floor: bool) -> list[tuple[bool, str]]:
    """The perceptual checks of `cand` against one opponent: (passed, text) each."""
    confidence = f"{gate.confidence:.0%}"
    niqe = paired("niqe", cand, other, gate.confidence)
    checks = [(niqe.better, f"{niqe.text()} (must be lower with {confidence} confidence)")]
    gm = paired("gmsd", cand, other, gate.confidence)
    checks.append((not gm.worse, f"{gm.text()} (must not be higher with {confidence} confidence)"))
    if cand.lpips and other.lpips:
        lp = paired("lpips", cand, other, gate.confidence)
        checks.append((lp.better, f"{lp.text()} (must be lower with {confidence} confidence)"))
    if floor:
        ok = cand.mean("psnr") >= other.mean("psnr") - gate.psnr_floor
        checks.append(
            (
                ok,
                f"PSNR {cand.mean('psnr'):.2f} vs {other.mean('psnr'):.2f} dB (may be at most {gate.psnr_floor} dB lower)",
            )
        )
    return checks


def judge_perceptual(
    gate: Gate, cand: Contender, base: Contender, baselines: list[Contender]
) -> tuple[bool, str, dict]:
    """(passes, why, figures) under the perceptual criterion: `cand` against `base` (the
    champion or bicubic) and against the strongest of the no-learning `baselines`, per image
    on one holdout (pipeline.scoring.perceptual)."""
    check_blocks(cand.blocks, len(cand.images), gate.min_blocks)
    best = strongest(baselines)
    ran = ["NIQE (mean over block grids shifted by " + "/".join(map(str, GRID_OFFSETS)) + " px)", "GMSD"]
    ran += ["LPIPS"] if cand.lpips and base.lpips else []
    head = (
        f"checks: {', '.join(ran)}, PSNR floor; paired bootstrap over {len(cand.images)} images, {cand.blocks} NIQE blocks; "
        f"strongest no-learning baseline: {best.summary()}"
    )
    parts, failed = [], []
    for label, other, floor in ((base.name, base, True), (f"strongest baseline {best.name}", best, False)):
        if other is not base and other.name == base.name:
            continue
        for ok, text in _against(gate, cand, other, floor):
            (parts if ok else failed).append(f"vs {label}: {text}")
    figures = {
        f"{who}_{k}": c.mean(k)
        for who, c in (("candidate", cand), ("baseline", base), ("strongest", best))
        for k in ("niqe", "gmsd", "psnr", "lpips")
    }
    if failed:
        return False, f"{head}; fails " + "; ".join(failed), figures
    return True, f"{head}; " + "; ".join(parts), figures


@dataclass
class Race:
    """A candidate's perceptual verdict against its opponent and the no-learning baselines."""

    promoted: bool
    why: str
    figures: dict
    candidate: Contender
    opponent: Contender
    baselines: list[Contender]

    @property
    def strongest(self) -> Contender:
        return strongest(self.baselines)


def race(gate: Gate, files: list, candidate: Upscaler, opponent: Upscaler | None = None, lpips=None) -> Race:
    """Score `candidate`, the no-learning baselines and `opponent` (bicubic when None) on the
    holdout `files` and judge by the perceptual criterion."""
    cand, baselines = score_contenders(files, candidate, lpips, min_blocks=gate.min_blocks)
    bicubic = next(b for b in baselines if b.name == "bicubic")
    other = bicubic if opponent is None else score_model(files, opponent, lpips)
    ok, why, figures = judge_perceptual(gate, cand, other, baselines)
    return Race(ok, why, figures, cand, other, baselines)


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
    # Before anything is written: refuses a holdout the criterion cannot use (too few NIQE
    # blocks, no Y); the champion is scored on the same images, so it could not use them either.
    if criterion == "perceptual":
        upscaler = load_upscaler(candidate, tracking_uri=tracking_uri)
        cand, baselines = score_contenders(files, upscaler, lpips, min_blocks=gate.min_blocks)
        bicubic = next(b for b in baselines if b.name == "bicubic")
        against_bicubic = judge_perceptual(gate, cand, bicubic, baselines)
    else:
        cand = score(candidate, files, tracking_uri, lpips)
        bicubic = cand["bicubic"]
        against_bicubic = judge(criterion, gate, cand, bicubic)
    say_lpips_skipped(skipped)
    created = version is None
    if created:
        version = tracking.register_version(tracking_uri, name, candidate, run_id, {tracking.SOURCE_TAG: run_id})
    client.set_registered_model_alias(name, CANDIDATE, version)
    print(
        f"{'registered' if created else 'already registered'}: {name} v{version} from run {run_id}; alias {CANDIDATE} -> v{version}",
        flush=True,
    )

    if champion is None:
        (baseline, base), (promoted, why, figures) = ("bicubic", bicubic), against_bicubic
    elif criterion == "perceptual":
        champ = load_upscaler(f"models:/{name}/{champion}", tracking_uri=tracking_uri)
        baseline, base = f"v{champion}", score_model(files, champ, lpips)
        base.name = baseline
        promoted, why, figures = judge_perceptual(gate, cand, base, baselines)
    else:
        baseline, base = f"v{champion}", score(f"models:/{name}/{champion}", files, tracking_uri, lpips)
        promoted, why, figures = judge(criterion, gate, cand, base)
    images = len(cand.images) if criterion == "perceptual" else len(cand["images"])
    head = f"{criterion} criterion on {holdout} ({images} images), candidate v{version} vs {baseline}"
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
        message = f"promoted: {head}: {why}; alias {CHAMPION} -> v{version}"
    elif champion is None:
        message = f"refused: {head}: no {CHAMPION} yet and the candidate does not beat bicubic and every no-learning baseline: {why}"
    else:
        message = f"not promoted: {head}: {why}; {CHAMPION} stays {baseline}"
    if criterion == "perceptual":
        main_key, cand_value, base_value = "niqe", cand.mean("niqe"), base.mean("niqe")
        settings = {
            "confidence": str(gate.confidence),
            "min_niqe_blocks": str(gate.min_blocks),
            "psnr_floor": str(gate.psnr_floor),
            "strongest_baseline": strongest(baselines).name,
        }
    else:
        main_key, cand_value, base_value = gate.metric, cand[gate.metric], base[gate.metric]
        settings = {"min_delta": str(gate.min_delta)}
    tags = {
        "decision": "promoted" if promoted else ("refused" if champion is None else "kept_champion"),
        "criterion": criterion,
        "metric": main_key,
        "holdout": holdout,
        "candidate_value": f"{cand_value:.6f}",
        "compared_with": baseline,
        "compared_value": f"{base_value:.6f}",
        "reason": why[:4000],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **settings,
        **{k: f"{v:.6f}" for k, v in figures.items() if v is not None},
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, tracking.PROMOTE_PREFIX + key, value)
    return Decision(promoted, version, cand_value, base_value, baseline, message, criterion, figures)


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
        "--confidence",
        type=float,
        default=Gate.confidence,
        help="perceptual criterion: confidence of the paired comparisons over holdout images (one-sided bootstrap)",
    )
    p.add_argument(
        "--min-niqe-blocks",
        type=int,
        default=Gate.min_blocks,
        help="perceptual criterion: refuse a holdout with fewer 96 x 96 NIQE blocks than this",
    )
    p.add_argument(
        "--psnr-floor",
        type=float,
        default=Gate.psnr_floor,
        help="perceptual criterion: PSNR may be at most this many dB below the baseline's (the paper's SRGAN is 0.78 dB below bicubic on BSD100: 25.16 vs 25.94)",
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
            args.confidence,
            args.min_niqe_blocks,
            args.psnr_floor,
            None if args.lpips_weights == "none" else args.lpips_weights,
        )
        run_id = args.run_id or sweep_best_run(tracking_uri, args.from_sweep)
        decision = promote(args.name, run_id, args.holdout, gate, tracking_uri)
    print(decision.message, flush=True)
    return 0 if decision.promoted else EXIT_NOT_PROMOTED


if __name__ == "__main__":
    sys.exit(main())
