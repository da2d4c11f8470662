"""MLflow: where runs go, one run per training, the generator as a model, and the tags that tie
runs, sweeps and registry versions together.

Tracking URI: the config's, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the
working directory with artifacts in ``./mlartifacts``. Every call goes through a client bound
to a URI (no process-wide setting), so one process can use two stores; an http(s) server is
probed first, so one that does not answer is an error naming it within seconds.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pipeline.errors import TrackingError
from pipeline.io.redact import redact_uri

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
MODEL_NAME = "generator"  # artifact name of the logged model inside a run
# Where a logged model keeps the srgan checkpoint: a pyfunc model's data (pipeline.serving),
# and, in models logged before that, the pickled pytorch flavour's extra file.
MODEL_WEIGHTS, OLD_MODEL_WEIGHTS = "data/generator.pt", "extra_files/generator.pt"

# Tags. On training runs:
RUN_TAG = "srgan.run_uri"  # the Ray Train run folder the MLflow run belongs to
MODEL_TAG = "srgan.model_uri"  # the URI of the generator model the run logged
PHASES_TAG = "srgan.phases"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: nests a trial's run under its sweep's
# On sweep runs (parents) and their trials (children):
SWEEP_TAG = "srgan.sweep"
TRIAL_TAG = "srgan.trial_id"
OBJECTIVE_TAG, OBJECTIVE_MODE_TAG, OBJECTIVE_SCORE_TAG = (
    "srgan.objective",
    "srgan.objective_mode",
    "srgan.objective_score",
)
BEST_RUN_TAG, BEST_TRIAL_TAG = "srgan.best_run_id", "srgan.best_trial_id"
STOPPED_TAG = "srgan.stopped"  # on a trial that did not finish: 'scheduler' or 'error'
# On the run of an imported generator (pipeline.register) and its version: where it came from.
IMPORTED_TAG = "srgan.imported_from"
# On a run whose generator was exported (pipeline.export): the ONNX file's artifact URI.
ONNX_TAG = "srgan.onnx_uri"
# On registry versions:
SOURCE_TAG = "srgan.source_run_id"
PROMOTE_PREFIX = "promote."  # promote.decision, promote.metric, promote.candidate_value, ...


SQLITE = "sqlite:///"


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:/// tracking URI, None for other stores."""
    return Path(uri[len(SQLITE) :]) if uri.startswith(SQLITE) else None


def resolve_tracking_uri(configured: str | None = None) -> str:
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB}"
    if uri.startswith(SQLITE) and not uri.startswith(SQLITE + "/"):
        # Relative sqlite paths depend on the process's working directory; Ray workers and
        # later commands may run elsewhere, so pin it.
        uri = SQLITE + str(_sqlite_file(uri).resolve())
    elif "://" not in uri:
        uri = Path(uri).resolve().as_uri()
    return uri


def display_uri(uri: str) -> str:
    """`uri` with its credentials masked (pipeline.redact), for messages and logs."""
    return redact_uri(uri)


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:"))


def browse_command(uri: str) -> str | None:
    """The command that shows a local sqlite store's runs in a browser; None for any other
    store (a server is browsed at its own address)."""
    return f"mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite:") else None


def check_reachable(uri: str, budget_s: float = 15.0, must_exist: bool = False) -> None:
    """Raise TrackingError naming `uri` when an http(s) tracking server does not answer within
    `budget_s` seconds (MLflow's own client would retry for minutes). Any HTTP response,
    even an error status, counts as an answer. With `must_exist` (reading runs or models), a
    local sqlite store must be there already: MLflow would create an empty one."""
    if must_exist and _sqlite_file(uri) is not None and not _sqlite_file(uri).is_file():
        raise TrackingError(
            f"MLflow store {uri} does not exist, so it holds no runs or models; point `tracking_uri` or MLFLOW_TRACKING_URI at the store that does"
        )
    if not uri.startswith(("http://", "https://")):
        return
    parts = urlsplit(uri)
    probe = urlunsplit(
        parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1], path=parts.path.rstrip("/") + "/health", query="")
    )
    deadline, refusals = time.monotonic() + budget_s, 0
    while True:
        try:
            with urllib.request.urlopen(probe, timeout=max(0.5, min(5.0, deadline - time.monotonic()))):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
        refusals += isinstance(reason, ConnectionRefusedError)  # nothing listens: three tries, not the whole budget
        if refusals >= 3 or time.monotonic() + 1.0 >= deadline:
            break
        time.sleep(1.0)
    raise TrackingError(
        f"MLflow tracking server {display_uri(uri)} does not answer ({reason}); start it, or point "
        "mlflow.tracking_uri / `tracking_uri` / MLFLOW_TRACKING_URI at a running one (or sqlite:///mlflow.db)"
    )


