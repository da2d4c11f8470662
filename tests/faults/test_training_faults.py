"""Training under real faults on a two-node Ray cluster: a worker process SIGKILLed, a node
lost, the S3 endpoint gone during a checkpoint upload, the tracking server down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
import pytest
import yaml

from pipeline import tracking
from pipeline.config import parse_config
from pipeline.training.recipe import lr_at
from srgan.weights import load_generator
from tests.faults.conftest import ROOT, S3_OUTAGE_S, finish, kill_tree, wait_for
from tests.helpers import write_images

pytestmark = pytest.mark.faults

TOTAL, EVERY = 30, 5  # steps, checkpoint_every


def training_config(tmp_path: Path, storage_path: str, tracking_uri: str, **sections) -> tuple[Path, dict]:
    """A tiny two-worker run (one worker per node: each asks for the node's one `slot`) whose
    steps take 0.4 s, so a test can act mid-run."""
    write_images(tmp_path / "hr", 8, size=(48, 48))
    tree = {
        "run": {"name": f"f-{uuid.uuid4().hex[:8]}", "storage_path": storage_path},
        "data": {"train": str(tmp_path / "hr"), "patch_size": 16, "patches_per_image": 4, "shuffle_buffer": 4},
        "model": {"generator": {"scale": 2, "num_blocks": 1, "num_features": 8}, "discriminator": {"base_features": 4}},
        "loss": {"content_backbone": "discriminator"},
        "train": {
            "batch_size": 4, "pretrain": {"steps": 10, "lr": 1e-3}, "gan": {"steps": TOTAL - 10, "lr": 1e-4, "lr_drop_step": 10},
            "log_every": 1, "val_every": 1000, "checkpoint_every": EVERY, "max_failures": 3,
        },
        "scaling": {"num_workers": 2, "cpus_per_worker": 0.5, "resources_per_worker": {"slot": 1}},
        "mlflow": {"tracking_uri": tracking_uri, "experiment": "faults"},
        "debug": {"step_sleep_s": 0.4},
    }  # fmt: skip
    for section, values in sections.items():
        tree[section] = {**tree.get(section, {}), **values}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path, tree


def start_training(config: Path, env: dict, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.train", "--config", str(config), *extra],
        cwd=ROOT,
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def logged_step(uri: str, name: str) -> int:
    """The highest train/lr step the run called `name` holds (0 before it logs one)."""
    try:
        client = mlflow.MlflowClient(uri)
        exp = client.get_experiment_by_name("faults")
        runs = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{name}'") if exp else []
        return max((m.step for r in runs for m in client.get_metric_history(r.info.run_id, "train/lr")), default=0)
    except Exception:  # the store is being created, or the server is away: not yet
        return 0


def settled_step(uri: str, name: str, quiet_s: float = 3.0, limit_s: float = 60.0) -> int:
    """The logged step once it has not moved for `quiet_s` seconds (at most `limit_s`)."""
    step, since, start = logged_step(uri, name), time.monotonic(), time.monotonic()
    while time.monotonic() - since < quiet_s and time.monotonic() - start < limit_s:
        time.sleep(0.5)
        now = logged_step(uri, name)
        if now != step:
            step, since = now, time.monotonic()
    return step


def the_run(uri: str, name: str):
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("faults").experiment_id], filter_string=f"attributes.run_name = '{name}'"
    )
    assert len(runs) == 1, [r.info.run_id for r in runs]  # one MLflow run, however often the workers restarted
    return client, runs[0]


def assert_steps_whole(uri: str, tree: dict) -> object:
    """Every step logged exactly once, the lr schedule continuing as if nothing happened."""
    client, run = the_run(uri, tree["run"]["name"])
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "train/lr")
    assert sorted(m.step for m in history) == list(range(1, TOTAL + 1))
    cfg = parse_config(tree)
    for m in history:
        assert m.value == pytest.approx(lr_at(cfg, m.step - 1)), m.step
    for key in run.data.metrics:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert len(steps) == len(set(steps)), key
    return client, run


def resumed_from(client, run) -> list[int]:
    return [int(m.value) for m in client.get_metric_history(run.info.run_id, "train/resumed_from_step")]


def test_a_killed_training_worker_is_replaced_and_the_run_continues_from_its_checkpoint(
    tmp_path, cluster, fault_env, s3
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config, tree = training_config(tmp_path, str(tmp_path / "runs"), uri)
    env = {**fault_env, **s3.env, "RAY_ADDRESS": cluster.address}
    proc = start_training(config, env, tmp_path / "train.log")
    try:
        killed_at = wait_for("step 12", lambda: (s := logged_step(uri, tree["run"]["name"])) >= 12 and s, 180)
        victim = wait_for("a training worker process", lambda: cluster.processes("ray::RayTrainWorker"), 30)[0]
        os.kill(victim, signal.SIGKILL)
        log = finish(proc, tmp_path / "train.log")
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, log[-4000:]
    client, run = assert_steps_whole(uri, tree)
    [start] = resumed_from(client, run)  # restarted once, by Ray Train, without anyone asking
    assert (
        start % EVERY == 0 and 0 <= killed_at - start <= EVERY + 1
    )  # at most checkpoint_every steps redone (+1: MLflow lags a step)
    final = tmp_path / "runs" / tree["run"]["name"] / f"step_{TOTAL:08d}" / "generator.pt"
    assert load_generator(final)[0].spec.scale == 2


@pytest.mark.parametrize("elastic", [False, True], ids=["waits-for-the-node", "elastic"])
def test_a_lost_node_is_survived_with_the_same_guarantees(tmp_path, cluster, fault_env, s3, elastic):
    """Fixed size (default): the run waits for the node and resumes when it returns.
    Elastic (scaling.min_workers): it goes on with the worker that is left."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    scaling = {"min_workers": 1} if elastic else {}
    config, tree = training_config(tmp_path, str(tmp_path / "runs"), uri, scaling=scaling)
    env = {**fault_env, **s3.env, "RAY_ADDRESS": cluster.address}
    proc = start_training(config, env, tmp_path / "train.log")
    try:
        wait_for("step 10", lambda: logged_step(uri, tree["run"]["name"]) >= 10, 180)
        cluster.kill_worker_node()
        # The node's processes are gone: rank 0 waits for its peer (fixed size). Its last steps
        # may still be on their way to MLflow (the logger sends in the background): there, take
        # the step the log settles at.
        name = tree["run"]["name"]
        killed_at = logged_step(uri, name) if elastic else settled_step(uri, name)
        if elastic:
            # Goes on without the node: steps are logged again before it returns.
            wait_for("training on one worker", lambda: logged_step(uri, tree["run"]["name"]) > killed_at + 2, 150, 1.0)
        else:
            time.sleep(8)
            assert (
                logged_step(uri, tree["run"]["name"]) <= killed_at + 1
            )  # no progress without the node (+1: MLflow lags a step)
        cluster.start_worker()
        log = finish(proc, tmp_path / "train.log")
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, log[-4000:]
    client, run = assert_steps_whole(uri, tree)
    starts = resumed_from(client, run)
    assert starts and all(s % EVERY == 0 for s in starts)
    assert 0 <= killed_at - starts[0] <= EVERY + 1


def test_an_s3_outage_during_a_checkpoint_upload_is_retried_and_no_half_checkpoint_is_used(
    tmp_path, cluster, fault_env, s3
):
    bucket = s3.bucket()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config, tree = training_config(tmp_path, f"s3://{bucket}/runs", uri, s3={"retry_s": 60})
    env = {**fault_env, **s3.env, "RAY_ADDRESS": cluster.address}
    proc = start_training(config, env, tmp_path / "train.log")
    try:
        wait_for("step 3", lambda: logged_step(uri, tree["run"]["name"]) >= 3, 180)
        s3.proxy.outage(S3_OUTAGE_S)  # the endpoint is gone before the checkpoint at step 5 is uploaded
        log = finish(proc, tmp_path / "train.log")
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, log[-4000:]
    assert "does not answer" in log and "retrying for up to 60 s" in log
    assert_steps_whole(uri, tree)
    # Every checkpoint Ray Train recorded is whole.
    objects = {
        o["Key"]
        for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    }
    run_prefix = f"runs/{tree['run']['name']}/"
    snapshot = json.loads(
        s3.client().get_object(Bucket=bucket, Key=run_prefix + "checkpoint_manager_snapshot.json")["Body"].read()
    )
    recorded = [c for c in json.dumps(snapshot).split('"') if "step_000000" in c]
    assert recorded
    for step in sorted({Path(r).name for r in recorded}):
        assert {
            f"{run_prefix}{step}/{f}" for f in ("state.pt", "generator.pt", "rng_rank0.pt", "rng_rank1.pt")
        } <= objects, step


def test_the_tracking_server_going_away_neither_stops_nor_loses_training(
    tmp_path, cluster, fault_env, s3, mlflow_server
):
    config, tree = training_config(tmp_path, str(tmp_path / "runs"), mlflow_server.uri)
    env = {**fault_env, **s3.env, "RAY_ADDRESS": cluster.address}
    proc = start_training(config, env, tmp_path / "train.log")
    try:
        wait_for("step 8", lambda: logged_step(mlflow_server.uri, tree["run"]["name"]) >= 8, 180)
        mlflow_server.outage(8, timeout=120)  # training goes on meanwhile, keeping what it logs
        log = finish(proc, tmp_path / "train.log")
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, log[-4000:]
    assert "does not answer" in log and "answers again" in log
    client, run = assert_steps_whole(mlflow_server.uri, tree)
    assert not resumed_from(client, run)  # nothing restarted: the outage only delayed the metrics


def test_a_tracking_outage_longer_than_its_budget_stops_the_run_cleanly_and_resume_continues_it(
    tmp_path, cluster, fault_env, s3, mlflow_server
):
    config, tree = training_config(
        tmp_path, str(tmp_path / "runs"), mlflow_server.uri, mlflow={"outage_s": 6}, train={"max_failures": 0}
    )
    env = {**fault_env, **s3.env, "RAY_ADDRESS": cluster.address}
    proc = start_training(config, env, tmp_path / "train.log")
    try:
        wait_for("step 8", lambda: logged_step(mlflow_server.uri, tree["run"]["name"]) >= 8, 180)
        mlflow_server.kill()
        log = finish(proc, tmp_path / "train.log", timeout=120)
    finally:
        kill_tree(proc)
    assert proc.returncode == 2, log[-4000:]
    error = [line for line in log.splitlines() if line.startswith("error: ")]
    assert (
        error
        and f"MLflow tracking server {mlflow_server.uri} has not answered" in error[-1]
        and "--resume" in error[-1]
    ), log[-3000:]
    checkpoints = sorted((tmp_path / "runs" / tree["run"]["name"]).glob("step_*/state.pt"))
    assert checkpoints  # kept

    mlflow_server.start(timeout=120)
    proc = start_training(config, env, tmp_path / "resume.log", "--resume")
    try:
        log = finish(proc, tmp_path / "resume.log")
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, log[-4000:]
    client, run = assert_steps_whole(
        mlflow_server.uri, tree
    )  # unsent steps up to the checkpoint came from it, later ones were trained again
    assert run.data.tags[tracking.RUN_TAG].endswith(tree["run"]["name"])
