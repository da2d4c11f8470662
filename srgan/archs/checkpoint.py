"""A checkpoint file from elsewhere, read without trusting it.

Before anything is read whole, the file's size is checked against MAX_FILE_BYTES. Reading
runs no code: ``.safetensors`` (or any file that starts like one) through safetensors, every
other file through ``torch.load(weights_only=True)``, whose refusal of a pickle that names
code becomes one line saying what the file is and how to convert one you trust. The state
dict is then found inside the wrappers training scripts save (``params_ema``, ``params``,
``state_dict``, ...), stripped of DDP's ``module.`` and torch.compile's ``_orig_mod.``, and
bounded: at most MAX_KEYS tensors, every key at most MAX_KEY_CHARS long, every index in a
key at most MAX_INDEX, so that a 15 KB file naming ``body.999999.conv1.weight`` is refused
before a model is built. A zip whose records are compressed (torch.save never compresses, so
a 4 MB file could inflate to 4 GB) is refused before torch reads it, and so is a tensor that
claims more values than its storage holds (a stride-0 view: 8 bytes in the file, any shape),
one that is not a plain dense float tensor, or one holding NaN or infinity (check_tensors).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path, PurePosixPath

import torch

from srgan.errors import UserError

MAX_FILE_BYTES = int(os.environ.get("SRGAN_MAX_MODEL_BYTES", str(4 << 30)))  # 4 GiB: HAT-L fp32 is 0.16 GB
MAX_KEYS = 20_000  # the largest published SR checkpoints hold about 3,000 tensors
MAX_INDEX = 4_096  # a block or layer index in a key
MAX_KEY_CHARS = 1_000  # the longest key of a published SR checkpoint has about 80
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
    # torch writes "GLOBAL posix.system whose module ..." (2.4+) or "GLOBAL posix system" (older)
    named = re.search(r"(?:GLOBAL|global) ([\w.]+)(?: (?!whose\b|was\b)([\w.]+))?", str(exc))
    what = f" (it names {'.'.join(p for p in named.groups() if p)})" if named else ""
    return CheckpointError(
        f"{path} is a pickle that may run code when loaded{what}, so it was not loaded; "
        "if you trust its source, convert it once in a throwaway environment with "
        "safetensors.torch.save_file(torch.load(f, weights_only=False)['params'], 'model.safetensors') "
        "(or whichever key holds the weights) and give the .safetensors file"
    )


def _check_zip(path: Path, size: int) -> None:
    """Refuse a zip torch.save did not write: a TorchScript archive, or records that are
    compressed or claim more bytes than the file holds (inflating them is unbounded)."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # torch.load says what it is
    if any(PurePosixPath(r.filename).parts[1:2] == ("code",) or r.filename.endswith("/constants.pkl") for r in records):
        raise CheckpointError(
            f"{path} is a TorchScript archive (a program, not a state dict); "
            "save the module's state_dict() with torch.save or safetensors and give that file"
        )
    if any(r.compress_type != zipfile.ZIP_STORED for r in records) or sum(r.file_size for r in records) > size:
        raise CheckpointError(
            f"{path} is a zip whose records are compressed or larger than the file, which torch.save never writes; "
            "it would inflate past its size, so it was not read"
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
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); not a model file")
    if path.suffix.lower() == ".safetensors" or _looks_like_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file ({str(exc).splitlines()[0]})") from exc
    if zipfile.is_zipfile(path):
        _check_zip(path, size)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc) or "GLOBAL " in str(exc):  # it names code to run
            raise _pickle_refusal(path, exc) from None
        detail = re.search(r"WeightsUnpickler error: \s*(.+?)\s*(?:\n|$)", str(exc))
        reason = detail.group(1) if detail else str(exc).splitlines()[0]
        if reason.startswith("Unsupported operand"):  # a pickle torch.save did not write
            reason = f"a pickle torch.save did not write: {reason}"
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({reason[:160]})") from None
    except Exception as exc:  # a truncated zip, text, a storage claiming more bytes than it has, ...
        lines = [line for line in str(exc).strip().splitlines() if "weights_only" not in line]
        first = lines[0].strip() if lines else type(exc).__name__
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
        keys = ", ".join(str(k)[:60] for k in list(state)[:6]) or "none"
        nested = " (nested deeper than 3 wrappers)" if any(isinstance(v, dict) for v in state.values()) else ""
        raise CheckpointError(f"holds no tensors{nested} (its keys: {keys}); not a model checkpoint")
    if len(tensors) > MAX_KEYS:
        raise CheckpointError(f"holds {len(tensors)} tensors, over the {MAX_KEYS} a model checkpoint may hold")
    check_tensors(tensors)
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


def check_tensors(state: dict) -> None:
    """Refuse a tensor a trained generator's weights cannot be: a key over MAX_KEY_CHARS, one
    that claims more values than its storage holds, one that is not dense on the CPU, complex
    or bool, or floats holding NaN or infinity."""
    for key, value in state.items():
        key = str(key)
        if len(key) > MAX_KEY_CHARS:
            raise CheckpointError(f"has a key of {len(key):,} characters ({key[:40]}...), over the {MAX_KEY_CHARS}")
        if not isinstance(value, torch.Tensor):
            continue
        if value.layout != torch.strided or value.device.type == "meta":
            raise CheckpointError(f"key {key} holds a {value.layout} tensor on {value.device.type}, not dense weights")
        if value.numel() * value.element_size() > value.untyped_storage().nbytes():
            raise CheckpointError(
                f"key {key} claims shape {tuple(value.shape)} but its storage holds "
                f"{value.untyped_storage().nbytes():,} bytes (a view that repeats values); not weights"
            )
        if value.is_complex() or value.dtype == torch.bool:
            raise CheckpointError(f"key {key} holds {value.dtype} values where float weights belong")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"key {key} holds NaN or infinite values; the checkpoint is broken (a training run that diverged?)"
            )


def check_dtypes(expected: dict, state: dict, what: str) -> None:
    """Refuse integer values in `state` where `expected` (a module's state dict) holds floats."""
    for key, value in state.items():
        target = expected.get(key)
        if isinstance(target, torch.Tensor) and target.is_floating_point() and not value.is_floating_point():
            raise CheckpointError(f"not a {what}: key {key} holds {value.dtype} values where float weights belong")


def numel(state: dict[str, torch.Tensor]) -> int:
    """How many values the file holds: each storage counted once (views share one)."""
    storages: dict[int, int] = {}
    for value in state.values():
        if not isinstance(value, torch.Tensor):
            continue
        storage = value.untyped_storage()
        storages[storage.data_ptr() or id(value)] = storage.nbytes() // max(value.element_size(), 1)
    return sum(storages.values())