def default_artifact_location(tracking_uri: str) -> str | None:
    """./mlartifacts next to a local store; a server decides for itself."""
    if not is_local_store(tracking_uri):
        return None
    database = _sqlite_file(tracking_uri)
    base = database.parent if database is not None else Path.cwd()
    return (base / DEFAULT_ARTIFACTS).resolve().as_uri()


def client(tracking_uri: str):
    """An MlflowClient bound to `tracking_uri` for runs and the model registry."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def download(uri: str, tracking_uri: str) -> Path:
    """A local copy of the artifact `uri` names (runs:/..., models:/..., or an artifact URI)."""
    import mlflow

    if uri.startswith("models:/"):
        uri = _model_location(client(tracking_uri), uri)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=tracking_uri))


def _model_ref(c, uri: str):
    """(registry version or None, logged model id or None, path inside) of models:/<name>@<alias>,
    models:/<name>/<version>, models:/<name>/latest or models:/m-<id>[/<path>], looked up
    through client `c`: MLflow's own models:/ resolution reads the process-wide registry URI."""
    name, *rest = uri[len("models:/") :].strip("/").split("/")
    if "@" in name:
        return c.get_model_version_by_alias(*name.split("@", 1)), None, rest
    if rest and rest[0].isdigit():
        return c.get_model_version(name, rest[0]), None, rest[1:]
    if rest and rest[0] == "latest":
        versions = c.search_model_versions(f"name = '{name}'")
        if not versions:
            raise TrackingError(f"{uri}: registered model {name!r} has no versions")
        return max(versions, key=lambda v: int(v.version)), None, rest[1:]
    if not rest or name.startswith("m-"):
        return None, name, rest
    raise TrackingError(
        f"{uri}: not a model reference; use models:/<name>@<alias>, models:/<name>/<version>, models:/<name>/latest or models:/m-<id>"
    )


def _model_location(c, uri: str) -> str:
    """The artifact location of a models:/ reference (see `_model_ref`), path inside included."""
    version, model_id, rest = _model_ref(c, uri)
    location = (
        c.get_model_version_download_uri(version.name, version.version)
        if version
        else c.get_logged_model(model_id).artifact_location
    )
    return "/".join([location.rstrip("/"), *rest])


def model_run(tracking_uri: str, uri: str) -> str | None:
    """The MLflow run behind models:/ reference `uri`: the registry version's run, or the
    logged model's source run."""
    c = client(tracking_uri)
    version, model_id, _ = _model_ref(c, uri)
    return (version.run_id if version else c.get_logged_model(model_id).source_run_id) or None


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str | None = None) -> str:
    c = client(tracking_uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = artifact_location or default_artifact_location(tracking_uri)
    return c.create_experiment(name, artifact_location=location)


def find_run(tracking_uri: str, experiment_id: str, run_uri: str) -> str | None:
    runs = client(tracking_uri).search_runs(
        [experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_uri}'", max_results=1
    )
    return runs[0].info.run_id if runs else None


def start_run(
    tracking_uri: str,
    experiment_id: str,
    run_name: str,
    run_uri: str,
    params: dict[str, str],
    tags: dict[str, str] | None = None,
) -> str:
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


def register_version(tracking_uri: str, name: str, model_uri: str, run_id: str, tags: dict[str, str]) -> str:
    """Register the logged model `model_uri` (models:/<model id>) of run `run_id` as a new
    version of `name` (created if missing); returns the version."""
    from mlflow.exceptions import MlflowException

    c = client(tracking_uri)
    try:
        c.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    model_id = model_uri[len("models:/") :] if model_uri.startswith("models:/m-") else None
    # The logged model's own artifact location, looked up through this client: MLflow's local
    # registry store would resolve a models:/ source through the process-wide URI instead.
    source = c.get_logged_model(model_id).artifact_location if model_id else model_uri
    version = c.create_model_version(
        name, source=source, run_id=run_id, tags=tags, model_id=model_id, await_creation_for=60
    )
    return str(version.version)
