"""LPIPS v0.1 (Zhang et al., CVPR 2018, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric"): a learned distance between two images, lower = more alike.

    d(a, b) = sum over layers l of  mean over (h, w) of  w_l . (f_l(a) - f_l(b))**2

where f_l are a backbone's activations at relu1..relu5, unit-normalised over channels, and w_l
are 1x1 linear weights (no bias) that LPIPS v0.1 fitted to human judgements. SR papers report
the AlexNet backbone ('alex'); VGG16 ('vgg') is the other variant.

Weights: the small linear layers ship in srgan/data (source, licence and sha256 in its README,
checked at load). The backbone is torchvision's ImageNet model from a local file, an s3:// URI
(through the caller's `fetch`) or torchvision's cache; it is never downloaded here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from srgan.losses import to_rgb_views
from srgan.weights import Fetch, WeightsError, _is_uri, load_features_state, load_state_dict_source

DATA_DIR = Path(__file__).with_name("data")


def _alexnet_features() -> nn.Sequential:
    from torchvision.models import alexnet

    return alexnet(weights=None).features


def _vgg16_features() -> nn.Sequential:
    from torchvision.models import vgg16

    return vgg16(weights=None).features


@dataclass(frozen=True)
class LpipsNet:
    """One LPIPS backbone: torchvision's `features` cut after relu1..relu5, and its weights."""

    arch: str  # torchvision's model name
    build_features: Callable[[], nn.Sequential]
    cuts: tuple[int, ...]  # features[cuts[i-1]:cuts[i]] ends with the ReLU of block i+1
    channels: tuple[int, ...]  # channels at each cut
    min_size: int  # smallest H and W whose relu5 map is not empty
    torchvision_file: str  # ImageNet weights' file name in $TORCH_HOME/hub/checkpoints
    lin_file: str  # LPIPS v0.1 linear weights, shipped in srgan/data
    lin_sha256: str


