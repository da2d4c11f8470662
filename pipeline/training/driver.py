"""The driver of a distributed SRGAN training run: Ray Data in, Ray Train (DDP) around
srgan's steps, MLflow out. `run_training` is what `python -m pipeline.train` and every sweep
trial run.

The driver checks everything it can before any worker starts (config, storage, weights,
tracking server, data), scans the data, opens the MLflow run and hands a `TorchTrainer` the
datasets; each worker runs `pipeline.train_loop.train_loop_per_worker`. A run is a folder
`<run.storage_path>/<run.name>`; re-running with `--resume` and the same name continues it
from its last checkpoint (the step counter and the learning-rate schedule carry on).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from pipeline import tracking
from pipeline.cluster import ensure_ray
from pipeline.config import TrainConfig, flatten
from pipeline.data.batches import ImageSpec, PatchBatches, describe_ranges, train_dataset, val_dataset
from pipeline.data.prepared import open_prepared, scan_images
from pipeline.errors import ConfigError, DataError, ModelRefError, UserError
from pipeline.io import s3, storage
from pipeline.io.redact import redact_uri
from pipeline.models import pyfunc
from pipeline.models.reference import fetch_generator
from pipeline.tracking.run_logger import RunLogger
from pipeline.training.loop import train_loop_per_worker
from pipeline.training.recipe import TRAINABLE, init_reference, load_vgg, needs_vgg
from srgan.degrade import build_degradation
from srgan.generator import GeneratorSpec
from srgan.weights import WeightsError

SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of a run's checkpoints


@dataclass
class TrainOutcome:
    run_name: str
    run_uri: str
    mlflow_run_id: str
    tracking_uri: str
    checkpoint: str | None
    model_uri: str | None
    metrics: dict
    bad_inputs: list


def default_run_name() -> str:
    return time.strftime("srgan-%Y%m%d-%H%M%S")


def resolve_init_generator(ref: str, tracking_uri: str, setting: str = "train.init_from") -> tuple[GeneratorSpec, dict]:
    """(spec, state dict) of the generator `ref` names (any model reference, pipeline.models),
    if the trainer can build its architecture."""
    try:
        generator, _ = fetch_generator(ref, tracking_uri)
    except ModelRefError as exc:
        raise WeightsError(f"{setting}: {exc}") from exc
    spec = generator.spec
    if spec.arch not in TRAINABLE:
        raise ConfigError(
            f"{setting} {redact_uri(ref)}: the trainer builds {', '.join(TRAINABLE)} generators, not {spec.arch}; "
            "an imported model of that architecture can upscale, evaluate and be registered, not be trained here"
        )
    return spec, generator.state_dict()


def start_from(cfg: TrainConfig, tracking_uri: str, resume: bool) -> tuple[TrainConfig, dict | None]:
    """`cfg` with model.generator set to the architecture of the generator the run starts from
    (train.init_from), and that generator's weights (None on resume: the checkpoint has them)."""
    ref = init_reference(cfg)
    if not ref:
        return cfg, None
    setting = "train.init_from" if cfg.train.init_from else "train.gan.init_from"
    spec, state = resolve_init_generator(ref, tracking_uri, setting)
    data = cfg.model_dump(mode="json")
    data["model"]["generator"] = spec.to_dict()
    try:
        started = TrainConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(
            f"{setting}: the checkpoint's generator ({spec.arch} x{spec.scale}) does not fit this config: {where}: {first['msg']}"
        ) from None
    if started.model.generator != cfg.model.generator:
        print(
            f"{setting}: the generator is {spec.arch} x{spec.scale}, {spec.num_blocks} blocks of {spec.num_features} "
            "features, as the checkpoint has it (model.generator's settings are not used)",
            flush=True,
        )
    return started, None if resume else state


def _list_images(uri: str, cfg: TrainConfig, what: str) -> list[storage.StoredFile]:
    files = storage.list_files(uri, cfg.data.extensions)
    if not files:
        raise DataError(f"data.{what}: no images ({', '.join(cfg.data.extensions)}) under {uri}")
    return files


