import pytest
import torch

from srgan.generator import SRResNet
from srgan.tiling import (
    MIN_STRIP_ROWS,
    aligned_spans,
    bands,
    centre_crop,
    computed_pixels,
    grid,
    spans,
    split,
    upscale_tiled,
)


@pytest.mark.parametrize("length,tile,pad", [(37, 8, 5), (10, 16, 4), (64, 16, 0), (5, 2, 3), (384, 256, 40)])
def test_spans_cover_every_pixel_once_with_even_tiles_and_windows_that_stop_at_the_border(length, tile, pad):
    covered, tiles = [], []
    for s in spans(length, tile, pad):
        assert 0 <= s.win_start <= s.keep_start < s.keep_stop <= s.win_stop <= length
        covered.extend(range(s.keep_start, s.keep_stop))
        tiles.append(s.keep_stop - s.keep_start)
        # Exactly `pad` of context where the image goes on, none beyond its border.
        assert s.keep_start - s.win_start == min(pad, s.keep_start)
        assert s.win_stop - s.keep_stop == min(pad, length - s.keep_stop)
    assert covered == list(range(length))
    assert max(tiles) <= tile and max(tiles) - min(tiles) <= 1
    assert len(tiles) == -(-length // tile)  # as few as the tile size allows


def _brute_force_least_pixels(h, w, tile, pad):
    best = None
    for nr in range(1, h + 1):
        for nc in range(1, w + 1):
            rows, cols = split(h, nr, pad), split(w, nc, pad)
            if max(r.size for r in rows) * max(c.size for c in cols) <= (tile + 2 * pad) ** 2:
                total = sum(r.size for r in rows) * sum(c.size for c in cols)
                best = total if best is None else min(best, total)
    return best


@pytest.mark.parametrize(
    "h,w,tile,pad", [(37, 53, 8, 5), (100, 30, 16, 10), (64, 64, 64, 0), (9, 120, 4, 3), (61, 47, 12, 9)]
)
def test_the_grid_computes_the_fewest_pixels_its_window_budget_allows(h, w, tile, pad):
    rows, cols = grid(h, w, tile, pad)
    assert max(r.size for r in rows) * max(c.size for c in cols) <= (tile + 2 * pad) ** 2
    assert sum(r.size for r in rows) * sum(c.size for c in cols) == _brute_force_least_pixels(h, w, tile, pad)


def test_computed_pixels_of_the_paper_model_at_the_benchmark_sizes():
    # SRResNet-16 (radius 40): a 384 px image at tile 256 is two full-width strips of 192 rows
    # (232-row windows), not 2 x 2 tiles of 256 in 336 px windows sliding inward (3.06x).
    assert computed_pixels(384, 384, 256, 40) == pytest.approx(384 * 2 * 232 / 384**2)  # 1.21
    assert computed_pixels(384, 384, 512, 40) == 1.0
    assert computed_pixels(1024, 1024, 512, 40) == pytest.approx((2 * 552 / 1024) ** 2)  # 1.16
    assert computed_pixels(1024, 1024, 256, 40) < 1.53
    # A model that streams rows (the inference form) computes no row twice, and at these
    # sizes no column either: one band, strips of (336^2 // 1024) = 110 rows.
    assert computed_pixels(1024, 1024, 256, 40, streams=True) == 1.0
    assert computed_pixels(384, 384, 256, 40, streams=True) == 1.0


@pytest.mark.parametrize(
    "h,w,tile,pad,region",
    [
        (1024, 1024, 256, 40, None),
        (4096, 4096, 256, 40, None),
        (50, 9000, 8, 5, None),
        (37, 53, 8, 5, (3, 30, 7, 50)),
        (9, 120, 1, 0, None),
        (20, 2000, 2, 1, None),
        (10, 12, 1, 5, None),
        (30, 41, 2, 4, None),
    ],
)
def test_bands_take_the_fewest_columns_whose_strips_fit_the_window_budget(h, w, tile, pad, region):
    rows, cols, strip = bands(h, w, tile, pad, region)
    top, bottom, left, right = region or (0, h, 0, w)
    budget, least = (tile + 2 * pad) ** 2, min(MIN_STRIP_ROWS, tile + 2 * pad)
    assert (rows.keep_start, rows.keep_stop) == (top, bottom)  # every row in one pass
    assert (rows.win_start, rows.win_stop) == (max(0, top - pad), min(h, bottom + pad))
    assert [(c.keep_start, c.keep_stop) for c in cols][0][0] == left and cols[-1].keep_stop == right
    assert all(a.keep_stop == b.keep_start for a, b in zip(cols, cols[1:]))
    assert strip * max(c.size for c in cols) <= budget and strip >= least
    for fewer in range(1, len(cols)):  # no fewer columns leave strips of `least` rows
        assert budget // max(c.size for c in split(w, fewer, pad, left, right)) < least


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


def test_aligned_spans_start_on_the_block_grid_with_context_inside_the_axis():
    pieces = aligned_spans(1000, 256, 40)
    assert [(s.keep_start, s.keep_stop) for s in pieces] == [(0, 256), (256, 512), (512, 768), (768, 1000)]
    assert [(s.win_start, s.win_stop) for s in pieces] == [(0, 296), (216, 552), (472, 808), (728, 1000)]


def test_centre_crop_keeps_the_middle_and_cuts_sides_to_the_multiple():
    x = torch.arange(2 * 10 * 7).reshape(1, 2, 10, 7)
    assert torch.equal(centre_crop(x, 4), x[..., 3:7, 1:5])  # centred, leading dims kept
    assert torch.equal(centre_crop(x, 8, multiple=3), x[..., 1:9, 0:6])  # 7 wide: 6 fit, kept whole
    assert torch.equal(centre_crop(x, None, multiple=4), x[..., :8, :4])  # all of it, cut at bottom and right
    assert torch.equal(centre_crop(x, None), x)
