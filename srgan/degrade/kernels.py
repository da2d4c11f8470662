"""Blur kernels as batched tensors: Gaussian PSFs, and Real-ESRGAN's mixed and sinc kernels as BasicSR makes them."""

from __future__ import annotations

import math
from functools import lru_cache

import torch

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso", "sinc")


def gaussian_kernels(sigma_x: torch.Tensor, sigma_y: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """(N,) sigmas and rotation (radians) -> (N, size, size) normalised Gaussian kernels."""
    r = (size - 1) / 2
    coords = torch.arange(size, dtype=sigma_x.dtype, device=sigma_x.device) - r
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    u = cos * xx + sin * yy
    v = -sin * xx + cos * yy
    k = torch.exp(-0.5 * ((u / sigma_x[:, None, None]) ** 2 + (v / sigma_y[:, None, None]) ** 2))
    return k / k.sum(dim=(1, 2), keepdim=True)


def mixed_kernels(
    kind: torch.Tensor,
    size: torch.Tensor,
    sigma_x: torch.Tensor,
    sigma_y: torch.Tensor,
    theta: torch.Tensor,
    beta: torch.Tensor,
    omega: torch.Tensor,
    max_size: int,
) -> torch.Tensor:
    """(N,) types (indices into KERNEL_TYPES), odd sizes and shape parameters -> (N, K, K) kernels,
    K = max_size, as BasicSR's random_mixed_kernels and circular_lowpass_kernel make them: each is
    computed on its own size x size grid, normalised there and zero-padded to K."""
    x, y = _grid(max_size)
    view = lambda t: t.double().view(-1, 1, 1)  # noqa: E731
    cos, sin = torch.cos(view(theta)), torch.sin(view(theta))
    q = ((cos * x + sin * y) / view(sigma_x)) ** 2 + ((-sin * x + cos * y) / view(sigma_y)) ** 2  # x' Sigma^-1 x
    family = kind.view(-1, 1, 1) // 2  # 0 Gaussian, 1 generalized Gaussian, 2 plateau, 3 sinc
    q = q ** torch.where(family == 0, 1.0, view(beta))  # a Gaussian is the generalized one with beta 1
    k = torch.where(family == 2, 1 / (q + 1), torch.exp(-0.5 * q))
    rows = family.flatten() == 3
    if rows.any():
        k[rows] = _rings(omega[rows], max_size)
    return _cut(k, size)


def sinc_kernels(size: torch.Tensor, omega: torch.Tensor, max_size: int) -> torch.Tensor:
    """(N,) odd sizes and cut-offs (radians) -> (N, K, K) circular low-pass (sinc) kernels."""
    return _cut(_rings(omega, max_size), size)


@lru_cache(maxsize=4)
def _grid(max_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = torch.arange(max_size, dtype=torch.float64) - (max_size - 1) / 2
    return c.view(1, 1, -1), c.view(1, -1, 1)


@lru_cache(maxsize=4)
def radii(max_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The grid's distinct radii, each tap's index among them, each tap's square radius max(|x|, |y|)."""
    x, y = _grid(max_size)
    radius2, at = torch.unique(x**2 + y**2, return_inverse=True)
    return radius2.sqrt(), at.flatten(), torch.maximum(x.abs(), y.abs())[0]


def _rings(omega: torch.Tensor, max_size: int) -> torch.Tensor:
    """The circular low-pass kernel w J1(w r) / (2 pi r) (w^2 / (4 pi) at r = 0) for each (N,) w,
    J1 computed once per distinct radius."""
    r, at, _ = radii(max_size)
    w = omega.double()[:, None]
    ring = torch.where(
        r > 0, w * torch.special.bessel_j1(w * r) / (2 * math.pi * r.clamp_min(1e-12)), w**2 / (4 * math.pi)
    )
    return ring[:, at].view(-1, max_size, max_size)


def _cut(k: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Zero (N, K, K) kernels outside their (N,) sizes, normalise, float32."""
    k = torch.where(radii(k.shape[-1])[2] <= size.view(-1, 1, 1) // 2, k, 0.0)
    return (k / k.sum(dim=(1, 2), keepdim=True)).float()
