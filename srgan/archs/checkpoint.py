"""A checkpoint file from elsewhere, read without trusting it.

Before anything is read whole, the file's size is checked against MAX_FILE_BYTES. Reading
runs no code: ``.safetensors`` (or any file that starts like one) through safetensors, every
other file through ``torch.load(weights_only=True)``, whose refusal of a pickle that names
code becomes one line saying what the file is and how to convert one you trust. The state
dict is then found inside the wrappers training scripts save (``params_ema``, ``params``,
``state_dict``, ...), stripped of DDP's ``module.`` and torch.compile's ``_orig_mod.``, and
bounded: at most MAX_KEYS tensors, every index in a key at most MAX_INDEX, so that a 15 KB
file naming ``body.999999.conv1.weight`` is refused before a model is built.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
from pathlib import Path

import torch

from srgan.errors import UserError

MAX_FILE_BYTES = int(os.environ.get("SRGAN_MAX_MODEL_BYTES", str(4 << 30)))  # 4 GiB: HAT-L fp32 is 0.16 GB
MAX_KEYS = 20_000  # the largest published SR checkpoints hold about 3,000 tensors
MAX_INDEX = 4_096  # a block or layer index in a key
SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".bin", ".tar")
# Where training scripts keep the weights, most wanted first (BasicSR's EMA weights before
# its plain ones; SRGAN-PyTorch's state_dict; Lightning's state_dict; plain containers).
WRAPPERS = (
    "params_ema",
    "params-ema",
    "params",
    "state_dict",
    "model_state_dict",
    "ema_state_dict",
    "model",
    "net",
    "generator",
    "netG",
    "net_g",
    "g_ema",
)
PREFIXES = ("module.", "_orig_mod.")  # DDP's and torch.compile's, on any key
COMMON_PREFIXES = ("netG.", "net_g.", "generator.", "model.generator.")  # only when every key has it


class CheckpointError(UserError):
    """A file that cannot be read as a checkpoint, or holds no state dict we can use."""


def is_checkpoint_name(name: str) -> bool:
    """Whether `name` ends like a weights file (``.pth``, ``.pt``, ``.ckpt``, ``.safetensors``, ...)."""
    return name.lower().endswith(SUFFIXES)


def _looks_like_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < length < 100 << 20


def _pickle_refusal(path: Path, exc: Exception) -> CheckpointError:
    named = re.search(r"(?:GLOBAL|global) ([\w.]+(?: [\w.]+)?)", str(exc))
    what = f" (it names {named.group(1).replace(' ', '.')})" if named else ""
    return CheckpointError(
        f"{path} is a pickle that may run code when loaded{what}, so it was not loaded; "
        "if you trust its source, convert it once in a throwaway environment with "
        "safetensors.torch.save_file(torch.load(f, weights_only=False)['params'], 'model.safetensors') "
        "(or whichever key holds the weights) and give the .safetensors file"
    )


def read_file(path: str | Path) -> dict:
    """The payload of a checkpoint file (a dict, possibly nested), read without running code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist or is not a file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CheckpointError(
            f"{path} is {size / 2**30:.1f} GiB, over the {MAX_FILE_BYTES / 2**30:.1f} GiB limit for a model file; "
            "raise SRGAN_MAX_MODEL_BYTES if it is really a model"
        )
    if path.suffix.lower() == ".safetensors" or _looks_like_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file ({str(exc).splitlines()[0]})") from exc
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc) or "GLOBAL " in str(exc):  # it names code to run
            raise _pickle_refusal(path, exc) from None
        detail = re.search(r"WeightsUnpickler error: \s*(.+?)\s*(?:\n|$)", str(exc))
        reason = detail.group(1) if detail else str(exc).splitlines()[0]
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({reason[:160]})") from None
    except Exception as exc:  # a torchscript archive, a truncated zip, text, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({type(exc).__name__}: {first[:200]})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a state dict")
    return payload


def state_of(payload: dict) -> tuple[dict[str, torch.Tensor], str]:
    """(the state dict inside `payload`, the wrapper key it was under or '')."""
    wrapper, state = "", payload
    for _ in range(3):  # {'params_ema': {...}}, {'state_dict': {'model': {...}}}, ...
        key = next((k for k in WRAPPERS if isinstance(state.get(k), dict) and state[k]), None)
        if key is None and len(state) == 1 and isinstance(next(iter(state.values())), dict):
            key = next(iter(state))
        if key is None:
            break
        wrapper, state = f"{wrapper}.{key}" if wrapper else str(key), state[key]
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(
            f"holds no tensors (its keys: {', '.join(map(str, list(state)[:6])) or 'none'}); not a model checkpoint"
        )
    if len(tensors) > MAX_KEYS:
        raise CheckpointError(f"holds {len(tensors)} tensors, over the {MAX_KEYS} a model checkpoint may hold")
    out = {}
    for key, value in tensors.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
        out[key] = value
    for prefix in COMMON_PREFIXES:
        if all(k.startswith(prefix) for k in out):
            out = {k[len(prefix) :]: v for k, v in out.items()}
    for key in out:
        for part in key.split("."):
            if part.isdigit() and int(part) > MAX_INDEX:
                raise CheckpointError(f"key {key} has index {part}, over the {MAX_INDEX} a model layer may have")
    return out, wrapper


def numel(state: dict[str, torch.Tensor]) -> int:
    return sum(v.numel() for v in state.values())
