import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from srgan.metrics import psnr, psnr_y, quantize, rgb_to_y, ssim, ssim_y


def test_bt601_luma_spans_16_to_235():
    black, white = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    assert torch.allclose(rgb_to_y(black), torch.full((1, 1, 2, 2), 16.0))
    assert torch.allclose(rgb_to_y(white), torch.full((1, 1, 2, 2), 235.0))


def test_psnr_y_of_a_known_error():
    # A uniform error of d in Y (8-bit units) gives PSNR = 20 log10(255 / d).
    hr = torch.full((1, 1, 20, 20), 0.5, dtype=torch.float64)
    sr = hr + 3.0 / 255
    assert psnr_y(sr, hr).item() == pytest.approx(20 * math.log10(255 / 3), abs=1e-4)


def test_border_crop_ignores_the_border():
    hr = torch.rand(2, 3, 32, 32)
    sr = hr.clone()
    sr[..., :4, :] = 0  # errors only in the 4-pixel border
    assert psnr_y(sr, hr, crop=4).min() > 100
    assert psnr_y(sr, hr, crop=0).max() < 40


def test_ssim_matches_scikit_image_gaussian_ssim():
    rng = np.random.default_rng(1)
    hr = rng.random((40, 48))
    sr = np.clip(hr + rng.normal(0, 0.1, hr.shape), 0, 1)
    ref = structural_similarity(
        hr * 255, sr * 255, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    ours = ssim_y(torch.from_numpy(sr)[None, None], torch.from_numpy(hr)[None, None]).item()
    assert ours == pytest.approx(ref, abs=1e-6)


def test_ssim_of_identical_images_is_one():
    x = torch.rand(3, 3, 24, 24)
    assert torch.allclose(ssim_y(x, x), torch.ones(3))
    assert torch.allclose(ssim(x, x), torch.ones(3))


def test_data_range_variant_is_scale_invariant_for_16_bit():
    a = torch.randint(0, 65536, (2, 5, 24, 24)).double()
    b = (a + torch.randint(-500, 500, a.shape)).clamp(0, 65535)
    assert torch.allclose(psnr(a, b, 65535.0), psnr(a / 65535, b / 65535, 1.0))
    assert torch.allclose(ssim(a, b, 65535.0), ssim(a / 65535, b / 65535, 1.0), atol=1e-6)


def test_y_metrics_refuse_n_band_images():
    x = torch.rand(1, 4, 16, 16)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        psnr_y(x, x)


def test_quantize_rounds_to_8_bit_levels():
    x = torch.tensor([0.0, 0.5, 1.2, -0.1, 100.4 / 255])
    assert torch.allclose(quantize(x) * 255, torch.tensor([0.0, 128.0, 255.0, 0.0, 100.0]))


def test_high_frequency_ratio_separates_blur_detail_and_noise():
    from srgan.metrics import high_frequency_ratio
    from srgan.resize import imresize

    hr = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    assert torch.allclose(high_frequency_ratio(hr, hr, 4), torch.ones(2))
    bicubic = imresize(imresize(hr, 0.25), 4.0)
    assert (high_frequency_ratio(bicubic, hr, 4) < 0.3).all()  # the LR cannot carry those frequencies
    noisy = (hr + 0.3 * torch.randn_like(hr)).clamp(0, 1)
    assert (high_frequency_ratio(noisy, hr, 4) > 1.0).all()
    assert high_frequency_ratio(torch.rand(1, 5, 32, 32), torch.rand(1, 5, 32, 32), 2).shape == (1,)


def _gmsd_reference(a: np.ndarray, b: np.ndarray) -> float:
    """The authors' GMSD.m line by line in scipy (conv2 'same' = the centre of 'full')."""
    from scipy.signal import convolve2d

    def same(x, k):
        full = convolve2d(x, k, mode="full")
        top, left = k.shape[0] // 2, k.shape[1] // 2
        return full[top : top + x.shape[0], left : left + x.shape[1]]

    dx = np.array([[1, 0, -1]] * 3, float) / 3
    maps = []
    for y in (a, b):
        y = same(y, np.full((2, 2), 0.25))[::2, ::2]
        maps.append(np.sqrt(same(y, dx) ** 2 + same(y, dx.T) ** 2))
    q = (2 * maps[0] * maps[1] + 170) / (maps[0] ** 2 + maps[1] ** 2 + 170)
    return float(np.std(q, ddof=1))


def test_gmsd_matches_the_authors_algorithm_and_is_zero_for_identical_images():
    from srgan.metrics import gmsd

    rng = np.random.default_rng(0)
    hr = torch.from_numpy(rng.random((1, 1, 24, 30)))
    sr = (hr + 0.1 * torch.from_numpy(rng.standard_normal((1, 1, 24, 30)))).clamp(0, 1)
    assert gmsd(sr, hr).item() == pytest.approx(
        _gmsd_reference(sr[0, 0].numpy() * 255, hr[0, 0].numpy() * 255), rel=1e-5
    )
    rgb = torch.rand(2, 3, 40, 40)
    assert gmsd(rgb, rgb, crop=4).abs().max().item() < 1e-6
    # Y of RGB, as psnr_y: the same as the luma given as one 8-bit band.
    y = rgb_to_y(rgb.double()) / 255
    assert torch.allclose(gmsd(rgb, rgb.flip(-1)), gmsd(y, y.flip(-1)), atol=1e-5)


def test_gmsd_grows_with_noise_and_with_blur():
    from pipeline.io.samples import PHOTOS  # noqa: F401  (the bundled photos are scikit-image's)
    from srgan.baselines import add_noise, gaussian_blur
    from srgan.metrics import gmsd

    skimage_data = pytest.importorskip("skimage.data")
    hr = torch.from_numpy(skimage_data.astronaut()[:128, :128].copy()).permute(2, 0, 1)[None].float() / 255
    noisy = [gmsd(add_noise(hr, s / 255), hr, 4).item() for s in (2, 5, 10, 20)]
    blurred = [gmsd(gaussian_blur(hr, s), hr, 4).item() for s in (0.5, 1.0, 2.0, 3.0)]
    assert noisy == sorted(noisy) and noisy[0] > 0 and blurred == sorted(blurred) and blurred[0] > 0
