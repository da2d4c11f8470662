"""BatchNorm over the whole distributed batch: `sync_batch_norm` converts a model's layers
(torch's nn.SyncBatchNorm on CUDA, `SyncBatchNorm2d` elsewhere: torch's refuses CPU tensors),
and `broadcast_state` makes every process's copy of a model equal to one process's.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes, with autograd: every process's output is the sum, so the
    gradient of its input is the sum of every process's gradient of the output. Blocking
    collectives in both directions: the functional (asynchronous) all-reduce left work in
    flight that tore gloo down mid-call at exit on a loaded machine (SIGABRT)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _all_reduce(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(x)


class SyncBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d whose training-mode statistics are those of every process's batch
    together, so each process's outputs, gradients and running statistics are those of
    nn.BatchNorm2d on the concatenated batch (the weight and bias gradients: each process
    its own outputs' share, which DDP combines as it does every parameter's). Same parameters,
    buffers and state_dict keys as nn.BatchNorm2d; in eval mode, or in one process, it is
    nn.BatchNorm2d.

    Works with any backend, gloo on CPU included: one all-reduce in forward (per-channel sums
    of x and x^2, and the count) and one in backward.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or _world() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        channels, dims = x.shape[1], [0, 2, 3]
        shape = (1, channels, 1, 1)
        xf = x.float()
        count = torch.tensor([x.numel() // channels], dtype=torch.float64, device=x.device)
        # One all-reduce of the sums; float64 keeps the count exact and E[x^2] - E[x]^2 free
        # of the cancellation it would suffer in float32.
        totals = _all_reduce(torch.cat([xf.sum(dims, dtype=torch.float64), xf.double().square().sum(dims), count]))
        n = totals[-1].item()
        if n <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got {int(n)} over all processes")
        mean64 = totals[:channels] / n
        mean, var = (
            mean64.float(),
            (totals[channels:-1] / n - mean64.square()).clamp_min(0).float(),
        )  # biased, as BatchNorm normalises
        centred = xf - mean.view(shape)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.weight is not None:
            y = y * self.weight.view(shape)
        if self.bias is not None:
            y = y + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * (n / (n - 1)))
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased_var, alpha=factor)


def _to_sync_bn2d(module: nn.Module) -> nn.Module:
    """`module` with each nn.BatchNorm2d replaced by a SyncBatchNorm2d that shares its
    parameters and buffers (as nn.SyncBatchNorm.convert_sync_batchnorm does)."""
    if type(module) is nn.BatchNorm2d:
        bn = module
        module = SyncBatchNorm2d(
            bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, device=torch.device("meta")
        )
        module.weight, module.bias = bn.weight, bn.bias
        module.running_mean, module.running_var, module.num_batches_tracked = (
            bn.running_mean,
            bn.running_var,
            bn.num_batches_tracked,
        )
        module.train(bn.training)
    for name, child in module.named_children():
        setattr(module, name, _to_sync_bn2d(child))
    return module


def sync_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """`module`, to be trained on `device` in a process group, with its BatchNorm layers
    synced across the processes: torch's nn.SyncBatchNorm on CUDA (fused kernels, one
    all-gather per layer), SyncBatchNorm2d on other devices."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_sync_bn2d(module)


@torch.no_grad()
def broadcast_state(module: nn.Module, src: int = 0) -> None:
    """Make every process's `module` (weights and buffers) equal to process `src`'s."""
    if _world() == 1:
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src)
