"""SRGAN losses: pixel, VGG19 content, adversarial, and their weighted sum.

Content loss (paper eq. 5): MSE between VGG19 feature maps of SR and HR, taken at
``relu5_4`` (the paper's phi_{5,4}: after the activation of the 4th conv before the 5th
max-pool) by default, with features rescaled by 1/12.75 so the loss is of the MSE's order.
VGG input is ImageNet-normalised RGB. Images with other channel counts are mapped to RGB:
  * 3 channels: used as they are;
  * ``rgb_bands`` given (e.g. (3, 2, 1) for a true-colour composite of a multispectral
    raster): those bands, in that order, form the RGB image;
  * otherwise (1 channel, or N bands without a mapping): every band is treated as its own
    grayscale image, replicated to 3 channels, and the loss is averaged over bands.

Without VGG19 weights the content loss can be feature matching on the discriminator's conv
stages: L1 between the features of a frozen copy of D (``DiscriminatorFeatures``, BatchNorm in
eval mode, refreshed every so many steps), so that the loss keeps one scale between refreshes.

Adversarial losses take raw logits; ``vanilla`` is the paper's non-saturating BCE,
``ragan`` the relativistic-average form (ESRGAN), ``lsgan`` least squares.

Targets: with ``usm_target`` the pixel and content terms compare SR with Real-ESRGAN's
USM-sharpened HR (its l1_gt_usm, percep_gt_usm); the discriminator's real images stay the
plain HR (gan_gt_usm: False), since ``gan_step`` gives D the HR as it comes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from srgan.degrade.sharpen import usm_sharp
from srgan.discriminator import stage_features


def _vgg19_layer_indices() -> dict[str, int]:
    """Layer names -> indices into torchvision's vgg19().features (relu5_4 -> 35, ...)."""
    names: dict[str, int] = {}
    i = 0
    for block, convs in enumerate((2, 2, 4, 4, 4), start=1):
        for c in range(1, convs + 1):
            names[f"conv{block}_{c}"] = i
            names[f"relu{block}_{c}"] = i + 1
            i += 2
        names[f"pool{block}"] = i
        i += 1
    return names


VGG19_LAYERS = _vgg19_layer_indices()

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAPER_FEATURE_SCALE = 1.0 / 12.75

GanType = Literal["vanilla", "ragan", "lsgan"]


def loss_target(hr: torch.Tensor, usm: bool) -> torch.Tensor:
    """What SR is compared with: hr, or usm_sharp(hr) computed in hr's precision (outside autocast)."""
    if not usm:
        return hr
    with torch.autocast(hr.device.type, enabled=False):
        return usm_sharp(hr)


class PixelLoss(nn.Module):
    """L1 or MSE between SR and HR; with `usm_target`, between SR and usm_sharp(HR) (l1_gt_usm)."""

    def __init__(self, kind: Literal["l1", "mse"] = "mse", usm_target: bool = False) -> None:
        super().__init__()
        if kind not in ("l1", "mse"):
            raise ValueError(f"pixel loss must be 'l1' or 'mse', got {kind!r}")
        self.kind = kind
        self.usm_target = usm_target

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        target = loss_target(hr, self.usm_target)
        return F.l1_loss(sr, target) if self.kind == "l1" else F.mse_loss(sr, target)


def to_rgb_views(x: torch.Tensor, rgb_bands: Sequence[int] | None = None) -> torch.Tensor:
    """(N, C, H, W) -> (M, 3, H, W) RGB images for a 3-channel feature network (see module doc)."""
    n, c, h, w = x.shape
    if rgb_bands is not None:
        if len(rgb_bands) != 3 or max(rgb_bands) >= c or min(rgb_bands) < 0:
            raise ValueError(f"rgb_bands must name 3 of the image's {c} bands, got {tuple(rgb_bands)}")
        return x[:, list(rgb_bands)]
    if c == 3:
        return x
    return x.reshape(n * c, 1, h, w).expand(n * c, 3, h, w)


