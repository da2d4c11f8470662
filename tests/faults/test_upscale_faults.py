"""Batch upscaling under real faults: a node of the Ray Data pool lost mid-job, the S3
endpoint gone while outputs are written (shorter and longer than the retry budget)."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline import formats
from pipeline.upscaling.manifest import read_manifest
from srgan.generator import GeneratorSpec, build_generator
from srgan.weights import save_generator
from tests.faults.conftest import ROOT, S3_OUTAGE_S, cmdline, descendants, finish, kill_tree, wait_for
from tests.helpers import png_bytes, smooth_image

pytestmark = pytest.mark.faults


def inputs(folder: Path, count: int, side: int = 160) -> list[str]:
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"img_{i:02d}.png" for i in range(count)]
    for name in names:
        (folder / name).write_bytes(png_bytes(smooth_image(rng, side, side)))
    return names


def model(path: Path) -> Path:
    torch.manual_seed(0)
    save_generator(path, build_generator(GeneratorSpec(scale=2, num_blocks=4, num_features=32)).eval(), {})
    return path


def upscale(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.upscale", *args],
        cwd=ROOT,
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_a_node_lost_mid_job_leaves_every_input_done_once_and_nothing_partial(tmp_path, cluster, fault_env, s3):
    names = inputs(tmp_path / "in", 20)
    g = model(tmp_path / "g.pt")
    env = {**fault_env, **s3.env}
    # What the outputs must be: the same job in one process.
    reference = upscale(
        [
            "--model",
            str(g),
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "reference"),
            "--executor",
            "local",
        ],
        env,
        tmp_path / "reference.log",
    )
    assert finish(reference, tmp_path / "reference.log") is not None and reference.returncode == 0

    out = tmp_path / "out"
    # Two actors of 2 CPUs: one on each node.
    proc = upscale(
        [
            "--model",
            str(g),
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(out),
            "--executor",
            "ray",
            "--workers",
            "2",
            "--threads",
            "2",
        ],
        {**env, "RAY_ADDRESS": cluster.address},
        tmp_path / "job.log",
    )
    try:
        wait_for("4 outputs", lambda: len(list(out.glob("img_*.png"))) >= 4, 180, 0.2)
        assert [
            p for p in descendants(cluster.worker.pid) if "MapWorker" in cmdline(p)
        ]  # an actor of the pool is on that node
        done_at_loss = len(list(out.glob("img_*.png")))
        cluster.kill_worker_node()
        time.sleep(3)
        cluster.start_worker()
        log = finish(proc, tmp_path / "job.log")
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, log[-4000:]
    assert done_at_loss < len(names)  # the node went mid-job
    # Every output is there, whole, and what one process makes of its input.
    for name in names:
        assert (out / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial")]  # nothing half-written is left
    rows = read_manifest(str(out))
    assert {r.run for r in rows} == {rows[0].run}  # one run
    assert sorted(r.key for r in rows) == names and all(r.status == "done" for r in rows)  # each input once
    manifest = pd.read_parquet(io.BytesIO((out / "_manifest" / "manifest.parquet").read_bytes()))
    assert sorted(manifest["key"]) == names and set(manifest["status"]) == {"done"}


def _objects(s3, bucket: str, prefix: str) -> dict[str, dict]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"][len(prefix) :]: o for page in pages for o in page.get("Contents", [])}


def test_an_s3_outage_while_outputs_are_written_is_retried_through(tmp_path, fault_env, s3):
    names = inputs(tmp_path / "in", 16)
    g = model(tmp_path / "g.pt")
    bucket = s3.bucket()
    proc = upscale(
        [
            "--model",
            str(g),
            "--input",
            str(tmp_path / "in"),
            "--output",
            f"s3://{bucket}/out/",
            "--executor",
            "local",
            "--threads",
            "1",
        ],
        {**fault_env, **s3.env},
        tmp_path / "job.log",
    )
    try:
        wait_for(
            "3 outputs", lambda: len([k for k in _objects(s3, bucket, "out/") if k.startswith("img_")]) >= 3, 180, 0.2
        )
        s3.proxy.outage(S3_OUTAGE_S)
        log = finish(proc, tmp_path / "job.log")
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, log[-4000:]
    assert f"the S3 endpoint {s3.endpoint} does not answer" in log
    objects = _objects(s3, bucket, "out/")
    for name in names:  # each output is there and whole
        data = s3.client().get_object(Bucket=bucket, Key=f"out/{name}")["Body"].read()
        assert formats.decode(data, name).shape == (320, 320, 3)
    manifest = pd.read_parquet(
        io.BytesIO(s3.client().get_object(Bucket=bucket, Key="out/_manifest/manifest.parquet")["Body"].read())
    )
    assert sorted(manifest["key"]) == names and set(manifest["status"]) == {"done"}
    assert set(objects) == set(names) | {k for k in objects if k.startswith("_manifest/")}


def test_an_s3_outage_longer_than_the_retry_budget_stops_the_job_naming_the_endpoint_and_keeps_what_was_done(
    tmp_path, fault_env, s3
):
    names = inputs(tmp_path / "in", 16)
    g = model(tmp_path / "g.pt")
    bucket = s3.bucket()
    env = {**fault_env, **s3.env}
    args = [
        "--model",
        str(g),
        "--input",
        str(tmp_path / "in"),
        "--output",
        f"s3://{bucket}/out/",
        "--executor",
        "local",
        "--threads",
        "1",
    ]
    proc = upscale([*args, "--s3-retry-s", "4"], env, tmp_path / "job.log")
    try:
        wait_for(
            "3 outputs", lambda: len([k for k in _objects(s3, bucket, "out/") if k.startswith("img_")]) >= 3, 180, 0.2
        )
        s3.proxy.kill()
        log = finish(proc, tmp_path / "job.log", timeout=120)
    finally:
        kill_tree(proc)
    assert proc.returncode == 2, log[-4000:]
    error = [line for line in log.splitlines() if line.startswith("error: ")][-1]
    assert f"the S3 endpoint {s3.endpoint} has not answered" in error and "kept" in error and "re-run" in error, error
    s3.proxy.start()
    kept = {k: o for k, o in _objects(s3, bucket, "out/").items() if k.startswith("img_")}
    assert kept and len(kept) < len(names)
    for key in kept:  # what exists is whole
        assert formats.decode(s3.client().get_object(Bucket=bucket, Key=f"out/{key}")["Body"].read(), key).shape == (
            320,
            320,
            3,
        )

    again = upscale(args, env, tmp_path / "again.log")
    try:
        log = finish(again, tmp_path / "again.log")
    finally:
        kill_tree(again)
    assert again.returncode == 0, log[-4000:]
    final = _objects(s3, bucket, "out/")
    assert {k for k in final if k.startswith("img_")} == set(names)
    for key, obj in kept.items():  # not redone
        assert final[key]["LastModified"] == obj["LastModified"] and final[key]["ETag"] == obj["ETag"]
