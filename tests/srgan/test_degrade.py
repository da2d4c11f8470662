import io

import numpy as np
import pytest
import torch
from PIL import Image

from srgan.degrade import MRI, Bicubic, Realistic, Satellite, blur, build_degradation, gaussian_kernels, jpeg
from srgan.metrics import psnr
from srgan.resize import imresize

ALL = {
    "bicubic": (Bicubic(4), 3),
    "realistic": (Realistic(4), 3),
    "satellite": (Satellite(4), 4),
    "mri": (MRI(4), 1),
}


@pytest.mark.parametrize("name", list(ALL))
def test_same_seed_same_lr_and_other_seed_other_lr(name):
    degradation, channels = ALL[name]
    hr = torch.rand(6, channels, 48, 64)
    a, b, c = degradation(hr, 7), degradation(hr, 7), degradation(hr, 8)
    assert a.shape == (6, channels, 12, 16)
    assert torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1
    if name != "bicubic":
        assert not torch.equal(a, c)


def test_bicubic_is_matlab_imresize():
    hr = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    assert torch.allclose(Bicubic(4)(hr, 0), imresize(hr, 0.25).clamp(0, 1))


def test_parameters_are_drawn_per_sample():
    # One batch of identical images: per-sample blur/noise/JPEG give different LRs.
    hr = torch.rand(1, 3, 48, 48).expand(4, 3, 48, 48).contiguous()
    lr = Realistic(4)(hr, 3)
    assert not torch.equal(lr[0], lr[1])


def test_satellite_noise_is_poisson_gaussian_relative_to_full_scale():
    # Flat field at half scale: shot noise variance ~ 0.5 / full_well.
    hr = torch.full((1, 4, 256, 256), 0.5, dtype=torch.float64)
    lr = Satellite(4, psf_sigma=(0.5, 0.5), full_well=(1000.0, 1000.0), read_noise=(0.0, 0.0))(hr, 1)
    assert lr.var().item() == pytest.approx(0.5 / 1000, rel=0.1)
    assert lr.mean().item() == pytest.approx(0.5, abs=2e-3)


def test_satellite_quantises_to_the_requested_bit_depth():
    lr = Satellite(2, bit_depth=12)(torch.rand(1, 2, 32, 32), 0)
    assert torch.allclose(lr * 4095, (lr * 4095).round(), atol=1e-4)


def test_mri_k_space_truncation_keeps_low_frequencies_exactly():
    # A sinusoid below the LR Nyquist limit survives truncation unchanged (noise off).
    h = w = 64
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    hr = (0.5 + 0.3 * torch.cos(2 * torch.pi * 3 * xx / w) * torch.cos(2 * torch.pi * 2 * yy / h)).double()[None, None]
    lr = MRI(4, noise_sigma=(0.0, 0.0))(hr, 0)
    expected = hr[..., ::4, ::4]
    assert lr.shape == (1, 1, 16, 16)
    assert torch.allclose(lr, expected, atol=1e-9)


def test_mri_noise_is_rician():
    # Rician magnitude of a zero signal is Rayleigh: mean sigma * sqrt(pi / 2).
    lr = MRI(2, noise_sigma=(0.02, 0.02))(torch.zeros(1, 1, 256, 256), 5)
    assert lr.mean().item() == pytest.approx(0.02 * (np.pi / 2) ** 0.5, rel=0.05)


def test_gaussian_kernels_are_normalised_and_rotate():
    k = gaussian_kernels(torch.tensor([2.0, 2.0]), torch.tensor([0.5, 0.5]), torch.tensor([0.0, np.pi / 2]), 15)
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(2))
    assert torch.allclose(k[0], k[1].t(), atol=1e-6)
    x = torch.zeros(2, 1, 45, 45)  # large enough that reflected copies stay out of reach
    x[:, :, 22, 22] = 1
    assert torch.allclose(blur(x, k)[:, 0, 15:30, 15:30], k, atol=1e-6)


@pytest.mark.parametrize("quality", [30, 60, 90])
def test_jpeg_simulation_matches_libjpeg_error(quality):
    rng = np.random.default_rng(0)
    # A smooth image with some texture: what JPEG is designed for.
    base = np.kron(rng.random((12, 16, 3)), np.ones((8, 8, 1)))
    img = (np.clip(base + rng.normal(0, 0.03, base.shape), 0, 1) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    pil = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1)[None].float() / 255
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    ours = jpeg(x, torch.tensor([quality]))
    assert psnr(ours, x).item() == pytest.approx(psnr(pil, x).item(), abs=1.0)
    assert psnr(ours, pil).item() > 35


def test_jpeg_codes_gray_and_multiband_per_channel():
    x = torch.rand(2, 5, 20, 28)
    out = jpeg(x, torch.tensor([50, 90]))
    assert out.shape == x.shape
    assert torch.allclose(out * 255, (out * 255).round(), atol=1e-4)
    assert psnr(out[1:], x[1:]) > psnr(out[:1], x[:1])  # higher quality, smaller error


def test_bad_sizes_and_names_fail_with_the_fix():
    with pytest.raises(ValueError, match="not divisible by scale 4"):
        Bicubic(4)(torch.rand(1, 3, 30, 32), 0)
    with pytest.raises(ValueError, match="unknown degradation 'blurry'"):
        build_degradation("blurry", 4)
    with pytest.raises(ValueError, match="no parameter"):
        build_degradation("satellite", 4, jpeg_quality=(30, 90))
    assert build_degradation("satellite", 2, bit_depth=12) == Satellite(2, bit_depth=12)