def _run_folder(cfg: TrainConfig, resume: bool) -> tuple[str, str, str]:
    """(run name, run URI, storage URI), refusing what cannot work before anything is written:
    a storage path that cannot take files, an existing run without --resume, --resume of
    nothing."""
    if resume and not cfg.run.name:
        raise ConfigError(
            "`resume` needs run.name: the folder under run.storage_path to continue (e.g. run.name=srgan-20261123-101500)"
        )
    name = cfg.run.name or default_run_name()
    storage_uri = storage.local_or_uri(cfg.run.storage_path)
    storage.check_destination(storage_uri, "run.storage_path")
    run_uri = storage.join(storage_uri, name)
    already = storage.exists(storage.join(run_uri, SNAPSHOT))
    if already and not resume:
        raise ConfigError(
            f"run {name!r} already exists at {run_uri}; pass `resume` to continue it, or set run.name to start a new run"
        )
    if resume and not already:
        raise ConfigError(f"`resume`: no checkpoints of run {name!r} at {run_uri} to continue from")
    return name, run_uri, storage_uri


def _user_error_of(exc: BaseException) -> UserError | None:
    """The user error the workers raised, inside Ray Train's wrapper, when every failure is
    one (a worker-side bad input is reported like a driver-side one; a bug keeps its traceback)."""
    found = []
    for failure in getattr(exc, "worker_failures", {}).values():
        errors = [c for c in (failure, getattr(failure, "cause", None), failure.__cause__) if isinstance(c, UserError)]
        if not errors:
            return None
        found.append(errors[0])
    return found[0] if found else None


