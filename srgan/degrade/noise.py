"""Real-ESRGAN's noise: Gaussian or Poisson (BasicSR's shot noise), in colour or gray, per sample."""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from srgan.degrade.rounds import RoundPlan

_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale, which BasicSR uses


def _gray(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    if c != 3:
        return x.mean(dim=1, keepdim=True)
    return (torch.tensor(_GRAY, device=x.device, dtype=x.dtype) @ x.view(n, 3, h * w)).view(n, 1, h, w)


def add_noise(x: torch.Tensor, g: torch.Generator, plan: RoundPlan, out: torch.Tensor | None = None) -> torch.Tensor:
    """Each sample's Gaussian or Poisson noise, colour or gray, clipped to [0, 1]. Only the field a
    sample uses is drawn (a gray sample draws one plane, not a colour field as well). Into `out`
    if given (x itself: in place), else a new tensor."""
    out = torch.empty_like(x) if out is None else out
    kinds = list(zip(plan.gaussian_noise.tolist(), plan.gray_noise.tolist()))
    for kind in ((True, True), (True, False), (False, True), (False, False)):
        members = [i for i, k in enumerate(kinds) if k == kind]
        if not members:
            continue
        gaussian, gray = kind
        amount = (plan.noise_sigma if gaussian else plan.poisson_scale)[members].to(x.device, x.dtype).view(-1, 1, 1, 1)
        idx = torch.tensor(members, device=x.device)
        src = x.index_select(0, idx)
        plane = _gray(src) if gray else src
        if gaussian:
            src.addcmul_(torch.randn(plane.shape, generator=g, device=x.device, dtype=x.dtype), amount)
        else:  # src + scale (counts / vals - levels / 255), BasicSR's shot noise
            counts, vals, levels = _shot_counts(plane, g)
            src.addcmul_(counts, amount / vals).addcmul_(levels, amount / -255)
        out.index_copy_(0, idx, src.clamp_(0, 1))
    return out


def _shot_counts(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BasicSR's shot noise counts for (M, C, H, W) x: Poisson(levels * vals / 255), levels its
    8-bit values, vals their number of distinct values per sample rounded up to a power of two
    (256 for most patches). Returns counts (float16 whole numbers), vals (M, 1, 1, 1), levels."""
    m = x.shape[0]
    levels = (x * 255).round_().clamp_(0, 255)
    lev = levels.int()
    offsets = torch.arange(m, device=x.device, dtype=torch.int32).view(m, 1)
    distinct = (torch.bincount((lev.view(m, -1) + 256 * offsets).flatten(), minlength=m * 256).view(m, 256) > 0).sum(
        dim=1
    )
    exponent = torch.ceil(torch.log2(distinct.float())).view(m, 1, 1, 1)  # vals = 2^exponent, 1..256
    return _poisson_counts(lev, exponent.int(), g), torch.exp2(exponent).to(x.dtype), levels


def _poisson_counts(levels: torch.Tensor, exponent: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Poisson(level * 2^exponent / 255) counts (float16, whole numbers) for int32 levels 0..255
    and exponents 0..8 (broadcast against the levels), by inverting the CDF.

    A uniform bucket of 2048 picks, with the level and exponent, a guide table entry (Chen &
    Asau): the count, or where a CDF value falls inside the bucket, the count to start from;
    only those draws are refined, with a float64 uniform for the position inside the bucket, so
    the counts follow the Poisson law to float64 precision. Several times torch.poisson's speed
    on a CPU."""
    cdf, base, guide = _poisson_tables(levels.device)
    buckets = guide.numel() // len(base)
    bucket = torch.randint(buckets, levels.shape, generator=g, device=levels.device, dtype=torch.int32)
    row = torch.add(levels, exponent, alpha=256)
    count = guide.index_select(0, torch.add(bucket, row, alpha=buckets).view(-1))  # negative: -(count + 1), refine
    refine = torch.nonzero(count < 0).squeeze(1)
    if len(refine):
        u = (
            bucket.view(-1)[refine] + torch.rand(len(refine), generator=g, device=levels.device, dtype=torch.float64)
        ) / buckets
        row = row.view(-1)[refine].long()
        start = base[row]  # count k of a row sits at start + k in cdf
        at = start - 1 - count[refine].long()  # the answer is the least k with u < CDF(k)
        for _ in range(2):
            at += cdf[at] <= u
        far = torch.nonzero(cdf[at] <= u).squeeze(1)
        if len(far):  # deep in a tail, where many counts share a bucket: bisect the row
            width = len(cdf) // len(base)
            found = torch.searchsorted(cdf.view(-1, width)[row[far]], u[far, None], right=True).squeeze(1)
            at[far] = row[far] * width + found
        count[refine] = (at - start).to(count.dtype)
    return count.view(levels.shape)


@lru_cache(maxsize=4)
def _poisson_tables(device: torch.device, buckets: int = 2048) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each row 256 log2(vals) + level (vals 1, 2, ... 256; rate level * vals / 255): its CDF
    over `width` counts from lo, 12 sd below the rate (the mass left out is below 1e-20; the last
    value is set to 1), flattened row-major; base = row * width - lo, so that count k of the row
    sits at base + k; and the guide table, row-major: for bucket b the least count with
    CDF > b / buckets, stored as -(count + 1) where a CDF value falls inside the bucket (float16,
    exact for these whole numbers, so that the counts need no conversion)."""
    vals = 2.0 ** torch.arange(9, dtype=torch.float64)
    rate = (vals[:, None] * torch.arange(256, dtype=torch.float64) / 255).flatten()
    width = int(24 * math.sqrt(256)) + 40
    lo = (rate - 12 * rate.sqrt() - 3).floor().clamp_min(0)
    k = lo[:, None] + torch.arange(width, dtype=torch.float64)
    pmf = torch.exp(k * torch.log(rate[:, None]) - rate[:, None] - torch.lgamma(k + 1))
    pmf[rate == 0] = (k[rate == 0] == 0).double()  # rate 0 is always 0 (0 * log 0 is nan above)
    cdf = pmf.cumsum(dim=1)
    cdf[:, -1] = 1.0
    edges = torch.arange(buckets + 1, dtype=torch.float64).expand(len(rate), -1) / buckets
    first = torch.searchsorted(cdf, edges[:, :-1].contiguous(), right=True).clamp(max=width - 1)
    count = lo[:, None] + first
    guide = torch.where(cdf.gather(1, first) < edges[:, 1:], -count - 1, count).to(torch.float16).flatten()
    base = torch.arange(len(rate), dtype=torch.float64) * width - lo
    return cdf.flatten().to(device), base.long().to(device), guide.to(device)
