"""Generators trained elsewhere, as their authors distribute them, mapped onto ours.

Layouts (the name is what a model reference is prefixed with, e.g. ``basicsr:net_g.pth``):

  basicsr        BasicSR's MSRResNet (xinntao/BasicSR ``archs/srresnet_arch.py``): no
                 BatchNorm; keys conv_first, body.N.conv1/conv2, upconv1[, upconv2], conv_hr,
                 conv_last (mmsr's older names recon_trunk.N and HRconv too); files hold
                 {'params_ema': ..., 'params': ...} (the EMA weights are taken when present)
                 or a bare state dict. Runs as srgan.msrresnet.MSRResNet.
  srgan-pytorch  the SRResNet of Lornatang/SRGAN-PyTorch (the common BatchNorm
                 reimplementation of the paper): keys conv1 (or conv_block1), trunk.N.rcb.0-4,
                 conv2 (conv_block2), upsampling.N.upsample_block.0/2, conv3 (conv_block3);
                 files hold {'state_dict': ...} (or 'ema_state_dict'), keys possibly prefixed by
                 torch.compile's '_orig_mod.' or DDP's 'module.'. Its single-slope PReLUs
                 become per-channel ones with that slope; the architecture is ours (SRResNet).

The spec (scale, bands, blocks, features) is read off the tensors. A file that does not fit
its layout is refused with the keys that are missing or unexpected.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from torch import nn

from srgan.errors import UserError
from srgan.generator import GeneratorSpec, build_generator

LAYOUTS = ("basicsr", "srgan-pytorch")


class ForeignCheckpointError(UserError):
    """A file that is not a checkpoint of the layout it was given as."""


def _strip(state: dict, prefixes: tuple[str, ...]) -> dict:
    out = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def _container(payload: dict, keys: tuple[str, ...]) -> dict:
    """The state dict inside a training checkpoint (the first of `keys` present), else the
    payload itself."""
    for key in keys:
        if isinstance(payload.get(key), dict):
            return payload[key]
    return payload


def _blocks(state: dict, pattern: str) -> int:
    found = {int(m.group(1)) for k in state for m in [re.match(pattern, k)] if m}
    return max(found) + 1 if found else 0


def _basicsr(payload: dict) -> tuple[GeneratorSpec, dict]:
    state = _strip(_container(payload, ("params_ema", "params")), ("module.",))
    state = {re.sub(r"^recon_trunk\.", "body.", k).replace("HRconv.", "conv_hr."): v for k, v in state.items()}
    head, tail = state.get("conv_first.weight"), state.get("conv_last.weight")
    if head is None or tail is None or head.dim() != 4:
        raise _missing("basicsr", state, ["conv_first.weight", "conv_last.weight"])
    features = head.shape[0]
    up1 = state.get("upconv1.weight")
    scale = 4 if "upconv2.weight" in state else (round(math.sqrt(up1.shape[0] / features)) if up1 is not None else 0)
    spec = GeneratorSpec(
        scale=scale,
        in_channels=head.shape[1],
        out_channels=tail.shape[0],
        num_blocks=_blocks(state, r"body\.(\d+)\."),
        num_features=features,
        batch_norm=False,
        arch="msrresnet",
    )
    rename = {
        "conv_first.": "head.",
        "conv_hr.": "hr_conv.",
        "conv_last.": "tail.",
        "upconv1.": "upsample.0.conv.",
        "upconv2.": "upsample.1.conv.",
    }
    mapped = {}
    for key, value in state.items():
        for old, new in rename.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        mapped[key] = value
    return spec, mapped


def _srgan_pytorch(payload: dict) -> tuple[GeneratorSpec, dict]:
    state = _strip(
        _container(payload, ("state_dict", "ema_state_dict", "model")), ("_orig_mod.", "module.", "_orig_mod.")
    )
    state.pop("n_averaged", None)
    state = {re.sub(r"^conv_block([123])\.", r"conv\1.", k): v for k, v in state.items()}
    head, tail = state.get("conv1.0.weight"), state.get("conv3.weight")
    if head is None or tail is None or head.dim() != 4:
        raise _missing("srgan-pytorch", state, ["conv1.0.weight", "conv3.weight"])
    features, stages = head.shape[0], _blocks(state, r"upsampling\.(\d+)\.")
    spec = GeneratorSpec(
        scale=2**stages,
        in_channels=head.shape[1],
        out_channels=tail.shape[0],
        num_blocks=_blocks(state, r"trunk\.(\d+)\."),
        num_features=features,
        batch_norm=True,
    )
    rules = [
        (r"^conv1\.0\.", "head.0."), (r"^conv1\.1\.", "head.1."),
        (r"^trunk\.(\d+)\.rcb\.0\.", r"body.\1.conv1."), (r"^trunk\.(\d+)\.rcb\.1\.", r"body.\1.bn1."), (r"^trunk\.(\d+)\.rcb\.2\.", r"body.\1.act."),
        (r"^trunk\.(\d+)\.rcb\.3\.", r"body.\1.conv2."), (r"^trunk\.(\d+)\.rcb\.4\.", r"body.\1.bn2."),
        (r"^conv2\.0\.", "body_tail.0."), (r"^conv2\.1\.", "body_tail.1."),
        (r"^upsampling\.(\d+)\.upsample_block\.0\.", r"upsample.\1.conv."), (r"^upsampling\.(\d+)\.upsample_block\.2\.", r"upsample.\1.act."),
        (r"^conv3\.", "tail."),
    ]  # fmt: skip
    mapped = {}
    for key, value in state.items():
        for pattern, new in rules:
            if re.match(pattern, key):
                key = re.sub(pattern, new, key)
                break
        if (
            key == "head.1.weight" or key.endswith("act.weight")
        ) and value.numel() == 1:  # nn.PReLU(): one slope for every channel
            value = value.reshape(1).expand(features).clone()
        mapped[key] = value
    return spec, mapped


def _missing(layout: str, state: dict, needed: list[str]) -> ForeignCheckpointError:
    absent = [k for k in needed if k not in state]
    seen = ", ".join(sorted(state)[:6]) + (", ..." if len(state) > 6 else "")
    return ForeignCheckpointError(
        f"not a {layout} checkpoint: missing keys {', '.join(absent) or needed[0]} (its keys: {seen or 'none'}); {_hint()}"
    )


def _hint() -> str:
    return f"give the layout the file was trained with ({', '.join(f'{name}:<file>' for name in LAYOUTS)}) or an srgan generator.pt"


def import_state(payload: dict, layout: str) -> tuple[nn.Module, dict]:
    """(our generator in eval mode, meta) from a loaded checkpoint of `layout`."""
    if layout not in LAYOUTS:
        raise ForeignCheckpointError(f"unknown checkpoint layout {layout!r}; {_hint()}")
    if not isinstance(payload, dict):
        raise ForeignCheckpointError(
            f"not a {layout} checkpoint: it holds a {type(payload).__name__}, not a state dict; {_hint()}"
        )
    spec, mapped = (_basicsr if layout == "basicsr" else _srgan_pytorch)(payload)
    try:
        model = build_generator(spec)
    except (UserError, ValueError) as exc:
        raise ForeignCheckpointError(f"not a {layout} checkpoint this project can run ({exc}); {_hint()}") from exc
    try:
        result = model.load_state_dict(mapped, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        detail = next(
            (line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc).splitlines()[0]
        )
        raise ForeignCheckpointError(f"not a {layout} checkpoint: {detail} (read as {spec}); {_hint()}") from exc
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        parts = [
            f"missing keys {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}" if missing else "",
            f"unexpected keys {', '.join(result.unexpected_keys[:8])}{' ...' if len(result.unexpected_keys) > 8 else ''}"
            if result.unexpected_keys
            else "",
        ]
        raise ForeignCheckpointError(
            f"not a {layout} checkpoint: {'; '.join(p for p in parts if p)} (read as {spec}); {_hint()}"
        )
    return model.eval(), {"imported_from": layout}


def load_foreign(path: str | Path, layout: str) -> tuple[nn.Module, dict]:
    """(our generator in eval mode, meta) from a `layout` checkpoint file, read weights-only
    (no pickle is run)."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ForeignCheckpointError(
            f"cannot read {path} as a {layout} checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); {_hint()}"
        ) from exc
    return import_state(payload, layout)
