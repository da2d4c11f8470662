"""The generator as an MLflow pyfunc model that holds no pickle: the logged model's MLmodel
names this module as its ``loader_module``, and ``_load_pyfunc`` reads the model's
``data/generator.pt`` with ``torch.load(weights_only=True)`` (srgan.weights.load_generator).

So ``mlflow.pyfunc.load_model('models:/srgan@champion').predict(x)`` (and ``mlflow models
serve``, which loads the same way; give it ``--env-manager local``) runs no code from the
artifact store: a weights file replaced there is refused, not run. The code comes from the
consumer's own environment instead, which must have srgan-pipeline installed (the model
carries no copy of it, since code in the artifact store could be replaced too). What the
model does trust is its MLmodel file, which names the loader: anyone who can rewrite that
can point any MLflow model at any flavour.

Models logged before this layout (flavour ``pytorch``, a pickled ``data/model.pth``) are
unpickled by ``mlflow.pyfunc.load_model``: do not load them that way. The pipeline's own
resolver (pipeline.models) reads only their weights-only ``extra_files/generator.pt``;
``pipeline.tracking.relog_generator_model(tracking_uri, run_id)`` logs the run's
``generator.pt`` artifact again in this layout (then register the new model URI).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.errors import DataError, ModelRefError
from pipeline.models import Upscaler
from srgan.generator import SRResNet
from srgan.weights import WeightsError, load_generator


class GeneratorModel:
    """What MLflow's pyfunc calls: (N, C, h, w) float32 in [0, 1] in, (N, C_out, h*scale,
    w*scale) float32 in [0, 1] out, computed tile by tile by the generator's inference form
    in fp32 (pipeline.models.Upscaler)."""

    def __init__(self, generator: SRResNet, meta: dict, tile: int = 256) -> None:
        self.generator, self.meta, self.tile = generator, meta, tile
        on_cpu = next(generator.parameters()).device.type == "cpu"
        self.upscaler = Upscaler(
            name="mlflow-model",
            scale=generator.scale,
            generator=generator,
            meta=meta,
            tile=tile,
            batch_size=1 if on_cpu else 4,
        )

    def predict(self, model_input, params: dict | None = None) -> np.ndarray:
        x = torch.from_numpy(np.asarray(model_input, dtype=np.float32))
        channels = self.generator.spec.in_channels
        if x.dim() != 4 or x.shape[1] != channels:
            raise DataError(
                f"the generator takes (N, {channels}, H, W) float32 arrays in [0, 1], got shape {tuple(x.shape)}"
            )
        return self.upscaler(x).numpy()


def _load_pyfunc(data_path: str) -> GeneratorModel:
    """MLflow's entry point: `data_path` is the model's data/generator.pt."""
    path = Path(data_path)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        generator, meta = load_generator(path, map_location=device)
    except WeightsError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelRefError(
            f"refusing to load the model: its weights {path} are not a weights-only srgan generator ({first}); "
            "re-log the training run's generator.pt with pipeline.tracking.relog_generator_model(tracking_uri, run_id)"
        ) from exc
    return GeneratorModel(generator, meta)
