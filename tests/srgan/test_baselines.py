"""The no-learning baselines: what each filter does to an image, and the family the gate races."""

import numpy as np
import pytest
import torch

from srgan.baselines import BICUBIC, FilterUpscaler, add_noise, family, gaussian_blur, noise, unsharp_mask, usm
from srgan.metrics import quantize
from srgan.resize import imresize


def _photo() -> torch.Tensor:
    rgb = pytest.importorskip("skimage.data").astronaut()[:96, :128]
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255


def test_blur_keeps_flat_images_and_the_mean_and_removes_detail():
    flat = torch.full((1, 3, 20, 20), 0.3)
    assert torch.allclose(gaussian_blur(flat, 1.5), flat) and torch.allclose(unsharp_mask(flat, 2, 1.5), flat)
    x = _photo()
    blurred = gaussian_blur(x, 1.5)
    assert abs(blurred.mean() - x.mean()) < 2e-3 and (blurred - x).abs().mean() > 0.005


def test_unsharp_mask_raises_edge_contrast_with_the_amount():
    edge = torch.zeros(1, 1, 16, 16)
    edge[..., 8:] = 0.6
    edge += 0.2
    one, two = unsharp_mask(edge, 1, 1.5), unsharp_mask(edge, 2, 1.5)
    assert torch.equal(unsharp_mask(edge, 0, 1.5), edge)
    # Overshoot on both sides of the step, larger for amount 2, flat far from it.
    assert one[0, 0, 0, 9] > 0.8 and two[0, 0, 0, 9] > one[0, 0, 0, 9] and one[0, 0, 0, 6] < 0.2
    assert one[0, 0, 0, 15] == pytest.approx(0.8, abs=1e-4)


def test_noise_is_seeded_and_of_the_stated_strength():
    x = torch.full((1, 3, 64, 64), 0.5)
    a, b = add_noise(x, 2 / 255), add_noise(x, 2 / 255)
    assert torch.equal(a, b) and (a - x).std().item() == pytest.approx(2 / 255, rel=0.05)


def test_the_family_holds_bicubic_usm_amounts_1_and_2_at_sigma_1_5_and_faint_noise():
    names = [b.name for b in family()]
    assert names[0] == BICUBIC.name and len(set(names)) == len(names)
    assert {usm(1, 1.5).name, usm(2, 1.5).name, noise(2).name} <= set(names)


def test_a_filter_as_an_upscaler_gives_the_baseline_of_the_protocol_bicubic():
    hr = (_photo() * 255).round().to(torch.uint8)
    lr = imresize(hr, 0.25)
    bicubic = imresize(lr, 4.0).float() / 255  # the protocol's: MATLAB bicubic in uint8
    for b in (BICUBIC, usm(1, 1.5), noise(2)):
        up = FilterUpscaler(b, 4)
        out = quantize(up(lr.float() / 255), 255)
        assert out.shape == bicubic.shape and up.spec.scale == 4
        assert torch.equal(out, quantize(b.apply(bicubic), 255)), b.name
