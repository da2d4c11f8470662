"""The perceptual gate's figures and their error bars: per image, NIQE averaged over shifted
block grids, GMSD (full reference, no learned weights) and LPIPS where its weights are, for a
model and for the no-learning baselines (srgan.baselines) on the same holdout; and the paired
comparison over images that says whether one is better than another at a stated confidence."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pipeline.errors import DataError
from pipeline.io import storage
from pipeline.models.reference import Upscaler
from pipeline.scoring.protocol import iter_images, upscale_for_scoring
from srgan.baselines import NoLearning, family
from srgan.metrics import gmsd, psnr, psnr_y, quantize
from srgan.niqe import GRID_OFFSETS, niqe_blocks, niqe_grid_mean

KEYS = ("niqe", "gmsd", "lpips", "psnr")  # per image; psnr is on Y where there is a Y channel
LOWER_IS_BETTER = ("niqe", "gmsd", "lpips")
RESAMPLES = 10_000


@dataclass
class Contender:
    """One model's (or baseline's) per-image figures on a holdout, in the holdout's order."""

    name: str
    images: list[str]
    blocks: int  # whole NIQE blocks over the holdout, on the most shifted grid
    niqe: list[float]
    gmsd: list[float]
    psnr: list[float]
    lpips: list[float] | None = None

    def mean(self, key: str) -> float | None:
        values = getattr(self, key)
        return float(np.mean(values)) if values else None

    def summary(self) -> str:
        parts = [f"NIQE {self.mean('niqe'):.3f}", f"GMSD {self.mean('gmsd'):.4f}", f"PSNR {self.mean('psnr'):.2f} dB"]
        if self.lpips:
            parts.insert(2, f"LPIPS {self.mean('lpips'):.4f}")
        return f"{self.name} ({', '.join(parts)})"


def _figures(x, hr, scale: int, lpips) -> dict:
    """(1, C, H, W) SR and HR in [0, 1] -> this module's per-image figures (NIQE None when
    the image holds no block on the most shifted grid)."""
    has_y = hr.shape[1] in (1, 3)
    blocks = niqe_blocks(hr.shape[-2], hr.shape[-1], scale, max(GRID_OFFSETS))
    return {
        "niqe": float(niqe_grid_mean(x, scale)[0]) if has_y and blocks else None,
        "gmsd": float(gmsd(x, hr, scale)[0]) if has_y else None,
        "lpips": float(lpips(x.float(), hr.float())[0])
        if lpips is not None and has_y and min(x.shape[-2:]) >= lpips.min_size
        else None,
        "psnr": float((psnr_y(x, hr, scale) if has_y else psnr(x, hr, 1.0, scale))[0]),
        "blocks": blocks,
    }


def _contender(name: str, rows: list[tuple[str, dict]]) -> Contender:
    usable = [(key, f) for key, f in rows if f["niqe"] is not None]
    lpips = [f["lpips"] for _, f in usable]
    return Contender(
        name,
        [key for key, _ in usable],
        sum(f["blocks"] for _, f in usable),
        [f["niqe"] for _, f in usable],
        [f["gmsd"] for _, f in usable],
        [f["psnr"] for _, f in usable],
        lpips if lpips and None not in lpips else None,
    )


def score_contenders(
    files: list[storage.StoredFile],
    candidate: Upscaler,
    lpips=None,
    baselines: Iterable[NoLearning] | None = None,
    min_blocks: int = 1,
) -> tuple[Contender, list[Contender]]:
    """(the candidate, every no-learning baseline) on the holdout, read in the band count the
    candidate takes. Images without a Y channel or too small for NIQE are left out; a holdout
    with fewer than `min_blocks` NIQE blocks is refused before anything is scored."""
    baselines = list(family() if baselines is None else baselines)
    upscaled = []
    for key, image in iter_images(files, candidate):
        _, hr, bicubic, sr = upscale_for_scoring(candidate, key, image, candidate.scale)
        upscaled.append((key, image.levels, hr, bicubic, sr))
    usable = [u for u in upscaled if u[2].shape[1] in (1, 3)]
    blocks = sum(
        niqe_blocks(hr.shape[-2], hr.shape[-1], candidate.scale, max(GRID_OFFSETS)) for _, _, hr, _, _ in usable
    )
    check_blocks(blocks, len(usable), min_blocks)
    ours, theirs = [], {b.name: [] for b in baselines}
    for key, levels, hr, bicubic, sr in upscaled:
        ours.append((key, _figures(sr, hr, candidate.scale, lpips)))
        for b in baselines:
            x = b.apply(bicubic)
            theirs[b.name].append((key, _figures(quantize(x, levels) if levels else x, hr, candidate.scale, lpips)))
    return _contender(candidate.name, ours), [_contender(name, rows) for name, rows in theirs.items()]


def score_model(files: list[storage.StoredFile], upscaler: Upscaler, lpips=None) -> Contender:
    """One model's figures on the holdout (as the candidate's in score_contenders)."""
    return score_contenders(files, upscaler, lpips, baselines=())[0]


def strongest(baselines: list[Contender]) -> Contender:
    """The baseline with the lowest mean NIQE on this holdout (the gate's main figure)."""
    return min(baselines, key=lambda c: c.mean("niqe"))


def check_blocks(blocks: int, images: int, min_blocks: int) -> None:
    """Refuse a holdout whose NIQE fits rest on too few blocks."""
    if blocks < min_blocks:
        raise DataError(
            f"the holdout has {blocks} NIQE blocks (96 x 96, on the grid shifted by {max(GRID_OFFSETS)} px) in {images} images with a Y channel; the perceptual criterion needs at least {min_blocks}: add images or larger ones"
        )


@dataclass(frozen=True)
class Paired:
    """Candidate against an opponent on one figure, over the images they share."""

    key: str
    ours: float  # means
    theirs: float
    improvement: float  # mean per-image improvement (positive = candidate better)
    low: float  # one-sided bootstrap bounds of the mean improvement at the confidence
    high: float
    wins: int  # images where the candidate is better
    images: int
    confidence: float

    @property
    def better(self) -> bool:
        return self.low > 0

    @property
    def worse(self) -> bool:
        return self.high < 0

    def text(self) -> str:
        return (
            f"{self.key.upper()} {self.ours:.4g} vs {self.theirs:.4g}: better on {self.wins}/{self.images} images, "
            f"mean improvement {self.improvement:+.4g}, {self.confidence:.0%} bounds [{self.low:+.4g}, {self.high:+.4g}]"
        )


def paired(key: str, ours: Contender, theirs: Contender, confidence: float, seed: int = 0) -> Paired:
    """Bootstrap over per-image differences: the mean improvement's one-sided bounds at
    `confidence` (the candidate is better with that confidence when the lower bound is > 0)."""
    if ours.images != theirs.images:
        raise ValueError(f"{ours.name} and {theirs.name} were scored on different images")
    a, b = np.asarray(getattr(ours, key), float), np.asarray(getattr(theirs, key), float)
    diff = b - a if key in LOWER_IS_BETTER else a - b
    means = diff[np.random.default_rng(seed).integers(0, len(diff), (RESAMPLES, len(diff)))].mean(axis=1)
    return Paired(
        key,
        float(a.mean()),
        float(b.mean()),
        float(diff.mean()),
        float(np.quantile(means, 1 - confidence)),
        float(np.quantile(means, confidence)),
        int((diff > 0).sum()),
        len(diff),
        confidence,
    )
