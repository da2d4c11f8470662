"""Turn a model reference given on a command line into something that upscales tensors.

References: ``bicubic`` (the MATLAB bicubic baseline, no weights) or the path of a
generator checkpoint written by `srgan.weights.save_generator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from srgan.resize import imresize
from srgan.tiling import upscale_tiled
from srgan.weights import WeightsError, load_generator


class ModelRefError(ValueError):
    """A model reference that names nothing loadable."""


@dataclass
class Upscaler:
    """A generator (or bicubic) with what is needed to run it.

    Call with (N, C, h, w) float in [0, 1]; returns (N, C_out, h*scale, w*scale) in [0, 1]
    on the CPU. `tile` bounds memory (0: whole image at once).
    """

    name: str
    scale: int
    generator: nn.Module | None = None
    meta: dict = field(default_factory=dict)
    tile: int = 256
    batch_size: int = 4

    @property
    def in_channels(self) -> int | None:
        return None if self.generator is None else self.generator.spec.in_channels

    @torch.no_grad()
    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        if self.generator is None:
            return imresize(lr.float(), float(self.scale)).clamp(0, 1)
        if lr.shape[1] != self.in_channels:
            raise ModelRefError(f"model {self.name} takes {self.in_channels}-channel images, got {lr.shape[1]} channels")
        out = upscale_tiled(self.generator, lr.float(), self.scale, tile=self.tile, batch_size=self.batch_size)
        return out.clamp(0, 1)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_upscaler(ref: str, device: torch.device | None = None, scale: int | None = None, tile: int = 256) -> Upscaler:
    """Upscaler for `ref` ('bicubic' or a checkpoint path). `scale` is required for bicubic
    and, for a model, must agree with the model's own scale when given."""
    device = device or default_device()
    if ref == "bicubic":
        if scale is None:
            raise ModelRefError("the bicubic baseline needs a scale (--scale)")
        return Upscaler(name="bicubic", scale=scale)
    path = Path(ref).expanduser()
    if not path.is_file():
        raise ModelRefError(f"model {ref!r} is neither 'bicubic' nor an existing checkpoint file")
    try:
        generator, meta = load_generator(path, map_location=device)
    except WeightsError as exc:
        raise ModelRefError(str(exc)) from exc
    if scale is not None and scale != generator.scale:
        raise ModelRefError(f"model {ref} upscales x{generator.scale}, but --scale {scale} was asked for; drop --scale or pick a x{scale} model")
    return Upscaler(name=str(ref), scale=generator.scale, generator=generator, meta=meta, tile=tile)
