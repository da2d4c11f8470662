import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from srgan.degrade import (
    KERNEL_TYPES,
    MRI,
    RESIZE_DIRECTIONS,
    RESIZE_MODES,
    SECOND_ROUND,
    Bicubic,
    Realistic,
    Satellite,
    add_noise,
    blur,
    build_degradation,
    gaussian_kernels,
    jpeg,
    realistic,
    usm_sharp,
)
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


# ------------------------------------------------ realistic: Real-ESRGAN's second-order degradation


def _image_resizes(monkeypatch) -> list:
    """Record the output size of every image resize (JPEG's chroma upsampling is not one)."""
    calls, resize = [], realistic.resize

    def spy(x, *args, **kwargs):
        y = resize(x, *args, **kwargs)
        calls.append(tuple(y.shape[-2:]))
        return y

    monkeypatch.setattr(realistic, "resize", spy)
    return calls


def test_second_round_always_runs(monkeypatch):
    # Round one's resize, round two's resize, then back to the LR size: three resizes, every seed.
    calls = _image_resizes(monkeypatch)
    hr = torch.rand(1, 3, 96, 96)
    counts = []
    for seed in range(100):
        calls.clear()
        Realistic(4)(hr, seed)
        counts.append(len(calls))
    assert counts == [3] * 100


def test_second_round_is_sized_from_the_lr_size(monkeypatch):
    # feed_data sizes round two as (h / scale) * factor, factor in [0.3, 1.2] with up/down/keep
    # probabilities [0.3, 0.4, 0.3]: its median is the LR size itself.
    calls = _image_resizes(monkeypatch)
    hr = torch.rand(1, 3, 96, 96)
    relative = []
    for seed in range(400):
        calls.clear()
        Realistic(4)(hr, seed)
        if len(calls) == 3:
            relative.append(calls[1][0] / 24)
    assert 0.6 <= float(np.median(relative)) <= 1.3
    assert 0.3 - 1 / 24 <= min(relative) and max(relative) <= 1.2


def _freq(values, expected, n):
    # Within 4.5 binomial standard deviations (plus one count) of the published probability.
    tol = 4.5 * (expected * (1 - expected) / n) ** 0.5 + 1 / n
    return abs(values - expected) <= tol


def test_every_stage_is_used_at_its_probability():
    cfg = Realistic(4)
    seeds, n = 1000, 16
    plans = [cfg.plan(seed, n) for seed in range(seeds)]
    per_sample = seeds * n

    def check(name, observed, expected, count):
        assert _freq(observed, expected, count), f"{name}: {observed:.4f} drawn, {expected:.4f} published"

    for rnd in ("first", "second"):
        settings = getattr(cfg, rnd)
        kinds = torch.cat([getattr(p, rnd).kernel_type for p in plans])
        expected = [(1 - settings.sinc_prob) * p for p in settings.kernel_prob] + [settings.sinc_prob]
        for i, name in enumerate(KERNEL_TYPES):
            check(f"{rnd} {name}", (kinds == i).float().mean().item(), expected[i], per_sample)
        blurred = torch.cat([getattr(p, rnd).blur for p in plans]).float().mean().item()
        check(f"{rnd} blur", blurred, settings.blur_prob, per_sample)
        for direction, p in zip(RESIZE_DIRECTIONS, settings.resize_prob):
            check(f"{rnd} resize {direction}", np.mean([getattr(q, rnd).resize == direction for q in plans]), p, seeds)
        for mode in RESIZE_MODES:
            check(f"{rnd} mode {mode}", np.mean([getattr(q, rnd).resize_mode == mode for q in plans]), 1 / 3, seeds)
        gaussian = torch.cat([getattr(p, rnd).gaussian_noise for p in plans]).float().mean().item()
        check(f"{rnd} gaussian noise", gaussian, settings.gaussian_noise_prob, per_sample)
        gray = torch.cat([getattr(p, rnd).gray_noise for p in plans]).float().mean().item()
        check(f"{rnd} gray noise", gray, settings.gray_noise_prob, per_sample)
    check("final sinc", torch.cat([p.final_sinc for p in plans]).float().mean().item(), cfg.final_sinc_prob, per_sample)
    check("resize+sinc before JPEG", np.mean([p.resize_then_jpeg for p in plans]), 0.5, seeds)
    for mode in RESIZE_MODES:
        check(f"final mode {mode}", np.mean([p.final_mode == mode for p in plans]), 1 / 3, seeds)


def test_drawn_values_stay_in_their_published_ranges():
    cfg = Realistic(4)
    plans = [cfg.plan(seed, 16) for seed in range(200)]
    for rnd in ("first", "second"):
        settings = getattr(cfg, rnd)
        resize_range, noise, poisson = settings.resize_range, settings.noise_range, settings.poisson_scale_range
        rounds = [getattr(p, rnd) for p in plans]
        sizes = torch.cat([r.kernel_size for r in rounds])
        assert set(sizes.tolist()) == set(range(7, 22, 2))  # odd, 7..21, every size used
        for r in rounds:
            lo, hi = {"up": (1.0, resize_range[1]), "down": (resize_range[0], 1.0), "keep": (1.0, 1.0)}[r.resize]
            assert lo <= r.resize_factor <= hi
        sigma = torch.cat([r.noise_sigma for r in rounds]) * 255
        assert noise[0] - 1e-4 <= sigma.min() and sigma.max() <= noise[1] + 1e-4
        scale = torch.cat([r.poisson_scale for r in rounds])
        assert poisson[0] <= scale.min() and scale.max() <= poisson[1]
        quality = torch.cat([r.jpeg_quality for r in rounds])
        assert 30 <= quality.min() and quality.max() <= 95 and torch.equal(quality, quality.round())
    assert set(torch.cat([p.final_kernel_size for p in plans]).tolist()) == set(range(7, 22, 2))


