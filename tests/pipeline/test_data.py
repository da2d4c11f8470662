import numpy as np

from pipeline import formats
from pipeline.data.batches import ImageSpec, PatchBatches, scan, train_dataset, val_dataset
from pipeline.io import storage
from srgan.degrade import Realistic, build_degradation, pad_to, training_pair, usm_sharp
from tests.helpers import put_images, smooth_image, write_images


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


def _batches(channels=3, batch=3, degrade_on="cpu", **kw):
    spec = ImageSpec(channels=channels, min_size=32)
    degrade = build_degradation(kw.pop("degradation", "bicubic"), 4, **kw)
    return PatchBatches(
        spec, patch_size=32, patches_per_image=3, batch=batch, degrade=degrade, seed=7, degrade_on=degrade_on
    )


def _rows(n, seed=0, size=(50, 70)):
    rng = np.random.default_rng(seed)
    return {
        "bytes": np.array([formats.encode(smooth_image(rng, *size), "a.png") for _ in range(n)], dtype=object),
        "path": np.array([f"b/{i}.png" for i in range(n)]),
        "draw": np.linspace(0.1, 0.9, n),
    }


def test_patch_batches_shapes_and_determinism():
    batches = _batches(degradation="realistic", degrade_size=64)
    out1, out2 = batches(_rows(2)), batches(_rows(2))
    assert out1["hr"].shape == (2, 3, 3, 32, 32) and out1["lr"].shape == (2, 3, 3, 8, 8)  # 6 crops -> 2 batches of 3
    assert out1["hr"].dtype == np.float32 and 0 <= out1["lr"].min() and out1["lr"].max() <= 1
    for key in ("hr", "lr", "seed", "image"):
        np.testing.assert_array_equal(out1[key], out2[key])
    assert len(set(out1["seed"].tolist())) == 2  # each batch is degraded with a seed of its own


def test_a_batch_holds_crops_of_distinct_images_when_the_task_has_enough():
    out = _batches(batch=4)(_rows(5))  # 5 images x 3 crops = 15 crops -> 3 batches of 4
    assert out["image"].shape == (3, 4)
    for row in out["image"]:
        assert len(set(row.tolist())) == 4, row
    assert len(set(out["image"].ravel().tolist())) == 5  # every image is used
    few = _batches(batch=4)(_rows(2))  # 2 images, 6 crops: 1 batch, each image twice (as even as it can be)
    assert sorted(np.unique(few["image"][0], return_counts=True)[1].tolist()) == [2, 2]


def test_degrading_on_the_device_gives_the_same_pairs_for_the_same_seed():
    """data.degrade_on: device ships the large HR crops and a seed; the worker's training_pair makes
    the same (LR, HR) patch pair as the Ray Data task does (exact on the same device)."""
    import torch

    rows = _rows(4)
    kw = {"degradation": "realistic", "usm_target": True, "degrade_size": 64, "batch": 4}
    on_cpu, shipped = _batches(**kw)(rows), _batches(degrade_on="device", **kw)(rows)
    assert "lr" not in shipped and shipped["hr"].shape == (3, 4, 3, 64, 64)
    degrade = build_degradation("realistic", 4, usm_target=True, degrade_size=64)
    for i, seed in enumerate(shipped["seed"]):
        lr, hr = training_pair(torch.from_numpy(shipped["hr"][i]), int(seed), degrade, 32)
        np.testing.assert_array_equal(lr.numpy(), on_cpu["lr"][i])
        np.testing.assert_array_equal(hr.numpy(), on_cpu["hr"][i])


class _Recording(Realistic):
    """Realistic, noting the shape of every batch it degrades."""

    seen: list = []

    def __call__(self, hr, seed):
        self.seen.append(tuple(hr.shape))
        return super().__call__(hr, seed)


def test_the_realistic_cpu_path_degrades_a_crop_of_degrade_size():
    """As Real-ESRGAN: the 50x70 image is reflected to 400 px, a 400 px crop is degraded whole and
    a 32 px pair cut from it; degrade_size null and bicubic keep patch-size crops."""
    spec = ImageSpec(channels=3, min_size=32)
    rows = _rows(1)
    for size, seen in [(400, (3, 3, 400, 400)), (None, (3, 3, 32, 32))]:
        _Recording.seen = []
        out = PatchBatches(spec, 32, 3, 3, _Recording(scale=4, degrade_size=size), seed=7)(rows)
        assert _Recording.seen == [seen]
        assert out["hr"].shape == (1, 3, 3, 32, 32) and out["lr"].shape == (1, 3, 3, 8, 8)
    assert _batches(degrade_on="device")(rows)["hr"].shape == (1, 3, 3, 32, 32)  # bicubic: the patch
    # A task too small for a batch gives no row, in the shapes its batches would have.
    none = PatchBatches(spec, 32, 3, 4, Realistic(scale=4), seed=7)(rows)
    assert none["hr"].shape == (0, 4, 3, 32, 32) and none["lr"].shape == (0, 4, 3, 8, 8)
    none = PatchBatches(spec, 32, 3, 4, Realistic(scale=4), seed=7, degrade_on="device")(rows)
    assert none["hr"].shape == (0, 4, 3, 400, 400) and "lr" not in none


def test_patch_batches_keep_16_bit_and_extra_bands():
    rng = np.random.default_rng(1)
    raster = smooth_image(rng, 48, 48, 4, np.uint16)
    batch = {
        "bytes": np.array([formats.encode(raster, "s.tif")], dtype=object),
        "path": np.array(["s.tif"]),
        "draw": np.array([0.5]),
    }
    spec = ImageSpec(channels=4, min_size=32)
    out = PatchBatches(spec, 32, 2, 2, build_degradation("satellite", 4), seed=0)(batch)
    assert out["hr"].shape == (1, 2, 4, 32, 32)
    levels = np.unique(np.round(out["hr"] * 65535))
    assert len(levels) > 256  # 16-bit precision survived (8-bit would give <= 256 levels)


