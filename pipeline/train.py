"""Distributed SRGAN training: Ray Data in, Ray Train (DDP) around srgan's steps, MLflow out.

    python -m pipeline.train --config configs/srgan_x4.yaml [--set train.batch_size=32] [--resume]
    ray job submit --working-dir . -- python -m pipeline.train --config configs/srgan_x4.yaml

The driver checks everything it can before any worker starts (config, weights, data),
scans the data, opens the MLflow run and hands a `TorchTrainer` the datasets. Each worker
runs `train_loop_per_worker`: an ordinary PyTorch loop over `srgan.train_step`, with
checkpoints and metrics leaving through `ray.train.report`. A run is a folder
`<run.storage_path>/<run.name>`; re-running with `--resume` and the same name continues it
from its last checkpoint (Ray Train restores the checkpoint; the step counter and the
learning-rate schedule, a function of the step, carry on).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline import storage
from pipeline.cluster import ensure_ray
from pipeline.config import ConfigError, TrainConfig, flatten, load_config
from pipeline.data import ImageSpec, PatchPairs, scan, stable_seed, train_dataset, val_dataset
from srgan.degrade import build_degradation
from srgan.discriminator import Discriminator
from srgan.generator import SRResNet
from srgan.losses import ContentLoss, GeneratorLoss, LossWeights, PixelLoss, VGGFeatures
from srgan.metrics import quantize
from srgan.resize import imresize
from srgan.tiling import upscale_tiled
from srgan.train_step import EMA, Precision, gan_step, make_scaler, pretrain_step, unwrap
from srgan.weights import WeightsError, load_vgg19_features, save_generator

log = logging.getLogger("pipeline.train")  # on workers Ray Train routes this to the console once

SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of a run's checkpoints
FAIL_MARKER = ".debug_failed_once"


# --------------------------------------------------------------------------- building blocks


def build_models(cfg: TrainConfig) -> tuple[SRResNet, Discriminator]:
    g = cfg.model.generator
    d = cfg.model.discriminator
    return (
        SRResNet(g.scale, g.in_channels, g.out_channels, g.num_blocks, g.num_features, g.batch_norm, g.bicubic_skip),
        Discriminator(g.out_channels, d.base_features, d.spectral_norm),
    )


def load_vgg(cfg: TrainConfig) -> torch.nn.Sequential:
    return load_vgg19_features(cfg.loss.vgg_weights, cfg.loss.vgg_sha256, fetch=storage.download)


def needs_vgg(cfg: TrainConfig) -> bool:
    return "gan" in cfg.train.phases and cfg.loss.weights.content > 0 and cfg.loss.content_backbone == "vgg19"


def build_generator_loss(cfg: TrainConfig, discriminator: torch.nn.Module, device: torch.device) -> GeneratorLoss:
    content = None
    if cfg.loss.weights.content > 0:
        if cfg.loss.content_backbone == "vgg19":
            features = VGGFeatures(load_vgg(cfg), cfg.loss.vgg_layer, cfg.loss.rgb_bands).to(device)
        else:
            # Feature matching on the discriminator's conv stages: needs no download. D is
            # frozen while G's loss is computed (gan_step), so only G learns from it.
            def features(x: torch.Tensor) -> list[torch.Tensor]:
                return unwrap(discriminator).features(x)

        content = ContentLoss(features, cfg.loss.effective_feature_scale)
    weights = LossWeights(**cfg.loss.weights.model_dump())
    return GeneratorLoss(content, weights, PixelLoss(cfg.loss.pixel), cfg.loss.gan_type)


def phase_at(cfg: TrainConfig, step: int) -> str:
    """The phase that step number `step` + 1 belongs to."""
    return "pretrain" if step < cfg.pretrain_steps else "gan"


def lr_at(cfg: TrainConfig, step: int, net: str = "g") -> float:
    """Learning rate of `net` ('g' or 'd') for the step after `step` completed steps:
    constant in pretraining; in the GAN phase multiplied by lr_drop_factor from
    lr_drop_step on (paper: 1e-4 -> 1e-5)."""
    if phase_at(cfg, step) == "pretrain":
        return cfg.train.pretrain.lr
    gan = cfg.train.gan
    base = gan.d_lr if net == "d" and gan.d_lr is not None else gan.lr
    into_gan = step - cfg.pretrain_steps
    if gan.lr_drop_step is not None and into_gan >= gan.lr_drop_step:
        return base * gan.lr_drop_factor
    return base


def resolve_precision(requested: str, device: torch.device) -> Precision:
    if requested != "auto":
        return requested  # type: ignore[return-value]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "off"


# ------------------------------------------------------------------------------ validation


@torch.no_grad()
def validate(model: torch.nn.Module, rows, cfg: TrainConfig, rank: int, world: int, device: torch.device) -> tuple[dict[str, float], list]:
    """Score `model` on this rank's share of the validation rows (idx % world == rank) and
    reduce the sums over all ranks. Returns (metrics, grid rows for this rank).

    val/psnr and val/ssim are on Y for 1- and 3-band data, all bands otherwise; val/hf_ratio
    is the geometric mean of the high-frequency ratio, val/hf_error the mean |log2| of it
    (0 = the HR's amount of fine detail)."""
    from pipeline.evaluate import primary, sr_figures
    from pipeline.grids import GridRow

    scale = cfg.model.generator.scale
    degrade = build_degradation(cfg.data.degradation.name, scale, **cfg.data.degradation.params)
    # psnr, ssim, log2 hf, |log2 hf|, bicubic psnr, bicubic ssim, bicubic log2 hf, images
    sums = torch.zeros(8, dtype=torch.float64)
    grid: list[GridRow] = []
    was_training = model.training
    model.eval()
    for row in rows:
        if int(row["idx"]) % world != rank:
            continue
        hr = torch.tensor(row["hr"], dtype=torch.float32)[None]  # a copy: Ray's arrays are read-only
        lr = degrade(hr, stable_seed(cfg.run.seed, "val", row["key"]))  # the same LR every time
        levels = int(row["levels"])
        sr = upscale_tiled(model, lr, scale, tile=128, batch_size=4).clamp(0, 1)
        bicubic = imresize(lr, float(scale)).clamp(0, 1)
        if levels:
            sr, bicubic = quantize(sr, levels), quantize(bicubic, levels)
        ours, base = sr_figures(sr, hr, scale), sr_figures(bicubic, hr, scale)
        log_hf, log_hf_b = math.log2(max(ours["hf_ratio"], 1e-12)), math.log2(max(base["hf_ratio"], 1e-12))
        sums += torch.tensor([*primary(ours), log_hf, abs(log_hf), *primary(base), log_hf_b, 1.0], dtype=torch.float64)
        if len(grid) < cfg.data.grid_images:
            grid.append(GridRow(lr[0], bicubic[0], sr[0], hr[0], caption=f"{row['key']}  bicubic {primary(base)[0]:.2f} dB  SR {primary(ours)[0]:.2f} dB"))
    model.train(was_training)
    if world > 1:
        import torch.distributed as dist

        reduced = sums.to(device)
        dist.all_reduce(reduced)
        sums = reduced.cpu()
    n = max(sums[7].item(), 1.0)
    metrics = {
        "val/psnr": sums[0].item() / n,
        "val/ssim": sums[1].item() / n,
        "val/hf_ratio": 2 ** (sums[2].item() / n),
        "val/hf_error": sums[3].item() / n,
        "val/psnr_bicubic": sums[4].item() / n,
        "val/ssim_bicubic": sums[5].item() / n,
        "val/hf_ratio_bicubic": 2 ** (sums[6].item() / n),
        "val/images": sums[7].item(),
    }
    return metrics, grid


# --------------------------------------------------------------------------------- worker


@dataclass
class Progress:
    """Running means of step statistics between two log lines."""

    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    started: float = field(default_factory=time.perf_counter)

    def add(self, stats: dict[str, float]) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += 1

    def means(self) -> dict[str, float]:
        return {k: v / max(self.steps, 1) for k, v in self.sums.items()}

    def rate(self, samples_per_step: int) -> float:
        return self.steps * samples_per_step / max(time.perf_counter() - self.started, 1e-9)


def _save_checkpoint(rank: int, step: int, metrics: dict, state: dict | None, ema: EMA, meta: dict) -> None:
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if rank == 0:
            torch.save(state, folder / "state.pt")
            save_generator(folder / "generator.pt", ema.model, meta)
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, folder / f"rng_rank{rank}.pt")
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name=f"step_{step:08d}")


