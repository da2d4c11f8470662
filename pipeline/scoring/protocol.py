"""How super-resolved images are scored, the same way wherever they are: training validation,
`evaluate` and `promote` all use this module.

Protocol (as the published SR tables): crop HR to a multiple of the scale, make LR with
MATLAB bicubic in the image's own dtype (uint8 stays uint8), upscale, quantise the result
to the image's bit depth, then PSNR/SSIM on the BT.601 Y channel with a border of `scale`
pixels removed. All-band PSNR/SSIM (data range 1 after scaling to [0, 1]) are reported
beside them; they are the figures for N-band images, which have no Y channel. Perception:
NIQE (srgan.niqe, no reference, lower = more natural; MATLAB-compatible, on Y with the same
border removed, for images of at least one 96 x 96 block) and, when its weights are found,
LPIPS (srgan.lpips, distance to the HR, lower = closer). The high-frequency ratio is a
diagnostic: the SR's energy in frequencies the LR cannot carry, relative to the HR's (1 =
the HR's amount of fine detail); it cannot tell texture from noise.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline import formats
from pipeline.data.reader import StoredImage, read_image
from pipeline.errors import DataError, DecodeError, RangeError, StorageError
from pipeline.io import storage
from pipeline.models.reference import Upscaler
from pipeline.scoring.grids import GridRow, save_grid
from srgan.metrics import high_frequency_ratio, psnr, psnr_y, quantize, ssim, ssim_y
from srgan.niqe import BLOCK, niqe
from srgan.resize import imresize

# What training validation reports (to MLflow and Tune): means over the validation images
# (NIQE over those large enough, LPIPS when its weights were found; absent otherwise).
VALIDATION_METRICS = (
    "val/psnr",
    "val/ssim",
    "val/hf_ratio",
    "val/hf_error",
    "val/psnr_bicubic",
    "val/ssim_bicubic",
    "val/hf_ratio_bicubic",
    "val/images",
    "val/niqe",
    "val/niqe_bicubic",
    "val/lpips",
    "val/lpips_bicubic",
)
LOWER_IS_BETTER = ("niqe", "lpips", "hf_error")  # the rest: higher is better


@dataclass
class ImageScore:
    name: str
    height: int
    width: int
    channels: int
    psnr_y: float | None
    ssim_y: float | None
    psnr: float
    ssim: float
    bicubic_psnr_y: float | None
    bicubic_ssim_y: float | None
    bicubic_psnr: float
    bicubic_ssim: float
    hf_ratio: float
    bicubic_hf_ratio: float
    niqe: float | None = None
    bicubic_niqe: float | None = None
    lpips: float | None = None
    bicubic_lpips: float | None = None


@dataclass
class EvalReport:
    dataset: str
    model: str
    scale: int
    images: list[ImageScore]

    def mean(self, key: str) -> float | None:
        """Mean over images; geometric for the high-frequency ratios (they are ratios)."""
        values = [getattr(s, key) for s in self.images if getattr(s, key) is not None]
        if not values:
            return None
        if key.endswith("hf_ratio"):
            return float(np.exp(np.mean(np.log(np.maximum(values, 1e-12)))))
        return float(np.mean(values))

    def to_dict(self) -> dict:
        keys = ("psnr_y", "ssim_y", "psnr", "ssim", "niqe", "lpips", "hf_ratio")
        out = {"dataset": self.dataset, "model": self.model, "scale": self.scale}
        out.update({k: self.mean(k) for k in keys})
        out["bicubic"] = {k: self.mean(f"bicubic_{k}") for k in keys}
        out["images"] = [asdict(s) for s in self.images]
        return out


def lpips_model(source: str | None):
    """(LPIPS (srgan.lpips) with its AlexNet backbone from `source`: 'torchvision' (its cache;
    never downloaded), a local file or an s3:// URI, or None; why it is None ("" when it was
    not asked for)). Callers say the reason once, where it does not interrupt other output."""
    if source is None:
        return None, ""
    from srgan.lpips import load_lpips
    from srgan.weights import WeightsError

    try:
        return load_lpips(None if source == "torchvision" else source, fetch=storage.download), ""
    except WeightsError as exc:
        return None, str(exc)


def say_lpips_skipped(reason: str) -> None:
    if reason:
        print(f"note: LPIPS is skipped: {reason}", file=sys.stderr, flush=True)


def list_images(source: str | Path) -> list[storage.StoredFile]:
    """Every image under a local folder or an s3:// prefix (any format pipeline.formats reads),
    sorted, recursively; an error naming `source` when there is none."""
    files = storage.list_files(str(source), formats.EXTENSIONS)
    if not files:
        raise StorageError(f"no images ({', '.join(formats.EXTENSIONS)}) under {source}")
    return files


def iter_images(
    files: list[storage.StoredFile], upscaler: Upscaler | None = None, value_range: float | None = None
) -> Iterator[tuple[str, StoredImage]]:
    """(relative key, image) for every file, read by pipeline.data.reader's one rule: an
    explicit `value_range`, else the model's data_range, else the file's declaration, else
    its dtype's; with an `upscaler`, in the band count its model takes. A file that cannot be
    read is an error naming it."""
    channels = upscaler.in_channels if upscaler is not None else None
    model_range = upscaler.data_range if upscaler is not None else None
    for f in files:
        try:
            yield f.key, read_image(storage.read_bytes(f.uri), f.key, channels, value_range, model_range)
        except RangeError as exc:  # the model's range, not the file, is what does not fit
            raise RangeError(f"{f.uri}: {exc}") from None
        except DecodeError as exc:
            raise DecodeError(f"{f.uri}: {exc}; remove or replace it") from None


def niqe_of(x: torch.Tensor, border: int = 0) -> float | None:
    """NIQE of one image ((1, C, H, W) in [0, 1]); None without a Y channel or when smaller
    than one 96 x 96 block after `border` is removed."""
    h, w = x.shape[-2] - 2 * border, x.shape[-1] - 2 * border
    if x.shape[1] not in (1, 3) or min(h, w) < BLOCK:
        return None
    return float(niqe(x, crop_border=border)[0])


def sr_figures(x: torch.Tensor, hr: torch.Tensor, scale: int, lpips=None) -> dict[str, float | None]:
    """Every figure we report for an upscaled image `x` against `hr` ((1, C, H, W), [0, 1]):
    PSNR/SSIM on Y (None without a Y channel) and on all bands, border `scale` removed, NIQE
    (see `niqe_of`), LPIPS when an `lpips` model is given (1- and 3-band images), and the
    high-frequency ratio."""
    has_y = hr.shape[1] in (1, 3)
    return {
        "psnr_y": psnr_y(x, hr, scale).item() if has_y else None,
        "ssim_y": ssim_y(x, hr, scale).item() if has_y else None,
        "psnr": psnr(x, hr, 1.0, scale).item(),
        "ssim": ssim(x, hr, 1.0, scale).item(),
        "niqe": niqe_of(x, scale),
        "lpips": float(lpips(x.float(), hr.float())[0])
        if lpips is not None and has_y and min(x.shape[-2:]) >= lpips.min_size
        else None,
        "hf_ratio": high_frequency_ratio(x, hr, scale).item(),
    }


def primary(figures: dict) -> tuple[float, float]:
    """(PSNR, SSIM) as headline figures: Y where there is a Y channel, all bands otherwise."""
    if figures["psnr_y"] is not None:
        return figures["psnr_y"], figures["ssim_y"]
    return figures["psnr"], figures["ssim"]


def _perception(figures: dict) -> str:
    parts = [
        f"NIQE {figures['niqe']:.2f}" if figures.get("niqe") is not None else "",
        f"LPIPS {figures['lpips']:.3f}" if figures.get("lpips") is not None else "",
    ]
    return "".join(" " + p for p in parts if p)


def caption(name: str, ours: dict, base: dict) -> str:
    return (
        f"{name}  bicubic {primary(base)[0]:.2f} dB{_perception(base)}  SR {primary(ours)[0]:.2f} dB{_perception(ours)}"
    )


class ValidationSums:
    """Validation figures summed over images, so ranks can add theirs (all-reduce `sums`)
    before `metrics()` turns them into the VALIDATION_METRICS means."""

    def __init__(self) -> None:
        # psnr, ssim, log2 hf, |log2 hf|, bicubic psnr, bicubic ssim, bicubic log2 hf, images,
        # then (sum, count) of niqe, bicubic niqe, lpips, bicubic lpips (some images have none)
        self.sums = torch.zeros(16, dtype=torch.float64)

    def add(self, ours: dict, base: dict) -> None:
        log_hf, log_hf_b = math.log2(max(ours["hf_ratio"], 1e-12)), math.log2(max(base["hf_ratio"], 1e-12))
        optional = [
            v
            for f in (ours["niqe"], base["niqe"], ours["lpips"], base["lpips"])
            for v in ((f, 1.0) if f is not None else (0.0, 0.0))
        ]
        self.sums += torch.tensor(
            [*primary(ours), log_hf, abs(log_hf), *primary(base), log_hf_b, 1.0, *optional], dtype=torch.float64
        )

    def metrics(self) -> dict[str, float]:
        """The means; an optional measure no image had is NaN (not logged)."""
        s = self.sums.tolist()
        n = max(s[7], 1.0)
        values = [s[0] / n, s[1] / n, 2 ** (s[2] / n), s[3] / n, s[4] / n, s[5] / n, 2 ** (s[6] / n), s[7]]
        values += [s[i] / s[i + 1] if s[i + 1] else float("nan") for i in range(8, 16, 2)]
        return dict(zip(VALIDATION_METRICS, values))


def upscale_for_scoring(
    upscaler: Upscaler, name: str, image: StoredImage, scale: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(LR, HR, bicubic, SR) for one HR image by the protocol, each (1, C, H, W) in [0, 1];
    SR is the bicubic tensor itself for the bicubic baseline."""
    hr_array = image.pixels
    h, w = (hr_array.shape[0] // scale) * scale, (hr_array.shape[1] // scale) * scale
    if h < 2 * scale + 11 or w < 2 * scale + 11:
        raise DataError(
            f"{name}: {hr_array.shape[1]}x{hr_array.shape[0]} is too small to score at x{scale} (at least {2 * scale + 11} px a side)"
        )
    hr_native = torch.from_numpy(np.ascontiguousarray(hr_array[:h, :w].transpose(2, 0, 1)))[None]
    low, span = image.range.low, image.range.span

    def unit(x: torch.Tensor) -> torch.Tensor:
        return ((x.float() - low) / span).clamp(0, 1)

    # LR and the bicubic baseline in the image's own dtype, exactly as MATLAB rounds them.
    lr_native = imresize(hr_native, 1.0 / scale)
    bicubic = unit(imresize(lr_native, float(scale)))
    lr, hr = unit(lr_native), unit(hr_native)
    if upscaler.generator is None:
        sr = bicubic
    else:
        sr = upscaler(lr)
        sr = quantize(sr, image.levels) if image.levels else sr
    return lr, hr, bicubic, sr


def score_image(
    upscaler: Upscaler, name: str, image: StoredImage, scale: int, lpips=None
) -> tuple[ImageScore, GridRow]:
    """Protocol scores for one HR image (read in the band count the model takes), and the
    pictures for its comparison row."""
    lr, hr, bicubic, sr = upscale_for_scoring(upscaler, name, image, scale)
    base = sr_figures(bicubic, hr, scale, lpips)
    ours = base if sr is bicubic else sr_figures(sr, hr, scale, lpips)
    score = ImageScore(
        name=name,
        height=hr.shape[-2],
        width=hr.shape[-1],
        channels=hr.shape[1],
        **ours,
        **{f"bicubic_{k}": v for k, v in base.items()},
    )
    return score, GridRow(lr=lr[0], bicubic=bicubic[0], sr=sr[0], hr=hr[0], caption=caption(name, ours, base))


def model_figures(upscaler: Upscaler, name: str, image: StoredImage, lpips=None) -> dict[str, float | None]:
    """`sr_figures` of the model's output alone, with no bicubic side: for a table of several
    models, where bicubic is a column of its own."""
    _, hr, _, sr = upscale_for_scoring(upscaler, name, image, upscaler.scale)
    return sr_figures(sr, hr, upscaler.scale, lpips)


def evaluate_images(
    upscaler: Upscaler,
    images: Iterable[tuple[str, StoredImage]],
    dataset: str,
    grid_path: str | Path | None = None,
    progress=None,
    lpips=None,
) -> EvalReport:
    """Score every image; optionally write the comparison grid. `progress(score)` is
    called after each image; `lpips`: an srgan.lpips model (LPIPS is left out without one)."""
    scores, rows = [], []
    for name, image in images:
        score, row = score_image(upscaler, name, image, upscaler.scale, lpips)
        scores.append(score)
        if grid_path is not None:
            rows.append(row)
        if progress:
            progress(score)
    if grid_path is not None:
        save_grid(rows, upscaler.scale, grid_path)
    return EvalReport(dataset=dataset, model=upscaler.name, scale=upscaler.scale, images=scores)


@dataclass
class AsIsScore:
    name: str
    height: int
    width: int
    niqe: float | None


def score_as_is(images: Iterable[tuple[str, StoredImage]], progress=None) -> list[AsIsScore]:
    """NIQE of images as they are (no reference, nothing upscaled): for outputs made
    elsewhere, such as the batch upscaler's. Alpha is dropped; images without a Y channel
    or smaller than 96 x 96 get None."""
    scores = []
    for name, image in images:
        h, w = image.pixels.shape[:2]
        scores.append(AsIsScore(name, h, w, niqe_of(image.tensor()[None])))
        if progress:
            progress(scores[-1])
    return scores
