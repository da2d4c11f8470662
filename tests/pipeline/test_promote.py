"""Promotion through the MLflow registry: the gate, idempotency, and loading the champion."""

import uuid

import mlflow
import numpy as np
import pytest
import torch

from pipeline import evaluate, scoring, tracking
from pipeline.models import pyfunc
from pipeline.models.reference import load_upscaler
from pipeline.promote import EXIT_NOT_PROMOTED, main
from srgan.degrade import Bicubic
from srgan.generator import SRResNet
from srgan.losses import PixelLoss
from srgan.train_step import pretrain_step
from srgan.weights import save_generator
from tests.helpers import put_images, smooth_image, write_images


def _train(steps: int) -> SRResNet:
    """A tiny bicubic-skip SRResNet trained on blocky images like the holdout's."""
    torch.manual_seed(0)
    g = SRResNet(scale=2, num_blocks=1, num_features=16, bicubic_skip=True)
    opt = torch.optim.Adam(g.parameters(), 2e-3)
    rng = np.random.default_rng(5)
    for _ in range(steps):
        hr = torch.stack([torch.from_numpy(smooth_image(rng, 32, 32)).permute(2, 0, 1).float() / 255 for _ in range(8)])
        pretrain_step(g, opt, Bicubic(2)(hr, 0), hr, PixelLoss("l1"))
    return g.eval()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A tracking store with one finished 'training run' per model quality."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    holdout = root / "holdout"
    write_images(holdout, 4, size=(64, 64), seed=11)
    noisy = SRResNet(scale=2, num_blocks=1, num_features=16, bicubic_skip=True)
    torch.nn.init.normal_(noisy.tail.weight, std=0.05)  # adds noise on top of bicubic
    models = {
        "bicubic_equal": SRResNet(scale=2, num_blocks=1, num_features=16, bicubic_skip=True),
        "worse": noisy,
        "good": _train(60),
        "better": _train(400),
    }
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("promote-tests", artifact_location=(root / "artifacts").as_uri())
    runs = {}
    for label, g in models.items():
        run_id = client.create_run(exp, run_name=label).info.run_id
        path = root / label / "generator.pt"
        save_generator(path, g, meta={"trained_steps": 0})
        pyfunc.log_generator(uri, run_id, path)  # as a finished training run leaves it
        client.set_terminated(run_id)
        runs[label] = run_id
    return {"uri": uri, "holdout": str(holdout), "runs": runs, "client": client, "root": root}


def _promote(capsys, reg, *args):
    code = main([*args, "--holdout", reg["holdout"], "--tracking-uri", reg["uri"], "--metric", "psnr_y"])
    out = capsys.readouterr()
    return code, out.out + out.err


def _champion(reg, name):
    try:
        return str(reg["client"].get_model_version_by_alias(name, "champion").version)
    except Exception:
        return None


def test_the_trained_models_really_differ(registry):
    # The gate tests below rest on this ordering: worse < bicubic == bicubic_equal < good < better.
    figures = {}
    for label in ("worse", "bicubic_equal", "good", "better"):
        upscaler = load_upscaler(f"runs:/{registry['runs'][label]}", tracking_uri=registry["uri"])
        report = scoring.evaluate_images(
            upscaler, scoring.iter_images(scoring.list_images(registry["holdout"]), upscaler), "h"
        ).to_dict()
        figures[label] = report["psnr_y"]
        bicubic = report["bicubic"]["psnr_y"]
    assert figures["worse"] < bicubic - 0.05
    # The baseline rounds to uint8 after each resize pass (MATLAB); the model resizes in float.
    assert abs(figures["bicubic_equal"] - bicubic) < 0.01
    assert bicubic + 0.05 < figures["good"] < figures["better"] - 0.05


def test_first_promotion_must_beat_bicubic(registry, capsys):
    name = f"m{uuid.uuid4().hex[:6]}"
    for label in ("worse", "bicubic_equal"):
        code, out = _promote(capsys, registry, "--run-id", registry["runs"][label], "--name", name)
        assert code == EXIT_NOT_PROMOTED and "refused" in out and "does not beat bicubic" in out, out
        assert _champion(registry, name) is None
    version = registry["client"].get_model_version_by_alias(name, "candidate")
    assert version.tags["promote.decision"] == "refused" and version.tags["promote.compared_with"] == "bicubic"