def test_epochs_see_different_crops_from_s3(ray_session, bucket):
    put_images(bucket, "hr", 4, size=(80, 80))
    files = storage.list_files(f"s3://{bucket}/hr/")
    ds = train_dataset(files, _batches(batch=2), read_cpus=0.25, images_per_task=2, seed=3)
    epochs = []
    for _ in range(2):
        hr = np.concatenate([b["hr"] for b in ds.iter_batches(batch_size=None, batch_format="numpy")])
        assert hr.shape == (4 * 3 // 2, 2, 3, 32, 32)
        epochs.append(np.sort(hr.reshape(len(hr) * 2, -1).sum(axis=1)))
    assert not np.allclose(epochs[0], epochs[1])


def test_training_batches_from_the_pipeline_hold_crops_of_distinct_images(ray_session, tmp_path):
    """The paper draws 16 crops from 16 images. Before, about a third of a batch of 16 were
    crops of an image already in it; now a worker batch never repeats an image when the
    dataset has enough of them."""
    write_images(tmp_path, 24, size=(40, 40))
    files = storage.list_files(str(tmp_path))
    spec = ImageSpec(channels=3, min_size=32)
    batches = PatchBatches(spec, 32, 4, 8, build_degradation("bicubic", 4), seed=0)
    ds = train_dataset(files, batches, read_cpus=0.25, images_per_task=4, seed=0)
    for _ in range(2):
        rows = list(ds.iter_batches(batch_size=1, batch_format="numpy", local_shuffle_buffer_size=4))
        assert len(rows) == 24 * 4 // 8
        for row in rows:
            assert len(set(row["image"][0].tolist())) == 8


def test_val_dataset_keeps_whole_images_cropped_to_the_scale(ray_session, tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "a.png").write_bytes(formats.encode(smooth_image(rng, 45, 61), "a.png"))
    files = storage.list_files(str(tmp_path))
    rows = val_dataset(
        files, ImageSpec(channels=3), crop=None, degrade=build_degradation("bicubic", 4), read_cpus=0.25, seed=0
    ).take_all()
    assert rows[0]["key"] == "a.png" and rows[0]["levels"] == 255
    assert np.asarray(rows[0]["hr"]).shape == (3, 44, 60)
    assert np.asarray(rows[0]["lr"]).shape == (3, 11, 15)  # degraded once, here, not at every validation


def _is_window_of(image, patch) -> bool:
    """Whether `patch` (C, P, P) is exactly a window of one of the 8 flips/rotations of `image` (C, H, W)."""
    for code in range(8):
        view = PatchBatches._augment(image, code).numpy()
        windows = np.lib.stride_tricks.sliding_window_view(view, patch.shape)[0]
        if (windows == patch).all(axis=(-3, -2, -1)).any():
            return True
    return False


def test_a_cpu_batch_with_usm_target_is_sharpened_once_by_the_loss():
    """data.degrade_on: cpu with usm_target: the batch's HR is the image's own pixels (as on the device
    path), so the pixel loss's one usm_sharp is the only one; before, the batcher sharpened it too."""
    import torch

    from srgan.losses import PixelLoss

    rows = _rows(1)
    plain = _batches(degradation="realistic", degrade_size=64)(rows)
    usm = _batches(degradation="realistic", degrade_size=64, usm_target=True)(rows)
    np.testing.assert_array_equal(usm["lr"], plain["lr"])
    np.testing.assert_array_equal(usm["hr"], plain["hr"])
    image = pad_to(ImageSpec(channels=3).decode(rows["bytes"][0], "a.png")[0], 64)
    hr = torch.from_numpy(usm["hr"][0])
    assert all(_is_window_of(image, patch.numpy()) for patch in hr)
    sr = torch.rand(hr.shape, generator=torch.Generator().manual_seed(0))
    once = torch.nn.functional.mse_loss(sr, usm_sharp(hr))
    torch.testing.assert_close(PixelLoss("mse", usm_target=True)(sr, hr), once)
    assert not torch.allclose(PixelLoss("mse", usm_target=True)(sr, usm_sharp(hr)), once)


def test_the_same_images_under_another_root_give_the_same_patches(tmp_path):
    """Crops and degradation seeds follow a file's key under its data root, not the folder the
    data happens to sit in: a quickstart re-run into another --out trains the same model."""
    rng = np.random.default_rng(4)
    images = {f"{i}.png": formats.encode(smooth_image(rng, 40, 40), "x.png") for i in range(4)}
    batches = PatchBatches(ImageSpec(channels=3, min_size=24), 24, 2, 4, build_degradation("bicubic", 2), seed=3)
    out = []
    for root in (tmp_path / "a", tmp_path / "elsewhere" / "b"):
        for key, data in images.items():
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_bytes(data)
        files = storage.list_files(str(root), [".png"])
        rows = {"bytes": [images[f.key] for f in files], "path": [f.path for f in files], "draw": [0.5] * len(files)}
        out.append(batches.for_files(files)(rows))
    assert out[0]["seed"].tolist() == out[1]["seed"].tolist() and out[0]["image"].tolist() == out[1]["image"].tolist()
    assert np.array_equal(out[0]["hr"], out[1]["hr"]) and np.array_equal(out[0]["lr"], out[1]["lr"])
