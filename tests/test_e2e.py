"""`make e2e`: the quickstart's flow through the local stack (moto S3 + MLflow server) and a
local Ray head, submitted with `ray job submit`. Slow (a few minutes), runs in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.long
def test_make_e2e_runs_the_flow_through_the_local_stack(tmp_path):
    venv = Path(sys.executable).parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "RAY_ADDRESS"))}
    env["SRGAN_STACK_DIR"] = str(tmp_path / "stack")
    log = tmp_path / "e2e.log"
    with open(log, "w") as out:
        proc = subprocess.run(
            ["make", "-s", "e2e", f"VENV={venv}", "E2E_ARGS=--quick"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1500,
        )
    text = log.read_text()
    assert proc.returncode == 0, text[-5000:]
    assert "e2e ok:" in text and "srgan@champion = v" in text
    assert "submitted successfully" in text  # it went through `ray job submit`
    assert not (tmp_path / "stack").exists()  # the stack was torn down
