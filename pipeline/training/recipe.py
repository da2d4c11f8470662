"""The training recipe a config describes: the two networks, the generator's loss, and the
schedule (which phase a step is in and its learning rate). Shared by the driver, which checks
weights before any worker starts, and by every worker."""

from __future__ import annotations

import torch

from pipeline.config import TrainConfig
from pipeline.io import storage
from srgan.discriminator import Discriminator
from srgan.generator import build_generator
from srgan.losses import ContentLoss, GeneratorLoss, LossWeights, PixelLoss, VGGFeatures
from srgan.train_step import unwrap
from srgan.weights import load_vgg19_features

TRAINABLE = ("srresnet", "msrresnet", "rrdbnet")  # the generators the trainer builds (model.generator.arch)


def build_models(cfg: TrainConfig) -> tuple[torch.nn.Module, Discriminator]:
    """The generator model.generator describes (SRResNet, MSRResNet or RRDBNet) and the discriminator."""
    g = cfg.model.generator
    d = cfg.model.discriminator
    return build_generator(g.spec()), Discriminator(g.out_channels, d.base_features, d.spectral_norm)


def init_reference(cfg: TrainConfig) -> str | None:
    """The generator the run starts from: train.init_from, else train.gan.init_from when the GAN
    phase runs alone."""
    if cfg.train.init_from:
        return cfg.train.init_from
    return cfg.train.gan.init_from if cfg.train.phases == ["gan"] else None


def needs_vgg(cfg: TrainConfig) -> bool:
    return "gan" in cfg.train.phases and cfg.loss.weights.content > 0 and cfg.loss.content_backbone == "vgg19"


def load_vgg(cfg: TrainConfig) -> torch.nn.Sequential:
    """VGG19's features from the configured source (torchvision, a local file, s3://)."""
    return load_vgg19_features(cfg.loss.vgg_weights, cfg.loss.vgg_sha256, fetch=storage.download)


def build_generator_loss(
    cfg: TrainConfig, discriminator: torch.nn.Module, device: torch.device, usm_target: bool = False
) -> GeneratorLoss:
    """G's loss as the config describes it; with `usm_target` its pixel and content terms compare SR
    with usm_sharp(hr), sharpened once here (the batches carry the plain HR, which D sees)."""
    content = None
    if cfg.loss.weights.content > 0:
        if cfg.loss.content_backbone == "vgg19":
            content = ContentLoss(
                VGGFeatures(load_vgg(cfg), cfg.loss.vgg_layer, cfg.loss.rgb_bands).to(device),
                cfg.loss.effective_feature_scale,
            )
        else:
            # Feature matching on the discriminator's conv stages (L1, as feature matching takes
            # it): needs no download. D is frozen while G's loss is computed (gan_step), so only G
            # learns from it; the training loop passes its frozen eval-mode copy of D.
            def features(x: torch.Tensor) -> list[torch.Tensor]:
                return unwrap(discriminator).features(x)

            content = ContentLoss(features, cfg.loss.effective_feature_scale, distance="l1")
    weights = LossWeights(**cfg.loss.weights.model_dump())
    return GeneratorLoss(content, weights, PixelLoss(cfg.loss.pixel), cfg.loss.gan_type, usm_target=usm_target)


def phase_at(cfg: TrainConfig, step: int) -> str:
    """The phase that step number `step` + 1 belongs to."""
    return "pretrain" if step < cfg.pretrain_steps else "gan"


def lr_at(cfg: TrainConfig, step: int, net: str = "g") -> float:
    """Learning rate of `net` ('g' or 'd') for the step after `step` completed steps:
    constant in pretraining; in the GAN phase multiplied by lr_drop_factor from
    lr_drop_step on (paper: 1e-4 -> 1e-5)."""
    if phase_at(cfg, step) == "pretrain":
        return cfg.train.pretrain.lr
    gan = cfg.train.gan
    base = gan.d_lr if net == "d" and gan.d_lr is not None else gan.lr
    into_gan = step - cfg.pretrain_steps
    if gan.lr_drop_step is not None and into_gan >= gan.lr_drop_step:
        return base * gan.lr_drop_factor
    return base
