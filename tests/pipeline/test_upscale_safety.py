"""The batch job never harms the user's data: input and output may not overlap, S3 keys are
names byte for byte, an output counts as done only with the model and settings that made it,
only the job's own temporary files are removed, and links never lead outside the folders."""

from __future__ import annotations

import boto3
import numpy as np
import pandas as pd
import pytest

from pipeline import formats
from pipeline.errors import UsageError
from pipeline.upscale import main
from pipeline.upscaling.manifest import read_manifest, recorded_runs
from srgan.weights import save_generator
from tests.helpers import ODD_KEYS, one_error_line, png_bytes, random_generator, smooth_image


def _tree(root) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _model(path, seed: int = 0):
    save_generator(path, random_generator(seed=seed), {"data_range": None})
    return str(path)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_an_output_that_overlaps_the_input_is_refused_before_anything_is_written(tmp_path, capsys, overwrite):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(png_bytes(smooth_image(np.random.default_rng(0), 16, 16)))
    (tmp_path / "alias").symlink_to(photos, target_is_directory=True)
    before = _tree(tmp_path)
    for output in (photos, photos / "x4", tmp_path / "alias", tmp_path / "alias" / "x4"):
        assert (
            main(["--model", "bicubic", "--scale", "2", "--input", str(photos), "--output", str(output), *overwrite])
            == 2
        )
        assert "overlaps --input" in one_error_line(capsys, 2)
    assert (
        main(["--model", "bicubic", "--scale", "2", "--input", str(photos / "sub"), "--output", str(photos)]) == 2
    )  # the reverse
    assert "choose an output outside the input" in one_error_line(capsys, 2)
    for inp, out in (
        ("s3://b/in/", "s3://b/in"),
        ("s3://b/in", "s3://b/in/x4/"),
        ("s3://b/in/sub", "s3://b/in/"),
        ("s3://b", "s3://b/out"),
    ):
        assert main(["--model", "bicubic", "--scale", "2", "--input", inp, "--output", out]) == 2
        assert "overlaps --input" in one_error_line(capsys, 2)
    assert _tree(tmp_path) == before


@pytest.mark.slow
def test_s3_keys_with_any_character_are_read_and_written_under_their_own_names(tmp_path, bucket, ray_session, capsys):
    s3 = boto3.client("s3")
    rng = np.random.default_rng(1)
    sizes = {key: (10 + i, 12 + i) for i, key in enumerate(["ok.png", *ODD_KEYS])}  # each key its own size
    for key, (h, w) in sizes.items():
        s3.put_object(Bucket=bucket, Key=f"in/{key}", Body=png_bytes(smooth_image(rng, h, w)))
    args = [
        "--model",
        "bicubic",
        "--scale",
        "2",
        "--input",
        f"s3://{bucket}/in/",
        "--output",
        f"s3://{bucket}/out/",
        "--workers",
        "1",
        "--threads",
        "1",
    ]
    assert main(args) == 0, capsys.readouterr().err[-2000:]
    for key, (h, w) in sizes.items():
        out = formats.decode(s3.get_object(Bucket=bucket, Key=f"out/{key}")["Body"].read(), key)
        assert out.shape == (2 * h, 2 * w, 3), key  # read from its own object, written under its own name
    rows = read_manifest(f"s3://{bucket}/out/")
    assert sorted(r.key for r in rows) == sorted(sizes) and all(r.status == "done" for r in rows)
    assert {r.output for r in rows} == {f"s3://{bucket}/out/{k}" for k in sizes}
    parquet = pd.read_parquet(
        __import__("io").BytesIO(s3.get_object(Bucket=bucket, Key="out/_manifest/manifest.parquet")["Body"].read())
    )
    assert sorted(parquet["key"]) == sorted(sizes)


