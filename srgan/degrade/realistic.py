"""Real-ESRGAN's second-order degradation (Wang et al. 2021) as its reference code runs it: two rounds, then the
final resize, sinc and JPEG. `Realistic(scale)(hr, seed)` is `apply(hr, plan(seed, n))`: `plan` draws every random
choice from the seed, `apply` executes them on the batch, so the choices can be read and tested."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

from srgan.degrade.base import check_hr
from srgan.degrade.compress import jpeg
from srgan.degrade.convolve import filter_per_sample
from srgan.degrade.kernels import sinc_kernels
from srgan.degrade.noise import add_noise
from srgan.degrade.resample import RESIZE_MODES, resize
from srgan.degrade.rounds import FIRST_ROUND, SECOND_ROUND, RoundPlan, RoundSettings, draw_round, odd_sizes, within
from srgan.degrade.sharpen import usm_sharp


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


@dataclass(frozen=True)
class Realistic:
    """Real-ESRGAN's second-order degradation for photographs; hr (N, C, H, W) float in [0, 1]
    -> LR (N, C, H/scale, W/scale), 8-bit levels in [0, 1]. Defaults are the published ones
    (Real-ESRGAN options/train_realesrgan_x4plus.yml; kernel sizes and sinc cut-offs from
    RealESRGANDataset). `first` and `second` are the rounds' RoundSettings (FIRST_ROUND and
    SECOND_ROUND; a mapping, as a config gives it, changes only the settings it names, e.g.
    {"second": {"noise_range": [1, 10]}}); kernel_size_range is shared by both rounds and the final sinc.

      round 1: blur (kernel_prob over KERNEL_TYPES[:6], sinc with sinc_prob, odd size in
        kernel_size_range) -> resize by a factor of the HR size (resize_prob: up/down/keep,
        resize_range) -> Gaussian (gaussian_noise_prob, noise_range in 8-bit levels) or Poisson
        (poisson_scale_range) noise, gray with gray_noise_prob -> JPEG (jpeg_range)
      round 2: blur with second.blur_prob -> resize to (H/scale, W/scale) x a factor in
        second.resize_range -> noise; always runs
      final: [resize to the LR size + sinc (final_sinc_prob)] and JPEG (second.jpeg_range), in either
        order with even odds, as feed_data does; round to 8 bits.
    Resize modes are area/bilinear/bicubic with even odds, without antialias (F.interpolate's
    default, as the reference). Per sample: kernels, second blur, noise type and level, gray,
    JPEG quality, final sinc (feed_data draws the second blur and the noise type per batch; the
    odds are the same). Per batch, as feed_data: resize direction/factor/mode and final order.

    usm_input: degrade usm_sharp(hr), as feed_data does (`filter2D(self.gt_usm, kernel1)`); False
      degrades the plain HR (before issue 23: its LR had about a fifth less gradient energy).
    usm_target: the generator's pixel and content losses compare with usm_sharp(hr) (Real-ESRGAN's
      l1_gt_usm, percep_gt_usm); the discriminator's real images stay plain (gan_gt_usm: False).
    degrade_size: training pairs are cut from HR crops of this size (down to a multiple of the scale),
      degraded whole, then cropped to the patch (srgan.degrade.pairs; Real-ESRGAN degrades 400 px);
      None: the patch itself.
    """

    scale: int = 4
    kernel_size_range: tuple[int, int] = (7, 21)
    first: RoundSettings = FIRST_ROUND
    second: RoundSettings = SECOND_ROUND
    final_sinc_prob: float = 0.8
    usm_input: bool = True
    usm_target: bool = False
    degrade_size: int | None = 400

    def __post_init__(self) -> None:
        for name, published in [("first", FIRST_ROUND), ("second", SECOND_ROUND)]:
            if isinstance(getattr(self, name), dict):
                object.__setattr__(self, name, _round_from_mapping(name, getattr(self, name), published))
        sizes = tuple(self.kernel_size_range)  # YAML gives a list; keep the dataclass hashable
        object.__setattr__(self, "kernel_size_range", sizes)
        if len(sizes) != 2 or sizes[0] > sizes[1]:
            raise ValueError(f"realistic kernel_size_range must be a (low, high) range, got {sizes}")
        if sizes[0] < 1 or sizes[0] % 2 == 0 or sizes[1] % 2 == 0:
            raise ValueError(f"realistic kernel_size_range must be odd sizes, got {sizes}")
        if not 0 <= self.final_sinc_prob <= 1:
            raise ValueError(f"realistic final_sinc_prob must be a probability, got {self.final_sinc_prob}")
        if self.degrade_size is not None and self.degrade_size < 1:
            raise ValueError(
                f"realistic degrade_size must be a size in pixels (e.g. 400) or null, got {self.degrade_size}"
            )

    def plan(self, seed: int, n: int) -> RealisticPlan:
        """Every random choice for a batch of n, drawn on the CPU (the same plan on any device)."""
        g = torch.Generator().manual_seed(int(seed))
        first = draw_round(g, n, self.first, self.kernel_size_range)
        second = draw_round(g, n, self.second, self.kernel_size_range)
        u = torch.rand(3, n, generator=g, dtype=torch.float64)
        size = odd_sizes(u[0], self.kernel_size_range)
        per_batch = torch.rand(2, generator=g, dtype=torch.float64)
        return RealisticPlan(
            first=first, second=second,
            resize_then_jpeg=bool(per_batch[0] < 0.5), final_mode=RESIZE_MODES[int(per_batch[1] * 3)],
            final_sinc=u[2] < self.final_sinc_prob, final_kernel_size=size,
            final_kernel=sinc_kernels(size, within(u[1], (math.pi / 3, math.pi)), self.kernel_size_range[1]),
            noise_seed=int(torch.randint(2**62, (1,), generator=g)),
        )  # fmt: skip

    def apply(self, hr: torch.Tensor, plan: RealisticPlan) -> torch.Tensor:
        """Execute `plan` on hr (N, C, H, W) float in [0, 1], the order of feed_data."""
        check_hr(hr, self.scale)
        n, _, h, w = hr.shape
        if plan.n != n:
            raise ValueError(f"the plan is for {plan.n} images, the batch has {n}; draw it with plan(seed, {n})")
        g = torch.Generator(device=hr.device).manual_seed(plan.noise_seed)
        # Every step after the first works in place on the tensor the step before made (on a CPU
        # fresh memory costs page faults); the first blur never leaves hr as it is.
        x = self._first_round(usm_sharp(hr) if self.usm_input else hr, plan.first, g)
        x = self._second_round(x, plan.second, g, (h, w))
        return self._final_step(x, plan, (h, w)).mul_(255).round_().clamp_(0, 255).div_(255)

    def __call__(self, hr: torch.Tensor, seed: int) -> torch.Tensor:
        return self.apply(hr, self.plan(seed, hr.shape[0]))

    def _first_round(self, hr: torch.Tensor, one: RoundPlan, g: torch.Generator) -> torch.Tensor:
        x = filter_per_sample(hr, one.kernel, one.kernel_size, one.blur)
        x = resize(x, one.resize_mode, factor=one.resize_factor)
        return jpeg(add_noise(x, g, one, out=x), one.jpeg_quality, out=x)

    def _second_round(
        self, x: torch.Tensor, two: RoundPlan, g: torch.Generator, hr_size: tuple[int, int]
    ) -> torch.Tensor:
        """Blur, resize and noise; round two's JPEG belongs to the final step."""
        x = filter_per_sample(x, two.kernel, two.kernel_size, two.blur, out=x)
        # Sized from the target LR size (ori_h / scale * factor in feed_data), not from round one's output.
        h, w = hr_size
        size2 = (max(1, int(h / self.scale * two.resize_factor)), max(1, int(w / self.scale * two.resize_factor)))
        x = resize(x, two.resize_mode, size=size2)
        return add_noise(x, g, two, out=x)

    def _final_step(self, x: torch.Tensor, plan: RealisticPlan, hr_size: tuple[int, int]) -> torch.Tensor:
        quality = plan.second.jpeg_quality
        if plan.resize_then_jpeg:
            x = self._back_to_lr(x, plan, hr_size)
            return jpeg(x, quality, out=x)
        return self._back_to_lr(jpeg(x, quality, out=x), plan, hr_size)

    def _back_to_lr(self, x: torch.Tensor, plan: RealisticPlan, hr_size: tuple[int, int]) -> torch.Tensor:
        x = resize(x, plan.final_mode, size=(hr_size[0] // self.scale, hr_size[1] // self.scale))
        return filter_per_sample(x, plan.final_kernel, plan.final_kernel_size, plan.final_sinc, out=x)


def _round_from_mapping(name: str, changes: dict, published: RoundSettings) -> RoundSettings:
    """The published round with the settings a config changes; a bad key or value names `name.key`."""
    known = {f.name for f in fields(RoundSettings)}
    unknown = set(changes) - known
    if unknown:
        raise ValueError(
            f"realistic {name} has no setting(s) {', '.join(sorted(unknown))}; it takes {', '.join(sorted(known))}"
        )
    try:
        return replace(published, **changes)
    except ValueError as exc:
        raise ValueError(f"realistic {name}.{exc}") from None
