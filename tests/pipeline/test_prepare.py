"""Preparing a dataset at scale: validation, BasicSR's sub-images, the manifest, resume after a
kill, refusals, odd S3 keys, and training on the prepared folder without a scan."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import numpy as np
import pytest

from pipeline import formats
from pipeline.config import parse_config
from pipeline.data.batches import ImageSpec
from pipeline.data.prepared import open_prepared
from pipeline.errors import DataError
from pipeline.io import storage
from pipeline.prepare import PrepareJob, main, prepare
from pipeline.training.driver import run_training
from tests.helpers import bad_files, png_bytes, png_with_sbit, put_images, smooth_image, tiny, twelve_bit, write_images

ROOT = Path(__file__).resolve().parents[2]
BAD = {"bad/empty.png", "bad/truncated.png", "bad/not_an_image.jpg", "bad/tiny.png"}


def basicsr_windows(h: int, w: int, crop: int, step: int, thresh: int = 0) -> list[tuple[int, int]]:
    """(top, left) of each sub-image, in BasicSR's order: extract_subimages.py's worker, verbatim."""
    h_space = np.arange(0, h - crop + 1, step)
    if h - (h_space[-1] + crop) > thresh:
        h_space = np.append(h_space, h - crop)
    w_space = np.arange(0, w - crop + 1, step)
    if w - (w_space[-1] + crop) > thresh:
        w_space = np.append(w_space, w - crop)
    return [(int(x), int(y)) for x in h_space for y in w_space]


def _folder(tmp_path: Path, sizes: dict[str, tuple[int, int]], with_bad: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    arrays = {}
    for name, size in sizes.items():
        arrays[name] = smooth_image(rng, *size)
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(png_bytes(arrays[name]))
    for name, data in (bad_files(rng) if with_bad else {}).items():
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(data)
    return arrays


def _manifest(root) -> list[dict]:
    return [
        json.loads(line)
        for line in storage.read_bytes(storage.join(str(root), "_prepared", "manifest.jsonl")).decode().splitlines()
    ]


def test_sub_images_follow_basicsr_and_the_manifest_lists_them_and_the_bad_inputs(ray_session, tmp_path):
    sizes = {"wide.png": (100, 130), "exact.png": (48, 48), "deep/tall.png": (170, 60)}
    arrays = _folder(tmp_path, sizes)
    summary = prepare(PrepareJob(str(tmp_path / "in"), str(tmp_path / "out"), sub_images=48, step=20, min_size=16))

    expected = {}
    for name, (h, w) in sizes.items():
        for i, (top, left) in enumerate(basicsr_windows(h, w, 48, 20), start=1):
            expected[f"{name[:-4]}_s{i:03d}.png"] = arrays[name][top : top + 48, left : left + 48]
    made = {str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png")}
    assert made == set(expected)
    for key, crop in expected.items():  # lossless: the source's pixels
        np.testing.assert_array_equal(formats.decode((tmp_path / "out" / key).read_bytes(), key), crop)

    header, *rows = _manifest(tmp_path / "out")
    assert header["kind"] == "header" and header["input"] == str(tmp_path / "in")
    assert header["settings"]["sub_images"] == 48 and header["settings"]["step"] == 20
    assert header["counts"] == {"sources": 7, "usable_sources": 3, "bad": 4, "images": len(expected)}
    images = {r["key"]: r for r in rows if r["kind"] == "image"}
    assert set(images) == set(expected)
    assert images["deep/tall_s002.png"] == {
        "kind": "image",
        "key": "deep/tall_s002.png",
        "bytes": (tmp_path / "out/deep/tall_s002.png").stat().st_size,
        "width": 48,
        "height": 48,
        "bands": 3,
        "dtype": "uint8",
        "source": "deep/tall.png",
        "high": 255.0,
        "range": "dtype uint8 (255)",
        "from_dtype": True,
    }
    bad = {r["source"]: r["reason"] for r in rows if r["kind"] == "bad"}
    assert set(bad) == BAD and "smaller than the 16x16 patch" in bad["bad/tiny.png"] and "empty" in bad["bad/empty.png"]
    assert (summary.made, summary.bad, summary.images, summary.failed) == (3, 4, len(expected), 0)

    # Deleted outputs (and nothing else) are made again by a re-run with the same arguments.
    (tmp_path / "out/wide_s003.png").unlink()
    kept = (tmp_path / "out/exact_s001.png").stat().st_mtime_ns
    again = prepare(PrepareJob(str(tmp_path / "in"), str(tmp_path / "out"), sub_images=48, step=20, min_size=16))
    assert (again.made, again.done_before) == (1, 6)
    np.testing.assert_array_equal(
        formats.decode((tmp_path / "out/wide_s003.png").read_bytes(), "x.png"), expected["wide_s003.png"]
    )
    assert (tmp_path / "out/exact_s001.png").stat().st_mtime_ns == kept
    assert _manifest(tmp_path / "out")[1:] == rows


def test_a_declared_12_bit_range_survives_the_cut(ray_session, tmp_path):
    (tmp_path / "in").mkdir()
    image = twelve_bit(size=(60, 60))
    (tmp_path / "in" / "sbit.png").write_bytes(png_with_sbit(image))
    prepare(PrepareJob(str(tmp_path / "in"), str(tmp_path / "out"), sub_images=40, step=20))
    prepared = open_prepared(str(tmp_path / "out"))
    assert [f.key for f in prepared.files] == [f"sbit_s{i:03d}.tif" for i in range(1, 5)]
    spec = ImageSpec(channels=3)
    for f in prepared.files:  # read by training's decoder: the same 4095 range, values unchanged
        tensor, levels = spec.decode(storage.read_bytes(f.uri), f.key)
        assert levels == 4095
    found = prepared.scan(prepared.files, spec, "data.train")
    assert [r.high for r in found.ranges] == [4095.0]
    np.testing.assert_array_equal(
        formats.decode(storage.read_bytes(prepared.files[-1].uri), "x.tif"), image[20:60, 20:60]
    )


def test_a_killed_prepare_resumes_where_it_stopped_and_leaves_no_partial_file(ray_session, tmp_path):
    write_images(tmp_path / "in", 10, size=(96, 96))
    cmd = [
        sys.executable,
        "-m",
        "pipeline.prepare",
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(tmp_path / "out"),
        "--sub-images",
        "48",
        "--step",
        "24",
    ]
    env = {**os.environ, "SRGAN_PREPARE_KILL_AFTER": "3", "RAY_ADDRESS": "", "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    # A task busy when its driver died may still finish its (whole) write: wait until quiet.
    listing = None
    while listing != (listing := sorted(p.name for p in (tmp_path / "out").rglob("*"))):
        time.sleep(2)
    for path in (tmp_path / "out").glob("img_*.png"):  # whatever has an output name is whole
        assert formats.decode(path.read_bytes(), path.name).shape == (48, 48, 3)
    with pytest.raises(DataError, match="prepare has not finished"):  # training refuses a half-prepared folder
        open_prepared(str(tmp_path / "out"))
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("img_*.png")}

    summary = prepare(PrepareJob(str(tmp_path / "in"), str(tmp_path / "out"), sub_images=48, step=24))
    assert summary.done_before >= 3 and summary.made == 10 - summary.done_before and summary.failed == 0
    names = {p.name for p in (tmp_path / "out").rglob("*") if p.is_file() and "_prepared" not in p.parts}
    assert names == {
        f"img_{i:03d}_s{j:03d}.png" for i in range(10) for j in range(1, 10)
    }  # 3 x 3 windows each, no .partial
    untouched = [
        i
        for i in range(10)
        if all(
            before.get(n) == (tmp_path / "out" / n).stat().st_mtime_ns
            for n in (f"img_{i:03d}_s{j:03d}.png" for j in range(1, 10))
        )
    ]
    assert (
        len(untouched) == summary.done_before
    )  # the sources recorded before the kill, and only they, were not cut again
    assert len(open_prepared(str(tmp_path / "out")).files) == 90


def test_changed_arguments_a_foreign_output_and_an_output_inside_the_input_are_refused(ray_session, tmp_path, capsys):
    write_images(tmp_path / "in", 2, size=(64, 64))
    prepare(PrepareJob(str(tmp_path / "in"), str(tmp_path / "out"), sub_images=48))
    capsys.readouterr()
    assert (
        main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--sub-images", "48", "--step", "16"])
        == 2
    )
    assert (
        capsys.readouterr().err.strip()
        == f"error: {tmp_path / 'out'} was prepared with --step 24, this run has --step 16; re-run with the same arguments to resume, or choose a new --output"
    )
    assert main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--channels", "1"]) == 2
    assert "was prepared with --sub-images 48, this run has no --sub-images" in capsys.readouterr().err
    assert main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "in" / "prepared")]) == 2
    assert "overlaps --input" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "mine")]) == 2
    assert "holds files that no prepare made" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_training_refuses_a_prepare_made_for_other_bands(ray_session, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for i in range(2):
        (tmp_path / "in" / f"img_00{i}.png").write_bytes(png_bytes(smooth_image(rng, 40, 40, 1)))
    prepare(PrepareJob(str(tmp_path / "in"), str(tmp_path / "out"), channels=1))
    prepared = open_prepared(str(tmp_path / "out"))
    assert [f.uri for f in prepared.files] == [
        str(tmp_path / "in" / f"img_00{i}.png") for i in range(2)
    ]  # whole images: the input's own files
    with pytest.raises(
        DataError, match="prepared for 1-band models .* re-run python -m pipeline.prepare .* with --channels 3"
    ):
        prepared.scan(prepared.files, ImageSpec(channels=3), "data.train")
    found = prepared.scan(prepared.files, ImageSpec(channels=1, min_size=48), "data.train")  # smaller than the patch
    assert not found.good and [b.reason for b in found.bad] == ["is 40x40, smaller than the 48x48 patch"] * 2


def test_odd_s3_keys_are_cut_and_found_again(ray_session, bucket):
    s3 = boto3.client("s3")
    rng = np.random.default_rng(1)
    odd = ["a b#1?.png", "per%6Fcent/ünï.png", "plus+and&.png"]
    for key in odd:
        s3.put_object(Bucket=bucket, Key=f"in/{key}", Body=png_bytes(smooth_image(rng, 40, 56)))
    summary = prepare(PrepareJob(f"s3://{bucket}/in/", f"s3://{bucket}/out/", sub_images=40, step=40))
    assert (summary.made, summary.bad) == (3, 0)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]}
    expected = {f"out/{k[:-4]}_s{i:03d}.png" for k in odd for i in (1, 2)}  # 56 wide: windows at 0 and 16
    assert expected <= keys and not any(k.endswith(".partial") for k in keys)
    prepared = open_prepared(f"s3://{bucket}/out/")
    assert {f"out/{f.key}" for f in prepared.files} == expected
    for f in prepared.files:
        assert formats.decode(storage.read_bytes(f.uri), f.key).shape == (40, 40, 3)


@pytest.mark.slow
def test_training_on_prepared_folders_takes_the_manifest_and_never_scans(
    ray_session, bucket, mlflow_uri, tmp_path, monkeypatch, capsys
):
    put_images(bucket, "raw/train", 4, size=(64, 48), with_bad=True)
    put_images(bucket, "raw/val", 2, size=(40, 40), seed=1)
    train = prepare(
        PrepareJob(f"s3://{bucket}/raw/train/", f"s3://{bucket}/prepared/train/", sub_images=32, step=16, min_size=16)
    )
    prepare(PrepareJob(f"s3://{bucket}/raw/val/", f"s3://{bucket}/prepared/val/"))  # validated and listed, whole
    assert train.images == 4 * 3 * 2  # 64 high, 48 wide: 3 x 2 windows of 32 each

    def no_scan(*args, **kwargs):
        raise AssertionError("a prepared dataset was scanned")

    monkeypatch.setattr("pipeline.data.prepared.scan_files", no_scan)
    cfg = parse_config(
        tiny(f"s3://{bucket}/prepared/train/", f"s3://{bucket}/prepared/val/", str(tmp_path / "runs"), mlflow_uri)
    )
    outcome = run_training(cfg)
    out = capsys.readouterr().out
    assert "data.train: prepared dataset" in out and "not scanning" in out and "scanning 4" not in out
    assert outcome.metrics["step"] == 8
    assert {b["key"] for b in outcome.bad_inputs} == BAD  # the bad inputs prepare found, reported by the run
    import mlflow

    metrics = mlflow.MlflowClient(mlflow_uri).get_run(outcome.mlflow_run_id).data.metrics
    assert metrics["data/train_images"] == 24 and metrics["data/val_images"] == 2
