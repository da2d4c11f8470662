"""Real-ESRGAN's second-order degradation (Wang et al. 2021) as its reference code runs it.

`Realistic(scale)(hr, seed)` is `apply(hr, plan(seed, n))`: `plan` draws every random choice
from the seed, `apply` executes them on the batch, so the choices can be read and tested.
Self-contained (no import from srgan.degrade), so that srgan.degrade can list it beside the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

Range = tuple[float, float]

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso", "sinc")
RESIZE_DIRECTIONS = ("up", "down", "keep")
RESIZE_MODES = ("area", "bilinear", "bicubic")
_ISO = (0, 2, 4)  # indices of the isotropic kernel types


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


@dataclass(frozen=True)
class RealisticPlan:
    first: RoundPlan
    second: RoundPlan
    resize_then_jpeg: bool  # final step: [resize to LR + sinc] then JPEG, else JPEG first (per batch)
    final_mode: str
    final_sinc: torch.Tensor  # (N,) bool
    final_kernel_size: torch.Tensor
    final_kernel: torch.Tensor  # (N, K, K); a sample without sinc is not filtered
    noise_seed: int  # seeds the noise fields, drawn on the image's device

    @property
    def n(self) -> int:
        return int(self.first.blur.shape[0])


# -------------------------------------------------------------------------------- kernels


def mixed_kernels(kind: torch.Tensor, size: torch.Tensor, sigma_x: torch.Tensor, sigma_y: torch.Tensor, theta: torch.Tensor, beta: torch.Tensor, omega: torch.Tensor, max_size: int) -> torch.Tensor:
    """(N,) types (indices into KERNEL_TYPES), odd sizes and shape parameters -> (N, K, K) kernels,
    K = max_size, as BasicSR's random_mixed_kernels and circular_lowpass_kernel make them: each is
    computed on its own size x size grid, normalised there and zero-padded to K."""
    c = torch.arange(max_size, dtype=torch.float64) - (max_size - 1) / 2
    y, x = torch.meshgrid(c, c, indexing="ij")
    x, y = x[None], y[None]
    view = lambda t: t.double().view(-1, 1, 1)  # noqa: E731
    cos, sin = torch.cos(view(theta)), torch.sin(view(theta))
    q = ((cos * x + sin * y) / view(sigma_x)) ** 2 + ((-sin * x + cos * y) / view(sigma_y)) ** 2  # x' Sigma^-1 x
    b = view(beta)
    family = kind.view(-1, 1, 1) // 2  # 0 Gaussian, 1 generalized Gaussian, 2 plateau, 3 sinc
    k = torch.where(family == 0, torch.exp(-0.5 * q), torch.where(family == 1, torch.exp(-0.5 * q**b), 1 / (q**b + 1)))
    rows = family.flatten() == 3
    if rows.any():  # the circular low-pass kernel w J1(w r) / (2 pi r), w^2 / (4 pi) at r = 0
        r, w = torch.sqrt(x**2 + y**2), view(omega)[rows]
        k[rows] = torch.where(r > 0, w * torch.special.bessel_j1(w * r) / (2 * math.pi * r.clamp_min(1e-12)), w**2 / (4 * math.pi))
    half = view(size) // 2
    k = torch.where((x.abs() <= half) & (y.abs() <= half), k, torch.zeros(()))
    return (k / k.sum(dim=(1, 2), keepdim=True)).float()


def sinc_kernels(size: torch.Tensor, omega: torch.Tensor, max_size: int) -> torch.Tensor:
    """(N,) odd sizes and cut-offs (radians) -> (N, K, K) circular low-pass (sinc) kernels."""
    one = torch.ones(len(size), dtype=torch.float64)
    return mixed_kernels(torch.full((len(size),), KERNEL_TYPES.index("sinc")), size, one, one, 0 * one, one, omega, max_size)


def _uniform(g: torch.Generator, n: int, bounds: Range) -> torch.Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _chance(g: torch.Generator, n: int, p: float) -> torch.Tensor:
    return torch.rand(n, generator=g, dtype=torch.float64) < p


def _odd_sizes(g: torch.Generator, n: int, bounds: tuple[int, int]) -> torch.Tensor:
    sizes = torch.arange(bounds[0], bounds[1] + 1, 2)
    return sizes[torch.randint(len(sizes), (n,), generator=g)]


def _beta(g: torch.Generator, n: int, bounds: Range) -> torch.Tensor:
    # BasicSR draws beta below or above 1 with even odds; with betap_range (1, 2) half the plateau
    # kernels get beta exactly 1.
    return torch.where(_chance(g, n, 0.5), _uniform(g, n, (bounds[0], 1.0)), _uniform(g, n, (1.0, bounds[1])))


def _draw_kernels(g, n, kernel_prob, sinc_prob, sigma, betag, betap, size_range) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    size = _odd_sizes(g, n, size_range)
    kind = torch.multinomial(torch.tensor(kernel_prob, dtype=torch.float64), n, replacement=True, generator=g)
    kind = torch.where(_chance(g, n, sinc_prob), KERNEL_TYPES.index("sinc"), kind)
    iso = torch.isin(kind, torch.tensor(_ISO))
    sx = _uniform(g, n, sigma)
    sy = torch.where(iso, sx, _uniform(g, n, sigma))
    theta = torch.where(iso, 0.0, _uniform(g, n, (-math.pi, math.pi)))
    beta = torch.where(kind // 2 == 1, _beta(g, n, betag), _beta(g, n, betap))
    # RealESRGANDataset: sinc cut-off in [pi/3, pi] below 13 px, [pi/5, pi] from 13 px.
    omega = torch.where(size < 13, _uniform(g, n, (math.pi / 3, math.pi)), _uniform(g, n, (math.pi / 5, math.pi)))
    return kind, size, mixed_kernels(kind, size, sx, sy, theta, beta, omega, size_range[1])


def _draw_resize(g: torch.Generator, probs: tuple[float, float, float], bounds: Range) -> tuple[str, float, str]:
    direction = RESIZE_DIRECTIONS[int(torch.multinomial(torch.tensor(probs, dtype=torch.float64), 1, generator=g))]
    factor = {"up": (1.0, bounds[1]), "down": (bounds[0], 1.0), "keep": (1.0, 1.0)}[direction]
    mode = RESIZE_MODES[int(torch.randint(len(RESIZE_MODES), (1,), generator=g))]
    return direction, float(_uniform(g, 1, factor)), mode


def _draw_round(g, n, *, blur_prob, kernel_prob, sinc_prob, blur_sigma, betag, betap, kernel_sizes, resize_prob, resize_range, gaussian_prob, noise_range, poisson_range, gray_prob, jpeg_range) -> RoundPlan:
    kind, size, kernel = _draw_kernels(g, n, kernel_prob, sinc_prob, blur_sigma, betag, betap, kernel_sizes)
    resize, factor, mode = _draw_resize(g, resize_prob, resize_range)
    return RoundPlan(
        blur=_chance(g, n, blur_prob), kernel_type=kind, kernel_size=size, kernel=kernel,
        resize=resize, resize_factor=factor, resize_mode=mode,
        gaussian_noise=_chance(g, n, gaussian_prob), gray_noise=_chance(g, n, gray_prob),
        noise_sigma=(_uniform(g, n, noise_range) / 255).float(),  # noise_range is in 8-bit levels
        poisson_scale=_uniform(g, n, poisson_range).float(),
        jpeg_quality=_uniform(g, n, jpeg_range).round().float(),
    )  # fmt: skip


# ------------------------------------------------------------------------- tensor steps


def filter_per_sample(x: torch.Tensor, kernels: torch.Tensor, sizes: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Filter each image of (N, C, H, W) with its own kernel (N, K, K) cut to its size (N,),
    reflect-padded as BasicSR's filter2D; inactive samples pass unchanged. Samples are grouped by
    size, so a 7 px kernel costs 49 multiply-adds per pixel, not K*K (same result: zero taps)."""
    out = x.clone()
    big = kernels.shape[-1]
    for size in sorted(set(sizes[active].tolist())):
        idx = torch.nonzero(active & (sizes == size)).flatten()
        cut = (big - size) // 2
        k = kernels[idx, cut : big - cut, cut : big - cut]
        idx = idx.to(x.device)
        out.index_copy_(0, idx, _correlate(x.index_select(0, idx), k))
    return out


