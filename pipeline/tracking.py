"""MLflow: where runs go, one run per training, and the generator as a registered-ready model.

Tracking URI: the config's, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the
working directory with artifacts in ``./mlartifacts``. The driver creates (or, on resume,
finds again) the run and logs the parameters; rank 0 of the workers logs metrics and
grids to it; the driver logs the final generator as an MLflow model (pytorch flavor) with
what is needed to use it: scale, channels, value range, and the srgan checkpoint itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
RUN_TAG = "srgan.run_uri"  # the Ray Train run folder a MLflow run belongs to
MODEL_NAME = "generator"  # artifact name of the logged model inside a run
MODEL_TAG = "srgan.model_uri"  # on a training run: the URI of the generator it logged


def resolve_tracking_uri(configured: str | None = None) -> str:
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        # Relative sqlite paths depend on the process's working directory; Ray workers and
        # later commands may run elsewhere, so pin it.
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    elif "://" not in uri:
        uri = Path(uri).resolve().as_uri()
    return uri


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:"))


def default_artifact_location(tracking_uri: str) -> str | None:
    """./mlartifacts next to a local store; a server decides for itself."""
    if not is_local_store(tracking_uri):
        return None
    if tracking_uri.startswith("sqlite:///"):
        base = Path(tracking_uri[len("sqlite:///"):]).parent
    else:
        base = Path.cwd()
    return (base / DEFAULT_ARTIFACTS).resolve().as_uri()


def client(tracking_uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str | None = None) -> str:
    c = client(tracking_uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = artifact_location or default_artifact_location(tracking_uri)
    return c.create_experiment(name, artifact_location=location)


def find_run(tracking_uri: str, experiment_id: str, run_uri: str) -> str | None:
    runs = client(tracking_uri).search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_uri}'", max_results=1)
    return runs[0].info.run_id if runs else None


def start_run(tracking_uri: str, experiment_id: str, run_name: str, run_uri: str, params: dict[str, str], tags: dict[str, str] | None = None) -> str:
    """Create the MLflow run for a training run, or reopen the one already made for it."""
    from mlflow.entities import Param, RunTag

    c = client(tracking_uri)
    run_id = find_run(tracking_uri, experiment_id, run_uri)
    if run_id is not None:
        c.update_run(run_id, status="RUNNING")
        return run_id
    all_tags = {RUN_TAG: run_uri, **(tags or {})}
    run = c.create_run(experiment_id, run_name=run_name, tags=all_tags)
    items = [Param(k, v[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 100):
        c.log_batch(run.info.run_id, params=items[i : i + 100])
    c.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in all_tags.items()])
    return run.info.run_id


class RunLogger:
    """Metrics and pictures for one run; used by rank 0 only."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.run_id = run_id
        self._client = client(tracking_uri)

    def metrics(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in values.items() if v is not None and np.isfinite(v)]
        if items:
            self._client.log_batch(self.run_id, metrics=items)

    def image(self, picture, name: str) -> None:
        """Log a PIL image as an artifact file (e.g. grids/step_00001000.png)."""
        self._client.log_image(self.run_id, picture, artifact_file=name)

    def json(self, data, name: str) -> None:
        self._client.log_dict(self.run_id, data, name)

    def finish(self, status: str = "FINISHED") -> None:
        self._client.set_terminated(self.run_id, status=status)


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
            "checkpoint": "artifacts/generator.pt (srgan.weights.load_generator)",
            **{k: v for k, v in meta.items() if k != "data_range"},
        }
    }


def log_generator_model(tracking_uri: str, run_id: str, checkpoint_file: Path) -> str:
    """Log an srgan generator checkpoint as an MLflow pytorch model; returns its URI."""
    import mlflow
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    import srgan
    from srgan.weights import load_generator

    generator, meta = load_generator(checkpoint_file)
    spec = generator.spec.to_dict()
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, spec["in_channels"], -1, -1))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, spec["out_channels"], -1, -1))]),
    )
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        info = mlflow.pytorch.log_model(
            generator,
            name=MODEL_NAME,
            serialization_format="pickle",
            signature=signature,
            metadata=model_metadata(spec, meta),
            code_paths=[str(Path(srgan.__file__).parent)],
            extra_files=[str(checkpoint_file)],
            pip_requirements=[f"torch>={torch.__version__.split('+')[0].rsplit('.', 1)[0]}", "numpy"],
        )
    return info.model_uri


def log_generator(tracking_uri: str, run_id: str, checkpoint_file: Path, as_model: bool = True) -> str | None:
    """What a finished training run leaves in MLflow: generator.pt as a run artifact
    (runs:/<id> loads it) and, with `as_model`, the MLflow model whose URI the run's
    srgan.model_uri tag records (promotion registers that). Returns the model URI."""
    client(tracking_uri).log_artifact(run_id, str(checkpoint_file))
    if not as_model:
        return None
    model_uri = log_generator_model(tracking_uri, run_id, checkpoint_file)
    client(tracking_uri).set_tag(run_id, MODEL_TAG, model_uri)
    return model_uri
