import pytest
import torch

from srgan.discriminator import Discriminator
from srgan.generator import SRResNet, build_generator


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_generator_output_shape(scale, channels):
    g = SRResNet(scale=scale, in_channels=channels, out_channels=channels, num_blocks=2, num_features=8)
    out = g(torch.rand(2, channels, 7, 9))
    assert out.shape == (2, channels, 7 * scale, 9 * scale)


def test_generator_follows_the_paper_layout():
    g = SRResNet()  # paper defaults: x4, 16 blocks, 64 features, BN
    assert len(g.body) == 16 and len(g.upsample) == 2
    assert g.head[0].kernel_size == (9, 9) and g.tail.kernel_size == (9, 9)
    block = g.body[0]
    assert isinstance(block.bn1, torch.nn.BatchNorm2d) and isinstance(block.act, torch.nn.PReLU)
    assert all(isinstance(b.shuffle, torch.nn.PixelShuffle) for b in g.upsample)


def test_generator_without_batch_norm_and_rebuild_from_spec():
    g = SRResNet(num_blocks=3, num_features=8, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    clone = build_generator(g.spec.to_dict())
    clone.load_state_dict(g.state_dict())
    x = torch.rand(1, 3, 6, 6)
    assert torch.equal(g(x), clone(x))


def test_generator_rejects_unsupported_scale():
    with pytest.raises(ValueError, match="scale 5 is not supported; use one of 2, 3, 4, 8"):
        SRResNet(scale=5)


@pytest.mark.parametrize("size", [(16, 16), (24, 40), (96, 96), (33, 71), (200, 128)])
def test_discriminator_gives_one_logit_per_image_for_any_size(size):
    d = Discriminator(base_features=8)
    assert d(torch.rand(3, 3, *size)).shape == (3,)


def test_discriminator_paper_layout_and_spectral_norm():
    d = Discriminator()
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert d.head[1].out_features == 1024 and d.head[3].out_features == 1
    sn = Discriminator(in_channels=4, base_features=8, spectral_norm=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in sn.modules())
    assert any("parametrizations" in name for name, _ in sn.named_parameters())
    assert sn(torch.rand(2, 4, 32, 32)).shape == (2,)
    assert len(sn.features(torch.rand(2, 4, 32, 32))) == 8


def test_bicubic_skip_model_starts_as_bicubic_and_learns_a_residual():
    g = SRResNet(scale=4, num_blocks=1, num_features=8, bicubic_skip=True).eval()
    x = torch.rand(2, 3, 10, 12)
    from srgan.resize import imresize

    assert torch.allclose(g(x), imresize(x, 4.0), atol=1e-6)  # exactly the evaluation baseline
    assert g.spec.bicubic_skip and build_generator(g.spec.to_dict()).spec.bicubic_skip
    with pytest.raises(ValueError, match="bicubic_skip needs"):
        SRResNet(in_channels=1, out_channels=3, bicubic_skip=True)
