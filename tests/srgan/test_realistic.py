"""The fast paths of srgan.degrade compute what the reference operations compute."""

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from srgan.degrade import Realistic, base, filter_per_sample, jpeg, kernels, noise, resize


@pytest.mark.parametrize("mode", ["area", "bilinear", "bicubic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_resize_is_f_interpolate(mode, dtype):
    # Every way feed_data calls it: by a factor (up, down, keep) and to a size, odd sizes included.
    rng = random.Random(0)
    corners = None if mode == "area" else False
    tol = 1e-12 if dtype == torch.float64 else 3e-5  # PyTorch's CPU kernels index in float32
    for factor in [1.0, 1.0233, 1.37, 1.5, 0.93, 0.5, 0.31, 0.15]:
        x = torch.rand(2, 3, rng.randint(20, 100), rng.randint(20, 100), dtype=dtype)
        expected = F.interpolate(x, scale_factor=factor, mode=mode, align_corners=corners)
        assert torch.allclose(resize(x, mode, factor=factor), expected, atol=tol, rtol=0)
    for size in [(24, 24), (7, 30), (61, 17), (130, 90)]:
        x = torch.rand(2, 3, rng.randint(20, 100), rng.randint(20, 100), dtype=dtype)
        expected = F.interpolate(x, size=size, mode=mode, align_corners=corners)
        assert torch.allclose(resize(x, mode, size=size), expected, atol=tol, rtol=0)


def _reference_filter(x, kernels, sizes, active):
    """One sample at a time: numpy's reflect padding (reflect-101, reflected again where the
    kernel outgrows the image, as cv2.filter2D) and a plain correlation with the cut kernel."""
    out = x.clone()
    for i in range(len(x)):
        if not active[i]:
            continue
        size, big = int(sizes[i]), kernels.shape[-1]
        cut = (big - size) // 2
        k = kernels[i, cut : big - cut, cut : big - cut].double()
        pad = size // 2
        padded = torch.from_numpy(np.pad(x[i].double().numpy(), ((0, 0), (pad, pad), (pad, pad)), mode="reflect"))
        out[i] = F.conv2d(padded[:, None], k[None, None])[:, 0].to(x.dtype)
    return out


@pytest.mark.parametrize("hw", [(96, 96), (37, 53), (9, 12)])
def test_filter_per_sample_is_each_sample_filtered_alone(hw):
    # Chunks of mixed sizes on canvases rounded up to 8 px give each sample its own filter; an
    # image smaller than the kernel is reflected again (cv2's BORDER_REFLECT_101), not clamped.
    plan = Realistic(4).plan(3, 40).second
    x = torch.rand(40, 3, *hw)
    expected = _reference_filter(x, plan.kernel, plan.kernel_size, plan.blur)
    got = filter_per_sample(x, plan.kernel, plan.kernel_size, plan.blur)
    assert not plan.blur.all() and torch.equal(got[~plan.blur], x[~plan.blur])
    assert torch.allclose(got, expected, atol=2e-6)


def _poisson_pmf(rate: float, k: torch.Tensor) -> torch.Tensor:
    if rate == 0:
        return (k == 0).double()
    return torch.exp(k * math.log(rate) - rate - torch.lgamma(k + 1))


@pytest.mark.parametrize("vals", [256, 32, 1])
def test_shot_noise_counts_follow_the_poisson_law(vals):
    # Rates level * vals / 255 as BasicSR's shot noise draws them: every count's frequency within
    # 5 standard errors of the Poisson probability, mean and variance the rate.
    g = torch.Generator().manual_seed(0)
    n = 200_000
    for level in [0, 1, 9, 128, 255]:
        rate = level * vals / 255
        levels, exponent = (
            torch.full((n,), level, dtype=torch.int32),
            torch.tensor([int(math.log2(vals))], dtype=torch.int32),
        )
        counts = noise._poisson_counts(levels, exponent, g).double()
        k = torch.arange(int(rate + 12 * math.sqrt(rate) + 12), dtype=torch.float64)
        p = _poisson_pmf(rate, k)
        seen = torch.bincount(counts.long(), minlength=len(k))[: len(k)].double() / n
        assert counts.max() < len(k)
        assert ((seen - p).abs() <= 5 * torch.sqrt(p * (1 - p) / n) + 2 / n).all(), f"rate {rate}"
        assert counts.mean().item() == pytest.approx(rate, abs=5 * math.sqrt(rate / n) + 1e-9)


def test_shot_noise_counts_levels_as_basicsr_does():
    # vals = distinct 8-bit values per sample rounded up to a power of two: 1 for a flat image,
    # 4 for three levels, 256 for a noisy patch; the counts are whole numbers at rate level * vals / 255.
    flat = torch.full((1, 1, 64, 64), 100 / 255)
    three = torch.tensor([10.0, 20.0, 30.0]).repeat_interleave(32).expand(1, 1, 32, 96) / 255
    noisy = torch.rand(1, 3, 64, 64)
    for x, vals in [(flat, 1), (three, 4), (noisy, 256)]:
        counts, got, levels = noise._shot_counts(x, torch.Generator().manual_seed(1))
        assert got.flatten().tolist() == [vals]
        assert torch.equal(levels, (x * 255).round())
        assert torch.equal(counts, counts.round())
        assert counts.float().mean().item() == pytest.approx((levels * vals / 255).mean().item(), rel=0.05)


def test_jpeg_is_the_same_worked_in_pieces(monkeypatch):
    # On a CPU the batch is coded a few images at a time; the result does not depend on it.
    x, quality = torch.rand(12, 3, 40, 56), torch.randint(30, 96, (12,))
    whole = jpeg(x, quality)
    monkeypatch.setattr(base, "CPU_PIECE_PIXELS", 3 * 40 * 56)
    assert torch.equal(jpeg(x, quality), whole)


@pytest.fixture
def basicsr_degradations(monkeypatch):
    """basicsr/data/degradations.py, loaded on its own (the package imports far more), where
    basicsr is installed (the benchmark environment). basicsr 1.4.2 imports a torchvision module
    that current torchvision removed; a stand-in serves its one function."""
    import importlib.util
    import sys
    import types

    import torchvision.transforms.functional as TF

    spec = importlib.util.find_spec("basicsr")
    if spec is None or spec.origin is None:
        pytest.skip("basicsr is not installed")
    shim = types.ModuleType("torchvision.transforms.functional_tensor")
    shim.rgb_to_grayscale = TF.rgb_to_grayscale
    monkeypatch.setitem(sys.modules, "torchvision.transforms.functional_tensor", shim)
    path = spec.origin.replace("__init__.py", "data/degradations.py")
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location("basicsr_degradations", path))
    errors = np.geterr()
    module.__loader__.exec_module(module)
    np.seterr(**errors)  # the module turns numpy's divide warnings off for the whole process
    return module


def test_kernels_are_basicsrs(basicsr_degradations):
    # The same shapes BasicSR's kernel functions make for the same parameters.
    degradations = basicsr_degradations
    kinds = torch.tensor([0, 1, 2, 3, 4, 5, 6, 6])
    sizes = torch.tensor([21, 7, 13, 11, 9, 21, 7, 15])
    sx = torch.tensor([1.3, 0.4, 2.1, 1.0, 0.7, 2.8, 1, 1], dtype=torch.float64)
    sy = torch.tensor([1.3, 2.5, 2.1, 0.3, 0.7, 1.1, 1, 1], dtype=torch.float64)
    theta = torch.tensor([0.0, 0.7, 0.0, -2.0, 0.0, 2.9, 0, 0], dtype=torch.float64)
    beta = torch.tensor([1.0, 1.0, 0.6, 3.2, 1.4, 1.9, 1, 1], dtype=torch.float64)
    omega = torch.tensor([1, 1, 1, 1, 1, 1, 0.8, 2.9], dtype=torch.float64)
    ours = kernels.mixed_kernels(kinds, sizes, sx, sy, theta, beta, omega, 21)
    for i in range(len(kinds)):
        size, args, family = int(sizes[i]), (float(sx[i]), float(sy[i]), float(theta[i])), int(kinds[i]) // 2
        iso = int(kinds[i]) % 2 == 0
        with np.errstate(
            divide="ignore", invalid="ignore"
        ):  # BasicSR's sinc divides 0 by 0 at the centre, then sets it
            if family == 0:
                theirs = degradations.bivariate_Gaussian(size, *args, isotropic=iso)
            elif family == 1:
                theirs = degradations.bivariate_generalized_Gaussian(size, *args, float(beta[i]), isotropic=iso)
            elif family == 2:
                theirs = degradations.bivariate_plateau(size, *args, float(beta[i]), isotropic=iso)
            else:
                theirs = degradations.circular_lowpass_kernel(float(omega[i]), size)
        pad = (21 - size) // 2
        assert np.allclose(ours[i].numpy(), np.pad(theirs, pad), atol=1e-7), kernels.KERNEL_TYPES[int(kinds[i])]
