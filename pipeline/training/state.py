"""A training worker's whole state as one object: models, optimisers, GradScalers, EMA, step,
epoch and phase; `state_dict` / `load` are what a checkpoint holds (pipeline.training.checkpoints)."""

from __future__ import annotations

import logging
from collections import deque

import torch
from torch.optim.swa_utils import update_bn

from pipeline.config import TrainConfig
from pipeline.training.recipe import build_models, lr_at, phase_at
from srgan.losses import DiscriminatorFeatures, PixelLoss
from srgan.precision import Precision
from srgan.sync_bn import sync_batch_norm
from srgan.train_step import EMA, gan_step, make_scaler, pretrain_step, unwrap

log = logging.getLogger("pipeline.train")  # on workers Ray Train routes this to the console once


def sync_batch_norm_on(cfg: TrainConfig, world: int, rank: int) -> bool:
    """train.sync_batch_norm resolved (auto: on with more than one worker); rank 0 says so, and
    warns when it is off and each worker's BatchNorm normalises fewer than 8 images."""
    setting, batch = cfg.train.sync_batch_norm, cfg.worker_batch_size
    on = world > 1 and setting is not False
    if rank == 0 and world > 1 and on:
        log.info(f"BatchNorm statistics over all {world} workers' images (train.sync_batch_norm={setting})")
    elif rank == 0 and world > 1 and batch < 8:
        log.warning(
            f"warning: train.sync_batch_norm=false: each worker's BatchNorm normalises its own {batch} images and the workers' running statistics drift apart; set train.sync_batch_norm=auto"
        )
    return on


class TrainState:
    """A worker's models, optimisers, GradScalers and weight average, and where it is; the frozen
    copy of D that a feature-matching content loss reads (`d_features`), and the last few LR
    batches, over which the weight average's BatchNorm statistics are recomputed."""

    def __init__(
        self,
        cfg: TrainConfig,
        device: torch.device,
        precision: Precision,
        state: dict | None = None,
        init_generator: dict | None = None,
    ) -> None:
        """Build the networks from `cfg`, with the weights of checkpoint `state` or of a
        pretrained generator `init_generator`, wrap them for DDP, and start the phase."""
        import ray.train.torch

        self.cfg, self.device, self.precision = cfg, device, precision
        self.step = state["step"] if state is not None else 0  # the phase's lr is that step's
        self.epoch, self.ema_updates = 0, 0
        g, d = build_models(cfg)
        if state is not None:
            g.load_state_dict(state["generator"])
            d.load_state_dict(state["discriminator"])
        elif init_generator is not None:
            g.load_state_dict(init_generator)
        if sync_batch_norm_on(cfg, ray.train.get_context().get_world_size(), ray.train.get_context().get_world_rank()):
            g, d = sync_batch_norm(g, device), sync_batch_norm(d, device)
        self.g, self.d = ray.train.torch.prepare_model(g), ray.train.torch.prepare_model(d)
        self.d_features = DiscriminatorFeatures(unwrap(self.d))
        self.recent_lr: deque[torch.Tensor] = deque(maxlen=cfg.train.ema_bn_batches)
        self.start_phase(state["phase"] if state is not None else phase_at(cfg, 0))
        if state is not None:
            self.load(state)

    def start_phase(self, phase: str) -> None:
        """Fresh optimisers, GradScalers and weight average for `phase` (the GAN phase does
        not inherit pretraining's Adam moments or average)."""
        betas = tuple(self.cfg.train.adam_betas)
        self.phase = phase
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=lr_at(self.cfg, self.step), betas=betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=lr_at(self.cfg, self.step, "d"), betas=betas)
        self.scaler_g, self.scaler_d = (
            make_scaler(self.device, self.precision),
            make_scaler(self.device, self.precision),
        )
        self.ema = EMA(self.g, self.cfg.train.ema_decay)
        self.ema.model.to(self.device)
        self.ema_updates = 0
        if phase == "gan":
            self.d_features.refresh(unwrap(self.d))

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "phase": self.phase,
            "ema_updates": self.ema_updates,
            "generator": unwrap(self.g).state_dict(),
            "discriminator": unwrap(self.d).state_dict(),
            "ema": self.ema.state_dict(),
            "d_features": self.d_features.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
        }

    def load(self, state: dict) -> None:
        """Continue from a checkpoint's counters, average and (when its phase goes on)
        optimisers; the networks' weights were loaded before DDP wrapped them."""
        self.step, self.epoch, self.ema_updates = state["step"], state["epoch"], state["ema_updates"]
        self.ema.load_state_dict(state["ema"])
        if "d_features" in state:  # checkpoints from before it took D's current stages (start_phase)
            self.d_features.load_state_dict(state["d_features"])
        if state["phase"] == phase_at(self.cfg, self.step):
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.scaler_g.load_state_dict(state["scaler_g"])
            self.scaler_d.load_state_dict(state["scaler_d"])

    def train_step(self, lr_batch: torch.Tensor, hr_batch: torch.Tensor, g_loss, pixel: PixelLoss) -> dict[str, float]:
        """One optimisation step of the current phase at the scheduled learning rates."""
        for opt, value in ((self.opt_g, lr_at(self.cfg, self.step)), (self.opt_d, lr_at(self.cfg, self.step, "d"))):
            for group in opt.param_groups:
                group["lr"] = value
        into_gan = self.step - self.cfg.pretrain_steps
        if self.phase == "gan" and into_gan > 0 and into_gan % self.cfg.train.gan.d_features_every == 0:
            self.d_features.refresh(unwrap(self.d))
        self.recent_lr.append(lr_batch)
        if self.phase == "pretrain":
            stats = pretrain_step(self.g, self.opt_g, lr_batch, hr_batch, pixel, self.precision, self.scaler_g)
        else:
            stats = gan_step(
                self.g,
                self.d,
                self.opt_g,
                self.opt_d,
                lr_batch,
                hr_batch,
                g_loss,
                self.precision,
                self.scaler_g,
                self.scaler_d,
            )
        self.ema.update(self.g, self.ema.warmup_decay(self.ema_updates))
        self.ema_updates += 1
        self.step += 1
        return stats

    def refresh_ema_statistics(self) -> None:
        """Recompute the EMA generator's BatchNorm running statistics for its own weights: EMA.update
        copies the live generator's, which belong to other weights. A cumulative average (momentum
        None) in train mode over the recent LR batches, without gradients; every rank calls it at
        the same steps (with synced BatchNorm it is collective)."""
        if self.recent_lr:
            update_bn(list(self.recent_lr), self.ema.model)
