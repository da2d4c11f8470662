import math

import pytest
import torch

from srgan.degrade import usm_sharp
from srgan.losses import (
    PAPER_FEATURE_SCALE,
    VGG19_LAYERS,
    ContentLoss,
    GeneratorLoss,
    LossWeights,
    PixelLoss,
    VGGFeatures,
    discriminator_loss,
    generator_adversarial_loss,
    to_rgb_views,
)
from srgan.weights import vgg19_features


def test_paper_defaults():
    w = LossWeights()
    assert (w.content, w.adversarial, w.pixel) == (1.0, 1e-3, 0.0)
    assert PAPER_FEATURE_SCALE == pytest.approx(1 / 12.75)
    # phi_{5,4}: the 4th conv of block 5, after its ReLU, before the 5th pool.
    assert VGG19_LAYERS["relu5_4"] == 35 and VGG19_LAYERS["pool5"] == 36


def test_negative_weight_is_refused():
    with pytest.raises(ValueError, match="adversarial"):
        LossWeights(adversarial=-1)


@pytest.fixture(scope="module")
def vgg():
    return vgg19_features()  # random weights are enough to test the wiring


def test_vgg_features_are_frozen_and_truncated(vgg):
    f = VGGFeatures(vgg, "relu2_2")
    assert len(f.net) == VGG19_LAYERS["relu2_2"] + 1
    assert not any(p.requires_grad for p in f.parameters())
    f.train()
    assert not f.net.training


def test_content_loss_is_zero_for_identical_and_positive_otherwise(vgg):
    loss = ContentLoss(VGGFeatures(vgg, "relu2_2"))
    x = torch.rand(2, 3, 32, 32)
    assert loss(x, x).item() == 0.0
    assert loss(x, torch.rand(2, 3, 32, 32)).item() > 0


def test_channel_mapping_for_gray_and_multiband():
    gray = torch.rand(2, 1, 8, 8)
    assert to_rgb_views(gray).shape == (2, 3, 8, 8)
    bands = torch.rand(2, 5, 8, 8)
    per_band = to_rgb_views(bands)
    assert per_band.shape == (10, 3, 8, 8)
    assert torch.equal(per_band[1, 0], bands[0, 1]) and torch.equal(per_band[1, 2], bands[0, 1])
    composite = to_rgb_views(bands, rgb_bands=(3, 2, 1))
    assert torch.equal(composite, bands[:, [3, 2, 1]])
    with pytest.raises(ValueError, match="rgb_bands"):
        to_rgb_views(bands, rgb_bands=(5, 2, 1))


def test_content_loss_on_n_band_images(vgg):
    loss = ContentLoss(VGGFeatures(vgg, "relu1_2"))
    a, b = torch.rand(2, 4, 16, 16), torch.rand(2, 4, 16, 16)
    assert loss(a, b).item() > 0


def test_adversarial_loss_values_at_known_logits():
    zero = torch.zeros(4)
    assert discriminator_loss(zero, zero, "vanilla").item() == pytest.approx(2 * math.log(2))
    # Non-saturating G loss: -log(sigmoid(l)), which is large when D is sure it is fake.
    assert generator_adversarial_loss(torch.full((4,), -5.0)).item() == pytest.approx(
        -math.log(torch.sigmoid(torch.tensor(-5.0)).item()), rel=1e-5
    )
    assert discriminator_loss(torch.ones(4), torch.zeros(4), "lsgan").item() == 0.0
    assert generator_adversarial_loss(torch.ones(4), gan_type="lsgan").item() == 0.0
    real, fake = torch.tensor([3.0, 1.0]), torch.tensor([-1.0, 0.0])
    # RaGAN: D's loss falls as real exceeds fake on average.
    assert discriminator_loss(real, fake, "ragan") < discriminator_loss(fake, real, "ragan")
    with pytest.raises(ValueError, match="real logits"):
        generator_adversarial_loss(fake, None, "ragan")
    with pytest.raises(ValueError, match="gan_type"):
        discriminator_loss(real, fake, "wgan")


def test_generator_loss_is_the_weighted_sum(vgg):
    content = ContentLoss(VGGFeatures(vgg, "relu1_2"))
    weights = LossWeights(content=0.5, adversarial=0.1, pixel=2.0)
    loss = GeneratorLoss(content, weights, PixelLoss("l1"))
    sr, hr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    logits = torch.tensor([0.3, -0.2])
    total, terms = loss(sr, hr, logits, None)
    assert set(terms) == {"pixel", "content", "adversarial"}
    assert total.item() == pytest.approx(
        2.0 * terms["pixel"].item() + 0.5 * terms["content"].item() + 0.1 * terms["adversarial"].item(), rel=1e-6
    )
    with pytest.raises(ValueError, match="content weight"):
        GeneratorLoss(None, LossWeights())


def test_feature_matching_takes_l1_and_usm_targets_sharpen_once(vgg):
    sr, hr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    features = VGGFeatures(vgg, "relu1_2")
    l1 = ContentLoss(features, 1.0, distance="l1")(sr, hr)
    assert l1.item() == pytest.approx(torch.nn.functional.l1_loss(features(sr), features(hr)).item(), rel=1e-6)
    with pytest.raises(ValueError, match="distance must be 'mse' or 'l1'"):
        ContentLoss(features, distance="huber")
    sharp = usm_sharp(hr)
    assert PixelLoss("l1", usm_target=True)(sr, hr).item() == pytest.approx(PixelLoss("l1")(sr, sharp).item())
    weights = LossWeights(content=1.0, adversarial=0.0, pixel=1.0)
    _, terms = GeneratorLoss(ContentLoss(features), weights, PixelLoss("l1"), usm_target=True)(
        sr, hr, hr[:, 0, 0, 0], None
    )
    _, plain = GeneratorLoss(ContentLoss(features), weights, PixelLoss("l1"))(sr, sharp, hr[:, 0, 0, 0], None)
    assert terms["pixel"] == pytest.approx(plain["pixel"]) and terms["content"] == pytest.approx(plain["content"])


def test_the_loss_balance_check_warns_only_far_from_the_papers_balance():
    from srgan.losses import LossWeights, balance_warning, loss_balance

    paper = LossWeights()  # content 1, adversarial 1e-3
    # A content loss comparable to MSE after pretraining, D undecided: about the paper's 10:1.
    assert loss_balance({"content": 0.007, "adversarial": 0.69}, paper) == pytest.approx(10.1, rel=0.01)
    assert balance_warning(loss_balance({"content": 0.007, "adversarial": 0.69}, paper)) is None
    # An unrescaled VGG or a large adversarial weight: the adversarial term dominates.
    dominated = balance_warning(loss_balance({"content": 0.007, "adversarial": 0.69}, LossWeights(adversarial=0.1)))
    assert (
        "adversarial term dominates" in dominated
        and "loss.weights.adversarial" in dominated
        and "loss.feature_scale" in dominated
    )
    assert "negligible" in balance_warning(loss_balance({"content": 5.0, "adversarial": 0.69}, paper))
    assert (
        loss_balance({"content": 1.0, "adversarial": 0.7}, LossWeights(adversarial=0.0)) is None
    )  # nothing to compare
