"""The inference form computes what the plain generator computes, and tiles stay exact."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from srgan import fast
from srgan.fast import inference_form, merge_shuffle_into_conv
from srgan.generator import GeneratorSpec, SRResNet, build_generator
from srgan.tiling import upscale_tiled


def trained_looking(model: SRResNet) -> SRResNet:
    """BatchNorm off its defaults (else eval-mode BN is an identity and folding it proves
    nothing), per-channel PReLU slopes apart, a bicubic-skip tail that is not zero."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
        if isinstance(m, nn.PReLU):
            m.weight.data.uniform_(0.0, 0.5)
    if model.spec.bicubic_skip:
        nn.init.normal_(model.tail.weight, std=0.01)
    return model.eval()


@pytest.mark.parametrize("factor,kernel", [(2, 9), (2, 3), (3, 9), (3, 5), (2, 1)])
def test_a_shuffle_then_convolution_is_one_convolution_then_a_shuffle(factor, kernel):
    conv = nn.Conv2d(8, 3, kernel, padding=kernel // 2)
    x = torch.randn(2, 8 * factor * factor, 7, 10)
    merged = merge_shuffle_into_conv(conv, factor)
    with torch.no_grad():
        assert torch.allclose(F.pixel_shuffle(merged(x), factor), conv(F.pixel_shuffle(x, factor)), atol=1e-5)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize(
    "bands,skip,batch_norm", [(3, False, True), (1, False, True), (4, False, False), (3, True, True)]
)
def test_the_inference_form_equals_the_plain_generator_in_fp32(scale, bands, skip, batch_norm):
    g = trained_looking(
        SRResNet(
            scale=scale,
            in_channels=bands,
            out_channels=bands,
            num_blocks=2,
            num_features=16,
            batch_norm=batch_norm,
            bicubic_skip=skip,
        )
    )
    x = torch.rand(2, bands, 13, 17)
    with torch.inference_mode():
        plain, fast = g(x), inference_form(g)(x)
    assert fast.dtype == torch.float32 and fast.shape == plain.shape
    assert (fast - plain).abs().max().item() <= 1e-5
    assert not g.training and g.body[0].bn1.training is False  # the model itself is left as it was


def test_forms_in_other_precisions_leave_the_model_and_each_other_as_they_were():
    g = trained_looking(
        SRResNet(scale=2, num_blocks=2, num_features=8, batch_norm=False)
    )  # nothing to fold: convs would be shared
    x = torch.rand(1, 3, 9, 11)
    with torch.inference_mode():
        before = g(x)
        bf16, fp32 = inference_form(g, "bf16"), inference_form(g, "fp32")
        assert torch.equal(g(x), before)
        assert (bf16(x) - before).abs().max().item() < 0.02 and (fp32(x) - before).abs().max().item() <= 1e-5


def test_the_bf16_form_is_close_and_its_output_float32():
    g = trained_looking(SRResNet(scale=4, num_blocks=2, num_features=16))
    x = torch.rand(1, 3, 20, 20)
    with torch.inference_mode():
        plain, bf16 = g(x), inference_form(g, "bf16")(x)
    assert bf16.dtype == torch.float32
    assert (bf16 - plain).abs().max().item() < 0.02


def test_the_measured_receptive_radius_is_the_architectures_and_tight():
    # What the layers add up to (head 9x9: 4; two 3x3 per block; trunk conv 1; upsample
    # convs at the resolution reached; the 9x9 tail at full scale), measured.
    for blocks, scale in [(16, 4), (3, 2), (1, 8), (5, 3), (32, 4)]:
        stages = [3] if scale == 3 else [2] * {2: 1, 4: 2, 8: 3}[scale]
        radius, resolution = 4 + 2 * blocks + 1, 1
        for f in stages:
            radius += 1 / resolution
            resolution *= f
        assert build_generator(GeneratorSpec(scale=scale, num_blocks=blocks)).receptive_radius == -int(
            -(radius + 4 / resolution) // 1
        )
    # One pixel less context and tiles are not exact any more (float64: rounding is far below
    # what the outermost tap of the field contributes).
    g = trained_looking(SRResNet(scale=2, num_blocks=2, num_features=8)).double()
    x = torch.rand(1, 3, 40, 40, dtype=torch.float64)
    with torch.inference_mode():
        full = g(x)
        assert (upscale_tiled(g, x, 2, tile=8, pad=g.receptive_radius) - full).abs().max() <= 1e-12
        assert (upscale_tiled(g, x, 2, tile=8, pad=g.receptive_radius - 1) - full).abs().max() > 1e-8


def to_8_bit(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


@pytest.mark.parametrize("scale,bands", [(2, 3), (3, 1), (4, 4), (8, 3)])
@pytest.mark.parametrize("size", [(37, 53), (61, 29)])
def test_tiles_of_the_inference_form_equal_its_whole_image_result(scale, bands, size):
    g = trained_looking(SRResNet(scale=scale, in_channels=bands, out_channels=bands, num_blocks=3, num_features=16))
    form = inference_form(g)
    x = torch.rand(2, bands, *size)
    with torch.inference_mode():
        whole = form(x)
        for tile in (7, 16, 24):
            tiled = upscale_tiled(form, x, scale, tile=tile, batch_size=3)
            assert (tiled - whole).abs().max().item() <= 1e-4
            assert torch.equal(to_8_bit(tiled), to_8_bit(whole))


@pytest.mark.parametrize("scale,bands", [(2, 3), (3, 1), (4, 4), (8, 3)])
@pytest.mark.parametrize("size", [(1, 6), (13, 17), (40, 9)])
def test_streamed_rows_equal_the_whole_image_pass_and_no_row_is_computed_twice(scale, bands, size, monkeypatch):
    g = trained_looking(SRResNet(scale=scale, in_channels=bands, out_channels=bands, num_blocks=3, num_features=16))
    form = inference_form(g)
    x = torch.rand(2, bands, *size)
    rows_out: dict[int, int] = {}
    conv2d = F.conv2d

    def counted(inp, weight, *args, **kwargs):
        out = conv2d(inp, weight, *args, **kwargs)
        rows_out[id(weight)] = rows_out.get(id(weight), 0) + out.shape[-2]
        return out

    monkeypatch.setattr(fast.F, "conv2d", counted)
    with torch.inference_mode():
        whole = form(x)
        for rows in (1, 2, 5, 64):
            rows_out.clear()
            streamed = form.forward_rows(x, rows)
            assert streamed.dtype == torch.float32 and streamed.shape == whole.shape
            assert (streamed - whole).abs().max().item() <= 1e-5
            # Each convolution gave each row of its resolution once: the height at the LR
            # scale, times the factors of the upsampling stages before it.
            heights = sorted(set(rows_out.values()))
            assert heights[0] == size[0] and all(h % size[0] == 0 and h <= size[0] * scale for h in heights)
            assert sum(rows_out.values()) == sum(size[0] * f for f in _conv_scales(form))


def _conv_scales(form) -> list[int]:
    """The resolution (x the input's) each convolution of the inference form runs at."""
    scales, at = [1] * (2 + 2 * len(form.body)), 1  # head, body, body tail
    for stage in form.upsample:
        scales.append(at)
        at *= stage.factor
    return scales + [at, at]  # the last stage's conv and the merged tail run before its shuffle


def test_a_generator_with_a_bicubic_skip_is_tiled_by_windows_and_stays_exact():
    g = trained_looking(SRResNet(scale=4, num_blocks=2, num_features=16, bicubic_skip=True))
    form = inference_form(g)
    assert not form.streams
    with pytest.raises(ValueError, match="bicubic skip"):
        form.forward_rows(torch.rand(1, 3, 8, 8), 4)
    x = torch.rand(1, 3, 29, 31)
    with torch.inference_mode():
        assert (upscale_tiled(form, x, 4, tile=8) - form(x)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("region", [(5, 31, 2, 40), (0, 37, 0, 53), (36, 37, 52, 53)])
def test_a_streamed_region_is_its_share_of_the_whole_result(region):
    g = trained_looking(SRResNet(scale=2, num_blocks=3, num_features=16))
    form = inference_form(g)
    x = torch.rand(3, 37, 53)
    top, bottom, left, right = region
    with torch.inference_mode():
        whole = form(x[None])[0]
        for tile in (3, 8, 100):
            part = upscale_tiled(form, x, 2, tile=tile, region=region)
            assert (part - whole[:, 2 * top : 2 * bottom, 2 * left : 2 * right]).abs().max().item() <= 1e-4