def run_training(
    cfg: TrainConfig, resume: bool = False, callbacks: list | None = None, mlflow_tags: dict[str, str] | None = None
) -> TrainOutcome:
    """Everything `python -m pipeline.train` does, callable (pipeline.tune runs it per trial,
    with Tune's report callback and the parent-run tags)."""
    s3.apply_s3_settings(cfg.s3.endpoint_url, cfg.s3.region)
    s3.set_retry_s(cfg.s3.retry_s)
    # Fail before any worker starts or anything is written: storage, weights, tracking, data.
    name, run_uri, storage_uri = _run_folder(cfg, resume)
    if needs_vgg(cfg):
        load_vgg(cfg)
    tracking_uri = tracking.resolve_tracking_uri(cfg.mlflow.tracking_uri)
    tracking.check_reachable(tracking_uri)
    cfg, init_generator = start_from(cfg, tracking_uri, resume)
    # A prepared dataset (python -m pipeline.prepare) lists its files in its manifest.
    prepared = {what: open_prepared(getattr(cfg.data, what), f"data.{what}") for what in ("train", "val")}
    train_files = prepared["train"].files if prepared["train"] else _list_images(cfg.data.train, cfg, "train")
    val_files = (
        (prepared["val"].files if prepared["val"] else _list_images(cfg.data.val, cfg, "val"))[
            : cfg.data.val_max_images
        ]
        if cfg.data.val
        else []
    )

    ensure_ray()
    g = cfg.model.generator
    spec = ImageSpec(channels=g.in_channels, data_range=cfg.data.data_range, min_size=cfg.data.patch_size)
    if not prepared["train"]:
        print(f"scanning {len(train_files)} training images under {redact_uri(cfg.data.train)} ...", flush=True)
    train_scan = scan_images(prepared["train"], train_files, spec, cfg.data.read_cpus, "data.train")
    train_good, bad = train_scan.good, train_scan.bad
    val_spec = ImageSpec(
        channels=g.in_channels, data_range=cfg.data.data_range, min_size=max(g.scale * 4, 11 + 2 * g.scale)
    )
    val_scan = scan_images(prepared["val"], val_files, val_spec, cfg.data.read_cpus, "data.val")
    val_good, val_bad = val_scan.good, val_scan.bad
    range_used, model_range = describe_ranges(train_scan.ranges + val_scan.ranges)
    bad_inputs = [{"split": "train", "key": b.key, "reason": b.reason} for b in bad] + [
        {"split": "val", "key": b.key, "reason": b.reason} for b in val_bad
    ]
    for b in bad_inputs:
        print(f"warning: skipping {b['split']} image {b['key']}: {b['reason']}", file=sys.stderr, flush=True)
    if not train_good:
        raise DataError(
            f"data.train: none of the {len(train_files)} images under {cfg.data.train} is usable (see the warnings above)"
        )
    print(
        f"{len(train_good)} training images, {len(val_good)} validation images, {len(bad_inputs)} skipped; value range: {range_used}",
        flush=True,
    )
    patches = len(train_good) * cfg.data.patches_per_image
    if patches < cfg.train.batch_size:
        raise DataError(
            f"data.train: {len(train_good)} usable image(s) x data.patches_per_image {cfg.data.patches_per_image} = {patches} patches an epoch, "
            f"fewer than one batch (train.batch_size {cfg.train.batch_size}); add images, raise data.patches_per_image or lower train.batch_size"
        )

    experiment_id = tracking.ensure_experiment(tracking_uri, cfg.mlflow.experiment, cfg.mlflow.artifact_location)
    params = {**flatten(cfg), "run.name": name, "data.range_used": range_used}
    run_id = tracking.start_run(
        tracking_uri,
        experiment_id,
        name,
        run_uri,
        params,
        tags={tracking.PHASES_TAG: ",".join(cfg.train.phases), **(mlflow_tags or {})},
    )
    logger = RunLogger(tracking_uri, run_id, cfg.mlflow.outage_s)
    started = time.perf_counter()
    try:  # from here on, whatever stops the run marks its MLflow run FAILED
        logger.metrics(
            {
                "data/train_images": len(train_good),
                "data/val_images": len(val_good),
                "data/bad_inputs": len(bad_inputs),
            },
            0,
        )
        if bad_inputs:
            logger.json(bad_inputs, "bad_inputs.json")
        if is_remote_cluster() and tracking.is_local_store(tracking_uri):
            print(
                f"warning: MLflow store {tracking_uri} is a local file, but Ray runs on a cluster: workers on other nodes cannot reach it; use an http:// tracking server",
                file=sys.stderr,
            )
        datasets = _datasets(cfg, spec, val_spec, train_good, val_good)
        loop_config = {
            "config": cfg.model_dump(mode="json"),
            "run_id": run_id,
            "tracking_uri": tracking_uri,
            "run_uri": run_uri,
            "has_val": bool(val_good),
            "init_generator": init_generator,
            "data_range": model_range,
        }
        result = _trainer(cfg, name, storage_uri, datasets, loop_config, callbacks).fit()
        model_uri = None
        if result.checkpoint is not None:
            with result.checkpoint.as_directory() as folder:
                model_uri = pyfunc.log_generator(
                    tracking_uri, run_id, Path(folder) / "generator.pt", cfg.mlflow.log_model
                )
    except BaseException as exc:
        if not logger.finish("FAILED", wait=False):
            print(
                f"note: MLflow at {tracking.display_uri(tracking_uri)} did not answer; run {run_id} stays RUNNING there until --resume continues it",
                file=sys.stderr,
                flush=True,
            )
        user_error = _user_error_of(exc)
        if user_error is not None:
            raise user_error from None
        raise
    logger.finish("FINISHED")
    outcome = TrainOutcome(
        name,
        run_uri,
        run_id,
        tracking_uri,
        _checkpoint_uri(result.checkpoint, storage_uri),
        model_uri,
        dict(result.metrics or {}),
        bad_inputs,
    )
    _print_summary(outcome, cfg, time.perf_counter() - started)
    return outcome


