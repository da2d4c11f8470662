"""Training fidelity as Real-ESRGAN trains (issue 23, point 8): the LR is made from the USM-sharpened HR, D's
real images stay plain while the losses follow `usm_target`, the degradation runs on a crop larger than its
kernels, the EMA generator's BatchNorm statistics are its own, and the discriminator-feature content loss has
one scale and a pixel term beside it.

    python tests/srgan/test_fidelity.py [--crops 600]    prints the figures docs/training.md quotes
"""

from __future__ import annotations

import argparse
import copy
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from srgan.degrade import Bicubic, Realistic, crop_size, pad_to, training_pair, usm_sharp
from srgan.discriminator import Discriminator
from srgan.generator import SRResNet
from srgan.losses import (
    ContentLoss,
    DiscriminatorFeatures,
    GeneratorLoss,
    LossWeights,
    PixelLoss,
    discriminator_loss,
)
from srgan.resize import imresize
from srgan.train_step import gan_step, pretrain_step

TRAIN_SET = Path(__file__).resolve().parents[3] / "shared" / "data" / "train"


@pytest.fixture
def one_thread():
    """Small models train several times faster on one thread than on two shared ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def _photos() -> list[torch.Tensor]:
    """scikit-image's bundled photographs, (3, H, W) float in [0, 1]."""
    skimage_data = pytest.importorskip("skimage.data")
    names = ("astronaut", "coffee", "rocket", "chelsea")
    return [torch.from_numpy(getattr(skimage_data, n)().copy()).permute(2, 0, 1).float() / 255 for n in names]


def random_crops(images: list[torch.Tensor], n: int, size: int, seed: int = 0) -> torch.Tensor:
    """n seeded random size x size crops of `images` (each padded to the size where smaller)."""
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(n):
        image = pad_to(images[int(rng.integers(len(images)))], size)
        top, left = (int(rng.integers(0, d - size + 1)) for d in image.shape[-2:])
        crops.append(image[:, top : top + size, left : left + size])
    return torch.stack(crops)


def gradient_energy(x: torch.Tensor) -> torch.Tensor:
    """(N,) mean squared horizontal plus vertical differences of (N, C, H, W) images."""
    return x.diff(dim=-1).square().mean(dim=(1, 2, 3)) + x.diff(dim=-2).square().mean(dim=(1, 2, 3))


def lr_energy(hr: torch.Tensor, degrade, seed: int = 0) -> float:
    """Gradient energy of `degrade`'s LR over that of the clean (MATLAB bicubic) LR, summed over the crops,
    degraded 16 at a time, each batch with a seed of its own."""
    lr = torch.cat([degrade(hr[i : i + 16], seed + i) for i in range(0, len(hr), 16)])
    return float(gradient_energy(lr).sum() / gradient_energy(imresize(hr, 1 / degrade.scale).clamp(0, 1)).sum())


# ---------------------------------------------------------------- 1. the LR comes from the sharpened HR


def test_realistic_degrades_the_usm_sharpened_hr():
    hr = random_crops(_photos(), 32, 128)
    assert torch.equal(Realistic(4)(hr, 5), Realistic(4, usm_input=False)(usm_sharp(hr), 5))
    after, before = lr_energy(hr, Realistic(4)), lr_energy(hr, Realistic(4, usm_input=False))
    assert after > 1.1 * before  # about 1.25x on the training photographs (docs/training.md)


# ------------------------------------------- 2. D's real images stay plain; the losses follow usm_target


class Recording(torch.nn.Module):
    """A discriminator that keeps every input it is shown."""

    def __init__(self, d: torch.nn.Module) -> None:
        super().__init__()
        self.d, self.seen = d, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.d(x)