class VGGFeatures(nn.Module):
    """Frozen VGG19 truncated after `layer`, with ImageNet normalisation and channel mapping."""

    def __init__(self, features: nn.Sequential, layer: str = "relu5_4", rgb_bands: Sequence[int] | None = None) -> None:
        super().__init__()
        if layer not in VGG19_LAYERS:
            raise ValueError(f"unknown VGG19 layer {layer!r}; choose one of {', '.join(VGG19_LAYERS)}")
        self.layer = layer
        self.rgb_bands = tuple(rgb_bands) if rgb_bands is not None else None
        self.net = features[: VGG19_LAYERS[layer] + 1].eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGFeatures:
        super().train(mode)
        self.net.eval()  # frozen backbone: never switch to training behaviour
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = to_rgb_views(x, self.rgb_bands)
        return self.net((rgb - self.mean.to(rgb.dtype)) / self.std.to(rgb.dtype))


class ContentLoss(nn.Module):
    """MSE (or L1) between feature maps of SR and HR, features multiplied by `feature_scale` first.

    `features` is any callable image -> feature map (or list of maps, averaged): VGG19 for
    the paper's loss (MSE), or a `DiscriminatorFeatures` for a download-free feature-matching
    loss (L1, as feature matching takes it).
    """

    def __init__(
        self,
        features: Callable[[torch.Tensor], torch.Tensor | list[torch.Tensor]],
        feature_scale: float = PAPER_FEATURE_SCALE,
        distance: Literal["mse", "l1"] = "mse",
    ) -> None:
        super().__init__()
        if distance not in ("mse", "l1"):
            raise ValueError(f"content loss distance must be 'mse' or 'l1', got {distance!r}")
        self.features = features
        self.feature_scale = feature_scale
        self.distance = distance

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        fs, fh = self.features(sr), self.features(hr)
        if isinstance(fs, torch.Tensor):
            fs, fh = [fs], [fh]
        measure = F.l1_loss if self.distance == "l1" else F.mse_loss
        losses = [measure(a * self.feature_scale, b.detach() * self.feature_scale) for a, b in zip(fs, fh)]
        return torch.stack(losses).mean()