NETS = {
    "alex": LpipsNet(
        "alexnet",
        _alexnet_features,
        (2, 5, 8, 10, 12),
        (64, 192, 384, 256, 256),
        31,
        "alexnet-owt-7be5be79.pth",
        "lpips_v0.1_alex.pth",
        "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    ),
    "vgg": LpipsNet(
        "vgg16",
        _vgg16_features,
        (4, 9, 16, 23, 30),
        (64, 128, 256, 512, 512),
        16,
        "vgg16-397923af.pth",
        "lpips_v0.1_vgg.pth",
        "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    ),
}


class LPIPS(nn.Module):
    """Frozen LPIPS distance: forward(a, b) -> (N,) for image batches in [0, 1]."""

    # v0.1 standardises its [-1, 1] input per RGB channel with these values.
    SHIFT = (-0.030, -0.088, -0.188)
    SCALE = (0.458, 0.448, 0.450)

    def __init__(
        self, features: nn.Sequential, cuts: Sequence[int], lin_weights: Sequence[torch.Tensor], min_size: int = 1
    ) -> None:
        super().__init__()
        starts = (0, *cuts[:-1])
        self.stages = nn.ModuleList(features[a:b] for a, b in zip(starts, cuts))
        self.lins = nn.ModuleList(nn.Conv2d(w.shape[1], 1, 1, bias=False) for w in lin_weights)
        with torch.no_grad():
            for lin, w in zip(self.lins, lin_weights):
                lin.weight.copy_(w)
        self.register_buffer("shift", torch.tensor(self.SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(self.SCALE).view(1, 3, 1, 1), persistent=False)
        self.min_size = min_size
        self.requires_grad_(False).eval()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: (N, C, H, W) in [0, 1] -> (N,) distances. C = 3 is RGB; any other C scores
        each band as a grayscale image (replicated to RGB) and averages over bands."""
        if a.shape != b.shape:
            raise ValueError(f"LPIPS compares images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        if min(a.shape[-2:]) < self.min_size:
            raise ValueError(
                f"LPIPS needs images of at least {self.min_size}x{self.min_size} pixels, got {a.shape[-2]}x{a.shape[-1]}"
            )
        n = a.shape[0]
        x = (to_rgb_views(torch.cat([a, b])) * 2 - 1 - self.shift) / self.scale  # both in one pass
        total = 0
        for stage, lin in zip(self.stages, self.lins):
            x = stage(x)
            unit = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fa, fb = unit.chunk(2)
            total = total + lin((fa - fb) ** 2).mean((2, 3))
        return total.reshape(n, -1).mean(1)


def _net(net: str) -> LpipsNet:
    if net not in NETS:
        raise WeightsError(f"unknown LPIPS network {net!r}; choose one of {', '.join(NETS)}")
    return NETS[net]


def torchvision_cache_file(net: str = "alex") -> Path:
    """Where torchvision keeps the backbone's ImageNet weights ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _net(net).torchvision_file


def backbone_help(net: str = "alex") -> str:
    spec = _net(net)
    return (
        f"LPIPS needs torchvision's ImageNet {spec.arch} weights and never downloads them: put "
        f"{spec.torchvision_file} (from https://download.pytorch.org/models/{spec.torchvision_file}) in torchvision's "
        f"cache ({torchvision_cache_file(net).parent}), or set the LPIPS backbone (train.lpips_weights in the training config, "
        f"--lpips-weights on the CLI) to a local file path or an s3:// URI of a {spec.arch} state dict"
    )


def build_lpips(backbone_state: dict, lin_state: dict, net: str = "alex") -> LPIPS:
    """LPIPS from a torchvision backbone state dict (full, keys `features.N.*`, or features
    only, keys `N.*`) and LPIPS v0.1 linear weights (keys `lin{i}.model.1.weight`)."""
    spec = _net(net)
    features = load_features_state(
        spec.build_features(), backbone_state, f"torchvision {spec.arch}", backbone_help(net)
    )
    lins = [lin_state.get(f"lin{i}.model.1.weight") for i in range(len(spec.channels))]
    if any(w is None or tuple(w.shape) != (1, c, 1, 1) for w, c in zip(lins, spec.channels)):
        raise WeightsError(
            f"not LPIPS v0.1 {net!r} linear weights (expected lin0..lin{len(lins) - 1}.model.1.weight of shapes (1, C, 1, 1), C = {spec.channels})"
        )
    return LPIPS(features, spec.cuts, lins, spec.min_size)


def load_lpips(
    backbone: str | None = None,
    sha256: str | None = None,
    fetch: Fetch | None = None,
    net: str = "alex",
    lin: str | None = None,
    lin_sha256: str | None = None,
) -> LPIPS:
    """LPIPS in eval mode with frozen weights. `backbone`: a local file or a URI (fetched with
    `fetch`, e.g. the pipeline's S3 download); None or 'torchvision' reads torchvision's cache.
    `lin`: other linear weights than the shipped v0.1 ones. Raises WeightsError."""
    spec = _net(net)
    if backbone in (None, "torchvision"):
        backbone = str(torchvision_cache_file(net))
        if not Path(backbone).is_file():
            raise WeightsError(f"no {spec.arch} weights at {backbone}; {backbone_help(net)}")
    backbone_state = load_state_dict_source(backbone, sha256, fetch, hint=backbone_help(net))
    if lin is None:
        lin, lin_sha256 = str(DATA_DIR / spec.lin_file), spec.lin_sha256
    lin_state = load_state_dict_source(lin, lin_sha256, fetch, hint="LPIPS v0.1 linear weights (lin0..lin4) are needed")
    return build_lpips(backbone_state, lin_state, net)


def lpips_available(backbone: str | None = None, net: str = "alex") -> tuple[bool, str]:
    """(True, "") when `load_lpips(backbone, net=net)` will find its weights without a download
    (a URI counts: it is fetched at load, and a failure is reported then); else (False, why)."""
    spec = _net(net)
    if not (DATA_DIR / spec.lin_file).is_file():
        return (
            False,
            f"LPIPS linear weights {DATA_DIR / spec.lin_file} are missing from this srgan install; reinstall the package",
        )
    if backbone in (None, "torchvision"):
        path = torchvision_cache_file(net)
        return (True, "") if path.is_file() else (False, f"no {spec.arch} weights at {path}; {backbone_help(net)}")
    if _is_uri(backbone) or Path(backbone).expanduser().is_file():
        return True, ""
    return False, f"LPIPS backbone file {backbone} does not exist; {backbone_help(net)}"
