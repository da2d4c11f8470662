"""Per-sample 2-D filtering of a batch: each image with its own kernel, reflect-padded."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from srgan.degrade.kernels import radii

CHUNK = 16  # samples per convolution call


def blur(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image of (N, C, H, W) with its own (N, k, k) kernel, reflect-padded."""
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    pad = k // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    x = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode=mode)
    weight = kernels.to(x.dtype).repeat_interleave(c, dim=0).unsqueeze(1)
    return F.conv2d(x, weight, groups=n * c).reshape(n, c, h, w)


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
    mass.index_add_(1, radii(big)[2].flatten().long(), kernels.abs().double().flatten(1))  # per square ring
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
