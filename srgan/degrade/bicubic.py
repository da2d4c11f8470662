"""The classic SRGAN degradation: MATLAB bicubic downscaling, no randomness."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from srgan.degrade.base import check_hr
from srgan.resize import imresize


@dataclass(frozen=True)
class Bicubic:
    """MATLAB `imresize(hr, 1/scale, 'bicubic')` (antialiased), clipped to [0, 1]."""

    scale: int = 4

    def __call__(self, hr: torch.Tensor, seed: int = 0) -> torch.Tensor:
        check_hr(hr, self.scale)
        return imresize(hr, 1.0 / self.scale).clamp(0, 1)
