"""What every Ray Train worker runs: an ordinary PyTorch loop over srgan's steps.

    for each batch: start the GAN phase if it is due, set the lr, step, average, and maybe
    log / validate / checkpoint

The worker's whole training state is one `TrainState` (models, optimisers, scalers, EMA,
step, epoch, phase): `start_phase` rebuilds optimisers and the weight average, and
`state_dict` / `load` are what a checkpoint holds (pipeline.checkpoints). Checkpoints and metrics leave through
`ray.train.report`; only rank 0 writes to MLflow.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field

import torch

from pipeline.config import TrainConfig
from pipeline.data.batches import stable_seed
from pipeline.errors import DataError
from pipeline.io import s3, storage
from pipeline.scoring.protocol import ValidationSums, caption, lpips_model, say_lpips_skipped, sr_figures
from pipeline.training.checkpoints import load_checkpoint, restore_rng, save_checkpoint
from pipeline.training.recipe import build_generator_loss, lr_at, phase_at
from pipeline.training.state import TrainState
from srgan.degrade import Degradation, build_degradation, training_pair
from srgan.losses import (
    PAPER_BALANCE,
    GeneratorLoss,
    LossWeights,
    PixelLoss,
    balance_warning,
    loss_balance,
)
from srgan.metrics import quantize
from srgan.precision import resolve_precision
from srgan.resize import imresize
from srgan.sync_bn import broadcast_state
from srgan.tiling import upscale_tiled

log = logging.getLogger("pipeline.train")  # on workers Ray Train routes this to the console once

FAIL_MARKER = ".debug_failed_once"


@dataclass
class Progress:
    """Running means of step statistics between two log lines."""

    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    started: float = field(default_factory=time.perf_counter)
    waited: float = 0.0  # seconds spent waiting for the input pipeline's next batch

    def data_wait(self) -> float:
        """The share of the wall time since the last log line spent waiting for data."""
        return self.waited / max(time.perf_counter() - self.started, 1e-9)

    def add(self, stats: dict[str, float]) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += 1

    def means(self) -> dict[str, float]:
        return {k: v / max(self.steps, 1) for k, v in self.sums.items()}

    def rate(self, samples_per_step: int) -> float:
        return self.steps * samples_per_step / max(time.perf_counter() - self.started, 1e-9)


@torch.no_grad()
def validation_line(m: dict[str, float]) -> str:
    """The validation means as one line: PSNR, SSIM, NIQE and LPIPS where measured."""
    parts = [f"PSNR {m['val/psnr']:.2f} dB (bicubic {m['val/psnr_bicubic']:.2f})", f"SSIM {m['val/ssim']:.4f}"]
    for key, label, digits in (("niqe", "NIQE", 2), ("lpips", "LPIPS", 3)):
        if math.isfinite(m[f"val/{key}"]):
            parts.append(f"{label} {m[f'val/{key}']:.{digits}f} (bicubic {m[f'val/{key}_bicubic']:.{digits}f})")
    parts.append(f"HF ratio {m['val/hf_ratio']:.2f} (bicubic {m['val/hf_ratio_bicubic']:.2f})")
    return "  ".join(parts)


def validate(
    model: torch.nn.Module, rows, scale: int, grid_images: int, rank: int, world: int, device: torch.device, lpips=None
) -> tuple[dict[str, float], list]:
    """Score rank 0's `model` (the one it saves; broadcast to all) on this rank's share of the
    validation pairs (idx % world == rank) and reduce the sums over all ranks. Returns
    (pipeline.scoring.VALIDATION_METRICS, grid rows of this rank). PSNR/SSIM are on Y for 1-
    and 3-band data, all bands otherwise."""
    from pipeline.scoring.grids import GridRow

    sums, grid = ValidationSums(), []
    broadcast_state(model, src=0)  # without synced BatchNorm the ranks' buffers differ
    was_training = model.training
    model.eval()
    for row in rows:
        if int(row["idx"]) % world != rank:
            continue
        hr = torch.tensor(row["hr"], dtype=torch.float32)[None]  # copies: Ray's arrays are read-only
        lr = torch.tensor(row["lr"], dtype=torch.float32)[None]
        sr = upscale_tiled(model, lr, scale, tile=128, batch_size=4).clamp(0, 1)
        bicubic = imresize(lr, float(scale)).clamp(0, 1)
        if int(row["levels"]):
            sr, bicubic = quantize(sr, int(row["levels"])), quantize(bicubic, int(row["levels"]))
        ours, base = sr_figures(sr, hr, scale, lpips), sr_figures(bicubic, hr, scale, lpips)
        sums.add(ours, base)
        if len(grid) < grid_images:
            grid.append(GridRow(lr[0], bicubic[0], sr[0], hr[0], caption=caption(row["key"], ours, base)))
    model.train(was_training)
    if world > 1:
        import torch.distributed as dist

        reduced = sums.sums.to(device)
        dist.all_reduce(reduced)
        sums.sums = reduced.cpu()
    return sums.metrics(), grid


def say_balance(logger, stats: dict[str, float], cfg: TrainConfig, step: int) -> None:
    """Log the first GAN step's content vs weighted adversarial loss; warn when far from the paper's."""
    ratio = loss_balance(
        {k.removeprefix("loss_"): v for k, v in stats.items()}, LossWeights(**cfg.loss.weights.model_dump())
    )
    if ratio is None:
        return
    logger.metrics({"train/content_to_adversarial": ratio}, step)
    log.info(f"step {step}: content/adversarial loss ratio {ratio:.3g} (paper about {PAPER_BALANCE:g})")
    warning = balance_warning(ratio)
    if warning:
        log.warning(f"warning: {warning}")


def generator_loss(cfg: TrainConfig, state: TrainState, device: torch.device, usm_target: bool) -> GeneratorLoss:
    """The recipe's generator loss, with D's features read from the state's frozen copy of D and
    the pixel and content targets of `usm_target`; D's real images stay the plain HR."""
    return build_generator_loss(cfg, state.d_features, device, usm_target)


