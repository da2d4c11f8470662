import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

import srgan.niqe as niqe_module
from srgan.metrics import rgb_to_y
from srgan.niqe import niqe
from srgan.weights import WeightsError

SET5 = Path("/work/shared/data/Set5")


def _photos() -> dict[str, np.ndarray]:
    """The bundled sample photographs (scikit-image's), (H, W, 3) uint8 RGB."""
    skimage_data = pytest.importorskip("skimage.data")
    from pipeline.io.samples import PHOTOS

    return {name: getattr(skimage_data, name)() for name in PHOTOS}


def _set5() -> dict[str, np.ndarray]:
    from PIL import Image

    return {p.name: np.asarray(Image.open(p).convert("RGB")) for p in sorted(SET5.glob("*.bmp"))}


def _tensor(rgb_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb_u8)).permute(2, 0, 1)[None].float() / 255


def _basicsr_niqe():
    """basicsr's calculate_niqe, or a skip: basicsr 1.4.2 imports a torchvision module that
    current torchvision removed, so a stand-in goes in first (as in benchmarks)."""
    shim = types.ModuleType("torchvision.transforms.functional_tensor")
    shim.rgb_to_grayscale = TF.rgb_to_grayscale
    sys.modules.setdefault("torchvision.transforms.functional_tensor", shim)
    try:
        from basicsr.metrics.niqe import calculate_niqe
    except ImportError as exc:
        pytest.skip(f"basicsr is not importable ({exc}); `make bench` installs it")
    return calculate_niqe


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    return _tensor(pytest.importorskip("skimage.data").astronaut())


@pytest.mark.slow  # BasicSR's per-block loop over about 3 Mpx
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # basicsr's scipy.ndimage.filters import
def test_agrees_with_basicsr_on_set5_and_the_sample_photos():
    calculate_niqe = _basicsr_niqe()
    images = {**_photos(), **(_set5() if SET5.is_dir() else {})}  # Set5 where this machine has it
    cases = [(name, img, 0) for name, img in images.items()] + [("astronaut crop_border=4", images["astronaut"], 4)]
    for name, img, crop in cases:
        ours = niqe(_tensor(img), crop_border=crop).item()
        bgr = img[..., ::-1].astype(np.float64)
        ref = calculate_niqe(bgr, crop_border=crop, input_order="HWC", convert_to="y")
        assert abs(ours - ref) <= 0.01, f"{name}: ours {ours:.5f}, basicsr {ref:.5f}"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_grayscale_agrees_with_basicsr_on_a_luma_image():
    calculate_niqe = _basicsr_niqe()
    camera = pytest.importorskip("skimage.data").camera()
    ours = niqe(torch.from_numpy(camera)[None, None].float() / 255).item()
    assert ours == pytest.approx(calculate_niqe(camera.astype(np.float64), crop_border=0, input_order="HW"), abs=0.01)


def test_deterministic_and_a_batch_scores_each_image_as_alone(astronaut):
    crops = torch.cat([astronaut[..., :192, :288], astronaut[..., 200:392, 100:388], astronaut[..., 300:492, 200:488]])
    batch = niqe(crops)
    assert batch.shape == (3,) and batch.dtype == torch.float64
    assert torch.equal(batch, niqe(crops))
    alone = torch.cat([niqe(crops[i : i + 1]) for i in range(3)])
    assert torch.allclose(batch, alone, rtol=0, atol=1e-12)
    assert len(set(batch.tolist())) == 3


def test_rgb_scores_the_same_as_its_luma_given_as_one_channel(astronaut):
    luma = rgb_to_y(astronaut.double()).round() / 255
    assert niqe(luma).item() == niqe(astronaut).item()


def test_noise_and_blur_make_natural_photos_score_worse():
    skimage_data = pytest.importorskip("skimage.data")
    images = {name: getattr(skimage_data, name)() for name in ("astronaut", "coffee", "chelsea")}
    if SET5.is_dir():
        images.update(_set5())
    g = torch.Generator().manual_seed(0)
    for name, img in images.items():
        x = _tensor(img)[..., :192, :192]  # 4 blocks keep it quick
        noisy = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
        blurred = TF.gaussian_blur(x, kernel_size=9, sigma=2.0)
        clean, worse = niqe(x).item(), niqe(torch.cat([noisy, blurred]))
        assert (worse > clean + 0.5).all(), f"{name}: clean {clean:.3f}, noisy/blurred {worse.tolist()}"


def test_an_image_smaller_than_one_block_is_refused(astronaut):
    with pytest.raises(ValueError, match="96x96.*95x200"):
        niqe(astronaut[..., :95, :200])
    with pytest.raises(ValueError, match="crop_border of 4.*92x92"):
        niqe(astronaut[..., :100, :100], crop_border=4)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        niqe(torch.rand(1, 4, 96, 96))


def test_one_block_scores_finite_and_a_flat_image_nan(astronaut):
    # BasicSR raises for both (a one-row covariance); we use a zero covariance instead.
    assert torch.isfinite(niqe(astronaut[..., 100:196, 200:296])).all()
    assert torch.isnan(niqe(torch.full((1, 3, 192, 192), 0.5))).all()


def test_a_changed_or_missing_params_file_is_refused(tmp_path, monkeypatch, astronaut):
    changed = tmp_path / "niqe_pris_params.npz"
    shutil.copy(niqe_module.PARAMS_PATH, changed)
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 0x01
    changed.write_bytes(bytes(data))
    monkeypatch.setattr(niqe_module, "PARAMS_PATH", changed)
    with pytest.raises(WeightsError, match="sha256"):
        niqe(astronaut)
    monkeypatch.setattr(niqe_module, "PARAMS_PATH", tmp_path / "absent.npz")
    with pytest.raises(WeightsError, match="missing"):
        niqe(astronaut)


def test_grid_search_picks_what_a_full_argmin_picks():
    _, ratio, _, _ = niqe_module._shape_grid()
    g = torch.Generator().manual_seed(0)
    mids = (ratio[:-1] + ratio[1:]) / 2
    values = torch.cat(
        [
            torch.rand(2000, generator=g, dtype=torch.float64) * 1.2,
            ratio[::97],
            mids[::89],
            torch.tensor([0.0, 5.0, float("nan")], dtype=torch.float64),
        ]
    )
    full = torch.from_numpy(np.argmin((ratio.numpy()[None, :] - values.numpy()[:, None]) ** 2, axis=1))
    assert torch.equal(niqe_module._nearest_on_grid(ratio, values), full)


def test_the_grid_mean_averages_the_shifted_grids_and_counts_their_blocks(astronaut):
    from srgan.niqe import GRID_OFFSETS, niqe_blocks, niqe_grid_mean

    x = astronaut[..., :200, :296]
    each = [float(niqe(x[..., o:, o:], 4)[0]) for o in GRID_OFFSETS]
    assert float(niqe_grid_mean(x, 4)[0]) == pytest.approx(np.mean(each), rel=1e-12)
    assert max(each) - min(each) > 0.05  # one grid is not the estimate: the reason for the mean
    # 200 x 296 less a 4 px border: 2 x 3 blocks on the unshifted grid, 1 x 2 once shifted by 9 px.
    assert niqe_blocks(200, 296, 4, 0) == 6 and niqe_blocks(200, 296, 4, 9) == 2 and niqe_blocks(100, 100, 4) == 0