def test_better_candidate_moves_the_champion_and_worse_one_does_not(registry, capsys):
    name = f"m{uuid.uuid4().hex[:6]}"
    code, out = _promote(capsys, registry, "--run-id", registry["runs"]["good"], "--name", name)
    assert code == 0 and "promoted" in out and _champion(registry, name) == "1"

    code, out = _promote(capsys, registry, "--run-id", registry["runs"]["worse"], "--name", name)
    assert code == EXIT_NOT_PROMOTED and "champion stays v1" in out and "candidate v2" in out
    assert _champion(registry, name) == "1"
    tags = registry["client"].get_model_version(name, "2").tags
    assert tags["promote.decision"] == "kept_champion" and tags["promote.compared_with"] == "v1"
    assert float(tags["promote.candidate_value"]) < float(tags["promote.compared_value"])

    code, out = _promote(capsys, registry, "--run-id", registry["runs"]["better"], "--name", name)
    assert code == 0 and "alias champion -> v3" in out and _champion(registry, name) == "3"


def test_promoting_the_same_run_twice_makes_no_second_version(registry, capsys):
    name = f"m{uuid.uuid4().hex[:6]}"
    assert _promote(capsys, registry, "--run-id", registry["runs"]["good"], "--name", name)[0] == 0
    code, out = _promote(capsys, registry, "--run-id", registry["runs"]["good"], "--name", name)
    assert code == 0 and "already registered" in out and "already the champion" in out
    assert len(registry["client"].search_model_versions(f"name = '{name}'")) == 1


def test_from_sweep_promotes_the_best_trial_and_champion_loads_everywhere(registry, capsys, bucket):
    client = registry["client"]
    exp = client.get_experiment_by_name("promote-tests").experiment_id
    parent = client.create_run(
        exp, run_name="sweep", tags={"srgan.sweep": "demo-sweep", "srgan.best_run_id": registry["runs"]["good"]}
    ).info.run_id
    name = f"m{uuid.uuid4().hex[:6]}"
    # A holdout in S3 this time.
    put_images(bucket, "holdout", 4, size=(64, 64), seed=11)
    code = main(
        [
            "--from-sweep",
            "demo-sweep",
            "--name",
            name,
            "--holdout",
            f"s3://{bucket}/holdout/",
            "--tracking-uri",
            registry["uri"],
        ]
    )
    assert code == 0 and _champion(registry, name) == "1"
    assert client.get_model_version(name, "1").tags["srgan.source_run_id"] == registry["runs"]["good"]
    code = main(
        ["--from-sweep", parent, "--name", name, "--holdout", registry["holdout"], "--tracking-uri", registry["uri"]]
    )
    assert code == 0
    capsys.readouterr()

    code = evaluate.main(
        [
            "--model",
            f"models:/{name}@champion",
            "--data",
            registry["holdout"],
            "--json",
            "--tracking-uri",
            registry["uri"],
        ]
    )
    assert code == 0 and '"scale": 2' in capsys.readouterr().out
    local = tracking.download(f"models:/{name}@champion", registry["uri"])
    out = mlflow.pyfunc.load_model(local).predict(np.random.rand(1, 3, 8, 8).astype(np.float32))
    assert np.asarray(out).shape == (1, 3, 16, 16)


def test_errors_name_the_problem(registry, capsys):
    code, out = _promote(capsys, registry, "--from-sweep", "no-such-sweep", "--name", "x")
    assert code == 2 and "no sweep parent run" in out
    client = registry["client"]
    bare = client.create_run(client.get_experiment_by_name("promote-tests").experiment_id).info.run_id
    code, out = _promote(capsys, registry, "--run-id", bare, "--name", "x")
    assert code == 2 and f"run {bare} logged no generator model" in out


def test_a_holdout_the_criterion_cannot_use_changes_nothing_even_with_a_champion(registry, capsys):
    name = f"m{uuid.uuid4().hex[:6]}"
    assert _promote(capsys, registry, "--run-id", registry["runs"]["good"], "--name", name)[0] == 0
    # 64 px holdout images hold no 96 x 96 NIQE block: the perceptual gate cannot judge on them.
    code, out = _promote(
        capsys, registry, "--run-id", registry["runs"]["better"], "--name", name, "--criterion", "perceptual"
    )
    assert code == 2 and "the holdout has 0 NIQE blocks" in out and "needs at least 36" in out
    assert len(registry["client"].search_model_versions(f"name = '{name}'")) == 1 and _champion(registry, name) == "1"