def _correlate(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    m, c, h, w = x.shape
    pad = k.shape[-1] // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    x = F.pad(x.reshape(1, m * c, h, w), (pad, pad, pad, pad), mode=mode)
    weight = k.to(x.device, x.dtype).repeat_interleave(c, dim=0).unsqueeze(1)
    return F.conv2d(x, weight, groups=m * c).reshape(m, c, h, w)


def _resize(x: torch.Tensor, mode: str, size: tuple[int, int] | None = None, factor: float | None = None) -> torch.Tensor:
    # F.interpolate as feed_data calls it: no antialias, align_corners False.
    corners = None if mode == "area" else False
    return F.interpolate(x, size=size, scale_factor=factor, mode=mode, align_corners=corners)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:  # torchvision's rgb_to_grayscale, which BasicSR uses
        return 0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    return x.mean(dim=1, keepdim=True)


def _poisson_noise(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """BasicSR's shot noise: counts = 8-bit image x the number of distinct 8-bit values per
    sample, rounded up to a power of two (256 for most patches)."""
    levels = (x * 255).round().clamp(0, 255)
    m = x.shape[0]
    bins = (torch.arange(m, device=x.device).view(m, 1) * 256 + levels.reshape(m, -1).long()).flatten()
    distinct = (torch.bincount(bins, minlength=m * 256).view(m, 256) > 0).sum(dim=1)
    vals = torch.exp2(torch.ceil(torch.log2(distinct.to(x.dtype)))).view(m, 1, 1, 1)
    clean = levels / 255
    return torch.poisson(clean * vals, generator=g) / vals - clean


def add_noise(x: torch.Tensor, g: torch.Generator, plan: RoundPlan) -> torch.Tensor:
    """Each sample's Gaussian or Poisson noise, colour or gray, clipped to [0, 1]. Only the field a
    sample uses is drawn (a gray sample draws one plane, not a colour field as well)."""
    n, c, h, w = x.shape
    noise = torch.zeros_like(x)
    for gaussian in (True, False):
        for gray in (True, False):
            idx = torch.nonzero((plan.gaussian_noise == gaussian) & (plan.gray_noise == gray)).flatten()
            if not len(idx):
                continue
            amount = (plan.noise_sigma if gaussian else plan.poisson_scale)[idx].to(x.device, x.dtype).view(-1, 1, 1, 1)
            idx = idx.to(x.device)
            src = x.index_select(0, idx)
            src = _gray(src) if gray else src
            field = torch.randn(src.shape, generator=g, device=x.device, dtype=x.dtype) if gaussian else _poisson_noise(src, g)
            noise.index_copy_(0, idx, (field * amount).expand(-1, c, h, w))
    return (x + noise).clamp(0, 1)


def usm_sharp(hr: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> torch.Tensor:
    """Real-ESRGAN's USMSharp for HR targets, (N, C, H, W) in [0, 1]: add weight * (hr - blur)
    where the residual exceeds threshold/255, feathered by the same Gaussian (OpenCV's kernel for
    size radius|1 and sigma 0, i.e. sigma 8 for radius 50)."""
    size = radius + 1 - radius % 2
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g1 = torch.exp(-(t**2) / (2 * sigma**2))
    g1 = (g1 / g1.sum()).to(hr.device, hr.dtype)
    residual = hr - _separable(hr, g1)
    soft = _separable((residual.abs() * 255 > threshold).to(hr.dtype), g1)
    sharp = (hr + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * hr


def _separable(x: torch.Tensor, g1: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    pad = len(g1) // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    x = F.pad(x, (pad, pad, pad, pad), mode=mode)
    x = F.conv2d(x, g1.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g1.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


# ----------------------------------------------------------------------------------- JPEG


def _dct_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    n = torch.arange(8, dtype=dtype, device=device)
    k = n[:, None]
    m = torch.cos((2 * n[None, :] + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m


# ITU-T T.81 Annex K example tables (luminance, chrominance).
_JPEG_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]
_JPEG_CHROMA = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, *([99] * 32),
]


def _quant_tables(quality: torch.Tensor, base: list[int]) -> torch.Tensor:
    """(N,) JPEG qualities 1..100 -> (N, 1, 8, 8) quantisation tables (IJG scaling)."""
    q = quality.clamp(1, 100)
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    table = torch.tensor(base, dtype=quality.dtype, device=quality.device).view(1, 8, 8)
    return torch.floor((table * scale[:, None, None] + 50) / 100).clamp(1, 255).unsqueeze(1)


def _jpeg_plane(plane: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """Quantise the 8x8 DCT of one (N, 1, H, W) plane (values 0..255, H, W multiples of 8)."""
    n, _, h, w = plane.shape
    d = _dct_matrix(plane.device, plane.dtype)
    blocks = (plane - 128).reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)  # (N, bh, bw, 8, 8)
    coeffs = d @ blocks @ d.t()
    q = tables.view(n, 1, 1, 8, 8)
    coeffs = torch.round(coeffs / q) * q
    blocks = d.t() @ coeffs @ d
    return blocks.permute(0, 1, 3, 2, 4).reshape(n, 1, h, w) + 128


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG round trip of (N, C, H, W) in [0, 1] at per-sample `quality` (N,), baseline 4:2:0.

    RGB goes through YCbCr with 2x2 chroma subsampling and triangular ("fancy") chroma
    upsampling, as libjpeg does by default; any other channel count is coded channel by
    channel as grayscale JPEG. Output is 8-bit quantised.
    """
    n, c, h, w = x.shape
    quality = quality.to(x.device, torch.float32)
    luma_q = _quant_tables(quality, _JPEG_LUMA)
    ph, pw = (-h) % 16, (-w) % 16
    v = F.pad(x.float().clamp(0, 1) * 255, (0, pw, 0, ph), mode="replicate").round()
    if c != 3:
        planes = v.reshape(n * c, 1, h + ph, w + pw)
        out = _jpeg_plane(planes, luma_q.repeat_interleave(c, dim=0)).reshape(n, c, h + ph, w + pw)
    else:
        r, g, b = v[:, 0:1], v[:, 1:2], v[:, 2:3]
        y = 0.299 * r + 0.587 * g + 0.114 * b
        cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
        cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
        chroma_q = _quant_tables(quality, _JPEG_CHROMA)
        y = _jpeg_plane(y, luma_q)
        cb = F.interpolate(_jpeg_plane(F.avg_pool2d(cb, 2), chroma_q), scale_factor=2, mode="bilinear", align_corners=False)
        cr = F.interpolate(_jpeg_plane(F.avg_pool2d(cr, 2), chroma_q), scale_factor=2, mode="bilinear", align_corners=False)
        out = torch.cat(
            [y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)], dim=1
        )
    out = out[..., :h, :w].round().clamp(0, 255) / 255
    return out.to(x.dtype)


# ---------------------------------------------------------------------------- degradation


@dataclass(frozen=True)
class Realistic:
    """Real-ESRGAN's second-order degradation for photographs; hr (N, C, H, W) float in [0, 1]
    -> LR (N, C, H/scale, W/scale), 8-bit levels in [0, 1]. Defaults are the published ones
    (Real-ESRGAN options/train_realesrgan_x4plus.yml; kernel sizes and sinc cut-offs from
    RealESRGANDataset). Names follow those options; a `2` suffix is the second round.

      round 1: blur (kernel_prob over KERNEL_TYPES[:6], sinc with sinc_prob, odd size in
        kernel_size_range) -> resize by a factor of the HR size (resize_prob: up/down/keep,
        resize_range) -> Gaussian (gaussian_noise_prob, noise_range in 8-bit levels) or Poisson
        (poisson_scale_range) noise, gray with gray_noise_prob -> JPEG (jpeg_range)
      round 2: blur with second_blur_prob -> resize to (H/scale, W/scale) x a factor in
        resize_range2 -> noise; always runs
      final: [resize to the LR size + sinc (final_sinc_prob)] and JPEG (jpeg_range2), in either
        order with even odds, as feed_data does; round to 8 bits.
    Resize modes are area/bilinear/bicubic with even odds, without antialias (F.interpolate's
    default, as the reference). Per sample: kernels, second blur, noise type and level, gray,
    JPEG quality, final sinc (feed_data draws the second blur and the noise type per batch; the
    odds are the same). Per batch, as feed_data: resize direction/factor/mode and final order.
    usm_target: train on usm_sharp(hr) (Real-ESRGAN's l1_gt_usm/percep_gt_usm); LR is unchanged.
    """

    scale: int = 4
    kernel_size_range: tuple[int, int] = (7, 21)
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: Range = (0.2, 3.0)
    betag_range: Range = (0.5, 4.0)
    betap_range: Range = (1.0, 2.0)
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: Range = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: Range = (1.0, 30.0)
    poisson_scale_range: Range = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: Range = (30, 95)
    second_blur_prob: float = 0.8
    kernel_prob2: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob2: float = 0.1
    blur_sigma2: Range = (0.2, 1.5)
    betag_range2: Range = (0.5, 4.0)
    betap_range2: Range = (1.0, 2.0)
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: Range = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: Range = (1.0, 25.0)
    poisson_scale_range2: Range = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: Range = (30, 95)
    final_sinc_prob: float = 0.8
    usm_target: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):  # YAML gives lists; keep the dataclass hashable
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
            if f.name.endswith("_prob") or f.name.endswith("_prob2"):
                value = getattr(self, f.name)
                probs = value if isinstance(value, tuple) else (value,)
                if not all(0 <= p <= 1 for p in probs) or (isinstance(value, tuple) and abs(sum(probs) - 1) > 1e-6):
                    raise ValueError(f"realistic {f.name} must be probabilities (a list summing to 1), got {value}")
            elif isinstance(value, (tuple, list)) and (len(value) != 2 or value[0] > value[1]):
                raise ValueError(f"realistic {f.name} must be a (low, high) range, got {value}")
        for name, length in [("kernel_prob", 6), ("kernel_prob2", 6), ("resize_prob", 3), ("resize_prob2", 3)]:
            if len(getattr(self, name)) != length:
                raise ValueError(f"realistic {name} needs {length} probabilities, got {getattr(self, name)}")
        lo, hi = self.kernel_size_range
        if lo < 1 or lo % 2 == 0 or hi % 2 == 0:
            raise ValueError(f"realistic kernel_size_range must be odd sizes, got {self.kernel_size_range}")

    def plan(self, seed: int, n: int) -> RealisticPlan:
        """Every random choice for a batch of n, drawn on the CPU (the same plan on any device)."""
        g = torch.Generator().manual_seed(int(seed))
        first = _draw_round(
            g, n, blur_prob=1.0, kernel_prob=self.kernel_prob, sinc_prob=self.sinc_prob, blur_sigma=self.blur_sigma,
            betag=self.betag_range, betap=self.betap_range, kernel_sizes=self.kernel_size_range,
            resize_prob=self.resize_prob, resize_range=self.resize_range, gaussian_prob=self.gaussian_noise_prob,
            noise_range=self.noise_range, poisson_range=self.poisson_scale_range, gray_prob=self.gray_noise_prob,
            jpeg_range=self.jpeg_range,
        )  # fmt: skip
        second = _draw_round(
            g, n, blur_prob=self.second_blur_prob, kernel_prob=self.kernel_prob2, sinc_prob=self.sinc_prob2,
            blur_sigma=self.blur_sigma2, betag=self.betag_range2, betap=self.betap_range2, kernel_sizes=self.kernel_size_range,
            resize_prob=self.resize_prob2, resize_range=self.resize_range2, gaussian_prob=self.gaussian_noise_prob2,
            noise_range=self.noise_range2, poisson_range=self.poisson_scale_range2, gray_prob=self.gray_noise_prob2,
            jpeg_range=self.jpeg_range2,
        )  # fmt: skip
        size = _odd_sizes(g, n, self.kernel_size_range)
        final_kernel = sinc_kernels(size, _uniform(g, n, (math.pi / 3, math.pi)), self.kernel_size_range[1])
        return RealisticPlan(
            first=first, second=second,
            resize_then_jpeg=bool(_chance(g, 1, 0.5)),
            final_mode=RESIZE_MODES[int(torch.randint(len(RESIZE_MODES), (1,), generator=g))],
            final_sinc=_chance(g, n, self.final_sinc_prob), final_kernel_size=size, final_kernel=final_kernel,
            noise_seed=int(torch.randint(2**62, (1,), generator=g)),
        )  # fmt: skip

    def apply(self, hr: torch.Tensor, plan: RealisticPlan) -> torch.Tensor:
        """Execute `plan` on hr (N, C, H, W) float in [0, 1], the order of feed_data."""
        _check_hr(hr, self.scale)
        n, _, h, w = hr.shape
        if plan.n != n:
            raise ValueError(f"the plan is for {plan.n} images, the batch has {n}; draw it with plan(seed, {n})")
        g = torch.Generator(device=hr.device).manual_seed(plan.noise_seed)
        one, two = plan.first, plan.second
        x = filter_per_sample(hr, one.kernel, one.kernel_size, one.blur)
        x = _resize(x, one.resize_mode, factor=one.resize_factor)
        x = jpeg(add_noise(x, g, one), one.jpeg_quality)
        x = filter_per_sample(x, two.kernel, two.kernel_size, two.blur)
        # Sized from the target LR size (ori_h / scale * factor in feed_data), not from round one's output.
        size2 = (max(1, int(h / self.scale * two.resize_factor)), max(1, int(w / self.scale * two.resize_factor)))
        x = add_noise(_resize(x, two.resize_mode, size=size2), g, two)
        if plan.resize_then_jpeg:
            x = jpeg(self._back_to_lr(x, plan, (h, w)), two.jpeg_quality)
        else:
            x = self._back_to_lr(jpeg(x, two.jpeg_quality), plan, (h, w))
        return (x * 255).round().clamp(0, 255) / 255

    def _back_to_lr(self, x: torch.Tensor, plan: RealisticPlan, hr_size: tuple[int, int]) -> torch.Tensor:
        x = _resize(x, plan.final_mode, size=(hr_size[0] // self.scale, hr_size[1] // self.scale))
        return filter_per_sample(x, plan.final_kernel, plan.final_kernel_size, plan.final_sinc)

    def __call__(self, hr: torch.Tensor, seed: int) -> torch.Tensor:
        return self.apply(hr, self.plan(seed, hr.shape[0]))


def _check_hr(hr: torch.Tensor, scale: int) -> None:
    # Shared with srgan.degrade, which imports it from here.
    if hr.dim() != 4 or not torch.is_floating_point(hr):
        raise ValueError(f"degradations take (N, C, H, W) float tensors in [0, 1], got {tuple(hr.shape)} {hr.dtype}")
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} is not divisible by scale {scale}; crop it to a multiple of {scale} first")
