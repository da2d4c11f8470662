import numpy as np
import pytest
import torch
from PIL import Image

from srgan.resize import imresize


@pytest.mark.parametrize("scale", [0.25, 0.5, 2.0, 3.0, 4.0])
def test_interior_matches_an_independent_bicubic(scale):
    # Pillow's float-mode bicubic uses the same Keys kernel (a = -0.5), the same pixel-centre
    # mapping and the same antialiasing when shrinking; only the border handling differs.
    rng = np.random.default_rng(0)
    a = rng.random((64, 80)).astype(np.float32)
    out_h, out_w = int(64 * scale), int(80 * scale)
    pil = np.array(Image.fromarray(a, "F").resize((out_w, out_h), Image.Resampling.BICUBIC))
    ours = imresize(torch.from_numpy(a), scale).numpy()
    assert ours.shape == (out_h, out_w)
    m = 8 if scale >= 1 else 3
    assert np.abs(pil - ours)[m:-m, m:-m].max() < 1e-5


def test_matlab_symmetric_border_on_a_ramp():
    # MATLAB mirrors with the edge pixel repeated: a linear ramp 0..n-1 upscaled keeps its
    # interior linear, and the first output sample sees the mirrored value 0 at index -1.
    ramp = torch.arange(8, dtype=torch.float64).view(1, 8)
    up = imresize(ramp, size=(1, 16))[0]
    # Interior: cubic convolution reproduces linear functions exactly.
    expected = (torch.arange(16, dtype=torch.float64) + 0.5) / 2 - 0.5
    assert torch.allclose(up[3:-3], expected[3:-3], atol=1e-12)
    # Border: the sample at -0.25 sees [1, 0, 0, 1, 2] (mirror), so it is > -0.25.
    assert up[0].item() > expected[0].item()


def test_constant_image_stays_constant_both_ways():
    x = torch.full((2, 3, 20, 24), 0.37, dtype=torch.float64)
    assert torch.allclose(imresize(x, 0.25), torch.full((2, 3, 5, 6), 0.37, dtype=torch.float64))
    assert torch.allclose(imresize(x, 4.0), torch.full((2, 3, 80, 96), 0.37, dtype=torch.float64))


def test_batched_equals_one_by_one_and_keeps_float_range():
    x = torch.rand(3, 2, 17, 23) * 1000.0  # any float range
    batched = imresize(x, 0.5)
    single = torch.stack([imresize(img, 0.5) for img in x])
    assert torch.allclose(batched, single)
    assert batched.dtype == torch.float32 and batched.max() > 500


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32])
def test_integer_input_is_rounded_and_clipped_to_its_dtype(dtype):
    info = torch.iinfo(dtype)
    x = torch.randint(max(info.min, -30000), min(info.max, 30000), (1, 1, 16, 16)).to(dtype)
    out = imresize(x, 2.0)
    assert out.dtype == dtype
    assert torch.equal(out, out.clamp(info.min, info.max))


def test_scale_or_size_must_be_given_once():
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(x)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(x, 0.5, size=(4, 4))
    assert imresize(x, size=(5, 7)).shape == (1, 1, 5, 7)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_integer_upscale_as_a_convolution_is_matlab_imresize(scale):
    from srgan.resize import upscale_by_convolution

    for size in [(2, 2), (3, 7), (17, 9), (40, 33)]:
        x = torch.rand(2, 3, *size, dtype=torch.float64)
        assert (upscale_by_convolution(x, scale) - imresize(x, float(scale))).abs().max() < 1e-12
