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

The terminal gets the quickstart's own lines: a banner per step, what each step decided and
where its outputs are. Everything else (Ray's, Ray Train's, Tune's, Ray Data's and MLflow's
logging, the workers' output, each verb's own printout) goes to --log, named at the start.
Runs are seeded (configs/quickstart*.yaml: run.seed, the sweep's seed, no early stopping), so
a re-run into the same --out with an empty MLflow store makes the same decisions (into another
folder the training crops differ: they are seeded by the sample files' paths).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pipeline import cli, cluster, evaluate, promote, tracking, tune
from pipeline.config import apply_overrides, load_config
from pipeline.io import storage
from pipeline.io.samples import write_samples
from pipeline.scoring.protocol import lpips_model
from pipeline.training.driver import TrainOutcome, run_training
from pipeline.training.sweep import SweepConfig, load_sweep
from pipeline.upscale import UpscaleJob, run_upscale

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
LOG_NAME = "quickstart.log"
EXAMPLES = [
    "python -m pipeline.quickstart",
    "python -m pipeline.quickstart --out /tmp/qs --root s3://bucket/quickstart --quick",
]


def banner(log: cli.LogFile, text: str) -> None:
    log.say()
    log.say(f"=== {text} ===")


def _fmt(value, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def training_lines(outcome: TrainOutcome, minutes: float) -> list[str]:
    """What the training step says: steps, time, the last validation against bicubic, the run."""
    m = outcome.metrics
    line = f"trained {m.get('step', '?')} steps in {minutes:.1f} min"
    if "val/psnr" in m:
        line += (
            f"; validation PSNR {_fmt(m['val/psnr'], '.2f')} dB (bicubic {_fmt(m.get('val/psnr_bicubic'), '.2f')}),"
            f" NIQE {_fmt(m.get('val/niqe'), '.2f')} (bicubic {_fmt(m.get('val/niqe_bicubic'), '.2f')})"
        )
    return [line, f"MLflow run {outcome.mlflow_run_id}; checkpoint {outcome.checkpoint}"]


def trial_line(trial: str, sampled: dict, metrics: dict, status: str, objective: str, value, best: bool) -> str:
    """One trial of the sweep as one line: its sampled values, last validation, objective."""
    values = ", ".join(f"{key.rsplit('.', 1)[-1]} {_value(v)}" for key, v in sampled.items())
    return (
        f"{trial}: {values}: PSNR {_fmt(metrics.get('val/psnr'), '.2f')} dB, NIQE {_fmt(metrics.get('val/niqe'), '.2f')},"
        f" {objective} {_fmt(value, '.3f')} ({status.lower()}){'  <- best' if best else ''}"
    )


def _value(text: str) -> str:
    try:
        return f"{float(text):.3g}"
    except (TypeError, ValueError):
        return str(text)


def sweep_lines(tracking_uri: str, parent_run_id: str, sweep: SweepConfig) -> list[str]:
    """A line per trial of the sweep (from its MLflow runs, in trial order)."""
    client = tracking.client(tracking_uri)
    parent = client.get_run(parent_run_id)
    best = parent.data.tags.get(tracking.BEST_RUN_TAG)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{tracking.PARENT_TAG}` = '{parent_run_id}'"
    )
    lines = []
    for run in sorted(children, key=lambda r: r.data.tags.get(tracking.TRIAL_TAG, "")):
        metrics = run.data.metrics
        objective = sweep.objective.metric
        value = tune.score(metrics, sweep.objective.score) if sweep.objective.score else metrics.get(objective)
        sampled = {k: run.data.params.get(k) for k in sweep.search}
        trial = run.data.tags.get(tracking.TRIAL_TAG, run.info.run_id)
        lines.append(trial_line(trial, sampled, metrics, run.info.status, objective, value, run.info.run_id == best))
    return lines


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
        "--log", help=f"file for Ray's, MLflow's and every step's whole output, appended to (default: --out/{LOG_NAME})"
    )
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
        [f"name=quickstart-sweep-{stamp}", f"storage_path={storage.join(root, 'sweeps')}"],
        [f"data.train={photos}", f"data.val={holdout}", *(QUICK_SWEEP if args.quick else [])],
    )
    tracking_uri = tracking.resolve_tracking_uri(cfg.mlflow.tracking_uri)
    tracking.check_reachable(tracking_uri)
    log_path = Path(args.log).resolve() if args.log else out / LOG_NAME
    storage.check_destination(str(log_path.parent), "--log")

    cluster.settings_for_a_log_file()  # before anything starts Ray: its processes inherit them
    import ray

    ours = not ray.is_initialized()  # a Ray this run starts (or joins) it also stops, still inside the log
    with cli.LogFile(log_path) as log:
        log.say(f"quickstart: the whole output (Ray, MLflow, every step) goes to {log_path}; follow it with tail -f")
        log.say(f"MLflow: {tracking.display_uri(tracking_uri)}")
        try:
            return run_flow(args, cfg, sweep, base, out, root, log)
        finally:
            if ours and ray.is_initialized():
                ray.shutdown()


def run_flow(args, cfg, sweep: SweepConfig, base: dict, out: Path, root: str, log: cli.LogFile) -> int:
    """The six steps, each saying in a line or two what it did; returns the exit code."""
    data = storage.join(root, "samples")
    holdout = storage.join(data, "holdout")
    lpips, skipped = lpips_model(cfg.train.lpips_weights)  # said once here, not by every step
    lpips_weights = cfg.train.lpips_weights if lpips is not None else None
    if skipped:
        log.note(f"note: LPIPS is skipped: {skipped}")
    started = time.perf_counter()

    banner(log, "1/6 sample images")
    written = write_samples(out / "samples")
    if storage.is_s3(root):
        upload_folder(out / "samples", data)
    log.say(f"{len(written)} images under {data} (photos/ to train on, holdout/ to judge with, medical/, satellite/)")

    banner(log, "2/6 train: the PSNR phase (local Ray or RAY_ADDRESS, MLflow)")
    log.say(
        f"content loss backbone: {cfg.loss.content_backbone} (the discriminator's own features; no VGG19 download needed)"
    )
    began = time.perf_counter()
    trained = run_training(cfg)
    for line in training_lines(trained, (time.perf_counter() - began) / 60):
        log.say(line)

    banner(log, "3/6 tune: 2 trials over the loss weights, GAN phase from the trained generator")
    swept = tune.run_sweep(sweep, apply_overrides(base, [f"train.gan.init_from=runs:/{trained.mlflow_run_id}"]))
    if swept.get("interrupted"):
        log.say(f"sweep {sweep.name} interrupted; re-run to start again", error=True)
        return cli.EXIT_INTERRUPTED
    for line in sweep_lines(trained.tracking_uri, swept["parent_run_id"], sweep):
        log.say(line)

    banner(
        log,
        f"4/6 promote to {MODEL_NAME}@champion: the PSNR generator (distortion criterion, against bicubic), then the sweep's best GAN (perceptual criterion, against that champion)",
    )
    best = promote.sweep_best_run(trained.tracking_uri, swept["parent_run_id"])
    gate = promote.Gate(lpips_weights=lpips_weights)
    for run_id in (trained.mlflow_run_id, best):  # each judged by the criterion that fits its run (Gate's auto)
        decision = promote.promote(MODEL_NAME, run_id, holdout, gate, trained.tracking_uri)
        log.say(decision.message)
        if not decision.promoted:
            log.say("(the gate kept the current champion; the flow goes on with it)")
    if not tracking.client(trained.tracking_uri).get_registered_model(MODEL_NAME).aliases.get("champion"):
        log.say(f"no {MODEL_NAME}@champion: nothing passed the gate, so nothing to upscale with", error=True)
        return promote.EXIT_NOT_PROMOTED
    champion = f"models:/{MODEL_NAME}@champion"

    banner(
        log,
        f"5/6 upscale {'the held-out, medical and satellite samples' if args.quick else 'every sample'} with {champion} (the batch job)",
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
    log.say(
        f"upscaled {summary.done} image(s), {summary.failed} failed; {summary.mpx_in:.2f} Mpx in, "
        f"{summary.mpx_out:.2f} Mpx out in {summary.seconds:.1f} s"
    )
    for failure in summary.failures[:5]:
        log.say(f"  failed: {failure['key']}: {failure['error']}", error=True)
    if summary.failed:
        log.say(f"{summary.failed} image(s) failed (all of them in the manifest {summary.manifest})", error=True)
        return 1

    banner(log, f"6/6 evaluate {champion} against bicubic on the held-out photographs")
    grid = out / "holdout_grid.png"
    with log.showing():  # the verb's own table
        evaluate.evaluate(
            champion, holdout, grid=grid, tracking_uri=trained.tracking_uri, table=True, lpips_weights=lpips_weights
        )

    banner(log, f"done in {(time.perf_counter() - started) / 60:.1f} min")
    log.say(f"upscaled samples:   {upscaled}  (manifest: {summary.manifest})")
    log.say(f"comparison grid:    {grid}  (LR | bicubic | SR | HR)")
    log.say(
        f"champion:           {champion}  (training run {trained.mlflow_run_id}, sweep run {swept['parent_run_id']})"
    )
    log.say("validation grids:   each MLflow run's artifacts/grids/; the sweep's perception_distortion.png")
    if trained.tracking_uri.startswith("sqlite:"):
        browse = tracking.browse_command(trained.tracking_uri)
        if browse:
            log.say(f"browse the runs:    .venv/bin/{browse}")
    else:
        log.say(f"browse the runs:    {tracking.display_uri(trained.tracking_uri)}")
    log.say(f"the whole output:   {log.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
