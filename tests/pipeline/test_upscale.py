"""Batch upscaling: every format keeps what it should, bad inputs become manifest rows, and
the Ray job over a moto bucket is resumable and crash-safe."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import formats
from pipeline.data import reader
from pipeline.errors import DecodeError, UsageError
from pipeline.formats import png_tiff
from pipeline.models.reference import Upscaler
from pipeline.upscale import UpscaleJob, main, output_key, plan_outputs
from pipeline.upscaling.manifest import read_manifest
from pipeline.upscaling.one_file import plan_bands
from srgan.resize import imresize
from srgan.weights import save_generator
from tests.helpers import (
    SCALE,
    dicom_bytes,
    geotiff_bytes,
    png_bytes,
    random_generator,
    run_one,
    smooth_image,
    upscaler,
)

rasterio = pytest.importorskip("rasterio")
pydicom = pytest.importorskip("pydicom")


def model_output(up: Upscaler, array: np.ndarray, value_range=None) -> np.ndarray:
    return reader.from_unit(up(reader.to_unit(array, value_range)[None])[0], array.dtype, value_range)


def test_png_8_and_16_bit_keep_their_depth(tmp_path):
    rng = np.random.default_rng(0)
    up = upscaler()
    for dtype in (np.uint8, np.uint16):
        image = smooth_image(rng, 21, 17, 3, dtype)
        row, out = run_one(tmp_path, f"photo_{np.dtype(dtype).name}.png", png_bytes(image), up)
        assert row.status == "done", row
        result = formats.decode(out.read_bytes(), out.name)
        assert result.dtype == dtype and result.shape == (42, 34, 3)
        assert np.array_equal(result, model_output(up, image))
        assert (row.width, row.height, row.out_width, row.out_height) == (17, 21, 34, 42)
    assert result.max() > 255  # 16-bit values were not truncated to 8 bits


def test_grayscale_through_1_and_3_channel_models(tmp_path):
    image = smooth_image(np.random.default_rng(1), 16, 20, 1)
    row, out = run_one(tmp_path, "gray1.png", png_bytes(image), upscaler(channels=1))
    assert row.status == "done"
    assert formats.decode(out.read_bytes(), "x.png").shape == (32, 40, 1)
    up3 = upscaler(channels=3)
    row, out = run_one(tmp_path, "gray3.png", png_bytes(image), up3)
    result = formats.decode(out.read_bytes(), "x.png")
    assert result.shape == (32, 40, 1)
    rgb = up3(reader.to_unit(np.repeat(image, 3, axis=2))[None])[0]
    assert np.array_equal(result, reader.from_unit(rgb.mean(0, keepdim=True), np.uint8))


def test_rgba_keeps_alpha_upscaled_separately(tmp_path):
    rng = np.random.default_rng(2)
    image = smooth_image(rng, 18, 14, 4)
    up = upscaler()
    row, out = run_one(tmp_path, "logo.png", png_bytes(image), up)
    assert row.status == "done", row
    result, alpha = png_tiff.decode(out.read_bytes(), "x.png")
    assert alpha and result.shape == (36, 28, 4)
    assert np.array_equal(result[..., :3], model_output(up, image[..., :3]))
    expected_alpha = reader.from_unit(imresize(reader.to_unit(image[..., 3:]), float(SCALE)).clamp(0, 1), np.uint8)
    assert np.array_equal(result[..., 3:], expected_alpha)


def test_tiled_equals_untiled_on_float_output_for_odd_sizes(tmp_path):
    image = np.random.default_rng(3).random((37, 29, 3), dtype=np.float32)
    data = formats.encode(image, "x.tif")
    whole, out_whole = run_one(tmp_path / "a", "f.tif", data, upscaler(tile=0))
    tiled, out_tiled = run_one(tmp_path / "b", "f.tif", data, upscaler(tile=11, batch_size=3))
    a, b = formats.decode(out_whole.read_bytes(), "x.tif"), formats.decode(out_tiled.read_bytes(), "x.tif")
    assert a.dtype == np.float32 and a.shape == (74, 58, 3)
    assert np.abs(a - b).max() <= 1e-4


def test_geotiff_keeps_bands_dtype_nodata_crs_and_exact_pixel_size(tmp_path):
    rng = np.random.default_rng(4)
    image = smooth_image(rng, 33, 27, 4, np.uint16)
    image[:5, :7] = 0  # a nodata corner
    image[image == 0] = 0
    row, out = run_one(
        tmp_path, "scene/s2.tif", geotiff_bytes(image, nodata=0, pixel_size=10.0), upscaler(), bands=(1, 2, 3)
    )
    assert row.status == "done", row
    with rasterio.open(out) as dst:
        assert (dst.count, dst.dtypes[0], dst.nodata) == (4, "uint16", 0)
        assert dst.crs.to_epsg() == 32633
        assert dst.transform.a == 10.0 / SCALE and dst.transform.e == -10.0 / SCALE
        assert (dst.transform.c, dst.transform.f) == (500000.0, 4600000.0)
        assert (dst.width, dst.height) == (27 * SCALE, 33 * SCALE)
        assert dst.profile["tiled"] and dst.profile["compress"] == "deflate"
        assert dst.descriptions == ("band-1", "band-2", "band-3", "band-4")
        assert dst.tags()["SENSOR"] == "test-sat" and dst.tags()["SRGAN_BICUBIC_BANDS"] == "4"
        data = np.moveaxis(dst.read(), 0, -1)
    assert (data[: 5 * SCALE, : 7 * SCALE] == 0).all()  # nodata stays nodata
    assert data[5 * SCALE :].max() > 255


def test_geotiff_windows_equal_one_pass_on_float_data(tmp_path):
    image = np.random.default_rng(5).random((61, 53, 3), dtype=np.float32)
    data = geotiff_bytes(image)
    _, whole = run_one(tmp_path / "a", "f.tif", data, upscaler(tile=0), window_pixels=10**8)
    row, windowed = run_one(tmp_path / "b", "f.tif", data, upscaler(tile=9), window_pixels=16 * 16)
    assert row.windows > 4
    with rasterio.open(whole) as a, rasterio.open(windowed) as b:
        assert np.abs(a.read() - b.read()).max() <= 1e-4


def test_geotiff_with_more_bands_than_the_model_needs_a_band_map(tmp_path):
    data = geotiff_bytes(smooth_image(np.random.default_rng(6), 16, 16, 4, np.uint16))
    row, out = run_one(tmp_path, "s.tif", data, upscaler())
    assert row.status == "failed" and "`bands`" in row.error and not out.exists()


def test_dicom_tags(tmp_path):
    rng = np.random.default_rng(7)
    stored = smooth_image(rng, 24, 20, 1, np.uint16)[..., 0] >> 4  # 12-bit values
    source = dicom_bytes(stored, bits_stored=12, spacing=(0.7, 0.5))
    row, out = run_one(tmp_path, "mr/slice_001.dcm", source, upscaler(channels=1))
    assert row.status == "done", row
    before, after = pydicom.dcmread(io.BytesIO(source)), pydicom.dcmread(out)
    assert (after.Rows, after.Columns) == (48, 40)
    assert [float(v) for v in after.PixelSpacing] == [0.35, 0.25]
    for key in (
        "BitsStored",
        "BitsAllocated",
        "HighBit",
        "PixelRepresentation",
        "PhotometricInterpretation",
        "RescaleSlope",
        "RescaleIntercept",
        "PatientID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
    ):
        assert after[key].value == before[key].value, key
    assert after.SOPInstanceUID != before.SOPInstanceUID
    assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    assert list(after.ImageType) == ["DERIVED", "PRIMARY", "M"]
    assert "SmallestImagePixelValue" not in after
    pixels = after.pixel_array
    assert pixels.shape == (48, 40) and pixels.max() < 4096 and pixels.max() > 255


def test_signed_dicom_round_trips_its_range(tmp_path):
    stored = (smooth_image(np.random.default_rng(8), 16, 16, 1, np.uint16)[..., 0] >> 4).astype(np.int32) - 2048
    row, out = run_one(tmp_path, "ct.dcm", dicom_bytes(stored, bits_stored=12, signed=True), upscaler(channels=1))
    assert row.status == "done", row
    pixels = pydicom.dcmread(out).pixel_array
    assert pixels.dtype == np.int16 and pixels.min() >= -2048 and pixels.max() <= 2047 and pixels.min() < 0


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("empty.png", b"", "empty file"),
        ("truncated.png", png_bytes(np.zeros((32, 32, 3), np.uint8))[:40], "not a readable PNG"),
        ("notes.tif", b"these are notes, not a raster", "not a readable TIFF"),
        ("broken.dcm", dicom_bytes(np.zeros((16, 16), np.uint16), compressed_garbage=True), "undecodable DICOM"),
        ("two_band.tif", formats.encode(np.zeros((8, 8, 2), np.uint8), "x.tif"), "has 2 band(s), the model takes 3"),
    ],
)
def test_bad_inputs_become_failed_rows_with_the_reason(tmp_path, name, data, reason):
    row, out = run_one(tmp_path, name, data, upscaler())
    assert row.status == "failed" and reason in row.error, row
    assert not out.exists()


def test_keys_that_escape_the_output_prefix_are_refused():
    assert output_key("a/b/c.png") == "a/b/c.png"
    for key in ("../x.png", "a/../../x.png", "/etc/x.png", "a//b.png"):
        with pytest.raises(DecodeError, match="escape"):
            output_key(key)


def test_include_patterns_pick_keys_relative_to_the_input(tmp_path):
    for key in ("photos/a.png", "photos/b.jpg", "satellite/s.tif", "medical/m.png", "top.png"):
        (tmp_path / "in" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / key).write_bytes(b"x")

    def keys(*include):
        job = UpscaleJob(
            model="bicubic",
            scale=2,
            input=str(tmp_path / "in"),
            output=str(tmp_path / "out"),
            extensions=(".png", ".jpg", ".tif"),
            include=include,
        )
        todo, decided = plan_outputs(job, str(tmp_path / "out"), {"model": "bicubic"})
        assert not decided
        return [item.key for item in todo]

    assert keys() == ["medical/m.png", "photos/a.png", "photos/b.jpg", "satellite/s.tif", "top.png"]
    assert keys("satellite/*", "medical/*") == ["medical/m.png", "satellite/s.tif"]
    assert keys("*.png") == ["medical/m.png", "photos/a.png", "top.png"]
    with pytest.raises(UsageError, match=r"no input under .* matches `include` Satellite/\*"):
        keys("Satellite/*")  # keys are case-sensitive, as in S3


def test_band_plans():
    assert plan_bands(3, False, 3).groups == ((0, 1, 2),)
    assert plan_bands(4, True, 3).rest == (3,)  # RGBA: alpha bicubic
    assert plan_bands(4, False, 1).groups == ((0,), (1,), (2,), (3,))  # a 1-band model on every band
    assert plan_bands(1, False, 3).replicate
    plan = plan_bands(5, False, 3, (4, 3, 2))
    assert plan.groups == ((3, 2, 1),) and plan.rest == (0, 4)
    with pytest.raises(DecodeError, match="names band 6"):
        plan_bands(5, False, 3, (6, 3, 2))
    assert plan_bands(3, False, 3, (4, 3, 2)).groups == ((0, 1, 2),)  # the map is for wider images only
    assert plan_bands(1, False, 3, (4, 3, 2)).replicate


def test_bf16_inference_stays_close_to_fp32():
    x = torch.rand(1, 3, 20, 20)
    g = random_generator()
    fp32 = Upscaler(name="m", scale=SCALE, generator=g)(x)
    bf16 = Upscaler(name="m", scale=SCALE, generator=g, precision="bf16")(x)
    assert bf16.dtype == torch.float32 and (fp32 - bf16).abs().max() < 0.05


# -- the job over a moto bucket ------------------------------------------------------------


def _s3():
    import boto3

    return boto3.client("s3")


def _generator_file(tmp_path: Path) -> Path:
    path = tmp_path / "generator.pt"
    save_generator(path, random_generator(), {"data_range": None})
    return path


GOOD = ["photos/a.png", "photos/sub/b16.png", "scenes/s2.tif", "mr/slice.dcm"]
BROKEN = ["photos/empty.png", "photos/cut.png", "scenes/notes.tif", "mr/broken.dcm"]


def _mixed_prefix(bucket: str) -> None:
    rng = np.random.default_rng(9)
    s3 = _s3()
    files = {
        "photos/a.png": png_bytes(smooth_image(rng, 24, 30)),
        "photos/sub/b16.png": png_bytes(smooth_image(rng, 20, 22, 3, np.uint16)),
        "scenes/s2.tif": geotiff_bytes(smooth_image(rng, 26, 26, 4, np.uint16), nodata=0),
        "mr/slice.dcm": dicom_bytes(smooth_image(rng, 20, 20, 1, np.uint16)[..., 0] >> 4),
        "photos/empty.png": b"",
        "photos/cut.png": png_bytes(smooth_image(rng, 24, 24))[:60],
        "scenes/notes.tif": b"not a raster",
        "mr/broken.dcm": dicom_bytes(np.zeros((16, 16), np.uint16), compressed_garbage=True),
    }
    for key, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"in/{key}", Body=data)


def _keys(bucket: str, prefix: str) -> dict[str, object]:
    pages = _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"][len(prefix) :]: o for page in pages for o in page.get("Contents", [])}


@pytest.mark.slow
def test_mixed_bucket_job_records_failures_and_reruns_idempotently(tmp_path, bucket, ray_session, capsys):
    _mixed_prefix(bucket)
    model = f"s3://{bucket}/models/generator.pt"
    _s3().upload_file(str(_generator_file(tmp_path)), bucket, "models/generator.pt")
    args = [
        "--model",
        model,
        "--input",
        f"s3://{bucket}/in/",
        "--output",
        f"s3://{bucket}/out/",
        "--bands",
        "1,2,3",
        "--workers",
        "2",
        "--threads",
        "1",
        "--json",
    ]
    assert main(args) == 1  # broken inputs -> non-zero
    first = capsys.readouterr()
    outputs = _keys(bucket, "out/")
    assert set(GOOD) <= set(outputs) and not set(BROKEN) & set(outputs)
    rows = read_manifest(f"s3://{bucket}/out/")
    by_key = {r.key: r for r in rows}
    assert all(by_key[k].status == "done" for k in GOOD)
    assert all(by_key[k].status == "failed" and by_key[k].error for k in BROKEN)
    assert "failed: photos/empty.png: empty file" in first.err

    # The properties each format keeps, read back from the bucket.
    s3 = _s3()
    b16 = formats.decode(s3.get_object(Bucket=bucket, Key="out/photos/sub/b16.png")["Body"].read(), "x.png")
    assert b16.dtype == np.uint16 and b16.shape == (40, 44, 3)
    with (
        rasterio.MemoryFile(s3.get_object(Bucket=bucket, Key="out/scenes/s2.tif")["Body"].read()) as mem,
        mem.open() as geo,
    ):
        assert (geo.count, geo.dtypes[0], geo.nodata, geo.crs.to_epsg(), geo.transform.a) == (
            4,
            "uint16",
            0,
            32633,
            5.0,
        )
    dcm = pydicom.dcmread(io.BytesIO(s3.get_object(Bucket=bucket, Key="out/mr/slice.dcm")["Body"].read()))
    assert (dcm.Rows, dcm.Columns) == (40, 40) and dcm.ImageType[0] == "DERIVED"

    # Re-run: nothing redone, the same exit code.
    assert main(args) == 1
    again = [r for r in read_manifest(f"s3://{bucket}/out/") if r.run != rows[0].run]
    assert {r.key for r in again if r.status == "skipped"} == set(GOOD)
    assert not [r for r in again if r.status == "done"]
    assert _keys(bucket, "out/")["photos/a.png"]["LastModified"] == outputs["photos/a.png"]["LastModified"]
    # --max-failures tolerates them.
    assert main(args + ["--max-failures", "4"]) == 0


@pytest.mark.slow
def test_killed_job_resumes_and_does_every_file_exactly_once(tmp_path, bucket, s3_server):
    rng = np.random.default_rng(10)
    s3 = _s3()
    good = [f"img_{i:02d}.png" for i in range(12)]
    for key in good:
        s3.put_object(Bucket=bucket, Key=f"in/{key}", Body=png_bytes(smooth_image(rng, 48, 48)))
    model = _generator_file(tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "pipeline.upscale",
        "--model",
        str(model),
        "--input",
        f"s3://{bucket}/in/",
        "--output",
        f"s3://{bucket}/out/",
        "--workers",
        "2",
        "--threads",
        "1",
    ]
    env = {**os.environ, "SRGAN_UPSCALE_KILL_AFTER": "4", "RAY_ADDRESS": ""}
    killed = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    # An actor busy when its driver died may still finish its (whole) write: wait until quiet.
    after_kill = _keys(bucket, "out/")
    while True:
        time.sleep(3)
        later = _keys(bucket, "out/")
        if later.keys() == after_kill.keys():
            break
        after_kill = later
    made = {k for k in after_kill if not k.startswith("_manifest/")}
    assert 4 <= len(made) < len(good), made
    for key in made:  # whatever exists under an output name is a whole image
        data = s3.get_object(Bucket=bucket, Key=f"out/{key}")["Body"].read()
        assert formats.decode(data, key).shape == (96, 96, 3)

    env.pop("SRGAN_UPSCALE_KILL_AFTER")
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    final = _keys(bucket, "out/")
    assert {k for k in final if not k.startswith("_manifest/")} == set(good)
    for key in made:  # not redone
        assert final[key]["LastModified"] == after_kill[key]["LastModified"]
    runs = {}
    for r in read_manifest(f"s3://{bucket}/out/"):
        runs.setdefault(r.run, []).append(r)
    last = runs[max(runs)]
    assert {r.key for r in last if r.status == "skipped"} == made
    assert {r.key for r in last if r.status == "done"} == set(good) - made
    # The manifest still holds a row for every output, the earlier run's included.
    import pandas as pd

    latest = pd.read_parquet(
        io.BytesIO(s3.get_object(Bucket=bucket, Key="out/_manifest/manifest.parquet")["Body"].read())
    )
    assert sorted(latest["key"]) == sorted(good) and latest["model_id"].nunique() == 1


def test_auto_precision_upscales_16_bit_and_float_files_in_fp32(tmp_path):
    """On a GPU `--precision auto` means bf16, whose rounding would move 16-bit outputs by up
    to ~100 units: files finer than 8 bits run in fp32 unless bf16 is asked for by name."""
    rng = np.random.default_rng(5)
    image16 = smooth_image(rng, 20, 18, 3, np.uint16)
    bf16 = upscaler(precision="bf16")  # what auto resolves to on a GPU with bf16
    fp32 = upscaler(precision="fp32")
    row, out = run_one(tmp_path, "deep.png", png_bytes(image16), bf16, precision="auto")
    assert row.status == "done", row
    assert np.array_equal(formats.decode(out.read_bytes(), out.name), model_output(fp32, image16))
    _, out = run_one(tmp_path, "asked.png", png_bytes(image16), bf16, precision="bf16")
    assert np.array_equal(formats.decode(out.read_bytes(), out.name), model_output(bf16, image16))
    image8 = smooth_image(rng, 20, 18, 3, np.uint8)
    _, out = run_one(tmp_path, "photo.png", png_bytes(image8), bf16, precision="auto")
    assert np.array_equal(formats.decode(out.read_bytes(), out.name), model_output(bf16, image8))
    assert not np.array_equal(model_output(bf16, image16), model_output(fp32, image16))  # the rule matters here
