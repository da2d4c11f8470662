"""A sweep whose Tune driver is SIGKILLed on a two-node cluster resumes when run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest

from tests.faults.conftest import kill_tree, wait_for
from tests.helpers import SWEEP, TRAIN, write_images

pytestmark = pytest.mark.faults


def children(db: str) -> list:
    try:
        client = mlflow.MlflowClient(db)
        exp = client.get_experiment_by_name("sweeps")
        return (
            [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags] if exp else []
        )
    except Exception:  # the store is being created
        return []


def test_a_sigkilled_sweep_driver_resumes_its_sweep_on_the_cluster(tmp_path, cluster, fault_env, s3):
    write_images(tmp_path / "hr", 8, size=(48, 48))
    write_images(tmp_path / "val", 2, size=(100, 100), seed=1)
    (tmp_path / "train.yaml").write_text(TRAIN.format(root=tmp_path))
    (tmp_path / "sweep.yaml").write_text(SWEEP.format(root=tmp_path))
    db = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**fault_env, **s3.env, "RAY_ADDRESS": cluster.address}
    cmd = [sys.executable, "-m", "pipeline.tune", "--config", str(tmp_path / "sweep.yaml")]

    first = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=open(tmp_path / "first.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for("a finished trial", lambda: any(r.info.status == "FINISHED" for r in children(db)), 170, 2.0)
        time.sleep(12)  # Tune saves its state every 10 s: the finished trial is in it
        finished_before = {r.info.run_id: r.info.end_time for r in children(db) if r.info.status == "FINISHED"}
        os.kill(first.pid, signal.SIGKILL)  # preempted: no handler runs
        first.wait(30)
    finally:
        kill_tree(first)
    assert first.returncode == -signal.SIGKILL
    assert children(db) and len(children(db)) < 4

    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "restoring sweep tiny-sweep" in done.stdout
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["trials"] == 3
    client = mlflow.MlflowClient(db)
    runs = children(db)
    assert len(runs) == 3, [r.data.tags.get("srgan.trial_id") for r in runs]  # every trial in MLflow, none twice
    assert len({r.data.tags["srgan.trial_id"] for r in runs}) == 3
    for run in runs:
        assert run.info.status in ("FINISHED", "KILLED")  # finished, or stopped early by ASHA
        for key in run.data.metrics:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert len(steps) == len(set(steps)), (run.info.run_id, key)
    for run_id, end_time in finished_before.items():  # a trial finished before the kill was not run again
        assert client.get_run(run_id).info.end_time == end_time
