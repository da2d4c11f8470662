"""NIQE (Mittal, Soundararajan & Bovik 2013, "Making a 'completely blind' image quality
analyzer"): a no-reference naturalness score, the distance of an image's local statistics
from those of pristine photographs. Lower = more natural.

We follow the official MATLAB release (live.ece.utexas.edu/research/quality/niqe_release.zip)
as BasicSR 1.4.2's `basicsr.metrics.niqe.calculate_niqe(..., convert_to='y')` reproduces it:
  * the MATLAB `rgb2ycbcr` luma of RGB in [0, 1] (0-255 scale), rounded to integers; a
    1-channel image is taken as luma already (value * 255, rounded). No clamping;
  * the image cut to whole 96x96 blocks; at scales 1 and 2 (MATLAB `imresize(img, 0.5)`,
    bicubic with antialiasing) each pixel is normalised by its local mean and deviation
    under a 7x7 Gaussian window (replicate border): (x - mu) / (sigma + 1), in float32
    as BasicSR computes it (see `_local_normalise`: it decides flat areas);
  * per block, 18 features per scale from asymmetric generalised Gaussian (AGGD) fits of the
    normalised values and of their products with the 4 neighbours (circular shifts within
    the block), the shape found by grid search over 0.2:0.001:10;
  * a Gaussian fitted to the blocks' 36 features (NaN-aware mean, covariance of the rows
    without NaN), and the score sqrt((mu_p - mu)' pinv((cov_p + cov) / 2) (mu_p - mu)).
Agreement with BasicSR: within 2e-3 on Set5 and the sample photos (tests/srgan/test_niqe.py).
Departures: with one block (or fewer than two NaN-free blocks) the feature covariance is
undefined and BasicSR fails (np.cov gives NaN, pinv raises LinAlgError); we take it as zero, so
the score is the distance under the pristine covariance alone. A flat image (no block with
any texture) scores NaN, where BasicSR raises.

`niqe_grid_mean` averages the score over block grids shifted by a few pixels: one grid's
score moves by more than 1 on small images when the grid shifts (docs/sweeps-and-promotion.md
has the figures), so a decision between two close scores should not rest on one grid.

Pristine model: `srgan/data/niqe_pris_params.npz` (mu_pris_param (1, 36), cov_pris_param
(36, 36), gaussian_window (7, 7)), the values of the MATLAB release's `modelparameters.mat`
as BasicSR 1.4.2 ships them (`basicsr/metrics/niqe_pris_params.npz`; BasicSR is Apache-2.0,
the release is by LIVE, UT Austin: notices in srgan/data/README.md);
sha256 2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296, checked at load.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from srgan.metrics import rgb_to_y
from srgan.resize import imresize
from srgan.weights import WeightsError, sha256_of

PARAMS_PATH = Path(__file__).with_name("data") / "niqe_pris_params.npz"
PARAMS_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"
BLOCK = 96
GRID_OFFSETS = (0, 3, 6, 9)  # pixels the block grid is shifted by, down and right
# The neighbour products: np.roll shifts (rows, cols) for horizontal, vertical and the two diagonals.
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


@lru_cache(maxsize=4)
def load_pristine_params(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mu (36,), cov (36, 36), 1-D Gaussian window (7,)), float64, from the checked npz."""
    if not path.is_file():
        raise WeightsError(
            f"NIQE pristine parameters missing at {path}; reinstall srgan-pipeline (the file ships as package data)"
        )
    digest = sha256_of(path)
    if digest != PARAMS_SHA256:
        raise WeightsError(
            f"NIQE pristine parameters at {path} have sha256 {digest}, expected {PARAMS_SHA256}; restore the file shipped with srgan-pipeline"
        )
    with np.load(path, allow_pickle=False) as npz:
        mu = torch.from_numpy(npz["mu_pris_param"].reshape(-1).astype(np.float64))
        cov = torch.from_numpy(npz["cov_pris_param"].astype(np.float64))
        window = npz["gaussian_window"].astype(np.float64)
    # The 7x7 window is an outer product of one 1-D Gaussian (to 3e-17), so filter separably.
    return mu, cov, torch.from_numpy(window.sum(axis=1))


