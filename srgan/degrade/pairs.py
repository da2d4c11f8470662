"""Training pairs as Real-ESRGAN makes them: an HR crop large enough for the degradation's kernels is
degraded whole, then an aligned (LR, HR) patch pair is cut from it (feed_data's paired_random_crop)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from srgan.degrade.base import Degradation, check_hr

_CROP_SALT = 0x9E3779B97F4A7C15  # the crop positions' seed differs from the degradation's


def crop_size(degrade: Degradation, patch: int) -> int:
    """The HR crop size a batcher cuts for `patch` px training pairs: the degradation's
    `degrade_size` (down to a multiple of its scale) where it has one above the patch, else the patch."""
    size = getattr(degrade, "degrade_size", None)
    if size is None:
        return patch
    return max(patch, size - size % degrade.scale)


def pad_to(image: torch.Tensor, size: int) -> torch.Tensor:
    """(..., H, W) padded at the bottom and right to at least size x size by reflection (reflect-101,
    reflected again where one pass is not enough), as RealESRGANDataset pads images under 400 px."""
    while image.shape[-2] < size or image.shape[-1] < size:
        h, w = image.shape[-2:]
        pad_h, pad_w = min(max(size - h, 0), h - 1), min(max(size - w, 0), w - 1)
        if pad_h == pad_w == 0:  # a 1 px side has nothing to reflect
            return F.pad(image[None], (0, max(size - w, 0), 0, max(size - h, 0)), mode="replicate")[0]
        image = F.pad(image[None], (0, pad_w, 0, pad_h), mode="reflect")[0]
    return image


def training_pair(hr: torch.Tensor, seed: int, degrade: Degradation, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR (N, C, patch/s, patch/s), HR (N, C, patch, patch)) from HR crops (N, C, S, S), float in [0, 1],
    S >= patch (crop_size): the crops degraded whole with `seed`, then from each an aligned patch pair
    at a position drawn from the seed. The same seed and crops give the same pair on any device.
    The HR is the plain one: the losses make their targets from it (`usm_target`)."""
    check_hr(hr, degrade.scale)
    n, _, h, w = hr.shape
    s = degrade.scale
    if patch % s or h < patch or w < patch:
        raise ValueError(f"patch {patch} must be a multiple of scale {s} within the {h}x{w} HR crops")
    lr = degrade(hr, seed)
    if h == patch and w == patch:
        return lr, hr
    g = torch.Generator().manual_seed((int(seed) + _CROP_SALT) % 2**63)
    small = patch // s
    tops = torch.randint(0, h // s - small + 1, (n,), generator=g).tolist()
    lefts = torch.randint(0, w // s - small + 1, (n,), generator=g).tolist()
    lr_out = torch.stack([lr[i, :, t : t + small, x : x + small] for i, (t, x) in enumerate(zip(tops, lefts))])
    hr_out = torch.stack(
        [hr[i, :, t * s : (t + small) * s, x * s : (x + small) * s] for i, (t, x) in enumerate(zip(tops, lefts))]
    )
    return lr_out, hr_out
