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
``pipeline.models.pyfunc.relog_generator_model(tracking_uri, run_id)`` logs the run's
``generator.pt`` artifact again in this layout (then register the new model URI).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from pipeline.data.reader import Range, check_values, range_rule
from pipeline.errors import DataError, DecodeError, ModelRefError, UserError
from pipeline.models.reference import Upscaler, pick_device
from pipeline.tracking import store as tracking
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
        """Float input is taken as [0, 1]; integer input (stored pixel values) is read by the
        one range rule (pipeline.data.reader): the model's data_range, else the dtype's. Signed
        integers (JSON lists arrive as int64) are read as the narrowest unsigned type holding
        them and the model's data_range; negative ones are refused. Values outside the range
        are refused, never clipped. A bad request (shape, dtype, NaN, empty, or more than
        MAX_PREDICT_PIXELS input pixels) is an MlflowException of INVALID_PARAMETER_VALUE, so
        `mlflow models serve` answers it with a 400 and this message, before any compute."""
        try:
            return self._predict(model_input)
        except UserError as exc:
            raise _bad_request(str(exc)) from None

    def _predict(self, model_input) -> np.ndarray:
        try:
            array = np.asarray(model_input)
        except (ValueError, TypeError) as exc:  # ragged nested lists
            raise DataError(
                f"the input is not a rectangular array ({str(exc).splitlines()[0][:120]}); {PREDICT_HINT}"
            ) from None
        if (
            array.dtype == object
            or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_)
            or np.issubdtype(array.dtype, np.complexfloating)
        ):
            raise DataError(f"the input holds {array.dtype} values, not numbers; {PREDICT_HINT}")
        channels = self.generator.spec.in_channels
        if array.ndim != 4 or array.shape[1] != channels or 0 in array.shape:
            raise DataError(
                f"the generator takes (N, {channels}, H, W) arrays with N, H, W >= 1, got shape {tuple(array.shape)}; {PREDICT_HINT}"
            )
        pixels = array.shape[0] * array.shape[2] * array.shape[3]
        if pixels > MAX_PREDICT_PIXELS:
            raise DataError(
                f"the input holds {pixels:,} pixels, over the {MAX_PREDICT_PIXELS:,} one request may upscale "
                "(SRGAN_PREDICT_MAX_PIXELS); send fewer or smaller images per request"
            )
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise DataError(f"the input holds NaN or infinite values; {PREDICT_HINT}")
        model_range = self.meta.get("data_range")
        try:
            if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
                array = _unsigned(array, model_range)
                used = range_rule(array.dtype, model_range=model_range, hint=PREDICT_HINT)
            else:
                array = np.asarray(array, dtype=np.float32)
                used = Range(0.0, 1.0, "float input is read as [0, 1]")
            check_values(array, None, used, PREDICT_HINT)
        except DecodeError as exc:
            raise DataError(f"the input {exc}") from None
        if np.issubdtype(array.dtype, np.integer):
            array = (array.astype(np.float64) - used.low) / used.span
        x = torch.from_numpy(np.asarray(array, dtype=np.float32))
        return self.upscaler(x).numpy()


def _bad_request(message: str) -> Exception:
    """A DataError that is also MLflow's INVALID_PARAMETER_VALUE (a 400 from its scoring server)."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    class BadRequest(MlflowException, DataError):
        pass

    return BadRequest(message, error_code=INVALID_PARAMETER_VALUE)


PREDICT_HINT = "send (N, C, H, W) stored values within the model's data_range, or float32 in [0, 1]"
# Input pixels (N x H x W) one predict call may upscale: the output of a x4 RGB model for
# 2^22 of them is 768 MB of float32, which bounds a request's memory (tiles bound the rest).
MAX_PREDICT_PIXELS = int(os.environ.get("SRGAN_PREDICT_MAX_PIXELS", str(1 << 22)))


def _unsigned(array: np.ndarray, model_range: float | None) -> np.ndarray:
    """Signed integer input as the narrowest unsigned dtype that holds its values and the
    model's data_range (plain integer lists reach predict as int64); negative values are refused."""
    if not np.issubdtype(array.dtype, np.signedinteger) or not array.size:
        return array
    low, high = int(array.min()), int(array.max())
    if low < 0:
        raise DecodeError(f"holds negative values (down to {low}); {PREDICT_HINT}")
    return array.astype(np.min_scalar_type(max(high, int(model_range or 0))))


