"""The batch job runs in this process or on a Ray Data pool with the same results."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.upscale import main
from pipeline.upscaling import executors
from pipeline.upscaling.manifest import MANIFEST_DIR, WorkItem
from srgan.generator import GeneratorSpec, build_generator
from srgan.weights import save_generator
from tests.helpers import geotiff_bytes, png_bytes, smooth_image

ROOT = Path(__file__).resolve().parents[2]
PER_RUN = ["run", "seconds", "finished_at"]  # which run made a row, when, how long it took


def _inputs(folder: Path) -> None:
    rng = np.random.default_rng(3)
    files = {
        "a.png": png_bytes(smooth_image(rng, 37, 23)),
        "deep/b16.png": png_bytes(smooth_image(rng, 19, 41, 3, np.uint16)),
        "scene.tif": geotiff_bytes(smooth_image(rng, 29, 31, 4, np.uint16), nodata=0),
        "broken.png": b"\x89PNG\r\n\x1a\n but nothing else",
    }
    for key, data in files.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(data)


def _model(path: Path) -> Path:
    import torch

    torch.manual_seed(0)
    save_generator(
        path, build_generator(GeneratorSpec(scale=2, num_blocks=2, num_features=8)).eval(), {"data_range": None}
    )
    return path


def _outputs(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and MANIFEST_DIR not in p.parts
    }


def _manifest(folder: Path) -> pd.DataFrame:
    table = pd.read_parquet(io.BytesIO((folder / MANIFEST_DIR / "manifest.parquet").read_bytes()))
    return table.drop(columns=PER_RUN).reset_index(drop=True)


@pytest.mark.slow
def test_local_and_ray_executors_write_the_same_bytes_and_manifest_rows(tmp_path, ray_session, capsys):
    _inputs(tmp_path / "in")
    model = _model(tmp_path / "g.pt")
    common = ["--model", str(model), "--input", str(tmp_path / "in"), "--bands", "1,2,3", "--max-failures", "1"]
    assert main(common + ["--output", str(tmp_path / "local"), "--executor", "local"]) == 0
    assert "executor local (--executor local)" in capsys.readouterr().err
    assert (
        main(common + ["--output", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2", "--threads", "1"]) == 0
    )
    assert "executor ray (--executor ray): 2 worker(s)" in capsys.readouterr().err
    local, pool = _outputs(tmp_path / "local"), _outputs(tmp_path / "ray")
    assert set(local) == {"a.png", "deep/b16.png", "scene.tif"}
    assert local == pool  # byte for byte
    a, b = _manifest(tmp_path / "local"), _manifest(tmp_path / "ray")
    # Every column but the run's own (id, timestamps, durations) is equal, row by row; the
    # input and output paths differ only by the output folder.
    b["output"] = b["output"].str.replace(str(tmp_path / "ray"), str(tmp_path / "local"), regex=False)
    pd.testing.assert_frame_equal(a, b)
    assert list(a[a.status == "failed"].key) == ["broken.png"]


def test_auto_runs_a_small_local_job_in_this_process_without_ray(tmp_path):
    """A small local job under auto starts no Ray at all: the process never imports it."""
    _inputs(tmp_path / "in")
    model = _model(tmp_path / "g.pt")
    code = (
        "import sys, json; from pipeline.upscale import main; "
        f"rc = main(['--model', {str(model)!r}, '--input', {str(tmp_path / 'in')!r}, '--output', {str(tmp_path / 'out')!r}, '--bands', '1,2,3']); "
        "print(json.dumps({'rc': rc, 'ray': 'ray' in sys.modules, 'mlflow': 'mlflow' in sys.modules}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"rc": 1, "ray": False, "mlflow": False}, done.stderr[-2000:]  # rc 1: broken.png failed
    assert "executor local (auto: a local input" in done.stderr
    assert "failed: broken.png:" in done.stderr
    assert set(_outputs(tmp_path / "out")) == {"a.png", "deep/b16.png", "scene.tif"}


def test_auto_keeps_ray_for_s3_large_jobs_and_configured_clusters(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    small = [WorkItem("a.png", "in/a.png", size=1000)] * 8
    assert executors.choose("auto", "/data/in", small)[0] == "local"
    assert executors.choose("auto", "s3://bucket/in", small) == ("ray", "auto: an s3:// input")
    assert (
        executors.choose("auto", "/data/in", [WorkItem("big.tif", "in/big.tif", size=executors.AUTO_LOCAL_BYTES + 1)])[
            0
        ]
        == "ray"
    )
    assert executors.choose("local", "s3://bucket/in", small) == ("local", "`executor` local")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert executors.choose("auto", "/data/in", small)[0] == "ray"