def _load_checkpoint(checkpoint, rank: int) -> dict:
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / "state.pt", map_location="cpu", weights_only=True)
        rng_file = Path(folder) / f"rng_rank{rank}.pt"
        if rng_file.exists():
            rng = torch.load(rng_file, map_location="cpu", weights_only=True)
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(rng["cuda"])
    return state


def _maybe_fail(cfg: TrainConfig, step: int, rank: int, world: int, run_uri: str) -> None:
    """Test hook (debug.fail_once_at_step): the last rank raises once, at that step."""
    if cfg.debug.fail_once_at_step != step or rank != world - 1:
        return
    marker = storage.join(run_uri, FAIL_MARKER)
    if storage.exists(marker):
        return
    storage.write_bytes(marker, str(step).encode())
    raise RuntimeError(f"debug.fail_once_at_step: simulated worker failure at step {step}")


def train_loop_per_worker(loop: dict) -> None:
    import ray.train
    import ray.train.torch

    from pipeline.grids import comparison_grid
    from pipeline.tracking import RunLogger

    cfg = TrainConfig.model_validate(loop["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    precision = resolve_precision(cfg.train.precision, device)
    torch.manual_seed(stable_seed(cfg.run.seed, "worker", rank) % 2**63)
    logger = RunLogger(loop["tracking_uri"], loop["run_id"]) if rank == 0 else None
    total, batch = cfg.total_steps, cfg.worker_batch_size
    meta = {"data_range": cfg.data.data_range, "degradation": cfg.data.degradation.name}

    g, d = build_models(cfg)
    checkpoint = ray.train.get_checkpoint()
    state = _load_checkpoint(checkpoint, rank) if checkpoint is not None else None
    if state is not None:
        g.load_state_dict(state["generator"])
        d.load_state_dict(state["discriminator"])
    elif loop.get("init_generator") is not None:
        g.load_state_dict(loop["init_generator"])
    ema = EMA(g, cfg.train.ema_decay)
    step, epoch, ema_updates = 0, 0, 0
    phase = phase_at(cfg, 0)
    if state is not None:
        step, epoch, ema_updates = state["step"], state["epoch"], state["ema_updates"]
        ema.load_state_dict(state["ema"])
        phase = state["phase"]
    ema.model.to(device)
    g = ray.train.torch.prepare_model(g)
    d = ray.train.torch.prepare_model(d)

    betas = tuple(cfg.train.adam_betas)
    opt_g = torch.optim.Adam(g.parameters(), lr=lr_at(cfg, step), betas=betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=lr_at(cfg, step, "d"), betas=betas)
    scaler_g, scaler_d = make_scaler(device, precision), make_scaler(device, precision)
    if state is not None and state["phase"] == phase_at(cfg, step):
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        scaler_g.load_state_dict(state["scaler_g"])
        scaler_d.load_state_dict(state["scaler_d"])
    g_loss = build_generator_loss(cfg, d, device) if "gan" in cfg.train.phases else None
    pixel = PixelLoss(cfg.loss.pixel)

    if state is not None and rank == 0:
        log.info(f"resuming from checkpoint at step {step} (epoch {epoch}, phase {state['phase']})")
        logger.metrics({"train/resumed_from_step": step}, step)

    shard = ray.train.get_dataset_shard("train")
    val_rows = ray.train.get_dataset_shard("val") if loop["has_val"] else None
    progress = Progress()
    last_val: dict[str, float] = {}
    while step < total:
        batches = 0
        for batch_data in shard.iter_torch_batches(
            batch_size=batch,
            drop_last=True,
            local_shuffle_buffer_size=cfg.data.shuffle_buffer or None,
            local_shuffle_seed=stable_seed(cfg.run.seed, epoch, rank) % 2**32,
            dtypes=torch.float32,
            device=device,
        ):
            batches += 1
            if phase_at(cfg, step) != phase:
                # Pretraining done: the GAN phase starts with fresh optimisers and averages.
                phase = phase_at(cfg, step)
                opt_g = torch.optim.Adam(g.parameters(), lr=lr_at(cfg, step), betas=betas)
                opt_d = torch.optim.Adam(d.parameters(), lr=lr_at(cfg, step, "d"), betas=betas)
                scaler_g, scaler_d = make_scaler(device, precision), make_scaler(device, precision)
                ema = EMA(g, cfg.train.ema_decay)
                ema.model.to(device)
                ema_updates = 0
                progress = Progress()
                if rank == 0:
                    log.info(f"step {step}: pretraining done, GAN phase starts")
            lr = lr_at(cfg, step)
            for opt, value in ((opt_g, lr), (opt_d, lr_at(cfg, step, "d"))):
                for group in opt.param_groups:
                    group["lr"] = value
            lr_batch, hr_batch = batch_data["lr"], batch_data["hr"]
            if phase == "pretrain":
                stats = pretrain_step(g, opt_g, lr_batch, hr_batch, pixel, precision, scaler_g)
            else:
                stats = gan_step(g, d, opt_g, opt_d, lr_batch, hr_batch, g_loss, precision, scaler_g, scaler_d)
            ema.update(g, ema.warmup_decay(ema_updates))
            ema_updates += 1
            step += 1
            progress.add(stats)

            if rank == 0 and (step % cfg.train.log_every == 0 or step == total):
                rate = progress.rate(batch * world)
                means = progress.means()
                logger.metrics({**{f"train/{k}": v for k, v in means.items()}, "train/lr": lr, "train/samples_per_s": rate, "train/epoch": epoch}, step)
                shown = "  ".join(f"{k} {v:.4g}" for k, v in means.items())
                log.info(f"[step {step}/{total} {phase}] {shown}  lr {lr:.2g}  {rate:.1f} samples/s  epoch {epoch}")
                progress = Progress()
            _maybe_fail(cfg, step, rank, world, loop["run_uri"])

            at_phase_end = step == cfg.pretrain_steps and step < total
            do_val = val_rows is not None and (step % cfg.train.val_every == 0 or step == total)
            do_ckpt = step % cfg.train.checkpoint_every == 0 or step == total or at_phase_end
            if do_val:
                last_val, grid = validate(ema.model, val_rows.iter_rows(), cfg, rank, world, device)
                if rank == 0:
                    logger.metrics(last_val, step)
                    if grid:
                        logger.image(comparison_grid(grid, cfg.model.generator.scale), f"grids/step_{step:08d}.png")
                    log.info(
                        f"[step {step}/{total} validation] PSNR {last_val['val/psnr']:.2f} dB (bicubic {last_val['val/psnr_bicubic']:.2f})  "
                        f"SSIM {last_val['val/ssim']:.4f}  HF ratio {last_val['val/hf_ratio']:.2f} (bicubic {last_val['val/hf_ratio_bicubic']:.2f})"
                    )
            if do_ckpt or do_val:
                metrics = {"step": step, "epoch": epoch, "phase": phase, **{f"train/{k}": v for k, v in stats.items()}, **last_val}
                if do_ckpt:
                    payload = None
                    if rank == 0:
                        payload = {
                            "step": step, "epoch": epoch, "phase": phase, "ema_updates": ema_updates,
                            "generator": unwrap(g).state_dict(), "discriminator": unwrap(d).state_dict(), "ema": ema.state_dict(),
                            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                            "scaler_g": scaler_g.state_dict(), "scaler_d": scaler_d.state_dict(),
                        }
                    _save_checkpoint(rank, step, metrics, payload, ema, {**meta, "trained_steps": step})
                else:
                    ray.train.report(metrics)
            if step >= total:
                break
        if batches == 0:
            raise RuntimeError(
                f"the training data gave no full batch of {batch} patches per worker in epoch {epoch}; "
                "add images, raise data.patches_per_image, or lower train.batch_size"
            )
        epoch += 1


# --------------------------------------------------------------------------------- driver


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


def _run_storage(cfg: TrainConfig) -> tuple[str, object, str]:
    """(storage path for RunConfig, its filesystem or None, the storage URI)."""
    uri = storage.local_or_uri(cfg.run.storage_path)
    if storage.is_s3(uri):
        fs, path = storage.filesystem(uri)
        return path, fs, uri
    Path(uri).mkdir(parents=True, exist_ok=True)
    return uri, None, uri


def resolve_init_generator(ref: str, tracking_uri: str) -> dict:
    """State dict of the generator `ref` names (see pipeline.models for the forms)."""
    from pipeline.models import ModelRefError, fetch_generator

    try:
        return fetch_generator(ref, tracking_uri)[0].state_dict()
    except ModelRefError as exc:
        raise WeightsError(f"train.gan.init_from: {exc}") from exc


def _list_images(uri: str, cfg: TrainConfig, what: str) -> list[storage.StoredFile]:
    files = storage.list_files(uri, cfg.data.extensions)
    if not files:
        raise storage.StorageError(f"data.{what}: no images ({', '.join(cfg.data.extensions)}) under {uri}")
    return files


def run_training(cfg: TrainConfig, resume: bool = False, callbacks: list | None = None, mlflow_tags: dict[str, str] | None = None) -> TrainOutcome:
    """Everything `python -m pipeline.train` does, callable (pipeline.tune runs it per trial,
    with Tune's report callback and the parent-run tags)."""
    import ray.train
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipeline import tracking

    storage.apply_s3_settings(cfg.s3.endpoint_url, cfg.s3.region)
    if resume and not cfg.run.name:
        raise ConfigError("--resume needs run.name: the folder under run.storage_path to continue (e.g. --set run.name=srgan-20261123-101500)")
    name = cfg.run.name or default_run_name()
    storage_path, storage_fs, storage_uri = _run_storage(cfg)
    run_uri = storage.join(storage_uri, name)
    already = storage.exists(storage.join(run_uri, SNAPSHOT))
    if already and not resume:
        raise ConfigError(f"run {name!r} already exists at {run_uri}; pass --resume to continue it, or set run.name to start a new run")
    if resume and not already:
        raise ConfigError(f"--resume: no checkpoints of run {name!r} at {run_uri} to continue from")

    # Fail before any worker starts: weights, init generator, data listing.
    if needs_vgg(cfg):
        load_vgg(cfg)
    tracking_uri = tracking.resolve_tracking_uri(cfg.mlflow.tracking_uri)
    init_generator = None
    if cfg.train.phases == ["gan"] and cfg.train.gan.init_from and not resume:
        init_generator = resolve_init_generator(cfg.train.gan.init_from, tracking_uri)
    train_files = _list_images(cfg.data.train, cfg, "train")
    val_files = _list_images(cfg.data.val, cfg, "val") if cfg.data.val else []
    if cfg.data.val_max_images:
        val_files = val_files[: cfg.data.val_max_images]

    ensure_ray()
    g = cfg.model.generator
    spec = ImageSpec(channels=g.in_channels, data_range=cfg.data.data_range, min_size=cfg.data.patch_size)
    print(f"scanning {len(train_files)} training images under {cfg.data.train} ...", flush=True)
    train_good, bad = scan(train_files, spec, cfg.data.read_cpus)
    val_spec = ImageSpec(channels=g.in_channels, data_range=cfg.data.data_range, min_size=max(g.scale * 4, 11 + 2 * g.scale))
    val_good, val_bad = scan(val_files, val_spec, cfg.data.read_cpus)
    bad_inputs = [{"split": "train", "key": b.key, "reason": b.reason} for b in bad] + [{"split": "val", "key": b.key, "reason": b.reason} for b in val_bad]
    for b in bad_inputs:
        print(f"warning: skipping {b['split']} image {b['key']}: {b['reason']}", file=sys.stderr, flush=True)
    if not train_good:
        raise storage.StorageError(f"data.train: none of the {len(train_files)} images under {cfg.data.train} is usable (see the warnings above)")
    print(f"{len(train_good)} training images, {len(val_good)} validation images, {len(bad_inputs)} skipped", flush=True)

    experiment_id = tracking.ensure_experiment(tracking_uri, cfg.mlflow.experiment, cfg.mlflow.artifact_location)
    params = flatten(cfg)
    params["run.name"] = name
    run_id = tracking.start_run(tracking_uri, experiment_id, name, run_uri, params, tags={"srgan.phases": ",".join(cfg.train.phases), **(mlflow_tags or {})})
    logger = tracking.RunLogger(tracking_uri, run_id)
    logger.metrics({"data/train_images": len(train_good), "data/val_images": len(val_good), "data/bad_inputs": len(bad_inputs)}, 0)
    if bad_inputs:
        logger.json(bad_inputs, "bad_inputs.json")
    if is_remote_cluster() and tracking.is_local_store(tracking_uri):
        print(f"warning: MLflow store {tracking_uri} is a local file, but Ray runs on a cluster: workers on other nodes cannot reach it; use an http:// tracking server", file=sys.stderr)

    pairs = PatchPairs(spec, cfg.data.patch_size, cfg.data.patches_per_image, g.scale, cfg.data.degradation.name, cfg.data.degradation.params, cfg.run.seed)
    datasets = {"train": train_dataset(train_good, pairs, cfg.data.read_cpus, cfg.data.images_per_task, cfg.run.seed)}
    if val_good:
        datasets["val"] = val_dataset(val_good, val_spec, cfg.data.val_crop, g.scale, cfg.data.read_cpus)
    for ds in datasets.values():
        # Rank 0's step and validation lines report progress; Ray Data's bars for every pass
        # over these datasets, re-printed by each worker, would bury them.
        ds.context.enable_progress_bars = False

    resources = {"CPU": cfg.scaling.cpus_per_worker}
    if cfg.scaling.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": cfg.model_dump(mode="json"),
            "run_id": run_id,
            "tracking_uri": tracking_uri,
            "run_uri": run_uri,
            "has_val": bool(val_good),
            "init_generator": init_generator,
        },
        scaling_config=ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=cfg.scaling.use_gpu, resources_per_worker=resources),
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
    started = time.perf_counter()
    try:
        result = trainer.fit()
    except BaseException:
        logger.finish("FAILED")
        raise
    checkpoint_uri = _checkpoint_uri(result.checkpoint, storage_uri)
    model_uri = None
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as folder:
            model_uri = tracking.log_generator(tracking_uri, run_id, Path(folder) / "generator.pt", cfg.mlflow.log_model)
    logger.finish("FINISHED")
    outcome = TrainOutcome(name, run_uri, run_id, tracking_uri, checkpoint_uri, model_uri, dict(result.metrics or {}), bad_inputs)
    _print_summary(outcome, cfg, time.perf_counter() - started)
    return outcome


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
    lines = [f"training finished: {m.get('step', '?')} steps in {seconds / 60:.1f} min ({', '.join(cfg.train.phases)}; {cfg.scaling.num_workers} worker(s))"]
    if "val/psnr" in m:
        lines.append(f"  validation: PSNR {m['val/psnr']:.2f} dB (bicubic {m['val/psnr_bicubic']:.2f})  SSIM {m['val/ssim']:.4f} (bicubic {m['val/ssim_bicubic']:.4f})")
    lines.append(f"  checkpoint: {outcome.checkpoint}")
    lines.append(f"  MLflow run: {outcome.mlflow_run_id} (experiment '{cfg.mlflow.experiment}', {outcome.tracking_uri})")
    if outcome.model_uri:
        lines.append(f"  model: runs:/{outcome.mlflow_run_id}/generator.pt and {outcome.model_uri}")
    if outcome.bad_inputs:
        lines.append(f"  skipped inputs: {len(outcome.bad_inputs)} (artifact bad_inputs.json)")
    if outcome.tracking_uri.startswith("sqlite:"):
        lines.append(f"  browse: mlflow ui --backend-store-uri {outcome.tracking_uri}")
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.train", description="Train an SRGAN on Ray.")
    parser.add_argument("--config", required=True, help="YAML config (see configs/srgan_x4.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. train.batch_size=32 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue run.name from its last checkpoint")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        outcome = run_training(cfg, resume=args.resume)
    except (ConfigError, storage.StorageError, WeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"run": outcome.run_name, "mlflow_run_id": outcome.mlflow_run_id, "checkpoint": outcome.checkpoint}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
