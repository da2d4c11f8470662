"""Ray Tune sweep over the SRGAN loss weights; every trial is a full training run.

    python -m pipeline.tune --config configs/tune_loss_weights.yaml [--set num_samples=4] [--train-set train.gan.init_from=runs:/<id>]

Trials run `pipeline.train_driver.run_training` (a Ray Train TorchTrainer, inside a Tune function
with its own small CPU reservation; the trainer reserves its workers) and stream their
validation metrics to Tune, where ASHA stops the weak ones early. MLflow gets a parent run
for the sweep and a child run per trial; at the end the parent run holds results.csv /
results.parquet and perception_distortion.png (NIQE against PSNR, the Pareto front
marked, bicubic as a star). Re-running the same command after an interruption restores the Tune
experiment: finished trials stay finished, unfinished ones continue from their checkpoints.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

from pipeline import cli, tracking
from pipeline.cluster import ensure_ray
from pipeline.config import apply_overrides, flatten, parse_config
from pipeline.io import storage
from pipeline.tracking.run_logger import RunLogger
from pipeline.training.driver import SNAPSHOT, run_training
from pipeline.training.sweep import SCORE, SweepConfig, load_sweep

DISTORTION, PERCEPTION = "val/psnr", "val/niqe"
REPORTED = (
    "val/psnr",
    "val/ssim",
    "val/niqe",
    "val/lpips",
    "val/hf_ratio",
    "val/hf_error",
    "val/psnr_bicubic",
    "val/niqe_bicubic",
    "val/lpips_bicubic",
    "val/hf_ratio_bicubic",
)
EXAMPLES = [
    "python -m pipeline.tune --config configs/tune_loss_weights.yaml --train-set train.gan.init_from=runs:/<pretraining run id>",
    "python -m pipeline.tune --config configs/quickstart_tune.yaml --set num_samples=4",
]


def score(metrics: dict, weights: dict[str, float]) -> float | None:
    """sum(weight * metric); None until every metric it needs has been reported."""
    values = [metrics.get(k) for k in weights]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return float(sum(w * v for w, v in zip(weights.values(), values)))


def _scored_report_callback(weights: dict[str, float] | None):
    """Ray Train -> Tune reporting (TuneReportCallback), with the sweep's score added."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class ScoredTuneReport(TuneReportCallback):
        def after_report(self, run_context, metrics, checkpoint):
            if weights:
                first = dict(metrics[0])
                value = score(first, weights)
                if value is not None:
                    first[SCORE] = value
                metrics = [first, *metrics[1:]]
            super().after_report(run_context, metrics, checkpoint)

    return ScoredTuneReport()


def _search_space(sweep: SweepConfig) -> dict:
    from ray import tune

    space = {}
    for key, dist in sweep.search.items():
        if dist.loguniform is not None:
            space[key] = tune.loguniform(*dist.loguniform)
        elif dist.uniform is not None:
            space[key] = tune.uniform(*dist.uniform)
        else:
            space[key] = tune.choice(dist.choice)
    return space


def trial_config(base: dict, sampled: dict, sweep: SweepConfig, trial_id: str, sweep_uri: str):
    """The training config of one trial: base + sampled values, its own run name and folder."""
    import yaml

    tree = apply_overrides(copy.deepcopy(base), [f"{k}={yaml.safe_dump(v).strip()}" for k, v in sampled.items()])
    tree.setdefault("run", {})
    tree["run"]["name"] = f"{sweep.name}-{trial_id}"
    tree["run"]["storage_path"] = storage.join(sweep_uri, "trials")
    tree["mlflow"] = {**tree.get("mlflow", {}), **sweep.mlflow.model_dump(exclude_none=True)}
    return parse_config(tree)