def test_the_discriminator_sees_the_plain_hr_and_the_losses_the_sharpened_one():
    torch.manual_seed(0)
    hr = random_crops(_photos(), 4, 32)
    lr = imresize(hr, 0.5).clamp(0, 1)
    g, d = SRResNet(2, num_blocks=1, num_features=8), Recording(Discriminator(base_features=4))
    opt_g, opt_d = torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters())
    loss = GeneratorLoss(None, LossWeights(content=0, pixel=1), PixelLoss("l1"), "ragan", usm_target=True)
    with torch.no_grad():
        sr = g(lr)
    stats = gan_step(g, d, opt_g, opt_d, lr, hr, loss)
    reals = [x for x in d.seen if not torch.allclose(x, sr, atol=1e-6)]
    assert len(reals) == 2 and all(torch.equal(x, hr) for x in reals)  # D's step and G's relativistic term
    assert stats["loss_pixel"] == pytest.approx(F.l1_loss(sr, usm_sharp(hr)).item(), rel=1e-5)
    before = F.mse_loss(g(lr), usm_sharp(hr)).item()
    pretrain = pretrain_step(g, opt_g, lr, hr, PixelLoss("mse", usm_target=True))
    assert pretrain["loss_pixel"] == pytest.approx(before, rel=1e-5)  # pretraining's target is sharpened too
    with pytest.raises(ValueError, match="give usm_target to GeneratorLoss"):
        GeneratorLoss(None, LossWeights(content=0), PixelLoss("mse", usm_target=True), usm_target=True)


# ------------------------------------------------- 3. degrade a crop larger than the kernels, then cut


class Spy:
    """A degradation that records the HR size it runs on."""

    def __init__(self, degrade: Realistic) -> None:
        self.degrade, self.scale, self.degrade_size, self.sizes = degrade, degrade.scale, degrade.degrade_size, []

    def __call__(self, hr: torch.Tensor, seed: int) -> torch.Tensor:
        self.sizes.append(tuple(hr.shape[-2:]))
        return self.degrade(hr, seed)


def test_training_pairs_are_cut_from_a_degraded_400_px_crop():
    assert crop_size(Realistic(4), 96) == 400 and crop_size(Realistic(3), 96) == 399
    assert crop_size(Realistic(4, degrade_size=None), 96) == crop_size(Bicubic(4), 96) == 96
    assert crop_size(Realistic(4, degrade_size=64), 96) == 96  # never below the patch
    with pytest.raises(ValueError, match="degrade_size must be a size in pixels"):
        Realistic(4, degrade_size=0)
    hr = random_crops(_photos(), 3, 400)  # chelsea (300 x 451) is padded, as RealESRGANDataset does
    spy = Spy(Realistic(4))
    lr, pair_hr = training_pair(hr, 7, spy, 96)
    assert spy.sizes == [(400, 400)]  # a 0.15 first resize leaves 60 px for 21 px kernels, not 14
    assert lr.shape == (3, 3, 24, 24) and pair_hr.shape == (3, 3, 96, 96)
    whole = Realistic(4)(hr, 7)
    for i in range(3):  # each LR patch is the degraded crop at its HR patch's place, aligned to the scale
        anchors = (hr[i, :, ::4, ::4] == pair_hr[i, :, :1, :1]).all(dim=0).nonzero().tolist()
        top, left = next(
            (t, x) for t, x in anchors if torch.equal(hr[i, :, 4 * t : 4 * t + 96, 4 * x : 4 * x + 96], pair_hr[i])
        )
        assert torch.equal(lr[i], whole[i, :, top : top + 24, left : left + 24])
    assert torch.equal(training_pair(hr, 7, Realistic(4), 96)[0], lr)  # the seed decides the place too
    small = random_crops(_photos(), 2, 96)
    assert torch.equal(training_pair(small, 3, Realistic(4), 96)[0], Realistic(4)(small, 3))  # patch-size crops


def test_pad_to_reflects_as_opencv_reflect_101():
    image = torch.arange(12.0).view(1, 3, 4)
    padded = pad_to(image, 9)
    assert padded.shape == (1, 9, 9) and torch.equal(padded[:, :3, :4], image)
    assert padded[0, :3, 4].tolist() == image[0, :, 2].tolist()  # reflected about the last column
    assert torch.equal(pad_to(image, 2), image)


# ----------------------------------------------- 4 and 5: the training state (one worker, no Ray cluster)


@pytest.fixture
def one_worker(monkeypatch):
    """TrainState as a single Ray Train worker builds it, without starting Ray Train."""
    import ray.train
    import ray.train.torch

    class Context:
        def get_world_size(self) -> int:
            return 1

        def get_world_rank(self) -> int:
            return 0

    monkeypatch.setattr(ray.train, "get_context", lambda: Context())
    monkeypatch.setattr(ray.train.torch, "prepare_model", lambda model: model)


