import pytest
import torch

from srgan.generator import SRResNet
from srgan.tiling import spans, upscale_tiled


@pytest.mark.parametrize("length,tile,pad", [(37, 8, 5), (10, 16, 4), (64, 16, 0), (5, 2, 3)])
def test_spans_cover_every_pixel_once_inside_equal_windows(length, tile, pad):
    covered = []
    sizes = set()
    for s in spans(length, tile, pad):
        assert 0 <= s.win_start <= s.keep_start < s.keep_stop <= s.win_stop <= length
        covered.extend(range(s.keep_start, s.keep_stop))
        sizes.add(s.win_stop - s.win_start)
        # Interior window edges are at least `pad` away from the kept part.
        if s.win_start > 0:
            assert s.keep_start - s.win_start >= pad
        if s.win_stop < length:
            assert s.win_stop - s.keep_stop >= pad
    assert covered == list(range(length))
    assert len(sizes) == 1


@pytest.mark.parametrize("scale,skip", [(2, False), (4, False), (4, True)])
@pytest.mark.parametrize("size", [(37, 53), (19, 64), (8, 9)])
def test_tiled_equals_untiled(scale, skip, size):
    g = SRResNet(scale=scale, num_blocks=3, num_features=16, bicubic_skip=skip).eval()
    if skip:
        torch.nn.init.normal_(g.tail.weight, std=0.01)  # a trained-looking residual
    # Move BN statistics off their defaults so eval-mode BN is not an identity.
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        full = g(x)
    tiled = upscale_tiled(g, x, scale, tile=8, batch_size=3)
    assert tiled.shape == full.shape
    assert (tiled - full).abs().max().item() <= 1e-4


def test_too_little_padding_is_visible():
    # The check above is meaningful: with pad well below the receptive radius tiles differ.
    g = SRResNet(scale=2, num_blocks=3, num_features=16).eval()
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        full = g(x)
    assert (upscale_tiled(g, x, 2, tile=8, pad=1) - full).abs().max().item() > 1e-4


def test_single_image_and_whole_image_mode():
    g = SRResNet(scale=2, in_channels=1, out_channels=1, num_blocks=1, num_features=8).eval()
    x = torch.rand(1, 12, 14)
    assert upscale_tiled(g, x, 2, tile=0).shape == (1, 24, 28)
    assert torch.allclose(upscale_tiled(g, x, 2, tile=4), upscale_tiled(g, x, 2, tile=0), atol=1e-5)


@pytest.mark.parametrize("tile", [0, 7])
def test_a_region_is_its_share_of_the_whole_result(tile):
    g = SRResNet(scale=2, num_blocks=2, num_features=8).eval()
    x = torch.rand(3, 41, 37)
    with torch.no_grad():
        full = g(x[None])[0]
    top, bottom, left, right = 9, 30, 4, 33
    part = upscale_tiled(g, x, 2, tile=tile, region=(top, bottom, left, right))
    assert part.shape == (3, 42, 58)
    assert (part - full[:, 2 * top : 2 * bottom, 2 * left : 2 * right]).abs().max().item() <= 1e-4
