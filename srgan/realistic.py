"""Real-ESRGAN's second-order degradation (Wang et al. 2021) as its reference code runs it.

`Realistic(scale)(hr, seed)` is `apply(hr, plan(seed, n))`: `plan` draws every random choice
from the seed, `apply` executes them on the batch, so the choices can be read and tested.
Self-contained (no import from srgan.degrade), so that srgan.degrade can list it beside the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache

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


def mixed_kernels(
    kind: torch.Tensor,
    size: torch.Tensor,
    sigma_x: torch.Tensor,
    sigma_y: torch.Tensor,
    theta: torch.Tensor,
    beta: torch.Tensor,
    omega: torch.Tensor,
    max_size: int,
) -> torch.Tensor:
    """(N,) types (indices into KERNEL_TYPES), odd sizes and shape parameters -> (N, K, K) kernels,
    K = max_size, as BasicSR's random_mixed_kernels and circular_lowpass_kernel make them: each is
    computed on its own size x size grid, normalised there and zero-padded to K."""
    x, y = _grid(max_size)
    view = lambda t: t.double().view(-1, 1, 1)  # noqa: E731
    cos, sin = torch.cos(view(theta)), torch.sin(view(theta))
    q = ((cos * x + sin * y) / view(sigma_x)) ** 2 + ((-sin * x + cos * y) / view(sigma_y)) ** 2  # x' Sigma^-1 x
    family = kind.view(-1, 1, 1) // 2  # 0 Gaussian, 1 generalized Gaussian, 2 plateau, 3 sinc
    q = q ** torch.where(family == 0, 1.0, view(beta))  # a Gaussian is the generalized one with beta 1
    k = torch.where(family == 2, 1 / (q + 1), torch.exp(-0.5 * q))
    rows = family.flatten() == 3
    if rows.any():
        k[rows] = _rings(omega[rows], max_size)
    return _cut(k, size)


def sinc_kernels(size: torch.Tensor, omega: torch.Tensor, max_size: int) -> torch.Tensor:
    """(N,) odd sizes and cut-offs (radians) -> (N, K, K) circular low-pass (sinc) kernels."""
    return _cut(_rings(omega, max_size), size)


@lru_cache(maxsize=4)
def _grid(max_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = torch.arange(max_size, dtype=torch.float64) - (max_size - 1) / 2
    return c.view(1, 1, -1), c.view(1, -1, 1)


@lru_cache(maxsize=4)
def _radii(max_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The grid's distinct radii, each tap's index among them, each tap's square radius max(|x|, |y|)."""
    x, y = _grid(max_size)
    radius2, at = torch.unique(x**2 + y**2, return_inverse=True)
    return radius2.sqrt(), at.flatten(), torch.maximum(x.abs(), y.abs())[0]


def _rings(omega: torch.Tensor, max_size: int) -> torch.Tensor:
    """The circular low-pass kernel w J1(w r) / (2 pi r) (w^2 / (4 pi) at r = 0) for each (N,) w,
    J1 computed once per distinct radius."""
    r, at, _ = _radii(max_size)
    w = omega.double()[:, None]
    ring = torch.where(
        r > 0, w * torch.special.bessel_j1(w * r) / (2 * math.pi * r.clamp_min(1e-12)), w**2 / (4 * math.pi)
    )
    return ring[:, at].view(-1, max_size, max_size)


