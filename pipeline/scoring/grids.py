"""LR | bicubic | SR | HR comparison pictures, for people who would rather look than read.

Each row shows one image: the same centre crop of the LR input (enlarged with nearest
neighbour so pixels stay visible), the bicubic upscale, the model's output and the HR
ground truth, with a caption of the figures that matter. Tensors are (C, H, W) in [0, 1];
one band shows as grayscale, 3 or more show their first three bands as RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from srgan.tiling import centre_crop

COLUMNS = ("LR (nearest)", "bicubic", "SR", "HR")
_GAP = 4
_HEADER = 18
_CAPTION = 16


@dataclass
class GridRow:
    lr: torch.Tensor
    bicubic: torch.Tensor
    sr: torch.Tensor
    hr: torch.Tensor
    caption: str = ""


def to_display(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) uint8 for showing."""
    x = x.detach().float().cpu().clamp(0, 1)
    x = x.expand(3, -1, -1) if x.shape[0] == 1 else x[:3]
    if x.shape[0] == 2:
        x = torch.cat([x, x[:1]])
    return (x.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def comparison_grid(rows: list[GridRow], scale: int, crop: int | None = 192) -> Image.Image:
    """One picture with a row per image (see module docstring); `crop` in HR pixels."""
    if not rows:
        raise ValueError("comparison_grid needs at least one row")
    if crop is not None:
        crop -= crop % scale
    panels = []
    for row in rows:
        lr_big = F.interpolate(row.lr[None].float(), scale_factor=scale, mode="nearest")[0]
        panels.append([to_display(centre_crop(p, crop)) for p in (lr_big, row.bicubic, row.sr, row.hr)])
    cell_w = max(p.shape[1] for r in panels for p in r)
    cell_h = max(p.shape[0] for r in panels for p in r)
    width = len(COLUMNS) * cell_w + (len(COLUMNS) + 1) * _GAP
    height = _HEADER + len(rows) * (cell_h + _CAPTION + _GAP) + _GAP
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for j, title in enumerate(COLUMNS):
        draw.text((_GAP + j * (cell_w + _GAP), 3), title, fill=(0, 0, 0), font=font)
    for i, (row, cells) in enumerate(zip(rows, panels)):
        top = _HEADER + i * (cell_h + _CAPTION + _GAP)
        for j, cell in enumerate(cells):
            canvas.paste(Image.fromarray(cell), (_GAP + j * (cell_w + _GAP), top))
        draw.text((_GAP, top + cell_h + 2), row.caption, fill=(0, 0, 0), font=font)
    return canvas


def save_grid(rows: list[GridRow], scale: int, path: str | Path, crop: int | None = 192) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    comparison_grid(rows, scale, crop).save(path)
    return path
