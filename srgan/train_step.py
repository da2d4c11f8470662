"""One optimisation step of SRGAN (and of its PSNR-oriented SRResNet pretraining), plus EMA.

`gan_step` is the whole algorithm of the paper for one batch: update D on real HR and
detached SR, then update G on the weighted perceptual loss with D frozen. Precision is
one of ``"fp32"``, ``"bf16"`` (autocast, no scaling needed) or ``"fp16"``
(autocast with one GradScaler per optimiser, so an overflow in D's step never skips
G's). Batches are (N, C, h, w) LR and (N, C, h*s, w*s) HR, float in [0, 1].
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from srgan.losses import GanType, GeneratorLoss, PixelLoss, discriminator_loss
from srgan.precision import Precision, autocast


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel (or similar) wrapper."""
    return getattr(model, "module", model)


def make_scaler(device: torch.device, precision: Precision) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 (a pass-through otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def _optimise(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def pretrain_step(
    generator: nn.Module,
    optimizer: torch.optim.Optimizer,
    lr: torch.Tensor,
    hr: torch.Tensor,
    pixel_loss: PixelLoss,
    precision: Precision = "fp32",
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """PSNR-oriented step: pixel loss only (SRResNet training)."""
    scaler = scaler or make_scaler(lr.device, precision)
    with autocast(lr.device, precision):
        loss = pixel_loss(generator(lr).float(), hr)
    _optimise(loss, optimizer, scaler)
    return {"loss_pixel": loss.item()}


def gan_step(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    lr: torch.Tensor,
    hr: torch.Tensor,
    g_loss: GeneratorLoss,
    precision: Precision = "fp32",
    scaler_g: torch.amp.GradScaler | None = None,
    scaler_d: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One D update then one G update. Returns losses and mean D(real), D(fake) (probabilities)."""
    device = lr.device
    scaler_g = scaler_g or make_scaler(device, precision)
    scaler_d = scaler_d or make_scaler(device, precision)
    gan_type: GanType = g_loss.gan_type

    with autocast(device, precision):
        sr = generator(lr)

    # Discriminator: real HR against detached SR.
    discriminator.requires_grad_(True)
    with autocast(device, precision):
        real_logits = discriminator(hr).float()
        fake_logits = discriminator(sr.detach()).float()
        loss_d = discriminator_loss(real_logits, fake_logits, gan_type)
    _optimise(loss_d, opt_d, scaler_d)

    # Generator: D frozen and used unwrapped; its parameters need no gradient, so the
    # DDP wrapper (and its gradient all-reduce) has nothing to do here.
    d_plain = unwrap(discriminator)
    d_plain.requires_grad_(False)
    try:
        with autocast(device, precision):
            fake_logits_g = d_plain(sr).float()
            real_logits_g = d_plain(hr).float().detach() if gan_type == "ragan" else None
            # Pixel and feature losses run under autocast too (VGG is most of the FLOPs);
            # autocast computes mse/bce in float32.
            loss_g, terms = g_loss(sr, hr, fake_logits_g, real_logits_g)
        _optimise(loss_g, opt_g, scaler_g)
    finally:
        d_plain.requires_grad_(True)

    out = {
        "loss_d": loss_d.item(),
        "loss_g": loss_g.item(),
        "d_real": torch.sigmoid(real_logits).mean().item(),
        "d_fake": torch.sigmoid(fake_logits).mean().item(),
    }
    out.update({f"loss_{name}": value.item() for name, value in terms.items()})
    return out


class EMA:
    """Exponential moving average of a model's weights: ema = d * ema + (1 - d) * param.

    Buffers (BN running statistics) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)

    def warmup_decay(self, updates: int) -> float:
        """The decay to use after `updates` updates: min(decay, (1 + n) / (10 + n)), so a
        short run's average is not dominated by the initial weights."""
        return min(self.decay, (1.0 + updates) / (10.0 + updates))

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float | None = None) -> None:
        d = self.decay if decay is None else decay
        source = unwrap(model)
        for ema_p, p in zip(self.model.parameters(), source.parameters()):
            ema_p.mul_(d).add_(p.detach(), alpha=1.0 - d)
        for ema_b, b in zip(self.model.buffers(), source.buffers()):
            ema_b.copy_(b)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
