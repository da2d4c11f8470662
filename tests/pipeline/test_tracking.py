"""MLflow through clients bound to a URI: two stores in one process, nothing process-wide."""

import os

import mlflow
import pytest

from pipeline import tracking
from pipeline.errors import TrackingError
from pipeline.models import pyfunc
from srgan.generator import SRResNet
from srgan.weights import load_generator, save_generator


def test_one_process_logs_registers_and_loads_in_two_stores(tmp_path):
    before = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"))
    path = tmp_path / "generator.pt"
    save_generator(path, SRResNet(scale=2, num_blocks=1, num_features=8))
    for store in ("a", "b"):
        uri = f"sqlite:///{tmp_path / store / 'mlflow.db'}"
        (tmp_path / store).mkdir()
        c = tracking.client(uri)
        run_id = c.create_run(
            c.create_experiment("e", artifact_location=(tmp_path / store / "art").as_uri())
        ).info.run_id
        model_uri = pyfunc.log_generator(uri, run_id, path)
        version = tracking.register_version(uri, f"m-{store}", model_uri, run_id, {tracking.SOURCE_TAG: run_id})
        c.set_registered_model_alias(f"m-{store}", "champion", version)
    for store in ("a", "b"):  # each store holds its own model, found through its own client
        uri = f"sqlite:///{tmp_path / store / 'mlflow.db'}"
        local = tracking.download(f"models:/m-{store}@champion", uri)
        assert load_generator(local / tracking.MODEL_WEIGHTS)[0].scale == 2
        assert [m.name for m in tracking.client(uri).search_registered_models()] == [f"m-{store}"]
    assert (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")) == before


def test_credentials_never_show_in_messages():
    assert (
        tracking.display_uri("https://alice:s3cret@mlflow.example.com/path?token=s3cret")
        == "https://***@mlflow.example.com/path?token=***"
    )
    with pytest.raises(TrackingError) as err:
        tracking.check_reachable("http://alice:s3cret@127.0.0.1:9", budget_s=1)
    assert "s3cret" not in str(err.value) and "http://***@127.0.0.1:9 does not answer" in str(err.value)