def batch_pair(data: dict, degrade: Degradation, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR, plain HR) of one training row: made by Ray Data (data.degrade_on cpu), or here from the
    shipped HR crops and seed (device), cut to the patch after the degradation (training_pair)."""
    if "lr" in data:
        return data["lr"][0], data["hr"][0]
    return training_pair(data["hr"][0], int(data["seed"][0]), degrade, patch)


def _maybe_fail(cfg: TrainConfig, step: int, rank: int, world: int, run_uri: str) -> None:
    """Test hook (debug.fail_once_at_step): the last rank raises once, at that step."""
    if cfg.debug.fail_once_at_step != step or rank != world - 1:
        return
    marker = storage.join(run_uri, FAIL_MARKER)
    if storage.exists(marker):
        return
    storage.write_bytes(marker, str(step).encode())
    raise RuntimeError(f"debug.fail_once_at_step: simulated worker failure at step {step}")


def cpu_threads(cpus_per_worker: float) -> int:
    """Torch threads for a CPU worker holding `cpus_per_worker` CPUs: rounded up (a worker with
    1.5 CPUs computes on two cores, the half left over is Ray Data's), at most the machine's."""
    return max(1, min(math.ceil(cpus_per_worker), os.cpu_count() or 1))


def train_loop_per_worker(loop: dict) -> None:
    """Ray Train's worker function; `loop` holds the config and where the run reports."""
    import ray.train
    import ray.train.torch

    from pipeline.scoring.grids import comparison_grid
    from pipeline.tracking.run_logger import RunLogger

    cfg = TrainConfig.model_validate(loop["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu":  # Ray sets OMP_NUM_THREADS to the whole CPUs (1 for 1.5): use what the worker holds
        torch.set_num_threads(cpu_threads(cfg.scaling.cpus_per_worker))
    torch.manual_seed(stable_seed(cfg.run.seed, "worker", rank) % 2**63)
    s3.set_retry_s(cfg.s3.retry_s)  # this process's S3 reads and writes, checkpoints included
    logger = RunLogger(loop["tracking_uri"], loop["run_id"], cfg.mlflow.outage_s) if rank == 0 else None
    total, batch, scale = cfg.total_steps, cfg.worker_batch_size, cfg.model.generator.scale
    meta = {"data_range": loop.get("data_range", cfg.data.data_range), "degradation": cfg.data.degradation.name}

    checkpoint = ray.train.get_checkpoint()
    saved, rng = load_checkpoint(checkpoint, rank) if checkpoint is not None else (None, None)
    state = TrainState(cfg, device, resolve_precision(cfg.train.precision, device), saved, loop.get("init_generator"))
    restore_rng(rng)
    degrade = build_degradation(
        cfg.data.degradation.name, scale, **cfg.data.degradation.params
    )  # data.degrade_on: device
    usm_target = bool(getattr(degrade, "usm_target", False))  # Real-ESRGAN's l1_gt_usm, percep_gt_usm
    g_loss = generator_loss(cfg, state, device, usm_target) if "gan" in cfg.train.phases else None
    pixel = PixelLoss(cfg.loss.pixel, usm_target=usm_target)
    if rank == 0:  # what `train.precision: auto` became on this hardware
        logger.tag("train.precision_used", state.precision)
        log.info(f"precision {state.precision} on {device.type}, {torch.get_num_threads()} torch threads")
    if saved is not None and rank == 0:
        log.info(f"resuming from checkpoint at step {state.step} (epoch {state.epoch}, phase {saved['phase']})")
        logger.requeue(saved.get("unsent_log", []))  # what a tracking outage kept unsent when the checkpoint was made
        logger.metrics({"train/resumed_from_step": state.step}, state.step)

    shard = ray.train.get_dataset_shard("train")
    val_rows = ray.train.get_dataset_shard("val") if loop["has_val"] else None
    lpips, lpips_skipped = lpips_model(cfg.train.lpips_weights) if val_rows is not None else (None, "")
    if rank == 0:
        say_lpips_skipped(lpips_skipped)
    progress, last_val = Progress(), {}
    while state.step < total:
        batches = 0
        ready = time.perf_counter()
        for data in shard.iter_torch_batches(  # one row is one batch (pipeline.data.PatchBatches)
            batch_size=1,
            local_shuffle_buffer_size=cfg.data.shuffle_buffer or None,
            local_shuffle_seed=stable_seed(cfg.run.seed, state.epoch, rank) % 2**32,
            device=device,
        ):
            progress.waited += time.perf_counter() - ready
            batches += 1
            lr_batch, hr_batch = batch_pair(data, degrade, cfg.data.patch_size)
            if phase_at(cfg, state.step) != state.phase:
                state.start_phase(phase_at(cfg, state.step))
                progress = Progress()
                if rank == 0:
                    log.info(f"step {state.step}: pretraining done, GAN phase starts")
            stats = state.train_step(lr_batch, hr_batch, g_loss, pixel)
            step = state.step
            progress.add(stats)
            if rank == 0 and state.phase == "gan" and state.ema_updates == 1:
                say_balance(logger, stats, cfg, step)

            if rank == 0 and (step % cfg.train.log_every == 0 or step == total):
                rate, means, lr = progress.rate(batch * world), progress.means(), lr_at(cfg, step - 1)
                logger.metrics(
                    {
                        **{f"train/{k}": v for k, v in means.items()},
                        "train/lr": lr,
                        "train/samples_per_s": rate,
                        "train/data_wait_fraction": progress.data_wait(),
                        "train/epoch": state.epoch,
                    },
                    step,
                )
                shown = "  ".join(f"{k} {v:.4g}" for k, v in means.items())
                log.info(
                    f"[step {step}/{total} {state.phase}] {shown}  lr {lr:.2g}  {rate:.1f} samples/s  "
                    f"data wait {progress.data_wait():.0%}  epoch {state.epoch}"
                )
                progress = Progress()
            _maybe_fail(cfg, step, rank, world, loop["run_uri"])
            if cfg.debug.step_sleep_s:
                time.sleep(cfg.debug.step_sleep_s)

            at_phase_end = step == cfg.pretrain_steps and step < total
            do_val = val_rows is not None and (step % cfg.train.val_every == 0 or step == total)
            do_ckpt = step % cfg.train.checkpoint_every == 0 or step == total or at_phase_end
            if do_val or do_ckpt:
                state.refresh_ema_statistics()  # what validation scores and the checkpoint keeps
            if do_val:
                last_val, grid = validate(
                    state.ema.model, val_rows.iter_rows(), scale, cfg.data.grid_images, rank, world, device, lpips
                )
                if rank == 0:
                    logger.metrics(last_val, step)
                    if grid:
                        logger.image(comparison_grid(grid, scale), f"grids/step_{step:08d}.png")
                    log.info(f"[step {step}/{total} validation] {validation_line(last_val)}")
            if do_ckpt or do_val:
                metrics = {
                    "step": step,
                    "epoch": state.epoch,
                    "phase": state.phase,
                    **{f"train/{k}": v for k, v in stats.items()},
                    **last_val,
                }
                if do_ckpt:
                    save_checkpoint(rank, metrics, state, meta, loop["run_uri"], logger.unsent() if rank == 0 else None)
                else:
                    ray.train.report(metrics)
            if step >= total:
                break
            ready = time.perf_counter()  # from here until the next batch arrives is waiting for data
        if batches == 0:
            raise DataError(
                f"the training data gave no full batch of {batch} patches per worker in epoch {state.epoch}; "
                "add images, raise data.patches_per_image, or lower train.batch_size"
            )
        state.epoch += 1
    if rank == 0:
        logger.flush(wait=True)  # what an outage of the tracking server kept, before the run ends
