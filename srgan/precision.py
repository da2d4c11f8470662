"""Numeric precision of a forward/backward pass: one rule for training and inference.

``fp32`` runs in float32; ``bf16`` and ``fp16`` run under autocast when training (fp16
needs a GradScaler) and as bf16/fp16 weights when upscaling (srgan.fast). For training
``auto`` picks bf16 on a CUDA device that supports it and fp32 everywhere else; for
upscaling also on CPUs that compute bf16 natively (AVX512-BF16, AMX).
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from srgan.errors import UserError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # the option values every CLI and config accepts
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(UserError):
    """A precision the device cannot run."""


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """The precision to run `requested` ('auto', 'fp32', 'bf16', 'fp16') at on `device`."""
    if requested not in PRECISIONS:
        raise PrecisionError(f"precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if requested == "auto":
        return "bf16" if cuda_bf16 else "fp32"
    if requested == "bf16" and device.type == "cuda" and not cuda_bf16:
        name = torch.cuda.get_device_name(device)
        raise PrecisionError(f"precision bf16: {name} has no bf16 support; use fp16 or fp32 (or auto)")
    return requested  # type: ignore[return-value]


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU with bf16, or a CPU with AVX512-BF16
    or AMX (oneDNN's bf16 convolutions there run at about twice the fp32 speed)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return (
        device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    )


def resolve_inference_precision(requested: str, device: torch.device) -> Precision:
    """`resolve_precision` for upscaling: `auto` is bf16 wherever the device computes it
    natively, CPUs included (the caller keeps files finer than 8 bits in fp32)."""
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return resolve_precision(requested, device)


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """Autocast for `precision` on `device` (nothing for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in AMP_DTYPES:
        raise PrecisionError(f"precision must be fp32, bf16 or fp16 here, got {precision!r}")
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[precision])
