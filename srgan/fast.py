"""The inference form of a generator: the same function, computed faster.

`inference_form(model, precision)` returns a module equal to `model` in eval mode (within
float rounding) that is only for inference:
  * BatchNorm folded into the convolution before it (eval-mode BN is an affine map);
  * channels_last tensors, which oneDNN's and cuDNN's convolutions run fastest;
  * for SRResNet, the last PixelShuffle and the 9x9 tail convolution merged into one
    convolution on the shuffled-from map: PixelShuffle(f) then a K x K convolution at the
    full resolution equals a convolution with f^2 times the channels and a kernel of
    ceil(K / f) + 1 taps at 1/f of it, followed by PixelShuffle(f) of just the output
    channels. A 3-output 9x9 convolution at 4x the pixels runs at a quarter of a CPU's
    convolution speed; its merged form at full speed;
  * bf16 weights and activations when asked (the output is float32 either way);
  * for SRResNet, `stream_rows`: the same result strip by strip with no row computed twice
    (each convolution keeps its last input rows for the next strip), which srgan.tiling
    uses instead of overlapping windows.
Call it under `torch.inference_mode()`; the input is (N, C, h, w) float in [0, 1] and the
output (N, C_out, h*s, w*s) float32, not clamped, as the model's own.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from srgan.generator import SRResNet
from srgan.resize import imresize, upscale_by_convolution

FAST_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def fold_batch_norm(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    """One convolution computing bn(conv(x)) for eval-mode `bn` (an Identity leaves `conv`)."""
    if not isinstance(bn, nn.BatchNorm2d):
        return copy.deepcopy(conv)  # the form's own: converting it must not change the model
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    folded = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
    )
    folded.weight.data = conv.weight.detach() * scale.view(-1, 1, 1, 1)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    folded.bias.data = (bias - bn.running_mean) * scale + bn.bias.detach()
    return folded


def _prelu_per_channel(act: nn.PReLU, channels: int, repeat: int = 1) -> nn.PReLU:
    """`act` as a PReLU with one slope per channel of a map of `channels` channels, each slope
    repeated `repeat` times (a PReLU applied after PixelShuffle(f) acts as one with f^2
    times the channels before it)."""
    slopes = act.weight.detach().expand(channels // repeat) if act.weight.numel() == 1 else act.weight.detach()
    out = nn.PReLU(channels)
    out.weight.data = slopes.repeat_interleave(repeat).clone()
    return out


def merge_shuffle_into_conv(conv: nn.Conv2d, factor: int) -> nn.Conv2d:
    """A convolution C' at 1/`factor` of the resolution with
    pixel_shuffle(C'(x), f) == conv(pixel_shuffle(x, f)) for every x (zero padding included):
    the output at f*i + a, tap dy, reads the shuffled-from map at row i + (a + dy) // f,
    channel phase (a + dy) % f."""
    k = conv.kernel_size[0]
    r = k // 2
    if conv.kernel_size != (k, k) or k % 2 == 0 or conv.padding != (r, r) or conv.stride != (1, 1) or conv.groups != 1:
        raise ValueError(f"can only merge an odd square 'same' convolution, got {conv}")
    f, c_in, c_out = factor, conv.in_channels, conv.out_channels
    low, high = math.floor(-r / f), math.floor((f - 1 + r) / f)
    taps = max(-low, high)  # symmetric padding; unused taps stay zero
    size = 2 * taps + 1
    w = conv.weight.detach()
    merged = torch.zeros(c_out * f * f, c_in * f * f, size, size, dtype=w.dtype)
    for a in range(f):  # output row phase
        for b in range(f):  # output column phase
            for dy in range(-r, r + 1):
                q, a2 = divmod(a + dy, f)
                for dx in range(-r, r + 1):
                    q2, b2 = divmod(b + dx, f)
                    # out channel o*f*f + a*f + b, in channel c*f*f + a2*f + b2
                    merged[a * f + b :: f * f, a2 * f + b2 :: f * f, q + taps, q2 + taps] = w[:, :, dy + r, dx + r]
    out = nn.Conv2d(c_in * f * f, c_out * f * f, size, padding=taps, bias=conv.bias is not None)
    out.weight.data = merged
    if conv.bias is not None:
        out.bias.data = conv.bias.detach().repeat_interleave(f * f)
    return out


class _Stage(nn.Module):
    """conv -> PixelShuffle -> PReLU, the PReLU applied before the shuffle (one slope per
    shuffled-from channel), so every tensor stays channels_last."""

    def __init__(self, conv: nn.Conv2d, factor: int, act: nn.PReLU) -> None:
        super().__init__()
        self.conv, self.factor = conv, factor
        self.act = _prelu_per_channel(act, conv.out_channels, factor * factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.act(self.conv(x)), self.factor)


class _Block(nn.Module):
    def __init__(self, conv1: nn.Conv2d, act: nn.PReLU, conv2: nn.Conv2d) -> None:
        super().__init__()
        self.conv1, self.act, self.conv2 = conv1, act, conv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x))).add_(x)


class FastSRResNet(nn.Module):
    """SRResNet in its inference form (see the module docstring); built by inference_form."""

    def __init__(self, model: SRResNet, dtype: torch.dtype) -> None:
        super().__init__()
        self.spec, self.dtype = model.spec, dtype
        self.receptive_radius = model.receptive_radius
        self.head = nn.Sequential(copy.deepcopy(model.head[0]), copy.deepcopy(model.head[1]))
        self.body = nn.Sequential(
            *[
                _Block(fold_batch_norm(b.conv1, b.bn1), copy.deepcopy(b.act), fold_batch_norm(b.conv2, b.bn2))
                for b in model.body
            ]
        )
        self.body_tail = fold_batch_norm(model.body_tail[0], model.body_tail[1])
        stages = list(model.upsample)
        self.upsample = nn.Sequential(
            *[_Stage(copy.deepcopy(s.conv), s.shuffle.upscale_factor, s.act) for s in stages[:-1]]
        )
        last = stages[-1]
        self.last_factor = last.shuffle.upscale_factor
        self.last_conv = copy.deepcopy(last.conv)
        self.last_act = _prelu_per_channel(last.act, last.conv.out_channels, self.last_factor**2)
        self.tail = merge_shuffle_into_conv(model.tail, self.last_factor)
        self.to(dtype=dtype, memory_format=torch.channels_last).eval().requires_grad_(False)

    @property
    def scale(self) -> int:
        return self.spec.scale

    @property
    def streams(self) -> bool:
        """Whether stream_rows can run this model (the bicubic skip is not streamed)."""
        return not self.spec.bicubic_skip

    def stream_rows(self, image: torch.Tensor, rows: int) -> Iterator[torch.Tensor]:
        """forward(image) strip by strip, top to bottom: the image (on any device) is moved
        `rows` input rows at a time and each strip yields the output rows it completes
        (float32, on the model's device; together
        they are forward's result). Memory for a strip of `rows` rows instead of the whole
        image, and no row computed twice: each convolution keeps the last 2r rows of its
        input for the next strip (a line buffer), each residual sum the skip rows its branch
        has not reached yet, and the image's zero padding is put at its top and bottom only,
        so the result equals forward's up to float rounding (the convolutions see other
        shapes)."""
        if not self.streams:
            raise ValueError("a generator with a bicubic skip is not streamed; call the model")
        if rows <= 0:
            raise ValueError(f"rows must be > 0, got {rows}")
        height = image.shape[-2]
        run = _RowRun()
        for start in range(0, height, rows):
            x = (
                image[..., start : start + rows, :]
                .to(self.last_conv.weight.device, self.dtype)
                .contiguous(memory_format=torch.channels_last)
            )
            out = self._rows(run, x, last=start + rows >= height)
            if out.shape[-2]:
                yield out.float()

    def forward_rows(self, image: torch.Tensor, rows: int) -> torch.Tensor:
        """forward(image) computed `rows` input rows at a time (see stream_rows)."""
        return torch.cat(list(self.stream_rows(image, rows)), dim=-2).contiguous()

    def _rows(self, run: _RowRun, x: torch.Tensor, last: bool) -> torch.Tensor:
        """The output rows the input rows `x` (the next ones of the image) complete."""
        head = self.head[1](run.conv(self.head[0], x, last))
        y = head
        for block in self.body:
            y = run.add(block, run.conv(block.conv2, block.act(run.conv(block.conv1, y, last)), last), y)
        trunk = run.add(self, run.conv(self.body_tail, y, last), head)
        for stage in self.upsample:
            trunk = F.pixel_shuffle(stage.act(run.conv(stage.conv, trunk, last)), stage.factor)
        y = self.last_act(run.conv(self.last_conv, trunk, last))
        return self._output(F.pixel_shuffle(run.conv(self.tail, y, last), self.last_factor))

    def _output(self, out: torch.Tensor) -> torch.Tensor:
        """The last activation (the block generator's (tanh(x) + 1) / 2), pointwise."""
        return (torch.tanh(out) + 1) / 2 if self.spec.output == "tanh" else out

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.to(self.dtype).contiguous(memory_format=torch.channels_last)
        head = self.head(x)
        trunk = self.body_tail(self.body(head)).add_(head)
        y = self.last_act(self.last_conv(self.upsample(trunk)))
        out = self._output(F.pixel_shuffle(self.tail(y), self.last_factor).float())
        if self.spec.bicubic_skip:  # as a convolution where it can: traceable with dynamic sizes (ONNX)
            x = image.float()
            out = out + (
                upscale_by_convolution(x, self.spec.scale)
                if min(x.shape[-2:]) >= 2
                else imresize(x, float(self.spec.scale))
            )
        return out.contiguous()


class _RowRun:
    """The state of one forward_rows pass: each convolution's line buffer (the input rows it
    still needs, starting with its top zero padding) and each residual sum's pending skip
    rows. A convolution's output row i is centred on its input row i, so a branch's rows come
    out in order, only later than its skip's: the sum takes as many skip rows as the branch
    gave."""

    def __init__(self) -> None:
        self.lines: dict[int, torch.Tensor] = {}
        self.skips: dict[int, torch.Tensor] = {}

    def conv(self, conv: nn.Conv2d, x: torch.Tensor, last: bool) -> torch.Tensor:
        r, c = conv.padding
        key = id(conv)
        if key not in self.lines:  # the top zero padding
            self.lines[key] = x.new_zeros(x.shape[0], x.shape[1], r, x.shape[-1])
        parts = [self.lines[key], x]
        if last:  # the bottom zero padding
            parts.append(x.new_zeros(x.shape[0], x.shape[1], r, x.shape[-1]))
        x = _rows_of(parts)
        if x.shape[-2] <= 2 * r:  # not enough rows for an output row yet
            self.lines[key] = x
            return x.new_empty(x.shape[0], conv.out_channels, 0, x.shape[-1]).contiguous(
                memory_format=torch.channels_last
            )
        self.lines[key] = x[..., x.shape[-2] - 2 * r :, :].clone()  # a copy: a view would keep the whole strip
        return F.conv2d(x, conv.weight, conv.bias, padding=(0, c))

    def add(self, owner: object, branch: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        key = id(owner)
        pending = _rows_of([self.skips[key], skip]) if key in self.skips else skip
        n = branch.shape[-2]
        self.skips[key] = pending[..., n:, :].clone()  # a copy, as for the line buffers
        return branch.add_(pending[..., :n, :])


def _rows_of(parts: list[torch.Tensor]) -> torch.Tensor:
    """`parts` one below the other, channels_last (torch.cat picks the layout from its inputs,
    and a part of 0 or 1 rows is ambiguous: a convolution would then copy the result back)."""
    first = parts[0]
    out = torch.empty(
        (first.shape[0], first.shape[1], sum(p.shape[-2] for p in parts), first.shape[-1]),
        dtype=first.dtype,
        device=first.device,
        memory_format=torch.channels_last,
    )
    at = 0
    for part in parts:
        out[..., at : at + part.shape[-2], :] = part
        at += part.shape[-2]
    return out


class _ChannelsLast(nn.Module):
    """Any other generator: eval, no grad, channels_last, in `dtype`; float32 out."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = copy.deepcopy(model).eval().requires_grad_(False), dtype
        self.model.to(dtype=dtype, memory_format=torch.channels_last)
        self.spec, self.receptive_radius = model.spec, model.receptive_radius
        self.align = int(getattr(model, "align", 1))  # where tiles must start (srgan.tiling.split)

    @property
    def scale(self) -> int:
        return self.spec.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype).contiguous(memory_format=torch.channels_last)).float().contiguous()


def inference_form(model: nn.Module, precision: str = "fp32") -> nn.Module:
    """The inference form of `model` (see the module docstring), on `model`'s device; the
    model itself is not changed. `precision`: fp32, bf16 or fp16 weights and activations."""
    if precision not in FAST_DTYPES:
        raise ValueError(f"precision must be one of {', '.join(FAST_DTYPES)}, got {precision!r}")
    dtype = FAST_DTYPES[precision]
    with torch.inference_mode(False), torch.no_grad():  # built as ordinary tensors, wherever it is asked for
        if isinstance(model, SRResNet):
            return FastSRResNet(model.eval(), dtype)
        return _ChannelsLast(model, dtype)