def run_trial(sampled: dict, sweep: dict, base: dict, sweep_uri: str, parent_run_id: str) -> None:
    """The Tune function: one full training run with the sampled weights."""
    from ray import tune

    sweep_cfg = SweepConfig.model_validate(sweep)
    trial_id = tune.get_context().get_trial_id()
    cfg = trial_config(base, sampled, sweep_cfg, trial_id, sweep_uri)
    # After a restore, an unfinished trial continues its own training run.
    resume = storage.exists(storage.join(storage.join(sweep_uri, "trials"), cfg.run.name, SNAPSHOT))
    tags = {tracking.PARENT_TAG: parent_run_id, tracking.SWEEP_TAG: sweep_cfg.name, tracking.TRIAL_TAG: trial_id}
    run_training(cfg, resume=resume, callbacks=[_scored_report_callback(sweep_cfg.objective.score)], mlflow_tags=tags)


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (distortion score to maximise, perception error to minimise) pairs: is each point
    on the front (no other point at least as good on both and better on one)?"""
    on = []
    for i, (d, p) in enumerate(points):
        dominated = any((d2 >= d and p2 <= p) and (d2 > d or p2 < p) for j, (d2, p2) in enumerate(points) if j != i)
        on.append(not dominated)
    return on


def results_table(results, sweep: SweepConfig, child_runs: dict[str, str], total_steps: int):
    """One row per trial: sampled values, last reported metrics, status, MLflow run."""
    import pandas as pd

    rows = []
    for r in results:
        m = dict(r.metrics or {})
        trial_id = m.get("trial_id", "")
        step = m.get("step")
        status = "error" if r.error else ("finished" if step == total_steps else "stopped early")
        row = {"trial_id": trial_id, "mlflow_run_id": child_runs.get(trial_id), "status": status, "step": step}
        row.update({k: r.config.get(k) for k in sweep.search})
        for key in (*REPORTED, SCORE):
            row[key] = m.get(key)
        rows.append(row)
    table = pd.DataFrame(rows)
    objective = sweep.objective.metric
    if objective in table and not table.empty:
        table = table.sort_values(objective, ascending=sweep.objective.mode == "min", na_position="last").reset_index(
            drop=True
        )
    valid = table[[DISTORTION, PERCEPTION]].notna().all(axis=1) if not table.empty else []
    table["pareto"] = False
    if len(table) and valid.any():
        front = pareto_front(list(zip(table.loc[valid, DISTORTION], table.loc[valid, PERCEPTION])))
        table.loc[valid[valid].index, "pareto"] = front
    return table


def perception_distortion_plot(table, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    data = table.dropna(subset=[DISTORTION, PERCEPTION])
    front = data[data["pareto"]].sort_values(DISTORTION)
    others = data[~data["pareto"]]
    ax.scatter(others[DISTORTION], others[PERCEPTION], c="tab:gray", label="trial")
    ax.scatter(front[DISTORTION], front[PERCEPTION], c="tab:red", label="Pareto front", zorder=3)
    ax.plot(front[DISTORTION], front[PERCEPTION], c="tab:red", lw=1, zorder=2)
    if data[["val/psnr_bicubic", "val/niqe_bicubic"]].notna().all(axis=1).any():
        b = data.dropna(subset=["val/psnr_bicubic", "val/niqe_bicubic"]).iloc[0]
        ax.scatter([b["val/psnr_bicubic"]], [b["val/niqe_bicubic"]], marker="*", s=160, c="tab:blue", label="bicubic")
    if data.empty:
        ax.text(
            0.5,
            0.5,
            "no trial reported NIQE\n(validation images need at least two 96 x 96 blocks after the border)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    for _, row in data.iterrows():
        ax.annotate(
            str(row["trial_id"]),
            (row[DISTORTION], row[PERCEPTION]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
        )
    ax.set_xlabel("distortion: validation PSNR (dB, higher is better)")
    ax.set_ylabel("perception: NIQE (lower is more natural)")
    ax.set_title("SRGAN loss-weight sweep: perception vs distortion")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def run_sweep(sweep: SweepConfig, base: dict) -> dict:
    """Run (or resume) the sweep; returns a summary dict."""
    import tempfile

    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    storage_uri = storage.local_or_uri(sweep.storage_path)
    storage.check_destination(storage_uri, "storage_path")
    tracking_uri = tracking.resolve_tracking_uri(sweep.mlflow.tracking_uri)
    tracking.check_reachable(tracking_uri)
    sweep_uri = storage.join(storage_uri, sweep.name)
    fs, storage_path = storage.filesystem(storage_uri) if storage.is_s3(storage_uri) else (None, storage_uri)
    if fs is None:
        Path(storage_uri).mkdir(parents=True, exist_ok=True)
    # Trials run in their own working directories: hand them the resolved URI, not a default
    # (a relative sqlite path) they would resolve somewhere else.
    sweep = sweep.model_copy(update={"mlflow": sweep.mlflow.model_copy(update={"tracking_uri": tracking_uri})})
    experiment_id = tracking.ensure_experiment(tracking_uri, sweep.mlflow.experiment, sweep.mlflow.artifact_location)
    params = {f"sweep.{k}": v for k, v in flatten(sweep).items()}
    parent_tags = {
        tracking.SWEEP_TAG: sweep.name,
        tracking.OBJECTIVE_TAG: sweep.objective.metric,
        tracking.OBJECTIVE_MODE_TAG: sweep.objective.mode,
    }
    if sweep.objective.score:
        parent_tags[tracking.OBJECTIVE_SCORE_TAG] = json.dumps(sweep.objective.score)
    parent_id = tracking.start_run(tracking_uri, experiment_id, sweep.name, sweep_uri, params, parent_tags)

    total_steps = parse_config(copy.deepcopy(base)).total_steps
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial, sweep=sweep.model_dump(mode="json"), base=base, sweep_uri=sweep_uri, parent_run_id=parent_id
        ),
        {"CPU": sweep.trial_cpus},
    )
    ensure_ray()
    experiment_path = storage.join(storage_path if fs else storage_uri, sweep.name)
    if tune.Tuner.can_restore(experiment_path, storage_filesystem=fs):
        print(f"restoring sweep {sweep.name} from {sweep_uri} (finished trials are kept)", flush=True)
        tuner = tune.Tuner.restore(
            experiment_path, trainable, resume_unfinished=True, resume_errored=True, storage_filesystem=fs
        )
    else:
        scheduler = None
        if sweep.scheduler.type == "asha":
            # max_t beyond the last step: ASHA stops a trial that reaches max_t, and a trial
            # reporting its final step still has its model to log to MLflow.
            scheduler = ASHAScheduler(
                time_attr="step",
                max_t=total_steps + 1,
                grace_period=sweep.scheduler.grace_period,
                reduction_factor=sweep.scheduler.reduction_factor,
            )
        tuner = tune.Tuner(
            trainable,
            param_space=_search_space(sweep),
            tune_config=tune.TuneConfig(
                metric=sweep.objective.metric,
                mode=sweep.objective.mode,
                num_samples=sweep.num_samples,
                max_concurrent_trials=sweep.max_concurrent_trials,
                scheduler=scheduler,
                # Our own generator (for a seeded search) must carry the concurrency limit itself.
                search_alg=BasicVariantGenerator(random_state=sweep.seed, max_concurrent=sweep.max_concurrent_trials),
            ),
            run_config=tune.RunConfig(name=sweep.name, storage_path=storage_path, storage_filesystem=fs),
        )
    results = tuner.fit()

    client = tracking.client(tracking_uri)
    # After Ctrl-C Tune marks every trial terminated in memory but saves the unfinished ones
    # as pending/running: the saved state says whether the sweep is complete.
    saved = tune.ExperimentAnalysis(experiment_path, storage_filesystem=fs)
    done = sum(t.status in ("TERMINATED", "ERROR") for t in saved.trials)
    if done < len(saved.trials):
        # Tune saved its state; the same command continues.
        for child in client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{tracking.PARENT_TAG}` = '{parent_id}' and attributes.status = 'RUNNING'",
        ):
            client.set_terminated(child.info.run_id, "KILLED")
        client.set_terminated(parent_id, "KILLED")
        print(
            f"sweep {sweep.name} interrupted with {done} of {len(saved.trials)} trials done; "
            "re-run the same command to continue it",
            file=sys.stderr,
            flush=True,
        )
        return {"sweep": sweep.name, "parent_run_id": parent_id, "interrupted": True, "trials_done": done}

    children = client.search_runs([experiment_id], filter_string=f"tags.`{tracking.PARENT_TAG}` = '{parent_id}'")
    child_runs = {c.data.tags.get(tracking.TRIAL_TAG): c.info.run_id for c in children}
    table = results_table(results, sweep, child_runs, total_steps)
    # Trials ASHA stopped or that failed did not finish their MLflow run: it is still RUNNING, or
    # FAILED when the stop reached the trainer as an exception. Say what happened.
    for _, row in table.iterrows():
        run_id = row["mlflow_run_id"]
        if run_id and row["status"] != "finished" and client.get_run(run_id).info.status != "FINISHED":
            client.set_tag(run_id, tracking.STOPPED_TAG, "scheduler" if row["status"] == "stopped early" else "error")
            client.set_terminated(run_id, "KILLED" if row["status"] == "stopped early" else "FAILED")
    with tempfile.TemporaryDirectory() as tmp:
        csv, parquet, png = (
            Path(tmp) / "results.csv",
            Path(tmp) / "results.parquet",
            Path(tmp) / "perception_distortion.png",
        )
        table.to_csv(csv, index=False)
        table.to_parquet(parquet, index=False)
        perception_distortion_plot(table, png)
        for f in (csv, parquet, png):
            client.log_artifact(parent_id, str(f))
    finished = table[table["status"] == "finished"]
    best = finished.iloc[0] if len(finished) else None
    if best is not None:
        client.set_tag(parent_id, tracking.BEST_RUN_TAG, best["mlflow_run_id"])
        client.set_tag(parent_id, tracking.BEST_TRIAL_TAG, best["trial_id"])
        if best.get(sweep.objective.metric) is not None:
            RunLogger(tracking_uri, parent_id).metrics(
                {f"best/{sweep.objective.metric}": best[sweep.objective.metric]}, 0
            )
    client.set_terminated(parent_id, "FINISHED")
    _print_table(table, sweep)
    summary = {
        "sweep": sweep.name,
        "parent_run_id": parent_id,
        "trials": len(table),
        "finished": int(len(finished)),
        "best_run_id": None if best is None else best["mlflow_run_id"],
        "tracking_uri": tracking.display_uri(tracking_uri),
    }
    print(f"parent MLflow run {parent_id}: results.csv, results.parquet, perception_distortion.png", flush=True)
    if browse := tracking.browse_command(tracking_uri):
        print(f"browse: {browse}  (experiment '{sweep.mlflow.experiment}', run '{sweep.name}')", flush=True)
    return summary


def _print_table(table, sweep: SweepConfig) -> None:
    keys = list(sweep.search)
    short = {k: k.split(".")[-1] for k in keys}
    header = (
        f"{'trial':<14} {'status':<14} "
        + " ".join(f"{short[k]:>11}" for k in keys)
        + f" {'PSNR':>7} {'SSIM':>7} {'NIQE':>6} {'LPIPS':>6} {'HF':>6}"
    )
    if sweep.objective.metric == SCORE:
        header += f" {'score':>8}"
    print(header + "  pareto", flush=True)

    def fmt(v, spec):
        return f"{v:{spec}}" if isinstance(v, (int, float)) and v == v else "-"

    for _, r in table.iterrows():
        line = f"{str(r['trial_id']):<14} {r['status']:<14} " + " ".join(f"{fmt(r[k], '11.4g'):>11}" for k in keys)
        line += f" {fmt(r['val/psnr'], '7.2f'):>7} {fmt(r['val/ssim'], '7.4f'):>7} {fmt(r['val/niqe'], '6.2f'):>6} {fmt(r['val/lpips'], '6.3f'):>6} {fmt(r['val/hf_ratio'], '6.2f'):>6}"
        if sweep.objective.metric == SCORE:
            line += f" {fmt(r['score'], '8.3f'):>8}"
        print(line + ("  *" if r["pareto"] else ""), flush=True)


def build_parser() -> cli.Parser:
    p = cli.Parser(
        "python -m pipeline.tune", "Sweep SRGAN loss weights with Ray Tune (each trial a full training run).", EXAMPLES
    )
    p.add_argument("--config", required=True, help="sweep config (configs/tune_loss_weights.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a sweep key, e.g. num_samples=4 (repeatable)",
    )
    p.add_argument(
        "--train-set",
        dest="train_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a training key for every trial (repeatable)",
    )
    return p


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with cli.naming_flags(parser):
        sweep, base = load_sweep(args.config, args.overrides, args.train_overrides)
        summary = run_sweep(sweep, base)
    print(json.dumps(summary), flush=True)
    return cli.EXIT_INTERRUPTED if summary.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