def _cut(k: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Zero (N, K, K) kernels outside their (N,) sizes, normalise, float32."""
    k = torch.where(_radii(k.shape[-1])[2] <= size.view(-1, 1, 1) // 2, k, 0.0)
    return (k / k.sum(dim=(1, 2), keepdim=True)).float()


def _within(u: torch.Tensor, bounds: Range) -> torch.Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _odd_size(u: torch.Tensor, bounds: tuple[int, int]) -> torch.Tensor:
    return bounds[0] + 2 * (u * ((bounds[1] - bounds[0]) // 2 + 1)).long()


def _pick(u: torch.Tensor, probs: tuple[float, ...]) -> torch.Tensor:
    """Index i with probability probs[i] for each uniform u (the inverse CDF)."""
    cdf = torch.tensor(probs, dtype=torch.float64).cumsum(0)
    return torch.searchsorted(cdf / cdf[-1], u, right=True).clamp(max=len(probs) - 1)


def _draw_round(
    g,
    n,
    *,
    blur_prob,
    kernel_prob,
    sinc_prob,
    blur_sigma,
    betag,
    betap,
    kernel_sizes,
    resize_prob,
    resize_range,
    gaussian_prob,
    noise_range,
    poisson_range,
    gray_prob,
    jpeg_range,
) -> RoundPlan:
    u = torch.rand(15, n, generator=g, dtype=torch.float64)  # one uniform per sample and choice
    size = _odd_size(u[0], kernel_sizes)
    kind = torch.where(u[2] < sinc_prob, KERNEL_TYPES.index("sinc"), _pick(u[1], kernel_prob))
    iso = torch.isin(kind, torch.tensor(_ISO))
    sx = _within(u[3], blur_sigma)
    sy = torch.where(iso, sx, _within(u[4], blur_sigma))
    theta = torch.where(iso, 0.0, _within(u[5], (-math.pi, math.pi)))
    # BasicSR draws beta below or above 1 with even odds; with betap_range (1, 2) half the plateau
    # kernels get beta exactly 1.
    lo, hi = (torch.where(kind // 2 == 1, a, b) for a, b in zip(betag, betap))
    beta = torch.where(u[6] < 0.5, lo + (1 - lo) * u[7], 1 + (hi - 1) * u[7])
    # RealESRGANDataset: sinc cut-off in [pi/3, pi] below 13 px, [pi/5, pi] from 13 px.
    omega = torch.where(size < 13, _within(u[8], (math.pi / 3, math.pi)), _within(u[8], (math.pi / 5, math.pi)))
    per_batch = torch.rand(3, generator=g, dtype=torch.float64)
    resize = RESIZE_DIRECTIONS[int(_pick(per_batch[0], resize_prob))]
    factor = {"up": (1.0, resize_range[1]), "down": (resize_range[0], 1.0), "keep": (1.0, 1.0)}[resize]
    return RoundPlan(
        blur=u[9] < blur_prob, kernel_type=kind, kernel_size=size,
        kernel=mixed_kernels(kind, size, sx, sy, theta, beta, omega, kernel_sizes[1]),
        resize=resize, resize_factor=float(_within(per_batch[1], factor)), resize_mode=RESIZE_MODES[int(per_batch[2] * 3)],
        gaussian_noise=u[10] < gaussian_prob, gray_noise=u[11] < gray_prob,
        noise_sigma=(_within(u[12], noise_range) / 255).float(),  # noise_range is in 8-bit levels
        poisson_scale=_within(u[13], poisson_range).float(),
        jpeg_quality=_within(u[14], jpeg_range).round().float(),
    )  # fmt: skip


# ------------------------------------------------------------------------- tensor steps


CHUNK = 16  # samples per convolution call
CPU_PIECE_PIXELS = 1 << 17  # image pixels per piece of a batch that resize and jpeg work on at once on a CPU


def filter_per_sample(
    x: torch.Tensor, kernels: torch.Tensor, sizes: torch.Tensor, active: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Filter each image of (N, C, H, W) with its own kernel (N, K, K) cut to its size (N,),
    reflect-padded as BasicSR's filter2D (reflect-101; where the kernel outgrows the image,
    reflected again, as cv2.filter2D does); inactive samples pass unchanged. Into `out` if
    given (x itself filters in place; fresh memory costs page faults on a CPU), else a new tensor.

    Samples are sorted by kernel size and filtered CHUNK at a time at the chunk's largest size
    (zero taps, same result), so a 7 px kernel costs about 49 multiply-adds per pixel, not K*K.
    A kernel's size here leaves out its outer rings where their taps add up to less than 1e-8
    (a narrow Gaussian in a wide window): on values in [0, 1] that is below float32's rounding.
    Chunks of a fixed count on canvases rounded up to 8 px keep oneDNN's convolutions to a few
    hundred shapes, each compiled once (compiling costs several times the convolution)."""
    sizes, active = _support(kernels, sizes).tolist(), active.tolist()
    order = sorted((sizes[i], i) for i in range(len(x)) if active[i])
    if not order:
        return x if out is None or out is x else out.copy_(x)
    if out is None:
        out = torch.empty_like(x) if all(active) else x.clone()
    elif out is not x:
        out.copy_(x)
    big = kernels.shape[-1]
    # Every chunk is CHUNK long: the first one overlaps the second and keeps only the samples
    # the second does not filter (so that filtering in place reads no filtered sample).
    starts = sorted({0, *range(len(order) % CHUNK, len(order) - CHUNK + 1, CHUNK)})
    for start, end in zip(starts, starts[1:] + [len(order)]):
        chunk = order[start : start + CHUNK]
        members, cut, keep = [i for _, i in chunk], (big - chunk[-1][0]) // 2, end - start
        y = _correlate(
            x.index_select(0, torch.tensor(members, device=x.device)),
            kernels[members, cut : big - cut, cut : big - cut],
        )
        out.index_copy_(0, torch.tensor(members[:keep], device=x.device), y[:keep])
    return out


def _support(kernels: torch.Tensor, sizes: torch.Tensor, tail: float = 1e-8) -> torch.Tensor:
    """The odd size of the centred square outside which each (N, K, K) kernel's taps add up (in
    absolute value) to at most `tail`, at most its own size."""
    big = kernels.shape[-1]
    mass = torch.zeros(len(kernels), big // 2 + 2, dtype=torch.float64)
    mass.index_add_(1, _radii(big)[2].flatten().long(), kernels.abs().double().flatten(1))  # per square ring
    beyond = mass.flip(1).cumsum(1).flip(1)[:, 1:]  # beyond[:, r]: the mass further out than radius r
    return torch.minimum(sizes, 2 * (beyond > tail).sum(dim=1) + 1)


def _correlate(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    m, c, h, w = x.shape
    pad = k.shape[-1] // 2
    eh, ew = (-h) % 8, (-w) % 8  # canvas rounded up to 8 px; what lands there is cut off
    x = _pad_reflect(x.reshape(1, m * c, h, w), pad, pad + eh, pad, pad + ew)
    k = k.repeat_interleave(c, dim=0).unsqueeze(1).to(x.device, x.dtype)
    return F.conv2d(x, k, groups=m * c).view(m, c, h + eh, w + ew)[..., :h, :w]


def _pad_reflect(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if max(top, bottom) < h and max(left, right) < w:
        return F.pad(x, (left, right, top, bottom), mode="reflect")
    return x.index_select(-2, _reflect_index(h, top, bottom, x.device)).index_select(
        -1, _reflect_index(w, left, right, x.device)
    )


def _reflect_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices of 0..n-1 padded by reflection without repeating the edge (reflect-101),
    reflected again as often as the padding needs."""
    i = torch.arange(-before, n + after, device=device).abs()
    period = max(2 * n - 2, 1)
    i = i % period
    return torch.where(i < n, i, period - i) if n > 1 else torch.zeros_like(i)


def resize(
    x: torch.Tensor, mode: str, size: tuple[int, int] | None = None, factor: float | None = None
) -> torch.Tensor:
    """F.interpolate(x, size or scale_factor=factor, mode) as feed_data calls it (no antialias,
    align_corners False): the same weights along each axis, applied as a few weighted row
    gathers per axis (PyTorch's CPU kernels are 1.5 to 4 times slower, area 3 to 5 times)."""
    n, c, h, w = x.shape
    if size is None:
        size = (math.floor(h * factor), math.floor(w * factor))  # F.interpolate's output size
    if tuple(size) == (h, w) and (mode != "bicubic" or factor in (None, 1.0)):
        return x  # every mode then samples each pixel where it is
    rows, cols = (
        _tap_list(n_in, n_out, mode, factor, x.device, x.dtype) for n_in, n_out in ((h, size[0]), (w, size[1]))
    )
    out = x.new_empty(n, c, *size)
    per_piece = max(1, CPU_PIECE_PIXELS // (h * w)) if x.device.type == "cpu" else n
    for i in range(0, n, per_piece):  # on a CPU, pieces whose passes stay in cache
        y = _resample(x[i : i + per_piece].reshape(-1, h, w), rows)  # (planes, out_h, W)
        y = _resample(y.transpose(1, 2).contiguous(), cols)  # (planes, out_w, out_h)
        out[i : i + per_piece] = y.transpose(1, 2).view(-1, c, *size)
    return out


def _resample(x: torch.Tensor, taps: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """(P, L, M) -> (P, O, M): out[:, o] = sum over taps t of weight_t[o] x[:, index_t[o]]."""
    (index, weight), *rest = taps
    out = x.index_select(1, index).mul_(weight)
    for index, weight in rest:
        out.addcmul_(x.index_select(1, index), weight)
    return out


@lru_cache(maxsize=256)
def _tap_list(
    n_in: int, n_out: int, mode: str, factor: float | None, device: torch.device, dtype: torch.dtype
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """_taps as (index (O,), weight (O, 1)) pairs per tap, on the device, in the dtype."""
    index, weight = _taps(n_in, n_out, mode, factor)
    return [(i.contiguous().to(device), w.to(device, dtype)[:, None]) for i, w in zip(index.t(), weight.t())]


@lru_cache(maxsize=64)
def _taps(n_in: int, n_out: int, mode: str, factor: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_out, T) input indices and float64 weights of PyTorch's CPU kernels along one axis.
    area: adaptive average pooling over [floor(i n_in / n_out), ceil((i + 1) n_in / n_out)).
    bilinear, bicubic (Keys, A = -0.75): sampled at (i + 0.5) * scale - 0.5, scale 1 / factor
    when a factor is given (not n_in / n_out), taps beyond the border clamped to it; bilinear
    leaves an axis of unchanged length as it is."""
    if mode == "area":
        i = torch.arange(n_out)
        start, end = (i * n_in) // n_out, ((i + 1) * n_in + n_out - 1) // n_out
        index = start[:, None] + torch.arange(int((end - start).max()))
        return index.clamp(max=n_in - 1), (index < end[:, None]).double() / (end - start)[:, None]
    if mode == "bilinear" and n_in == n_out:
        return torch.arange(n_in)[:, None], torch.ones(n_in, 1, dtype=torch.float64)
    scale = 1 / factor if factor else n_in / n_out
    src = scale * (torch.arange(n_out, dtype=torch.float64) + 0.5) - 0.5
    if mode == "bilinear":
        src = src.clamp_min(0)
    first = torch.floor(src).clamp(max=n_in - 1)
    t = (src - first).clamp(0, 1)
    if mode == "bilinear":
        offsets, weight = torch.tensor([0.0, 1.0]), torch.stack([1 - t, t], dim=1)
    elif mode == "bicubic":
        a = -0.75
        near = lambda d: ((a + 2) * d - (a + 3)) * d * d + 1  # noqa: E731
        far = lambda d: ((a * d - 5 * a) * d + 8 * a) * d - 4 * a  # noqa: E731
        offsets, weight = (
            torch.tensor([-1.0, 0.0, 1.0, 2.0]),
            torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], dim=1),
        )
    else:
        raise ValueError(f"unknown resize mode {mode!r}; use one of {RESIZE_MODES}")
    return (first[:, None] + offsets).clamp(0, n_in - 1).long(), weight


_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale, which BasicSR uses


def _gray(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    if c != 3:
        return x.mean(dim=1, keepdim=True)
    return (torch.tensor(_GRAY, device=x.device, dtype=x.dtype) @ x.view(n, 3, h * w)).view(n, 1, h, w)


def add_noise(x: torch.Tensor, g: torch.Generator, plan: RoundPlan, out: torch.Tensor | None = None) -> torch.Tensor:
    """Each sample's Gaussian or Poisson noise, colour or gray, clipped to [0, 1]. Only the field a
    sample uses is drawn (a gray sample draws one plane, not a colour field as well). Into `out`
    if given (x itself: in place), else a new tensor."""
    out = torch.empty_like(x) if out is None else out
    kinds = list(zip(plan.gaussian_noise.tolist(), plan.gray_noise.tolist()))
    for kind in ((True, True), (True, False), (False, True), (False, False)):
        members = [i for i, k in enumerate(kinds) if k == kind]
        if not members:
            continue
        gaussian, gray = kind
        amount = (plan.noise_sigma if gaussian else plan.poisson_scale)[members].to(x.device, x.dtype).view(-1, 1, 1, 1)
        idx = torch.tensor(members, device=x.device)
        src = x.index_select(0, idx)
        plane = _gray(src) if gray else src
        if gaussian:
            src.addcmul_(torch.randn(plane.shape, generator=g, device=x.device, dtype=x.dtype), amount)
        else:  # src + scale (counts / vals - levels / 255), BasicSR's shot noise
            counts, vals, levels = _shot_counts(plane, g)
            src.addcmul_(counts, amount / vals).addcmul_(levels, amount / -255)
        out.index_copy_(0, idx, src.clamp_(0, 1))
    return out


def _shot_counts(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BasicSR's shot noise counts for (M, C, H, W) x: Poisson(levels * vals / 255), levels its
    8-bit values, vals their number of distinct values per sample rounded up to a power of two
    (256 for most patches). Returns counts (float16 whole numbers), vals (M, 1, 1, 1), levels."""
    m = x.shape[0]
    levels = (x * 255).round_().clamp_(0, 255)
    lev = levels.int()
    offsets = torch.arange(m, device=x.device, dtype=torch.int32).view(m, 1)
    distinct = (torch.bincount((lev.view(m, -1) + 256 * offsets).flatten(), minlength=m * 256).view(m, 256) > 0).sum(
        dim=1
    )
    exponent = torch.ceil(torch.log2(distinct.float())).view(m, 1, 1, 1)  # vals = 2^exponent, 1..256
    return _poisson_counts(lev, exponent.int(), g), torch.exp2(exponent).to(x.dtype), levels


def _poisson_counts(levels: torch.Tensor, exponent: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Poisson(level * 2^exponent / 255) counts (float16, whole numbers) for int32 levels 0..255
    and exponents 0..8 (broadcast against the levels), by inverting the CDF.

    A uniform bucket of 2048 picks, with the level and exponent, a guide table entry (Chen &
    Asau): the count, or where a CDF value falls inside the bucket, the count to start from;
    only those draws are refined, with a float64 uniform for the position inside the bucket, so
    the counts follow the Poisson law to float64 precision. Several times torch.poisson's speed
    on a CPU."""
    cdf, base, guide = _poisson_tables(levels.device)
    buckets = guide.numel() // len(base)
    bucket = torch.randint(buckets, levels.shape, generator=g, device=levels.device, dtype=torch.int32)
    row = torch.add(levels, exponent, alpha=256)
    count = guide.index_select(0, torch.add(bucket, row, alpha=buckets).view(-1))  # negative: -(count + 1), refine
    refine = torch.nonzero(count < 0).squeeze(1)
    if len(refine):
        u = (
            bucket.view(-1)[refine] + torch.rand(len(refine), generator=g, device=levels.device, dtype=torch.float64)
        ) / buckets
        row = row.view(-1)[refine].long()
        start = base[row]  # count k of a row sits at start + k in cdf
        at = start - 1 - count[refine].long()  # the answer is the least k with u < CDF(k)
        for _ in range(2):
            at += cdf[at] <= u
        far = torch.nonzero(cdf[at] <= u).squeeze(1)
        if len(far):  # deep in a tail, where many counts share a bucket: bisect the row
            width = len(cdf) // len(base)
            found = torch.searchsorted(cdf.view(-1, width)[row[far]], u[far, None], right=True).squeeze(1)
            at[far] = row[far] * width + found
        count[refine] = (at - start).to(count.dtype)
    return count.view(levels.shape)


@lru_cache(maxsize=4)
def _poisson_tables(device: torch.device, buckets: int = 2048) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each row 256 log2(vals) + level (vals 1, 2, ... 256; rate level * vals / 255): its CDF
    over `width` counts from lo, 12 sd below the rate (the mass left out is below 1e-20; the last
    value is set to 1), flattened row-major; base = row * width - lo, so that count k of the row
    sits at base + k; and the guide table, row-major: for bucket b the least count with
    CDF > b / buckets, stored as -(count + 1) where a CDF value falls inside the bucket (float16,
    exact for these whole numbers, so that the counts need no conversion)."""
    vals = 2.0 ** torch.arange(9, dtype=torch.float64)
    rate = (vals[:, None] * torch.arange(256, dtype=torch.float64) / 255).flatten()
    width = int(24 * math.sqrt(256)) + 40
    lo = (rate - 12 * rate.sqrt() - 3).floor().clamp_min(0)
    k = lo[:, None] + torch.arange(width, dtype=torch.float64)
    pmf = torch.exp(k * torch.log(rate[:, None]) - rate[:, None] - torch.lgamma(k + 1))
    pmf[rate == 0] = (k[rate == 0] == 0).double()  # rate 0 is always 0 (0 * log 0 is nan above)
    cdf = pmf.cumsum(dim=1)
    cdf[:, -1] = 1.0
    edges = torch.arange(buckets + 1, dtype=torch.float64).expand(len(rate), -1) / buckets
    first = torch.searchsorted(cdf, edges[:, :-1].contiguous(), right=True).clamp(max=width - 1)
    count = lo[:, None] + first
    guide = torch.where(cdf.gather(1, first) < edges[:, 1:], -count - 1, count).to(torch.float16).flatten()
    base = torch.arange(len(rate), dtype=torch.float64) * width - lo
    return cdf.flatten().to(device), base.long().to(device), guide.to(device)


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


@lru_cache(maxsize=8)
def _dct64(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The 64 x 64 matrix of the orthonormal 8x8 2-D DCT on row-major blocks: D kron D."""
    n = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return torch.kron(d, d).to(device, dtype)


# ITU-T T.81 Annex K example tables (luminance, chrominance).
_JPEG_LUMA = [
    16,
    11,
    10,
    16,
    24,
    40,
    51,
    61,
    12,
    12,
    14,
    19,
    26,
    58,
    60,
    55,
    14,
    13,
    16,
    24,
    40,
    57,
    69,
    56,
    14,
    17,
    22,
    29,
    51,
    87,
    80,
    62,
    18,
    22,
    37,
    56,
    68,
    109,
    103,
    77,
    24,
    35,
    55,
    64,
    81,
    104,
    113,
    92,
    49,
    64,
    78,
    87,
    103,
    121,
    120,
    101,
    72,
    92,
    95,
    98,
    112,
    100,
    103,
    99,
]
_JPEG_CHROMA = [
    17,
    18,
    24,
    47,
    99,
    99,
    99,
    99,
    18,
    21,
    26,
    66,
    99,
    99,
    99,
    99,
    24,
    26,
    56,
    99,
    99,
    99,
    99,
    99,
    47,
    66,
    99,
    99,
    99,
    99,
    99,
    99,
    *([99] * 32),
]


@lru_cache(maxsize=8)
def _quant_tables(device: torch.device) -> torch.Tensor:
    """(2, 101, 64) luminance and chrominance quantisation tables for qualities 0..100 (IJG
    scaling; quality 0 is taken as 1)."""
    q = torch.arange(101, dtype=torch.float64).clamp(1, 100)[:, None]
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    base = torch.tensor([_JPEG_LUMA, _JPEG_CHROMA], dtype=torch.float64)[:, None]
    return torch.floor((base * scale + 50) / 100).clamp(1, 255).float().to(device)


def _quantise_dct(planes: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """Quantise the 8x8 block DCT of level-shifted (N, C, H, W) planes (H, W multiples of 8)
    with (N, C, 8, 8) tables and transform back: each block as a row of 64 values times the
    64 x 64 DCT matrix, one matrix product for all blocks."""
    n, c, h, w = planes.shape
    dct = _dct64(planes.device, planes.dtype)
    q = tables.reshape(n * c, 1, 64)
    blocks = planes.reshape(n * c, h // 8, 8, w // 8, 8).transpose(2, 3).reshape(n * c, -1, 64)
    coeffs = (blocks @ dct.t()).div_(q).round_().mul_(q)
    return (coeffs @ dct).view(n, c, h // 8, w // 8, 8, 8).transpose(3, 4).reshape(n, c, h, w)


# JFIF's YCbCr of 0..255 RGB, Y shifted by -128 for the DCT (Cb, Cr come centred on 0); back to
# RGB every channel is Y + 128 plus a combination of Cb and Cr.
_TO_YCC = [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
_CHROMA_TO_RGB = [[0.0, 1.402], [-0.344136, -0.714136], [1.772, 0.0]]


def jpeg(x: torch.Tensor, quality: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """JPEG round trip of (N, C, H, W) in [0, 1] at per-sample `quality` (N,) (whole numbers,
    as libjpeg takes them; others are rounded), baseline 4:2:0. Into `out` if given (x itself:
    in place), else a new tensor.

    RGB goes through YCbCr with 2x2 chroma subsampling and triangular ("fancy") chroma
    upsampling, as libjpeg does by default; any other channel count is coded channel by
    channel as grayscale JPEG. Output is 8-bit quantised.
    """
    n, c, h, w = x.shape
    luma, chroma = _quant_tables(x.device)[:, quality.to(x.device).round().clamp(0, 100).long()].view(2, n, 1, 8, 8)
    tables = luma.expand(n, c, 8, 8), chroma.expand(n, 2, 8, 8)
    per_piece = max(1, CPU_PIECE_PIXELS // (h * w)) if x.device.type == "cpu" else n
    if per_piece >= n and out is None:
        return _jpeg(x, *tables)
    # On a CPU its dozen passes over the batch run faster on pieces that stay in cache.
    out = torch.empty_like(x) if out is None else out
    for i in range(0, n, per_piece):
        out[i : i + per_piece] = _jpeg(x[i : i + per_piece], *(t[i : i + per_piece] for t in tables))
    return out


def _jpeg(x: torch.Tensor, luma_q: torch.Tensor, chroma_q: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    ph, pw = (-h) % 16, (-w) % 16
    v = x.float().clamp(0, 1)
    if ph or pw:
        v = F.pad(v, (0, pw, 0, ph), mode="replicate")
    v = v.mul_(255).round_()
    hp, wp = h + ph, w + pw
    if c != 3:
        out = _quantise_dct(v.sub_(128), luma_q).add_(128)
    else:
        to_ycc, to_rgb = (torch.tensor(m, device=x.device) for m in (_TO_YCC, _CHROMA_TO_RGB))
        ycc = (to_ycc @ v.view(n, 3, hp * wp)).view(n, 3, hp, wp)
        luma = _quantise_dct(ycc[:, :1].sub_(128), luma_q[:, :1])
        chroma = _double(_double(_quantise_dct(_halve(ycc[:, 1:]), chroma_q), 2), 3)
        out = (to_rgb @ chroma.view(n, 2, hp * wp)).add_(luma.view(n, 1, hp * wp).add_(128)).view(n, 3, hp, wp)
    return out[..., :h, :w].round().clamp_(0, 255).div_(255).to(x.dtype)


def _halve(x: torch.Tensor) -> torch.Tensor:
    """Means of 2x2 pixels (4:2:0 chroma subsampling); four strided sums beat avg_pool2d on a CPU."""
    return (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]).mul_(0.25)


def _double(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Twice the samples along dim (2 or 3 of (N, C, H, W)) by libjpeg's triangular ("fancy")
    upsampling, 3/4 of the nearer and 1/4 of the farther input, the edge repeated:
    F.interpolate(scale_factor=2, bilinear) along one axis, twice as fast on a CPU."""
    n = x.shape[dim]
    padded = F.pad(x, (1, 1, 0, 0) if dim == 3 else (0, 0, 1, 1), mode="replicate")
    out = x.new_empty(*x.shape[:dim], n, 2, *x.shape[dim + 1 :])
    even, odd = out.unbind(dim + 1)
    middle = padded.narrow(dim, 1, n)
    torch.lerp(middle, padded.narrow(dim, 0, n), 0.25, out=even)
    torch.lerp(middle, padded.narrow(dim, 2, n), 0.25, out=odd)
    return out.flatten(dim, dim + 1)


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
        u = torch.rand(3, n, generator=g, dtype=torch.float64)
        size = _odd_size(u[0], self.kernel_size_range)
        per_batch = torch.rand(2, generator=g, dtype=torch.float64)
        return RealisticPlan(
            first=first, second=second,
            resize_then_jpeg=bool(per_batch[0] < 0.5), final_mode=RESIZE_MODES[int(per_batch[1] * 3)],
            final_sinc=u[2] < self.final_sinc_prob, final_kernel_size=size,
            final_kernel=sinc_kernels(size, _within(u[1], (math.pi / 3, math.pi)), self.kernel_size_range[1]),
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
        # Every step after the first works in place on the tensor the step before made (on a CPU
        # fresh memory costs page faults); the first blur never leaves hr as it is.
        x = filter_per_sample(hr, one.kernel, one.kernel_size, one.blur)
        x = resize(x, one.resize_mode, factor=one.resize_factor)
        x = jpeg(add_noise(x, g, one, out=x), one.jpeg_quality, out=x)
        x = filter_per_sample(x, two.kernel, two.kernel_size, two.blur, out=x)
        # Sized from the target LR size (ori_h / scale * factor in feed_data), not from round one's output.
        size2 = (max(1, int(h / self.scale * two.resize_factor)), max(1, int(w / self.scale * two.resize_factor)))
        x = resize(x, two.resize_mode, size=size2)
        x = add_noise(x, g, two, out=x)
        if plan.resize_then_jpeg:
            x = self._back_to_lr(x, plan, (h, w))
            x = jpeg(x, two.jpeg_quality, out=x)
        else:
            x = self._back_to_lr(jpeg(x, two.jpeg_quality, out=x), plan, (h, w))
        return x.mul_(255).round_().clamp_(0, 255).div_(255)

    def _back_to_lr(self, x: torch.Tensor, plan: RealisticPlan, hr_size: tuple[int, int]) -> torch.Tensor:
        x = resize(x, plan.final_mode, size=(hr_size[0] // self.scale, hr_size[1] // self.scale))
        return filter_per_sample(x, plan.final_kernel, plan.final_kernel_size, plan.final_sinc, out=x)

    def __call__(self, hr: torch.Tensor, seed: int) -> torch.Tensor:
        return self.apply(hr, self.plan(seed, hr.shape[0]))


def _check_hr(hr: torch.Tensor, scale: int) -> None:
    # Shared with srgan.degrade, which imports it from here.
    if hr.dim() != 4 or not torch.is_floating_point(hr):
        raise ValueError(f"degradations take (N, C, H, W) float tensors in [0, 1], got {tuple(hr.shape)} {hr.dtype}")
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} is not divisible by scale {scale}; crop it to a multiple of {scale} first")