def _load_pyfunc(data_path: str) -> GeneratorModel:
    """MLflow's entry point: `data_path` is the model's data/generator.pt."""
    path = Path(data_path)
    device = pick_device()
    try:
        generator, meta = load_generator(path, map_location=device)
    except WeightsError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelRefError(
            f"refusing to load the model: its weights {path} are not a weights-only srgan generator ({first}); "
            "re-log the training run's generator.pt with pipeline.models.pyfunc.relog_generator_model(tracking_uri, run_id)"
        ) from exc
    return GeneratorModel(generator, meta)


# What a logged model's MLmodel names as its loader. Models logged before pipeline/ was split
# into stages name "pipeline.serving", which still re-exports this module.
LOADER_MODULE = __name__


def model_metadata(spec: dict, meta: dict) -> dict:
    """What a user of the logged model needs to know to feed it."""
    return {
        "srgan": {
            "scale": spec["scale"],
            "in_channels": spec["in_channels"],
            "out_channels": spec["out_channels"],
            "layout": "NCHW",
            "input": "float32 in [0, 1]: integer pixels divided by data_range (default: the dtype's maximum)",
            "data_range": meta.get("data_range"),
            "generator_spec": spec,
            "checkpoint": f"{tracking.MODEL_WEIGHTS} (srgan.weights.load_generator, weights only)",
            **{k: v for k, v in meta.items() if k != "data_range"},
        }
    }


@contextlib.contextmanager
def fluent_tracking_uri(uri: str):
    """MLflow's model-logging API reads the process-wide tracking URI only: point it at `uri`
    for one call and unset it after (the one place this project touches that setting)."""
    import mlflow

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # unsets the variable it exported too
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def log_generator_model(tracking_uri: str, run_id: str, checkpoint_file: Path) -> str:
    """Log an srgan generator checkpoint as an MLflow pyfunc model of run `run_id` that holds
    no pickle: the checkpoint as its data, pipeline.serving as its loader (see there); returns
    its URI."""
    import mlflow
    import torch
    from mlflow.models import Model, ModelSignature
    from mlflow.types import Schema, TensorSpec

    from srgan.weights import load_generator

    generator, meta = load_generator(checkpoint_file)
    spec = generator.spec.to_dict()
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, spec["in_channels"], -1, -1))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, spec["out_channels"], -1, -1))]),
    )
    # Made here, in the run's experiment: Model.log would make it in the process's default
    # experiment ("0", whose artifacts a sqlite store keeps in ./mlruns of some directory).
    c = tracking.client(tracking_uri)
    run = c.get_run(run_id)
    model = c.create_logged_model(
        run.info.experiment_id, name=tracking.MODEL_NAME, source_run_id=run_id, params=run.data.params
    )
    with tempfile.TemporaryDirectory() as tmp, fluent_tracking_uri(tracking_uri):
        weights = Path(tmp) / Path(tracking.MODEL_WEIGHTS).name  # MLflow copies it to data/<its name>
        shutil.copyfile(checkpoint_file, weights)
        # mlflow.pyfunc.log_model takes no run_id; Model.log is what it calls, and takes one.
        info = Model.log(
            artifact_path=None,  # deprecated for `name`, but still a required argument
            name=tracking.MODEL_NAME,
            model_id=model.model_id,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            loader_module=LOADER_MODULE,
            data_path=str(weights),
            signature=signature,
            metadata=model_metadata(spec, meta),
            pip_requirements=[f"torch>={torch.__version__.split('+')[0].rsplit('.', 1)[0]}", "numpy"],
        )
    return info.model_uri


def relog_generator_model(tracking_uri: str, run_id: str) -> str:
    """Log run `run_id`'s generator.pt artifact again as a weights-only model (for runs whose
    model is in the old, pickled layout) and point the run's srgan.model_uri tag at it;
    returns the new model URI, for register_version (promote reuses the version it already
    registered for the run)."""
    model_uri = log_generator_model(
        tracking_uri, run_id, tracking.download(f"runs:/{run_id}/generator.pt", tracking_uri)
    )
    tracking.client(tracking_uri).set_tag(run_id, tracking.MODEL_TAG, model_uri)
    return model_uri


def log_generator(tracking_uri: str, run_id: str, checkpoint_file: Path, as_model: bool = True) -> str | None:
    """What a finished training run leaves in MLflow: generator.pt as a run artifact
    (runs:/<id> loads it) and, with `as_model`, the MLflow model whose URI the run's
    srgan.model_uri tag records (promotion registers that). Returns the model URI."""
    tracking.client(tracking_uri).log_artifact(run_id, str(checkpoint_file))
    if not as_model:
        return None
    model_uri = log_generator_model(tracking_uri, run_id, checkpoint_file)
    tracking.client(tracking_uri).set_tag(run_id, tracking.MODEL_TAG, model_uri)
    return model_uri
