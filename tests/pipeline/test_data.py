import numpy as np

from pipeline import formats, storage
from pipeline.data import ImageSpec, PatchPairs, scan, train_dataset, val_dataset
from srgan.degrade import build_degradation
from tests.helpers import put_images, smooth_image


def test_scan_skips_every_kind_of_bad_input_and_names_it(ray_session, bucket):
    put_images(bucket, "hr", 3, with_bad=True)
    files = storage.list_files(f"s3://{bucket}/hr/", [".png", ".jpg"])
    good, bad = scan(files, ImageSpec(channels=3, min_size=32))
    assert [f.key for f in good] == ["img_000.png", "img_001.png", "img_002.png"]
    reasons = {b.key: b.reason for b in bad}
    assert set(reasons) == {"bad/empty.png", "bad/truncated.png", "bad/not_an_image.jpg", "bad/tiny.png"}
    assert "empty" in reasons["bad/empty.png"]
    assert "not a readable" in reasons["bad/not_an_image.jpg"]
    assert "smaller than the 32x32 patch" in reasons["bad/tiny.png"]


def test_scan_rejects_band_counts_the_model_cannot_take(ray_session, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "five.tif").write_bytes(formats.encode(smooth_image(rng, 40, 40, 5, np.uint16), "five.tif"))
    (tmp_path / "gray.png").write_bytes(formats.encode(smooth_image(rng, 40, 40, 1), "gray.png"))
    good, bad = scan(storage.list_files(str(tmp_path)), ImageSpec(channels=3, min_size=16))
    assert [f.key for f in good] == ["gray.png"]  # gray -> RGB is unambiguous
    assert bad[0].key == "five.tif" and "has 5 band(s), the model takes 3" in bad[0].reason


def _pairs(channels=3, **kw):
    spec = ImageSpec(channels=channels, min_size=32)
    return PatchPairs(spec, patch_size=32, patches_per_image=3, degrade=build_degradation(kw.pop("degradation", "bicubic"), 4), seed=7)


def test_patch_pairs_shapes_and_determinism():
    rng = np.random.default_rng(0)
    batch = {"bytes": np.array([formats.encode(smooth_image(rng, 50, 70), "a.png") for _ in range(2)], dtype=object), "path": np.array(["b/a.png", "b/c.png"]), "draw": np.array([0.25, 0.5])}
    pairs = _pairs(degradation="realistic")
    out1, out2 = pairs(batch), pairs(batch)
    assert out1["hr"].shape == (6, 3, 32, 32) and out1["lr"].shape == (6, 3, 8, 8)
    assert out1["hr"].dtype == np.float32 and 0 <= out1["lr"].min() and out1["lr"].max() <= 1
    np.testing.assert_array_equal(out1["hr"], out2["hr"])
    np.testing.assert_array_equal(out1["lr"], out2["lr"])
    assert not np.array_equal(out1["hr"][0], out1["hr"][1])  # different crops of one image


def test_patch_pairs_keep_16_bit_and_extra_bands():
    rng = np.random.default_rng(1)
    raster = smooth_image(rng, 48, 48, 4, np.uint16)
    batch = {"bytes": np.array([formats.encode(raster, "s.tif")], dtype=object), "path": np.array(["s.tif"]), "draw": np.array([0.5])}
    spec = ImageSpec(channels=4, min_size=32)
    out = PatchPairs(spec, 32, 2, build_degradation("satellite", 4), seed=0)(batch)
    assert out["hr"].shape == (2, 4, 32, 32)
    levels = np.unique(np.round(out["hr"] * 65535))
    assert len(levels) > 256  # 16-bit precision survived (8-bit would give <= 256 levels)


def test_epochs_see_different_crops_from_s3(ray_session, bucket):
    put_images(bucket, "hr", 4, size=(80, 80))
    files = storage.list_files(f"s3://{bucket}/hr/")
    ds = train_dataset(files, _pairs(), read_cpus=0.25, images_per_task=2, seed=3)
    epochs = []
    for _ in range(2):
        hr = np.concatenate([b["hr"] for b in ds.iter_batches(batch_size=None, batch_format="numpy")])
        assert hr.shape == (4 * 3, 3, 32, 32)
        epochs.append(np.sort(hr.reshape(len(hr), -1).sum(axis=1)))
    assert not np.allclose(epochs[0], epochs[1])


def test_val_dataset_keeps_whole_images_cropped_to_the_scale(ray_session, tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "a.png").write_bytes(formats.encode(smooth_image(rng, 45, 61), "a.png"))
    files = storage.list_files(str(tmp_path))
    rows = val_dataset(files, ImageSpec(channels=3), crop=None, degrade=build_degradation("bicubic", 4), read_cpus=0.25, seed=0).take_all()
    assert rows[0]["key"] == "a.png" and rows[0]["levels"] == 255
    assert np.asarray(rows[0]["hr"]).shape == (3, 44, 60)
    assert np.asarray(rows[0]["lr"]).shape == (3, 11, 15)  # degraded once, here, not at every validation


def test_usm_sharpened_targets_keep_the_lr_and_sharpen_the_hr():
    import torch

    from srgan.degrade import usm_sharp

    rng = np.random.default_rng(3)
    batch = {"bytes": np.array([formats.encode(smooth_image(rng, 50, 70), "a.png")], dtype=object), "path": np.array(["b/a.png"]), "draw": np.array([0.25])}
    spec = ImageSpec(channels=3, min_size=32)
    plain = PatchPairs(spec, 32, 3, build_degradation("realistic", 4), seed=7)(batch)
    sharp = PatchPairs(spec, 32, 3, build_degradation("realistic", 4, usm_target=True), seed=7)(batch)
    np.testing.assert_array_equal(plain["lr"], sharp["lr"])  # the LR is made from the plain HR
    np.testing.assert_allclose(sharp["hr"], usm_sharp(torch.from_numpy(plain["hr"])).numpy(), atol=1e-6)
    assert not np.array_equal(sharp["hr"], plain["hr"])