def _datasets(cfg: TrainConfig, spec: ImageSpec, val_spec: ImageSpec, train_good: list, val_good: list) -> dict:
    """The training pairs (per epoch) and the validation pairs (made once), as Ray Datasets."""
    degradation = build_degradation(cfg.data.degradation.name, cfg.model.generator.scale, **cfg.data.degradation.params)
    batches = PatchBatches(
        spec,
        cfg.data.patch_size,
        cfg.data.patches_per_image,
        cfg.worker_batch_size,
        degradation,
        cfg.run.seed,
        cfg.data.degrade_on,
    )
    datasets = {"train": train_dataset(train_good, batches, cfg.data.read_cpus, cfg.data.images_per_task, cfg.run.seed)}
    if val_good:
        datasets["val"] = val_dataset(
            val_good, val_spec, cfg.data.val_crop, degradation, cfg.data.read_cpus, cfg.run.seed
        )
    for ds in datasets.values():
        # Rank 0's step and validation lines report progress; Ray Data's bars for every pass
        # over these datasets, re-printed by each worker, would bury them.
        ds.context.enable_progress_bars = False
    return datasets


def _trainer(cfg: TrainConfig, name: str, storage_uri: str, datasets: dict, loop_config: dict, callbacks: list | None):
    """Ray Train's TorchTrainer for the run: workers, checkpoints under storage_uri/name, retries."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage_path, storage_fs = storage_uri, None
    if storage.is_s3(storage_uri):
        storage_fs, storage_path = storage.filesystem(storage_uri)
    else:
        Path(storage_uri).mkdir(parents=True, exist_ok=True)
    resources = {
        "CPU": cfg.scaling.cpus_per_worker,
        **({"GPU": 1} if cfg.scaling.use_gpu else {}),
        **cfg.scaling.resources_per_worker,
    }
    # A range of workers makes the run elastic: it goes on with fewer when nodes are lost and
    # grows back when they return; a fixed number waits for the lost nodes.
    workers = (cfg.scaling.min_workers, cfg.scaling.num_workers) if cfg.scaling.min_workers else cfg.scaling.num_workers
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=cfg.scaling.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.num_to_keep),
            failure_config=FailureConfig(max_failures=cfg.train.max_failures),
            callbacks=callbacks,
        ),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )


def is_remote_cluster() -> bool:
    address = os.environ.get("RAY_ADDRESS", "")
    return bool(address) and not any(h in address for h in ("127.0.0.1", "localhost"))


def _checkpoint_uri(checkpoint, storage_uri: str) -> str | None:
    if checkpoint is None:
        return None
    if storage.is_s3(storage_uri):
        return f"s3://{checkpoint.path.lstrip('/')}"
    return checkpoint.path


def _print_summary(outcome: TrainOutcome, cfg: TrainConfig, seconds: float) -> None:
    m = outcome.metrics
    lines = [
        f"training finished: {m.get('step', '?')} steps in {seconds / 60:.1f} min ({', '.join(cfg.train.phases)}; {cfg.scaling.num_workers} worker(s))"
    ]
    if "val/psnr" in m:
        lines.append(
            f"  validation: PSNR {m['val/psnr']:.2f} dB (bicubic {m['val/psnr_bicubic']:.2f})  SSIM {m['val/ssim']:.4f} (bicubic {m['val/ssim_bicubic']:.4f})"
        )
    lines.append(f"  checkpoint: {outcome.checkpoint}")
    lines.append(
        f"  MLflow run: {outcome.mlflow_run_id} (experiment '{cfg.mlflow.experiment}', {tracking.display_uri(outcome.tracking_uri)})"
    )
    if outcome.model_uri:
        lines.append(f"  model: runs:/{outcome.mlflow_run_id}/generator.pt and {outcome.model_uri}")
    if outcome.bad_inputs:
        lines.append(f"  skipped inputs: {len(outcome.bad_inputs)} (artifact bad_inputs.json)")
    if browse := tracking.browse_command(outcome.tracking_uri):
        lines.append(f"  browse: {browse}")
    print("\n".join(lines), flush=True)