class DiscriminatorFeatures(nn.Module):
    """A frozen copy of a discriminator's conv stages, BatchNorm in eval mode, for a feature-matching
    content loss of one scale: D's own features move with every step and with the batch's BatchNorm
    statistics. `refresh(d)` copies D's current stages (the training loop does every few hundred steps)."""

    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.stages = copy.deepcopy(discriminator.stages).eval().requires_grad_(False)

    def train(self, mode: bool = True) -> DiscriminatorFeatures:
        super().train(mode)
        self.stages.eval()  # frozen: never normalise by the batch's statistics
        return self

    @torch.no_grad()
    def refresh(self, discriminator: nn.Module) -> None:
        self.stages.load_state_dict(discriminator.stages.state_dict())

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after each conv stage of the copy (as Discriminator.features)."""
        return stage_features(self.stages, x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.features(x)


def discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, gan_type: GanType = "vanilla"
) -> torch.Tensor:
    """Loss for D: push real up, fake down."""
    if gan_type == "vanilla":
        return F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    if gan_type == "ragan":
        real_rel = real_logits - fake_logits.mean()
        fake_rel = fake_logits - real_logits.mean()
        return 0.5 * (
            F.binary_cross_entropy_with_logits(real_rel, torch.ones_like(real_rel))
            + F.binary_cross_entropy_with_logits(fake_rel, torch.zeros_like(fake_rel))
        )
    if gan_type == "lsgan":
        return 0.5 * (
            F.mse_loss(real_logits, torch.ones_like(real_logits))
            + F.mse_loss(fake_logits, torch.zeros_like(fake_logits))
        )
    raise ValueError(f"gan_type must be 'vanilla', 'ragan' or 'lsgan', got {gan_type!r}")


def generator_adversarial_loss(
    fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None, gan_type: GanType = "vanilla"
) -> torch.Tensor:
    """Adversarial loss for G. Non-saturating: -log D(G(z)), not log(1 - D(G(z)))."""
    if gan_type == "vanilla":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    if gan_type == "ragan":
        if real_logits is None:
            raise ValueError("the relativistic GAN loss for G needs the real logits")
        real_logits = real_logits.detach()
        real_rel = real_logits - fake_logits.mean()
        fake_rel = fake_logits - real_logits.mean()
        return 0.5 * (
            F.binary_cross_entropy_with_logits(real_rel, torch.zeros_like(real_rel))
            + F.binary_cross_entropy_with_logits(fake_rel, torch.ones_like(fake_rel))
        )
    if gan_type == "lsgan":
        return 0.5 * F.mse_loss(fake_logits, torch.ones_like(fake_logits))
    raise ValueError(f"gan_type must be 'vanilla', 'ragan' or 'lsgan', got {gan_type!r}")


@dataclass(frozen=True)
class LossWeights:
    """Weights of the generator's loss terms. Defaults are the paper's SRGAN-VGG54."""

    content: float = 1.0
    adversarial: float = 1e-3
    pixel: float = 0.0

    def __post_init__(self) -> None:
        for name in ("content", "adversarial", "pixel"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {getattr(self, name)}")


# Content over weighted adversarial loss at the start of the GAN phase. In the paper the VGG
# loss was rescaled (1/12.75) to be comparable to the pixel MSE (about 1e-2 after
# pretraining) while the adversarial term is 1e-3 x -log D(G(z)) (about 0.7 when D is
# undecided): about 10 to 1. Outside this band the two are orders of magnitude off that.
PAPER_BALANCE = 10.0
BALANCE_BAND = (1.0, 1000.0)


def loss_balance(terms: dict[str, float], weights: LossWeights) -> float | None:
    """Weighted content (VGG or feature-matching, plus pixel) loss over weighted adversarial
    loss, from one GAN step's unweighted terms {'content', 'pixel', 'adversarial'};
    None when there is no adversarial term to compare with."""
    adversarial = weights.adversarial * abs(terms.get("adversarial", 0.0))
    content = weights.content * terms.get("content", 0.0) + weights.pixel * terms.get("pixel", 0.0)
    return content / adversarial if adversarial > 0 else None


def balance_warning(ratio: float | None) -> str | None:
    """What to tell the user when `ratio` (see loss_balance) is outside BALANCE_BAND."""
    if ratio is None or BALANCE_BAND[0] <= ratio <= BALANCE_BAND[1]:
        return None
    side = "the adversarial term dominates" if ratio < BALANCE_BAND[0] else "the adversarial term is negligible"
    return (
        f"content/adversarial loss ratio {ratio:.3g} at the start of the GAN phase is far from the paper's balance "
        f"(about {PAPER_BALANCE:g}; expected {BALANCE_BAND[0]:g}-{BALANCE_BAND[1]:g}): {side}; "
        "adjust loss.feature_scale or loss.weights.adversarial before a long run"
    )


class GeneratorLoss(nn.Module):
    """Weighted perceptual loss for G (paper eq. 3): returns (total, {term: value}). With
    `usm_target` the pixel and content terms compare with usm_sharp(hr); the adversarial term's
    logits come from D on the plain HR (see module doc)."""

    def __init__(
        self,
        content: ContentLoss | None,
        weights: LossWeights = LossWeights(),
        pixel: PixelLoss | None = None,
        gan_type: GanType = "vanilla",
        usm_target: bool = False,
    ) -> None:
        super().__init__()
        if weights.content > 0 and content is None:
            raise ValueError("content weight > 0 needs a content loss (a feature network)")
        if pixel is not None and pixel.usm_target:
            raise ValueError(
                "give usm_target to GeneratorLoss, which sharpens once for every term, not to its PixelLoss"
            )
        self.content = content
        self.pixel = pixel or PixelLoss("mse")
        self.weights = weights
        self.gan_type = gan_type
        self.usm_target = usm_target

    def forward(
        self, sr: torch.Tensor, hr: torch.Tensor, fake_logits: torch.Tensor, real_logits: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms: dict[str, torch.Tensor] = {}
        total = sr.new_zeros(())
        target = loss_target(hr, self.usm_target)
        if self.weights.pixel > 0:
            terms["pixel"] = self.pixel(sr, target)
            total = total + self.weights.pixel * terms["pixel"]
        if self.weights.content > 0:
            terms["content"] = self.content(sr, target)
            total = total + self.weights.content * terms["content"]
        terms["adversarial"] = generator_adversarial_loss(fake_logits, real_logits, self.gan_type)
        total = total + self.weights.adversarial * terms["adversarial"]
        return total, terms
