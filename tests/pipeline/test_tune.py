"""Sweeps: the objective, the Pareto front, config checks, and a real interrupted sweep."""

import json
import os
import signal
import subprocess
import sys
import time

import mlflow
import pandas as pd
import pytest

from pipeline.errors import ConfigError
from pipeline.training.sweep import load_sweep
from pipeline.tune import pareto_front, score
from tests.helpers import SWEEP, TRAIN, write_images


def test_score_and_pareto_front():
    assert score({"val/psnr": 25.0, "val/hf_error": 2.0}, {"val/psnr": 1.0, "val/hf_error": -4.0}) == 17.0
    assert score({"val/psnr": 25.0}, {"val/psnr": 1.0, "val/hf_error": -4.0}) is None
    # (psnr to maximise, perceptual error to minimise)
    points = [(25.0, 1.0), (24.0, 0.5), (23.0, 0.8), (25.0, 1.2), (22.0, 0.4)]
    assert pareto_front(points) == [True, True, False, False, True]


def test_sweep_config_checks_search_keys_against_the_training_config(tmp_path):
    (tmp_path / "train.yaml").write_text(TRAIN.format(root=tmp_path))
    (tmp_path / "sweep.yaml").write_text(SWEEP.format(root=tmp_path))
    sweep, base = load_sweep(tmp_path / "sweep.yaml", ["num_samples=2"])
    assert sweep.num_samples == 2 and base["train"]["phases"] == ["gan"]
    bad = SWEEP.format(root=tmp_path).replace("loss.weights.pixel:", "loss.weights.pixle:")
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(ConfigError, match="search.loss.weights.pixle: not a usable training-config key"):
        load_sweep(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="scheduler.grace_period 50 is more than the 6 training steps"):
        load_sweep(tmp_path / "sweep.yaml", ["scheduler.grace_period=50"])
    (tmp_path / "bad2.yaml").write_text(
        SWEEP.format(root=tmp_path).replace("{loguniform: [0.1, 10.0]}", "{loguniform: [10.0, 0.1]}")
    )
    with pytest.raises(ConfigError, match="loguniform needs 0 < low < high"):
        load_sweep(tmp_path / "bad2.yaml")


def _children(db: str):
    client = mlflow.MlflowClient(db)
    exp = client.get_experiment_by_name("sweeps")
    if exp is None:
        return []
    return [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]


@pytest.mark.slow
def test_interrupted_sweep_resumes_and_reports_to_mlflow(tmp_path):
    write_images(tmp_path / "hr", 8, size=(48, 48))
    write_images(tmp_path / "val", 2, size=(100, 100), seed=1)  # NIQE needs a 96 x 96 block after the border
    (tmp_path / "train.yaml").write_text(TRAIN.format(root=tmp_path))
    (tmp_path / "sweep.yaml").write_text(SWEEP.format(root=tmp_path))
    db = f"sqlite:///{tmp_path}/mlflow.db"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the sweep must run on its default store
    cmd = [sys.executable, "-m", "pipeline.tune", "--config", str(tmp_path / "sweep.yaml")]

    # First run: interrupted (Ctrl-C) once a trial has finished.
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            # Watch the files, not MLflow: a second writer initialising the sqlite store races.
            deadline = time.time() + 400
            while (
                time.time() < deadline
                and first.poll() is None
                and not list((tmp_path / "sweeps").glob("tiny-sweep/trials/*/step_00000006/generator.pt"))
            ):
                time.sleep(2)
            while (
                time.time() < deadline
                and first.poll() is None
                and not any(r.info.status == "FINISHED" for r in _children(db))
            ):
                time.sleep(2)
            finished_early = [r.info.run_id for r in _children(db) if r.info.status == "FINISHED"]
            assert finished_early, (
                "no trial finished within the time limit: " + (tmp_path / "first.log").read_text()[-3000:]
            )
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGINT)  # Ctrl-C
            first.wait(timeout=300)
    first_log = (tmp_path / "first.log").read_text()
    assert first.returncode == 130 and "re-run the same command to continue it" in first_log, first_log[-3000:]

    # Second run: the same command continues the sweep.
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "restoring sweep tiny-sweep" in done.stdout
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["trials"] == 3

    client = mlflow.MlflowClient(db)
    children = _children(db)
    assert len(children) == 3, [r.data.tags.get("srgan.trial_id") for r in children]  # no trial started twice
    for run in children:
        assert {"val/psnr", "val/ssim", "val/niqe", "val/niqe_bicubic", "val/hf_ratio", "val/hf_error"} <= set(
            run.data.metrics
        )
        assert run.info.status in ("FINISHED", "KILLED")  # finished, or stopped early by ASHA
        if run.info.status == "FINISHED":
            assert run.data.tags.get("srgan.model_uri", "").startswith("models:/")
    for run_id in finished_early:  # a trial finished before the interruption was not re-run
        steps = [m.step for m in client.get_metric_history(run_id, "train/lr")]
        assert sorted(steps) == sorted(set(steps))

    parent = client.get_run(summary["parent_run_id"])
    assert (
        parent.data.tags["srgan.objective"] == "score"
        and parent.data.tags["srgan.best_run_id"] == summary["best_run_id"]
    )
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"results.csv", "results.parquet", "perception_distortion.png"} <= artifacts
    table = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="results.csv", tracking_uri=db)
    )
    assert len(table) == 3 and table["pareto"].any()
    assert {
        "loss.weights.content",
        "loss.weights.adversarial",
        "loss.weights.pixel",
        "val/psnr",
        "val/niqe",
        "val/hf_ratio",
        "score",
        "status",
    } <= set(table.columns)
