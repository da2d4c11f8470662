"""What every degradation shares: the call it answers, the check of its HR input, seeded draws and CPU batch pieces."""

from __future__ import annotations

from typing import Protocol

import torch

Range = tuple[float, float]
CPU_PIECE_PIXELS = 1 << 17  # image pixels per piece of a batch that resize and jpeg work on at once on a CPU


class Degradation(Protocol):
    """`lr = degradation(hr, seed)`: hr (N, C, H, W) float in [0, 1], H and W divisible by `scale`, ->
    (N, C, H/scale, W/scale) float in [0, 1]. The same seed on the same device gives the same LR. Random
    parameters are drawn per sample unless noted "per batch" (choices that change tensor sizes or the code path).
    """

    scale: int

    def __call__(self, hr: torch.Tensor, seed: int) -> torch.Tensor: ...


def check_hr(hr: torch.Tensor, scale: int) -> None:
    """Raise ValueError, with the fix, unless hr is (N, C, H, W) float with H and W divisible by scale."""
    if hr.dim() != 4 or not torch.is_floating_point(hr):
        raise ValueError(f"degradations take (N, C, H, W) float tensors in [0, 1], got {tuple(hr.shape)} {hr.dtype}")
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} is not divisible by scale {scale}; crop it to a multiple of {scale} first")


def seeded(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def uniform(g: torch.Generator, n: int, bounds: Range) -> torch.Tensor:
    """(N,) uniform draws in [low, high) on g's device."""
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(n, generator=g, device=g.device)


def piece_size(x: torch.Tensor) -> int:
    """Images per piece of the batch x (N, C, H, W) for passes over it: on a CPU, pieces that stay in cache."""
    n, _, h, w = x.shape
    return max(1, CPU_PIECE_PIXELS // (h * w)) if x.device.type == "cpu" else n
