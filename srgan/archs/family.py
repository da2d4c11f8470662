"""What an architecture family is to the registry: its key patterns and how to build it.

A family recognises a state dict by `required` (a regex each that some key must match) and
`accepts` (a final check on shapes); `known` covers every key a checkpoint of it may hold,
so that the closest family to a file it does not fit can name the file's unexpected keys as
well as its missing ones. `build` turns a state dict it accepts into a module in eval mode.

Every size is bounded before a model is built: the spec's fields by
srgan.generator.check_spec, and the build itself stops as soon as it has made more
parameters than the file holds values (bounded_build), so a file cannot make us build a model
it has no weights for.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from srgan.archs.checkpoint import CheckpointError, check_dtypes, numel
from srgan.generator import GeneratorSpec, build_generator, check_spec

MAX_PARAMS = 250_000_000  # about 1 GB in fp32; HAT-L, among the largest SR models, has 41 M


class NotThisFamily(CheckpointError):
    """A state dict the family does not fit (the registry names the closest family's keys)."""


@dataclass(frozen=True)
class Family:
    name: str  # in messages: "RRDBNet (ESRGAN, Real-ESRGAN)"
    layout: str  # the prefix that forces it: "esrgan:<file>"
    required: tuple[str, ...]
    known: tuple[str, ...]
    build: Callable[[dict], tuple[nn.Module, dict]]  # (model in eval mode, meta)
    accepts: Callable[[dict], bool] = lambda state: True

    def missing(self, state: dict) -> list[str]:
        return [pattern for pattern in self.required if not any(re.fullmatch(pattern, k) for k in state)]

    def unexpected(self, state: dict) -> list[str]:
        if not self.known:  # a family that recognises by its own test (spandrel)
            return []
        return [k for k in state if not any(re.fullmatch(pattern, k) for pattern in self.known)]

    def matches(self, state: dict) -> bool:
        return not self.missing(state) and not self.unexpected(state) and self.accepts(state)

    def closeness(self, state: dict) -> float:
        """How near `state` is to this family: the share of its required keys present and of
        the file's keys it knows, 0..2."""
        if not self.required or not state:
            return 0.0
        found = 1 - len(self.missing(state)) / len(self.required)
        return found + (1 - len(self.unexpected(state)) / len(state)) if found else 0.0


def readable(pattern: str) -> str:
    """A key pattern as a person reads it: the first of each alternative, optional parts
    dropped, indices as N (``(?:body|recon_trunk)\\.\\d+\\.conv1\\.weight`` -> body.N.conv1.weight)."""
    text = re.sub(r"\(\?:[^()|]*\)\?", "", pattern)
    text = re.sub(r"\(\?:([^()|]*)(?:\|[^()]*)?\)", r"\1", text)
    text = text.replace(r"(\d+)", "N").replace(r"\d+", "N").replace(r"\d", "N")
    return re.sub(r"\[[^\]]*\]", "N", text).replace("\\", "")


def blocks(state: dict, pattern: str) -> int:
    """1 + the largest index the group of `pattern` takes over the keys (0 when none)."""
    found = {int(m.group(1)) for k in state for m in [re.match(pattern, k)] if m}
    return max(found) + 1 if found else 0


class _TooBig(Exception):
    pass


def bounded_build(build: Callable[[], nn.Module], state: dict, what: str) -> nn.Module:
    """`build()`, stopped as soon as the parameters it has made outnumber the values the file
    holds (by more than 1 % and 100,000) or MAX_PARAMS: a file cannot make us build a model it
    has no weights for. Every parameter made while building is counted by torch's global
    registration hook, so the check holds for any architecture, ours or spandrel's."""
    limit = min(MAX_PARAMS, int(1.01 * numel(state)) + 100_000)
    made = [0]

    def count(module: nn.Module, name: str, param: torch.Tensor | None) -> None:
        if param is not None:
            made[0] += param.numel()
            if made[0] > limit:
                raise _TooBig

    handle = nn.modules.module.register_module_parameter_registration_hook(count)
    try:
        return build()
    except _TooBig:
        raise CheckpointError(
            f"{what} would have more than {limit:,} parameters but the file holds {numel(state):,} values; "
            "its keys name more layers than it has weights for"
        ) from None
    finally:
        handle.remove()


def load_spec(spec: GeneratorSpec, mapped: dict, what: str, meta: dict) -> tuple[nn.Module, dict]:
    """Our generator for `spec`, loaded strictly with `mapped` (its keys in our names)."""
    try:
        spec = check_spec(spec)
    except Exception as exc:
        raise CheckpointError(f"not a {what} this project can run: {exc}") from None
    model = bounded_build(lambda: build_generator(spec), mapped, what)
    check_dtypes(model.state_dict(), mapped, what)
    try:
        result = model.load_state_dict(mapped, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        lines = str(exc).splitlines()
        detail = next((line.strip() for line in lines if "size mismatch" in line), lines[0])
        raise CheckpointError(f"not a {what}: {detail} (read as {spec})") from None
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        parts = [f"missing keys {', '.join(missing[:6])}" if missing else ""]
        parts.append(f"unexpected keys {', '.join(result.unexpected_keys[:6])}" if result.unexpected_keys else "")
        raise CheckpointError(f"not a {what}: {'; '.join(p for p in parts if p)} (read as {spec})")
    return model.eval(), {"arch": spec.arch, **meta}


def rename(state: dict, rules: list[tuple[str, str]]) -> dict:
    """`state` with each key rewritten by the first rule (regex, replacement) that matches."""
    out = {}
    for key, value in state.items():
        for pattern, new in rules:
            if re.match(pattern, key):
                key = re.sub(pattern, new, key)
                break
        out[key] = value
    return out
