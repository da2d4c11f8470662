"""The registered generator is weights only: MLflow's generic loader and ours run it without
unpickling anything from the artifact store, and a planted pickle is refused, not run."""

import contextlib
import pathlib
import shutil
import sys

import mlflow
import numpy as np
import pytest
import torch
import yaml

from pipeline import tracking
from pipeline.errors import UserError
from pipeline.models import pyfunc
from pipeline.models.reference import fetch_generator, load_upscaler
from srgan.weights import load_generator
from tests.helpers import logged_generator_model

_watchers: list[list] = []  # the lists tests collect pickle's class look-ups into, while they watch


def _on_audit(event: str, args: tuple) -> None:
    if event == "pickle.find_class" and _watchers:  # raised by every pickle.Unpickler, C or Python
        _watchers[-1].append(args)


sys.addaudithook(_on_audit)  # stays for the session, inert unless a test watches


@contextlib.contextmanager
def unpickling():
    """Collect the (module, name) of every class pickle looks up inside the block; torch's
    weights-only loader is its own unpickler and looks up none."""
    classes: list = []
    _watchers.append(classes)
    try:
        yield classes
    finally:
        _watchers.remove(classes)


def _logged(tmp_path, name: str = "srgan") -> dict:
    return logged_generator_model(tmp_path, name)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    return _logged(tmp_path_factory.mktemp("serving"))


def test_mlflow_pyfunc_runs_the_generator_without_unpickling(logged):
    x = np.random.default_rng(0).random((2, 3, 12, 10), dtype=np.float32)
    with unpickling() as classes:
        out = mlflow.pyfunc.load_model(str(logged["dir"])).predict(x)
    assert classes == [], f"loading the model unpickled {classes}"
    with torch.no_grad():
        expected = logged["generator"](torch.from_numpy(x)).clamp(0, 1).numpy()
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (2, 3, 24, 20)
    assert np.abs(out - expected).max() <= 1e-5


def test_logged_model_holds_no_pickle(logged):
    files = [p.relative_to(logged["dir"]).as_posix() for p in logged["dir"].rglob("*") if p.is_file()]
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pth"))], files
    mlmodel = (logged["dir"] / "MLmodel").read_text()
    flavors = yaml.safe_load(mlmodel)["flavors"]
    assert list(flavors) == ["python_function"]
    assert flavors["python_function"]["loader_module"] == "pipeline.models.pyfunc"
    assert "python_model" not in flavors["python_function"] and flavors["python_function"].get("code") is None
    assert "pickle" not in mlmodel and "cloudpickle" not in mlmodel
    weights = torch.load(logged["dir"] / "data" / "generator.pt", map_location="cpu", weights_only=True)
    assert weights["spec"]["scale"] == 2


def test_a_model_logged_before_the_stage_packages_still_loads(tmp_path):
    """Models logged before pipeline/ was split into stages name pipeline.serving as their
    loader: MLflow imports that path, which must still hand on the pyfunc loader."""
    store = _logged(tmp_path)
    mlmodel = store["dir"] / "MLmodel"
    text = mlmodel.read_text()
    assert "loader_module: pipeline.models.pyfunc" in text
    mlmodel.write_text(text.replace("loader_module: pipeline.models.pyfunc", "loader_module: pipeline.serving"))
    x = np.random.default_rng(1).random((1, 3, 9, 11), dtype=np.float32)
    with unpickling() as classes:
        out = mlflow.pyfunc.load_model(str(store["dir"])).predict(x)
    assert classes == []
    with torch.no_grad():
        expected = store["generator"](torch.from_numpy(x)).clamp(0, 1).numpy()
    assert out.shape == (1, 3, 18, 22) and np.abs(out - expected).max() <= 1e-5


class Evil:
    """Unpickling this touches `marker`: the stand-in for code an attacker plants."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_planted_pickle_is_refused_not_run(tmp_path):
    store = _logged(tmp_path / "store", name="attacked")
    marker = tmp_path / "pwned"
    planted = [p for p in store["dir"].rglob("*") if p.suffix in (".pt", ".pth")]
    for path in planted:  # every weights file the model carries, whatever its layout
        torch.save(Evil(marker), path)
    assert planted
    with pytest.raises(Exception) as err:
        mlflow.pyfunc.load_model(str(store["dir"]))
    assert not marker.exists(), "loading the model ran code planted in the artifact store"
    assert isinstance(err.value, UserError) and "re-log" in str(err.value), err.value
    with pytest.raises(UserError, match="attacked@champion"):
        fetch_generator("models:/attacked@champion", tracking_uri=store["uri"])
    assert not marker.exists()


def test_our_resolver_loads_new_and_old_layout_models(tmp_path):
    store = _logged(tmp_path, name="srgan")
    for ref in ("models:/srgan@champion", store["model_uri"]):
        upscaler = load_upscaler(ref, device=torch.device("cpu"), tracking_uri=store["uri"])
        assert upscaler.scale == 2 and upscaler.meta["data_range"] == 255
    # Models logged before this layout carry the same weights-only file at extra_files/.
    (store["dir"] / "extra_files").mkdir()
    shutil.move(store["dir"] / "data" / "generator.pt", store["dir"] / "extra_files" / "generator.pt")
    generator, meta = fetch_generator("models:/srgan@champion", tracking_uri=store["uri"])
    assert generator.scale == 2 and meta["data_range"] == 255


def test_relogging_a_run_replaces_its_model_with_a_weights_only_one(tmp_path):
    store = _logged(tmp_path)
    new_uri = pyfunc.relog_generator_model(store["uri"], store["run_id"])
    assert new_uri != store["model_uri"]
    assert tracking.client(store["uri"]).get_run(store["run_id"]).data.tags[tracking.MODEL_TAG] == new_uri
    local = tracking.download(new_uri, store["uri"])
    assert load_generator(local / "data" / "generator.pt")[0].scale == 2
    assert mlflow.pyfunc.load_model(str(local)).predict(np.zeros((1, 3, 4, 4), np.float32)).shape == (1, 3, 8, 8)