@lru_cache(maxsize=1)
def _shape_grid() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The AGGD shape grid alpha = 0.2:0.001:10 and, per alpha: the moment ratio
    r = G(2/a)^2 / (G(1/a) G(3/a)) the search matches, the scale factor sqrt(G(1/a) / G(3/a))
    and the mean factor G(2/a) / G(1/a) (G = gamma function)."""
    alpha = np.arange(0.2, 10.001, 0.001)  # the release's grid, value for value (len 9801)
    gamma = np.vectorize(math.gamma)
    inv = np.reciprocal(alpha)
    ratio = np.square(gamma(inv * 2)) / (gamma(inv) * gamma(inv * 3))
    scale = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    mean = gamma(2 / alpha) / gamma(1 / alpha)
    # r grows strictly with alpha, which lets a sorted search replace the full argmin.
    assert np.all(np.diff(ratio) > 0)
    return tuple(torch.from_numpy(a) for a in (alpha, ratio, scale, mean))


def _nearest_on_grid(ratio: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """argmin_i (ratio[i] - value)^2 for each value (first index on ties; 0 for NaN, as
    numpy's argmin of an all-NaN array), ratio strictly increasing."""
    hi = torch.searchsorted(ratio, value).clamp(max=len(ratio) - 1)
    lo = (hi - 1).clamp(min=0)
    pick_lo = (ratio[lo] - value) ** 2 <= (ratio[hi] - value) ** 2
    idx = torch.where(pick_lo, lo, hi)
    return torch.where(torch.isnan(value), torch.zeros_like(idx), idx)


def _aggd(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """AGGD fit of each row of x (..., P) by moment matching: shape alpha, left and right
    scales beta_l, beta_r, and the distribution's mean. A row without negative (or positive)
    values gives NaN scales and alpha = 0.2."""
    alpha, ratio, scale, mean_factor = (t.to(x.device) for t in _shape_grid())
    sq = x * x
    neg, pos = x < 0, x > 0
    left_std = torch.sqrt((sq * neg).sum(-1) / neg.sum(-1))  # 0 / 0 = NaN, like numpy's empty mean
    right_std = torch.sqrt((sq * pos).sum(-1) / pos.sum(-1))
    gammahat = left_std / right_std
    rhat = x.abs().mean(-1) ** 2 / sq.mean(-1)
    rhatnorm = (rhat * (gammahat**3 + 1) * (gammahat + 1)) / ((gammahat**2 + 1) ** 2)
    idx = _nearest_on_grid(ratio, rhatnorm)
    beta_l, beta_r = left_std * scale[idx], right_std * scale[idx]
    return alpha[idx], beta_l, beta_r, (beta_r - beta_l) * mean_factor[idx]


def _block_features(normalised: torch.Tensor, block: int) -> torch.Tensor:
    """(N, H, W) normalised image, H and W multiples of `block` -> (N, blocks, 18)."""
    n, h, w = normalised.shape
    blocks = normalised.reshape(n, h // block, block, w // block, block).transpose(2, 3)
    blocks = blocks.reshape(n, -1, block, block)  # (N, B, block, block), row-major block order
    blocks = blocks.double()
    alpha, beta_l, beta_r, _ = _aggd(blocks.flatten(2))
    feats = [alpha, (beta_l + beta_r) / 2]
    for shift in _SHIFTS:
        products = blocks * torch.roll(blocks, shifts=shift, dims=(-2, -1))
        alpha, beta_l, beta_r, mean = _aggd(products.flatten(2))
        feats += [alpha, mean, beta_l, beta_r]
    return torch.stack(feats, dim=-1)


def _local_normalise(y: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """(N, H, W) -> (x - mu) / (sigma + 1) as float32, mu and sigma under the Gaussian window
    with replicated borders (scipy.ndimage.convolve mode='nearest').

    Precision follows BasicSR: the filter sums in float64, its outputs and everything after
    are float32. It matters in flat areas, where x - mu is rounding noise that the division
    by sigma + 1 ~ 1 does not suppress: float32 makes it exactly 0 there, as BasicSR gets."""
    taps = [float(t) for t in window.flip(0)]
    r = len(taps) // 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        # Separable filtering as shifted sums: far faster than float64 conv2d on CPU.
        x = F.pad(x.double().unsqueeze(1), (r, r, r, r), mode="replicate").squeeze(1)
        h, w = x.shape[-2] - 2 * r, x.shape[-1] - 2 * r
        rows = x[:, :h] * taps[0]
        for i, t in enumerate(taps[1:], start=1):
            rows.add_(x[:, i : i + h], alpha=t)
        out = rows[:, :, :w] * taps[0]
        for i, t in enumerate(taps[1:], start=1):
            out.add_(rows[:, :, i : i + w], alpha=t)
        return out.float()

    y = y.float()
    mu = blur(y)
    sigma = torch.sqrt((blur(y * y) - mu * mu).abs())
    return (y - mu) / (sigma + 1)


def _rounded_luma(images: torch.Tensor, crop_border: int) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> (N, H, W) float64 luma on the 0-255 scale, integer-rounded."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"NIQE needs (N, C, H, W) images with C = 1 or 3, got shape {tuple(images.shape)}")
    x = images.double()
    y = rgb_to_y(x) if x.shape[1] == 3 else x * 255.0
    y = y[:, 0].round()  # as BasicSR does, "to be consistent with MATLAB"
    if crop_border > 0:
        y = y[:, crop_border:-crop_border, crop_border:-crop_border]
    return y


def _mvg_distance(feats: torch.Tensor, mu_p: torch.Tensor, cov_p: torch.Tensor) -> torch.Tensor:
    """(N, B, 36) block features -> (N,) distance of their Gaussian fit from the pristine one."""
    mu = feats.nanmean(dim=1)
    valid = ~torch.isnan(feats).any(dim=-1, keepdim=True)  # (N, B, 1): rows the covariance uses
    count = valid.sum(dim=1, keepdim=True)  # (N, 1, 1)
    clean = torch.where(valid, feats, torch.zeros_like(feats))
    centred = torch.where(valid, clean - clean.sum(dim=1, keepdim=True) / count, torch.zeros_like(feats))
    cov = centred.transpose(1, 2) @ centred / (count - 1).clamp(min=1)  # zero when < 2 rows
    d = (mu_p - mu).unsqueeze(-1)  # (N, 36, 1)
    inv = torch.linalg.pinv((cov_p + cov) / 2, rtol=1e-15, hermitian=True)  # numpy's default rcond
    return torch.sqrt((d.transpose(1, 2) @ inv @ d).reshape(-1))


def niqe(images: torch.Tensor, crop_border: int = 0) -> torch.Tensor:
    """NIQE of each image. images: (N, C, H, W) float in [0, 1], C = 1 (luma) or 3 (RGB).
    Returns (N,) float64; lower = more natural. Needs at least one 96x96 block after the
    `crop_border` crop; a remainder that does not fill a whole block is ignored."""
    mu_p, cov_p, window = load_pristine_params(PARAMS_PATH)
    y = _rounded_luma(images, crop_border)
    h, w = y.shape[-2:]
    if h < BLOCK or w < BLOCK:
        raise ValueError(
            f"NIQE needs images of at least {BLOCK}x{BLOCK} pixels after a crop_border of {crop_border}, got {h}x{w}"
        )
    y = y[:, : h // BLOCK * BLOCK, : w // BLOCK * BLOCK]
    full = _block_features(_local_normalise(y, window), BLOCK)
    half = imresize(y / 255.0, scale=0.5) * 255.0
    feats = torch.cat([full, _block_features(_local_normalise(half, window), BLOCK // 2)], dim=-1)
    return _mvg_distance(feats, mu_p.to(feats.device), cov_p.to(feats.device))


def niqe_blocks(height: int, width: int, crop_border: int = 0, offset: int = 0) -> int:
    """Whole 96 x 96 blocks NIQE fits on an image of this size, grid shifted by `offset`."""
    h, w = height - 2 * crop_border - offset, width - 2 * crop_border - offset
    return max(h, 0) // BLOCK * (max(w, 0) // BLOCK)


def niqe_grid_mean(images: torch.Tensor, crop_border: int = 0, offsets: tuple[int, ...] = GRID_OFFSETS) -> torch.Tensor:
    """NIQE of each image averaged over block grids shifted by each of `offsets` pixels (the
    image loses that many rows and columns at its top and left). (N, C, H, W) in [0, 1] ->
    (N,) float64; needs one whole block at the largest offset."""
    return torch.stack([niqe(images[..., o:, o:], crop_border) for o in offsets]).mean(dim=0)
