"""MLflow, as every stage sees it: the tracking URI (sqlite by default, an http:// server where
configured), the client, experiments and runs, downloads, registry versions, the tag names the
pipeline writes (store), and the run logger that keeps metrics through a tracking-server
outage (run_logger). It may import pipeline.io and pipeline.errors; never models, training or
the verbs. ``from pipeline import tracking`` gives store's names."""

from pipeline.tracking.store import (  # noqa: F401
    BEST_RUN_TAG,
    BEST_TRIAL_TAG,
    DEFAULT_ARTIFACTS,
    DEFAULT_DB,
    IMPORTED_TAG,
    MODEL_NAME,
    MODEL_TAG,
    MODEL_WEIGHTS,
    OBJECTIVE_MODE_TAG,
    OBJECTIVE_SCORE_TAG,
    OBJECTIVE_TAG,
    OLD_MODEL_WEIGHTS,
    ONNX_TAG,
    PARENT_TAG,
    PHASES_TAG,
    PROMOTE_PREFIX,
    RUN_TAG,
    SOURCE_TAG,
    SQLITE,
    STOPPED_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    browse_command,
    check_reachable,
    client,
    default_artifact_location,
    display_uri,
    download,
    ensure_experiment,
    find_run,
    is_local_store,
    model_run,
    register_version,
    resolve_tracking_uri,
    start_run,
)
