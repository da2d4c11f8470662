"""One batch upscaling job's settings, checked when it is made (what run_upscale takes)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import formats
from pipeline.errors import UsageError
from pipeline.io import s3, storage
from pipeline.models.reference import BICUBIC
from pipeline.upscaling import executors
from pipeline.upscaling.one_file import WINDOW_PIXELS, WorkerSettings
from srgan.generator import SCALES, check_scale
from srgan.precision import PRECISIONS


@dataclass(frozen=True)
class UpscaleJob:
    """One batch job: what to upscale with what, where to, and how."""

    model: str
    input: str
    output: str
    extensions: tuple[str, ...] = formats.EXTENSIONS
    include: tuple[str, ...] = ()
    overwrite: bool = False
    max_failures: int = 0
    bands: tuple[int, ...] | None = None
    tile: int = 256
    batch_tiles: int | None = None
    window_pixels: int = WINDOW_PIXELS
    max_pixels: int = formats.MAX_PIXELS
    value_range: str | tuple[float, float] = "auto"
    precision: str = "auto"
    workers: int | None = None
    threads: int | None = None
    gpus_per_worker: float = 1.0
    cpu: bool = False
    scale: int | None = None
    tracking_uri: str | None = None
    executor: str = "auto"
    s3_retry_s: float = s3.DEFAULT_RETRY_S

    def __post_init__(self) -> None:
        least = {
            "tile": (self.tile, 0),
            "batch_tiles": (self.batch_tiles, 1),
            "window_pixels": (self.window_pixels, 1),
            "max_pixels": (self.max_pixels, 1),
            "max_failures": (self.max_failures, 0),
            "threads": (self.threads, 1),
            "workers": (self.workers, 1),
        }
        for name, (value, low) in least.items():
            if value is not None and value < low:
                raise UsageError(f"`{name}` {value}: give {low} or more", param=name)
        if not self.gpus_per_worker > 0:
            raise UsageError(
                f"`gpus_per_worker` {self.gpus_per_worker}: give a share above 0, e.g. 0.5", param="gpus_per_worker"
            )
        if not self.s3_retry_s > 0:
            raise UsageError(f"`s3_retry_s` {self.s3_retry_s:g}: give a number of seconds above 0", param="s3_retry_s")
        if self.executor not in executors.EXECUTORS:
            raise UsageError(
                f"`executor` {self.executor}: use one of {', '.join(executors.EXECUTORS)}", param="executor"
            )
        if self.precision not in PRECISIONS:
            raise UsageError(f"`precision` {self.precision}: use one of {', '.join(PRECISIONS)}", param="precision")
        if self.bands is not None and (not self.bands or min(self.bands) < 1):
            raise UsageError(f"`bands` {self.bands}: band numbers start at 1, e.g. 3,2,1", param="bands")
        if self.scale is not None:
            check_scale(self.scale)
        if self.model == BICUBIC and self.scale is None:
            raise UsageError(f"`model` bicubic needs `scale` ({', '.join(map(str, SCALES))})", param=("model", "scale"))
        if isinstance(self.value_range, tuple) and not self.value_range[0] < self.value_range[1]:
            raise UsageError(
                f"`value_range` {self.value_range[0]:g},{self.value_range[1]:g}: give LOW,HIGH with LOW below HIGH",
                param="value_range",
            )
        if not isinstance(self.value_range, tuple) and self.value_range not in ("auto", "stats"):
            raise UsageError(
                f"`value_range` {self.value_range}: use auto, stats or LOW,HIGH (e.g. -2,2)", param="value_range"
            )
        if storage.overlaps(self.input, self.output):
            raise UsageError(
                f"`output` {self.output} overlaps `input` {self.input} (the same folder or prefix, or one inside the other); choose an output outside the input",
                param=("output", "input"),
            )

    def pixel_settings(self, scale: int) -> dict:
        """What, besides the model, changes an output's pixels (tiling does not: it is exact)."""
        value_range = list(self.value_range) if isinstance(self.value_range, tuple) else self.value_range
        return {
            "bands": list(self.bands) if self.bands else None,
            "value_range": value_range,
            "precision": self.precision,
        }

    def worker_settings(self, threads: int, run_id: str, ident: dict, in_root: str, out_root: str) -> WorkerSettings:
        return WorkerSettings(
            self.model,
            self.tile,
            self.batch_tiles,
            self.window_pixels,
            self.max_pixels,
            self.bands,
            self.value_range,
            self.precision,
            threads,
            self.scale,
            run_id=run_id,
            input_root=in_root,
            output_root=out_root,
            identity=ident,
            s3_retry_s=self.s3_retry_s,
        )