def test_kernels_are_normalised_and_zero_outside_their_size_and_sinc_rings():
    plan = Realistic(4).plan(0, 256).first
    k, size = plan.kernel, plan.kernel_size
    assert k.shape == (256, 21, 21)
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(256), atol=1e-5)
    for i in range(256):
        pad = (21 - int(size[i])) // 2
        outside = k[i].clone()
        outside[pad : 21 - pad, pad : 21 - pad] = 0
        assert not outside.any()
        assert torch.allclose(k[i], k[i].flip(0, 1), atol=1e-7)  # point symmetric: correlation is convolution
    sinc = plan.kernel_type == KERNEL_TYPES.index("sinc")
    gaussian = plan.kernel_type <= KERNEL_TYPES.index("aniso")
    assert sinc.any() and (k[sinc].amin(dim=(1, 2)) < 0).all()  # ringing lobes
    assert (k[gaussian] >= 0).all()


@pytest.mark.parametrize("scale", [2, 4])
def test_realistic_lr_is_float32_in_range_with_the_lr_shape(scale):
    hr = torch.rand(5, 3, 96, 96)
    lr = Realistic(scale)(hr, 11)
    assert lr.shape == (5, 3, 96 // scale, 96 // scale) and lr.dtype == torch.float32
    assert 0 <= lr.min() and lr.max() <= 1
    assert torch.allclose(lr * 255, (lr * 255).round(), atol=1e-4)  # 8-bit, as feed_data rounds it
    assert torch.equal(lr, Realistic(scale)(hr, 11))
    assert not torch.equal(lr, Realistic(scale)(hr, 12))


def test_realistic_executes_its_plan():
    cfg, hr = Realistic(4), torch.rand(3, 3, 64, 64)
    assert torch.equal(cfg.apply(hr, cfg.plan(5, 3)), cfg(hr, 5))


def test_usm_sharp_overshoots_at_an_edge_and_keeps_flat_images():
    step = torch.full((1, 3, 64, 64), 0.25)
    step[..., 32:] = 0.75
    out = usm_sharp(step)
    assert out[..., 32:].max() > 0.76 and out[..., :32].min() < 0.24  # sharper than the input edge
    assert torch.allclose(out[..., :2], step[..., :2], atol=0.02)  # far from the edge, nearly unchanged
    flat = torch.full((2, 3, 48, 48), 0.4)
    assert torch.equal(usm_sharp(flat), flat)
    assert Realistic(4).usm_target is False and Realistic(4, usm_target=True).usm_target is True


@pytest.mark.parametrize("gaussian", [True, False])
def test_gray_noise_is_one_field_for_all_channels(gaussian):
    plan = Realistic(4).plan(0, 2).first
    amounts = dict(noise_sigma=torch.tensor([0.02, 0.02]), poisson_scale=torch.tensor([0.5, 0.5]))  # nothing clips
    plan = replace(plan, gaussian_noise=torch.tensor([gaussian] * 2), gray_noise=torch.tensor([True, False]), **amounts)
    x = torch.rand(2, 3, 32, 32) * 0.5 + 0.25
    noise = add_noise(x, torch.Generator().manual_seed(0), plan) - x
    assert torch.allclose(noise[0, 0], noise[0, 1], atol=1e-6) and torch.allclose(noise[0, 1], noise[0, 2], atol=1e-6)
    assert not torch.equal(noise[1, 0], noise[1, 1])
    assert noise[1].std() > 0


def test_realistic_takes_the_published_options_as_config_gives_them():
    # A round's settings come as a mapping of the ones changed; YAML lists are accepted (and compared
    # as the defaults); a bad key, probability or range names its round and key.
    assert build_degradation(
        "realistic",
        4,
        first={"kernel_prob": [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]},
        second={"resize_range": [0.3, 1.2]},
        kernel_size_range=[7, 21],
    ) == Realistic(4)
    changed = build_degradation("realistic", 4, second={"noise_range": [1, 10]})
    assert changed.second == replace(SECOND_ROUND, noise_range=(1, 10)) and changed.first == Realistic(4).first
    with pytest.raises(ValueError, match="first.resize_prob must be probabilities"):
        build_degradation("realistic", 4, first={"resize_prob": [0.5, 0.5, 0.5]})
    with pytest.raises(ValueError, match="second.noise_range must be a"):
        build_degradation("realistic", 4, second={"noise_range": [25, 1]})
    with pytest.raises(ValueError, match="second has no setting.* noise_range2"):
        build_degradation("realistic", 4, second={"noise_range2": [1, 10]})
    with pytest.raises(ValueError, match="no parameter.* noise_range3"):
        build_degradation("realistic", 4, noise_range3=[1, 10])
