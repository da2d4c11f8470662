"""SRGAN in plain PyTorch: the names most callers need, from the modules that own them (docs/api.md).
Importing this package imports nothing of Ray, MLflow, boto3 or pipeline/; its modules import each
other by module path, never this package."""

from srgan.degrade import Degradation, build_degradation
from srgan.discriminator import Discriminator
from srgan.errors import UserError
from srgan.generator import GeneratorSpec, SRResNet, build_generator
from srgan.losses import (
    ContentLoss,
    GeneratorLoss,
    LossWeights,
    PixelLoss,
    VGGFeatures,
    discriminator_loss,
    generator_adversarial_loss,
)
from srgan.metrics import psnr, psnr_y, ssim, ssim_y
from srgan.resize import imresize
from srgan.tiling import upscale_tiled
from srgan.weights import load_generator, load_vgg19_features, save_generator

__all__ = [
    "ContentLoss",
    "Degradation",
    "Discriminator",
    "GeneratorLoss",
    "GeneratorSpec",
    "LossWeights",
    "PixelLoss",
    "SRResNet",
    "UserError",
    "VGGFeatures",
    "build_degradation",
    "build_generator",
    "discriminator_loss",
    "generator_adversarial_loss",
    "imresize",
    "load_generator",
    "load_vgg19_features",
    "psnr",
    "psnr_y",
    "save_generator",
    "ssim",
    "ssim_y",
    "upscale_tiled",
]
