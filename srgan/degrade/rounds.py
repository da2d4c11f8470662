"""One round of Real-ESRGAN's degradation (blur, resize, noise, JPEG): its settings, the published ones for the
first and the second round, and the choices drawn from them for a batch."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

from srgan.degrade.base import Range
from srgan.degrade.kernels import KERNEL_TYPES, mixed_kernels
from srgan.degrade.resample import RESIZE_DIRECTIONS, RESIZE_MODES

_ISO = (0, 2, 4)  # indices of the isotropic kernel types in KERNEL_TYPES


# -------------------------------------------------------------------------- the settings


@dataclass(frozen=True)
class RoundSettings:
    """One round's settings, named as Real-ESRGAN's options name them (round two's carry a `2` there).

    blur_prob: a sample is blurred (round one always is); kernel_prob over KERNEL_TYPES[:6], a sinc
    kernel instead with sinc_prob; blur_sigma, betag_range, betap_range: the kernels' shape ranges;
    resize_prob over up/down/keep, resize_range its factor; gaussian_noise_prob (else Poisson),
    noise_range in 8-bit levels, poisson_scale_range, gray_noise_prob; jpeg_range: JPEG quality
    (round two's is applied in the final step). Lists (as YAML gives them) become tuples.
    """

    blur_prob: float
    kernel_prob: tuple[float, ...]
    sinc_prob: float
    blur_sigma: Range
    betag_range: Range
    betap_range: Range
    resize_prob: tuple[float, float, float]
    resize_range: Range
    gaussian_noise_prob: float
    noise_range: Range
    poisson_scale_range: Range
    gray_noise_prob: float
    jpeg_range: Range

    def __post_init__(self) -> None:
        for f in fields(self):  # YAML gives lists; keep the dataclass hashable
            value = getattr(self, f.name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            if f.name.endswith("_prob"):
                _check_probabilities(f.name, value)
            elif not isinstance(value, tuple) or len(value) != 2 or value[0] > value[1]:
                raise ValueError(f"{f.name} must be a (low, high) range, got {value}")
        for name, length in [("kernel_prob", 6), ("resize_prob", 3)]:
            if len(getattr(self, name)) != length:
                raise ValueError(f"{name} needs {length} probabilities, got {getattr(self, name)}")


def _check_probabilities(name: str, value: float | tuple[float, ...]) -> None:
    """A probability, or a tuple of them summing to 1."""
    probs = value if isinstance(value, tuple) else (value,)
    if not all(0 <= p <= 1 for p in probs) or (isinstance(value, tuple) and abs(sum(probs) - 1) > 1e-6):
        raise ValueError(f"{name} must be probabilities (a list summing to 1), got {value}")


# Real-ESRGAN options/train_realesrgan_x4plus.yml (blur_prob: round one always blurs, round two with
# second_blur_prob).
FIRST_ROUND = RoundSettings(
    blur_prob=1.0,
    kernel_prob=(0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
    sinc_prob=0.1,
    blur_sigma=(0.2, 3.0),
    betag_range=(0.5, 4.0),
    betap_range=(1.0, 2.0),
    resize_prob=(0.2, 0.7, 0.1),
    resize_range=(0.15, 1.5),
    gaussian_noise_prob=0.5,
    noise_range=(1.0, 30.0),
    poisson_scale_range=(0.05, 3.0),
    gray_noise_prob=0.4,
    jpeg_range=(30, 95),
)
SECOND_ROUND = replace(  # what round two changes
    FIRST_ROUND,
    blur_prob=0.8,
    blur_sigma=(0.2, 1.5),
    resize_prob=(0.3, 0.4, 0.3),
    resize_range=(0.3, 1.2),
    noise_range=(1.0, 25.0),
    poisson_scale_range=(0.05, 2.5),
)


# ------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class RoundPlan:
    """One round's choices. Tensors are per sample, (N,) on the CPU; the resize is per batch,
    as in feed_data (it changes the tensor size). Round two's JPEG is applied in the final step."""

    blur: torch.Tensor  # bool: this sample is blurred
    kernel_type: torch.Tensor  # long: index into KERNEL_TYPES
    kernel_size: torch.Tensor  # long: odd
    kernel: torch.Tensor  # (N, K, K) float32, K the largest size, zero outside kernel_size
    resize: str  # "up" | "down" | "keep"
    resize_factor: float
    resize_mode: str
    gaussian_noise: torch.Tensor  # bool: Gaussian, else Poisson
    gray_noise: torch.Tensor  # bool: one noise field shared by all channels
    noise_sigma: torch.Tensor  # Gaussian std in [0, 1] units
    poisson_scale: torch.Tensor
    jpeg_quality: torch.Tensor  # whole numbers


def draw_round(g: torch.Generator, n: int, settings: RoundSettings, kernel_sizes: tuple[int, int]) -> RoundPlan:
    """Every choice of one round for a batch of n, drawn from the CPU generator g."""
    s = settings
    u = torch.rand(15, n, generator=g, dtype=torch.float64)  # one uniform per sample and choice
    kind, size, kernel = _draw_kernels(u[:9], s, kernel_sizes)
    resize, factor, mode = _draw_resize(torch.rand(3, generator=g, dtype=torch.float64), s)
    return RoundPlan(
        blur=u[9] < s.blur_prob, kernel_type=kind, kernel_size=size, kernel=kernel,
        resize=resize, resize_factor=factor, resize_mode=mode,
        gaussian_noise=u[10] < s.gaussian_noise_prob, gray_noise=u[11] < s.gray_noise_prob,
        noise_sigma=(within(u[12], s.noise_range) / 255).float(),  # noise_range is in 8-bit levels
        poisson_scale=within(u[13], s.poisson_scale_range).float(),
        jpeg_quality=within(u[14], s.jpeg_range).round().float(),
    )  # fmt: skip


def _draw_kernels(
    u: torch.Tensor, s: RoundSettings, kernel_sizes: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kernel types, odd sizes and (N, K, K) kernels from nine (N,) uniforms, as RealESRGANDataset draws them."""
    size = odd_sizes(u[0], kernel_sizes)
    kind = torch.where(u[2] < s.sinc_prob, KERNEL_TYPES.index("sinc"), _pick(u[1], s.kernel_prob))
    iso = torch.isin(kind, torch.tensor(_ISO))
    sx = within(u[3], s.blur_sigma)
    sy = torch.where(iso, sx, within(u[4], s.blur_sigma))
    theta = torch.where(iso, 0.0, within(u[5], (-math.pi, math.pi)))
    # BasicSR draws beta below or above 1 with even odds; with betap_range (1, 2) half the plateau
    # kernels get beta exactly 1.
    lo, hi = (torch.where(kind // 2 == 1, a, b) for a, b in zip(s.betag_range, s.betap_range))
    beta = torch.where(u[6] < 0.5, lo + (1 - lo) * u[7], 1 + (hi - 1) * u[7])
    # RealESRGANDataset: sinc cut-off in [pi/3, pi] below 13 px, [pi/5, pi] from 13 px.
    omega = torch.where(size < 13, within(u[8], (math.pi / 3, math.pi)), within(u[8], (math.pi / 5, math.pi)))
    return kind, size, mixed_kernels(kind, size, sx, sy, theta, beta, omega, kernel_sizes[1])


def _draw_resize(u: torch.Tensor, s: RoundSettings) -> tuple[str, float, str]:
    """The batch's resize direction, factor and mode from three uniforms."""
    resize = RESIZE_DIRECTIONS[int(_pick(u[0], s.resize_prob))]
    factor = {"up": (1.0, s.resize_range[1]), "down": (s.resize_range[0], 1.0), "keep": (1.0, 1.0)}[resize]
    return resize, float(within(u[1], factor)), RESIZE_MODES[int(u[2] * 3)]


def within(u: torch.Tensor, bounds: Range) -> torch.Tensor:
    """Uniforms u in [0, 1) mapped to [low, high)."""
    return bounds[0] + (bounds[1] - bounds[0]) * u


def odd_sizes(u: torch.Tensor, bounds: tuple[int, int]) -> torch.Tensor:
    """Uniforms u in [0, 1) mapped to the odd sizes low, low + 2, ..., high with even odds."""
    return bounds[0] + 2 * (u * ((bounds[1] - bounds[0]) // 2 + 1)).long()


def _pick(u: torch.Tensor, probs: tuple[float, ...]) -> torch.Tensor:
    """Index i with probability probs[i] for each uniform u (the inverse CDF)."""
    cdf = torch.tensor(probs, dtype=torch.float64).cumsum(0)
    return torch.searchsorted(cdf / cdf[-1], u, right=True).clamp(max=len(probs) - 1)
