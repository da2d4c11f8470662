"""Generators as the verbs use them: a model reference (bicubic, a .pt or .onnx file, a
checkpoint folder, runs:/, models:/, basicsr:/srgan-pytorch: imports) resolved to weights and
wrapped in the tiled Upscaler (reference), ONNX graphs (onnx_model), and the generator as an
MLflow pyfunc model, logged and loaded without a pickle (pyfunc). It may import pipeline.io,
pipeline.tracking, pipeline.errors and srgan; never scoring, training, upscaling or the verbs.
``from pipeline import models`` gives reference's names."""

from pipeline.models.reference import (  # noqa: F401
    BICUBIC,
    REFERENCE_HELP,
    Upscaler,
    fetch_generator,
    fetch_generator_bytes,
    foreign_layout,
    generator_file,
    load_upscaler,
    pick_device,
    read_generator,
)
