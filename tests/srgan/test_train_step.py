import pytest
import torch

from srgan.discriminator import Discriminator
from srgan.generator import SRResNet
from srgan.losses import ContentLoss, GeneratorLoss, LossWeights, PixelLoss, VGGFeatures
from srgan.train_step import EMA, gan_step, make_scaler, pretrain_step
from srgan.weights import vgg19_features

CPU = torch.device("cpu")


def _models():
    return SRResNet(num_blocks=2, num_features=16), Discriminator(base_features=8)


def _batch():
    hr = torch.rand(4, 3, 32, 32)
    return torch.nn.functional.avg_pool2d(hr, 4), hr


def test_pretrain_steps_on_a_fixed_batch_lower_the_pixel_loss():
    g, _ = _models()
    opt = torch.optim.Adam(g.parameters(), 1e-3)
    lr, hr = _batch()
    losses = [pretrain_step(g, opt, lr, hr, PixelLoss("mse"))["loss_pixel"] for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]


@pytest.fixture(scope="module")
def g_loss():
    content = ContentLoss(VGGFeatures(vgg19_features(), "relu2_2"))
    return GeneratorLoss(content, LossWeights(content=1.0, adversarial=1e-3, pixel=1.0), PixelLoss("mse"))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_gan_step_reports_losses_and_d_outputs(precision, g_loss):
    g, d = _models()
    opt_g, opt_d = torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-4)
    scaler_g, scaler_d = make_scaler(CPU, precision), make_scaler(CPU, precision)
    assert scaler_g is not scaler_d and scaler_g.is_enabled() == (precision == "fp16")
    lr, hr = _batch()
    before = [p.clone() for p in d.parameters()]
    out = gan_step(g, d, opt_g, opt_d, lr, hr, g_loss, precision, scaler_g, scaler_d)
    assert set(out) == {"loss_d", "loss_g", "d_real", "d_fake", "loss_pixel", "loss_content", "loss_adversarial"}
    assert all(isinstance(v, float) and v == v for v in out.values())
    assert 0 <= out["d_real"] <= 1 and 0 <= out["d_fake"] <= 1
    assert any(not torch.equal(a, b) for a, b in zip(before, d.parameters())), "D was not updated"
    assert all(p.requires_grad for p in d.parameters()), "D left frozen after the G update"


def test_gan_steps_on_a_fixed_batch_lower_the_pixel_loss(g_loss):
    g, d = _models()
    opt_g, opt_d = torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-4)
    lr, hr = _batch()
    losses = [gan_step(g, d, opt_g, opt_d, lr, hr, g_loss)["loss_pixel"] for _ in range(20)]
    assert losses[-1] < 0.7 * losses[0]


def test_ragan_step_runs(g_loss):
    g, d = _models()
    loss = GeneratorLoss(g_loss.content, LossWeights(), gan_type="ragan")
    out = gan_step(g, d, torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters()), *_batch(), loss)
    assert out["loss_adversarial"] > 0


def test_ema_follows_its_formula():
    g, _ = _models()
    ema = EMA(g, decay=0.9)
    start = [p.clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
        g.body[0].bn1.running_mean.fill_(3.0)
    ema.update(g)
    for e, s, p in zip(ema.model.parameters(), start, g.parameters()):
        assert torch.allclose(e, 0.9 * s + 0.1 * p)
    assert torch.equal(ema.model.body[0].bn1.running_mean, g.body[0].bn1.running_mean)
    assert not any(p.requires_grad for p in ema.model.parameters())
    with pytest.raises(ValueError, match="decay"):
        EMA(g, decay=1.0)