def _config(**train):
    from pipeline.config import parse_config

    return parse_config(
        {
            "data": {"train": "unused", "patch_size": 16},
            "model": {
                "generator": {"scale": 2, "num_blocks": 1, "num_features": 8},
                "discriminator": {"base_features": 4},
            },
            "loss": {"content_backbone": "discriminator"},
            "train": {"batch_size": 4, **train},
        }
    )


def test_the_ema_generators_batch_norm_statistics_are_its_own(one_worker, one_thread):
    from pipeline.training.state import TrainState

    cfg = _config(pretrain={"steps": 6, "lr": 1e-2}, phases=["pretrain"], ema_bn_batches=1)
    state = TrainState(cfg, torch.device("cpu"), "fp32")
    images = torch.Generator().manual_seed(0)
    for _ in range(6):
        hr = torch.rand(4, 3, 16, 16, generator=images)
        state.train_step(imresize(hr, 0.5), hr, None, PixelLoss("mse"))
    lr = state.recent_lr[-1]
    ema = state.ema.model

    def eval_error() -> float:  # eval mode (running statistics) against train mode (the batch's) on lr
        with torch.no_grad():
            out = ema.eval()(lr)
            trained = copy.deepcopy(ema).train()(lr)
        return (out - trained).abs().max().item()

    copied = eval_error()  # the live generator's statistics, for other weights
    state.refresh_ema_statistics()
    assert eval_error() < min(0.1 * copied, 1e-2) and not ema.training
    assert all(b.num_batches_tracked == 1 for b in ema.modules() if isinstance(b, torch.nn.BatchNorm2d))


def test_the_discriminator_feature_loss_reads_a_frozen_copy_refreshed_every_n_steps(one_worker, one_thread):
    from pipeline.training.loop import generator_loss
    from pipeline.training.state import TrainState
    from srgan.train_step import unwrap

    cfg = _config(phases=["gan"], gan={"steps": 5, "lr": 1e-2, "lr_drop_step": None, "d_features_every": 2})
    state = TrainState(cfg, torch.device("cpu"), "fp32")
    g_loss = generator_loss(cfg, state, torch.device("cpu"), usm_target=False)
    assert g_loss.content.distance == "l1" and cfg.loss.weights.pixel == 1.0
    images = torch.Generator().manual_seed(0)
    probe = torch.rand(2, 3, 16, 16, generator=images)
    fixed = [f.clone() for f in state.d_features(probe)]
    d_at = []
    for _ in range(3):
        d_at.append(copy.deepcopy(unwrap(state.d).stages.state_dict()))
        hr = torch.rand(4, 3, 16, 16, generator=images)
        state.train_step(imresize(hr, 0.5), hr, g_loss, PixelLoss("mse"))
        if state.step < 2:  # D trained a step; the copy G's loss reads is the one of the phase's start
            assert all(torch.equal(a, b) for a, b in zip(state.d_features(probe), fixed))
    # Refreshed before GAN step 3 (2 steps in): D as it was then, not as it is now.
    refreshed = state.d_features.stages.state_dict()
    assert all(torch.equal(refreshed[k], d_at[2][k]) for k in refreshed)
    assert not all(torch.equal(refreshed[k], d_at[0][k]) for k in refreshed)
    # One scale: an image's features do not depend on the batch it is in (BatchNorm in eval mode).
    alone = state.d_features(probe[:1])
    assert all(torch.allclose(a, b[:1], atol=1e-6) for a, b in zip(alone, state.d_features(probe)))
    assert "d_features" in state.state_dict()


def test_the_discriminator_feature_loss_needs_a_pixel_term():
    from pipeline.config import parse_config
    from pipeline.errors import ConfigError

    tree = {"data": {"train": "unused"}, "loss": {"content_backbone": "discriminator"}}
    assert parse_config(tree).loss.weights.pixel == 1.0  # unset: 1.0 beside feature matching
    with pytest.raises(ConfigError, match=r"loss.weights.pixel must be > 0 with loss.content_backbone discriminator"):
        parse_config({**tree, "loss": {**tree["loss"], "weights": {"pixel": 0}}})
    assert parse_config({"data": {"train": "unused"}}).loss.weights.pixel == 0.0  # vgg19: the paper's 0