@pytest.mark.slow
def test_existing_outputs_count_as_done_only_with_the_same_model_and_settings(tmp_path, ray_session, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(2)
    for i in range(3):
        (src / f"img_{i}.png").write_bytes(png_bytes(smooth_image(rng, 20, 20)))
    model_a, model_b = _model(tmp_path / "a.pt", seed=0), _model(tmp_path / "b.pt", seed=1)
    base = ["--input", str(src), "--output", str(out), "--workers", "1", "--threads", "1"]
    assert main(["--model", model_a, *base]) == 0
    first = _tree(out)
    run_a = next(iter(recorded_runs(str(out))))
    # A killed run of this job left a temporary file; the user keeps files that look alike.
    ours = out / f".img_0.png.srgan-{run_a}-0123456789ab.partial"
    theirs = [out / ".notes.partial", out / ".img_1.png.srgan-another-job-0123456789ab.partial"]
    for p in (ours, *theirs):
        p.write_bytes(b"x")
    capsys.readouterr()

    for other in (
        ["--model", model_b],
        ["--model", "bicubic", "--scale", "2"],
        ["--model", model_a, "--value-range", "0,300"],
    ):
        assert main([*other, *base]) == 2
        message = one_error_line(capsys, 2)
        assert "3 output(s) under" in message and "--overwrite" in message and "new --output prefix" in message, message
    assert _tree(out) == {**first, **{p.relative_to(out).as_posix(): b"x" for p in (ours, *theirs)}}  # nothing touched

    assert main(["--model", model_a, *base]) == 0  # the same model: nothing redone
    assert not ours.exists() and all(p.exists() for p in theirs)
    assert {k: v for k, v in _tree(out).items() if not k.startswith(("_manifest", "."))} == {
        k: v for k, v in first.items() if not k.startswith("_manifest")
    }
    latest = pd.read_parquet(out / "_manifest" / "manifest.parquet")
    assert list(latest["status"]) == ["done"] * 3  # the skipped re-run does not hide the rows that made them

    assert main(["--model", model_b, "--overwrite", *base]) == 0
    latest = pd.read_parquet(out / "_manifest" / "manifest.parquet")
    ids = {r.model_id for r in read_manifest(str(out))}
    assert len(ids) == 2 and latest["model"].eq(model_b).all() and latest["status"].eq("done").all()
    assert main(["--model", model_b, *base]) == 0  # the outputs are now B's


@pytest.mark.slow
def test_links_never_lead_reads_or_writes_outside_the_folders(tmp_path, ray_session, capsys):
    src, out, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    for d in (src / "sub", out, elsewhere / "photos"):
        d.mkdir(parents=True)
    rng = np.random.default_rng(3)
    (src / "a.png").write_bytes(png_bytes(smooth_image(rng, 16, 16)))
    (src / "sub" / "b.png").write_bytes(png_bytes(smooth_image(rng, 16, 16)))
    (elsewhere / "secret.png").write_bytes(png_bytes(smooth_image(rng, 16, 16)))
    (elsewhere / "photos" / "c.png").write_bytes(png_bytes(smooth_image(rng, 16, 16)))
    (src / "leak.png").symlink_to(elsewhere / "secret.png")
    (src / "hostname.png").symlink_to("/etc/hostname")
    (src / "linked").symlink_to(elsewhere / "photos", target_is_directory=True)
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)  # an output folder linked elsewhere
    before = _tree(elsewhere)
    assert (
        main(
            [
                "--model",
                "bicubic",
                "--scale",
                "2",
                "--input",
                str(src),
                "--output",
                str(out),
                "--max-failures",
                "10",
                "--workers",
                "1",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    rows = {r.key: r for r in read_manifest(str(out))}
    assert rows["a.png"].status == "done"
    for key in ("leak.png", "hostname.png", "linked"):
        assert rows[key].status == "failed" and "symbolic link that leads outside `input`" in rows[key].error
    assert rows["sub/b.png"].status == "failed" and "leads outside" in rows["sub/b.png"].error
    assert _tree(elsewhere) == before  # nothing read from there reached out/, nothing written there
    assert sorted(p.name for p in out.iterdir()) == ["_manifest", "a.png", "sub"]


# -- found by a red-team pass --------------------------------------------------------------


def _history(out, runs: list[tuple[str, dict, bool, list[dict]]]) -> None:
    """Write a manifest history by hand: (run id, identity, finished, rows)."""
    import json

    folder = out / "_manifest" / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    for run, ident, finished, rows in runs:
        (folder / f"{run}.job.json").write_text(
            json.dumps({"run": run, **ident, **({"finished_at": "t"} if finished else {})})
        )
        if rows:
            (folder / f"{run}.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows))


def test_an_output_a_later_interrupted_run_may_have_rewritten_or_made_from_other_input_is_not_done(tmp_path):
    from pipeline.upscale import UpscaleJob, plan_outputs
    from pipeline.upscaling.manifest import WorkItem, identity, new_row

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "a.png").write_bytes(b"12345")
    (out / "a.png").write_bytes(b"output")
    x2, x4 = identity("bicubic", "bicubic", 2, {}), identity("bicubic", "bicubic", 4, {})
    item = WorkItem("a.png", str(src / "a.png"), str(out / "a.png"), 5)
    job = UpscaleJob(model="bicubic", scale=2, input=str(src), output=str(out), extensions=(".png",))
    r1, r2 = "20260101T000000Z-0000a1", "20260101T000001Z-0000a2"  # run ids as ledger.new_run_id makes them
    _history(out, [(r1, x2, True, [new_row(item, x2, status="done")])])
    todo, decided = plan_outputs(job, str(out), x2)
    assert not todo and decided[0].status == "skipped"
    # An --overwrite run at x4 was killed after it may have replaced a.png, before its row.
    _history(out, [(r2, x4, False, [])])
    with pytest.raises(UsageError, match=rf"may have been rewritten by the interrupted run {r2} .*`overwrite`"):
        plan_outputs(job, str(out), x2)
    # Same name, other input bytes (or another --input folder): not this output's source.
    (out / "_manifest" / "runs" / f"{r2}.job.json").unlink()
    (src / "a.png").write_bytes(b"123456")
    with pytest.raises(UsageError, match=r"was made from .* \(5 bytes\), not from .* \(6 bytes\)"):
        plan_outputs(job, str(out), x2)


def test_dot_segments_in_s3_prefixes_are_refused(capsys):
    for inp, out in (("s3://b/scenes/", "s3://b/x/../scenes/"), ("s3://b/scenes/", "s3://b/./scenes/")):
        assert main(["--model", "bicubic", "--scale", "2", "--input", inp, "--output", out]) == 2
        assert "'.' and '..' are not folders in S3" in one_error_line(capsys, 2)


def test_manifests_keep_names_that_are_not_utf8_and_long_names_are_written(tmp_path):
    import os

    from pipeline.io import storage
    from pipeline.upscaling.manifest import Manifest, WorkItem, identity, new_row

    name = os.fsdecode(b"bad\xff.png")
    manifest = Manifest(str(tmp_path), "20260101T000000Z-0000a1")
    manifest.start(identity("bicubic", "bicubic", 2, {}))
    manifest.add(
        new_row(
            WorkItem(name, name, name, 1),
            identity("bicubic", "bicubic", 2, {}),
            status="done",
        )
    )
    table = pd.read_parquet(manifest.finish())
    assert table["key"].tolist() == ["bad\\xff.png"] and read_manifest(str(tmp_path))[0].key == name
    long = "x" * 240 + ".png"
    storage.write_bytes(str(tmp_path / long), b"data", "r1")
    assert (tmp_path / long).read_bytes() == b"data"
