"""Training and evaluation data: the one image reader (a stored file -> (C, H, W) float32 in
[0, 1] under one range rule), the scan that reports bad inputs, the Ray Data patch batches and
validation set, and prepared (sub-image) sets with their manifests. It may import pipeline.io,
pipeline.formats, pipeline.errors and srgan; never training, models or the verbs."""

from pipeline.data.batches import (
    BadInput,
    ImageSpec,
    PatchBatches,
    Scan,
    describe_ranges,
    scan,
    scan_files,
    stable_seed,
    train_dataset,
    val_dataset,
)

__all__ = [
    "BadInput",
    "ImageSpec",
    "PatchBatches",
    "Scan",
    "describe_ranges",
    "scan",
    "scan_files",
    "stable_seed",
    "train_dataset",
    "val_dataset",
]