def _smooth(n: int, g: torch.Generator, size: int = 24) -> torch.Tensor:
    return F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(size, size), mode="bicubic").clamp(0, 1)


def _trained_discriminator(steps: int = 20) -> Discriminator:
    """A small D that has learnt to tell HR from bicubic-upscaled LR: its features, as a GAN's D's, care
    for detail more than for colour."""
    torch.manual_seed(3)
    d, g = Discriminator(base_features=4), torch.Generator().manual_seed(5)
    opt = torch.optim.Adam(d.parameters(), 1e-3)
    for _ in range(steps):
        hr = _smooth(8, g)
        loss = discriminator_loss(d(hr), d(imresize(imresize(hr, 0.5), 2.0).clamp(0, 1)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return d


def colour_error(features, pixel_weight: float, steps: int = 150) -> float:
    """Mean absolute error of the per-channel image means of a tiny x2 generator trained `steps` steps on the
    content loss over `features` (L1, as feature matching) plus `pixel_weight` x L1, on unseen images."""
    torch.manual_seed(1)
    g = SRResNet(2, num_blocks=1, num_features=16, batch_norm=False)
    content, pixel = ContentLoss(features, 1.0, distance="l1"), PixelLoss("l1")
    opt, images = torch.optim.Adam(g.parameters(), 1e-3), torch.Generator().manual_seed(2)
    for _ in range(steps):
        hr = _smooth(8, images)
        sr = g(imresize(hr, 0.5).clamp(0, 1))
        loss = content(sr, hr) + pixel_weight * pixel(sr, hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    hr = _smooth(64, torch.Generator().manual_seed(99))
    with torch.no_grad():
        sr = g(imresize(hr, 0.5).clamp(0, 1))
    return (sr.mean(dim=(2, 3)) - hr.mean(dim=(2, 3))).abs().mean().item()


def test_feature_matching_with_a_pixel_term_keeps_colour_and_brightness(one_thread):
    features = DiscriminatorFeatures(_trained_discriminator())
    alone, with_pixel = colour_error(features, 0.0), colour_error(features, 1.0)
    assert with_pixel < 0.05 and with_pixel < alone / 3  # 0.03 against 0.16 (docs/training.md)


# ------------------------------------------------------------------------------------- the figures


def main() -> None:
    parser = argparse.ArgumentParser(description="The figures of docs/training.md's 'Training fidelity'.")
    parser.add_argument("--crops", type=int, default=600, help="random 256 px crops of ../shared/data/train")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from PIL import Image

    files = sorted(TRAIN_SET.glob("*"))
    photos = [torch.from_numpy(np.asarray(Image.open(f).convert("RGB")).copy()).permute(2, 0, 1) for f in files]
    hr = random_crops([p.float() / 255 for p in photos], args.crops, 256)
    print(f"LR gradient energy / clean bicubic LR's over {args.crops} 256 px crops of {TRAIN_SET.name}/ (x4):")
    for name, degrade in [("plain HR", Realistic(4, usm_input=False)), ("usm_sharp(HR)", Realistic(4))]:
        print(f"  realistic degrading the {name}: {lr_energy(hr, degrade):.3f}")
    pairs = [training_pair(hr[i : i + 16], i, Realistic(4), 96) for i in range(0, len(hr), 16)]
    lr_cut, hr_cut = torch.cat([lr for lr, _ in pairs]), torch.cat([hr for _, hr in pairs])
    cut = float(gradient_energy(lr_cut).sum() / gradient_energy(imresize(hr_cut, 0.25).clamp(0, 1)).sum())
    print(f"  96 px patches cut from the degraded 256 px crops (training_pair): {cut:.3f}")
    print(f"  the same patches degraded alone: {lr_energy(hr_cut, Realistic(4)):.3f}")
    d = _trained_discriminator()
    frozen = DiscriminatorFeatures(d)
    print("colour error of a tiny x2 generator (mean |channel mean - HR's|), 150 steps:")
    print(f"  D's own features (train-mode BatchNorm), no pixel term: {colour_error(d.train().features, 0.0):.3f}")
    print(f"  frozen eval-mode copy, no pixel term: {colour_error(frozen, 0.0):.3f}")
    print(f"  frozen eval-mode copy + pixel (weight 1): {colour_error(frozen, 1.0):.3f}")


if __name__ == "__main__":
    main()
